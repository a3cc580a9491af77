// The live page: plays the input (or listens to a microphone), streams what it hears to the
// engine, and draws each frame at the audio time it was made for. Nothing is fetched from
// anywhere but this page's own server.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("screen");
  const g = canvas.getContext("2d");
  const state = {
    cfg: null, ws: null, ctx: null, audio: null, mediaNode: null, stream: null, tap: null,
    started: false, stopped: false, frames: [], current: null, shownAt: [], latencies: [],
    serverDropped: 0, skipped: 0, shown: 0, received: 0, samplesSent: 0, lastBlockAt: 0, blockSeconds: 0.05,
    rate: 0, channels: 1, delay: 0, batch: 1, fps: 30, ready: false, messages: [],
  };
  window.ganterpLive = state; // read by the tests and handy in the console

  function message(text, level = "warning") {
    state.messages.push({ text, level });
    const box = $("message");
    box.textContent = text;
    box.className = level === "error" ? "error" : "";
    box.hidden = false;
    clearTimeout(message.timer);
    if (level !== "error") message.timer = setTimeout(() => { box.hidden = true; }, 10000);
  }

  function report(text) {
    // Tell the terminal too: over the page's socket, or a short-lived one before it exists.
    const payload = JSON.stringify({ type: "error", message: text });
    if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(payload); return; }
    const ws = new WebSocket(socketUrl());
    ws.onopen = () => { ws.send(payload); ws.close(); };
  }

  function socketUrl() {
    const base = location.pathname.replace(/[^/]*$/, "");
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "ws";
  }

  function paint(bitmap) {
    // The canvas holds the frame at its own size; CSS (object-fit: contain) scales it to the
    // window, so the browser's compositor does the scaling once, not a full-window draw per frame.
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    g.drawImage(bitmap, 0, 0);
  }

  function audioNow() {
    if (state.cfg && state.cfg.mode === "file") return state.audio ? state.audio.currentTime : 0;
    if (!state.rate || !state.lastBlockAt) return state.samplesSent / (state.rate || 1);
    const since = Math.min((performance.now() - state.lastBlockAt) / 1000, state.blockSeconds);
    return state.samplesSent / state.rate + since;
  }

  // ------------------------------------------------------------------ the engine's socket

  function connect() {
    const ws = new WebSocket(socketUrl());
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    state.ready = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", rate: state.rate, channels: state.channels }));
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onText(JSON.parse(event.data));
      else onFrame(event.data);
    };
    ws.onclose = () => {
      if (state.ws === ws) state.ws = null;
      if (!state.stopped) {
        message("the connection to ganterp-fast closed: reconnecting…");
        setTimeout(() => { if (!state.stopped && !state.ws) connect(); }, 1000);
      }
    };
  }

  function onText(msg) {
    if (msg.type === "ready") {
      state.ready = true;
      state.fps = msg.fps;
      state.batch = msg.batch;
      state.delay = state.cfg.mode === "mic" ? Math.max(0, msg.batch - 1) / msg.fps : 0;
      if (state.cfg.mode === "mic") state.samplesSent = 0; // the engine's clock starts with the next block
      for (const f of state.frames) f.bitmap.close();
      state.frames = [];
      sendClock();
    } else if (msg.type === "message") {
      message(msg.text, msg.level);
    } else if (msg.type === "stopped") {
      state.stopped = true;
      message(msg.record ? `session ended: the recording is being written to ${msg.record}` : "session ended", "warning");
    }
  }

  function onFrame(buffer) {
    const view = new DataView(buffer);
    const slot = view.getUint32(0, true), t = view.getFloat64(4, true);
    state.serverDropped = view.getUint32(12, true);
    state.received++;
    createImageBitmap(new Blob([new Uint8Array(buffer, 16)], { type: "image/jpeg" })).then((bitmap) => {
      state.frames.push({ slot, t, bitmap });
      if (state.frames.length > 1 && state.frames[state.frames.length - 2].t > t) state.frames.sort((a, b) => a.t - b.t);
      while (state.frames.length > 64) { state.frames.shift().bitmap.close(); state.skipped++; }
    });
  }

  function sendClock() {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN || state.cfg.mode !== "file" || !state.audio) return;
    const playing = !state.audio.paused && !state.audio.ended;
    state.ws.send(JSON.stringify({ type: "clock", t: state.audio.currentTime, playing }));
  }

  // ------------------------------------------------------------------ drawing

  function draw() {
    requestAnimationFrame(draw);
    if (!state.started || !state.frames.length) return;
    const now = audioNow();
    const due = now - state.delay;
    let pick = -1;
    for (let i = 0; i < state.frames.length && state.frames[i].t <= due; i++) pick = i;
    if (pick < 0) {
      // After a seek back, frames far ahead of the clock are stale.
      while (state.frames.length && state.frames[0].t > now + 5) { state.frames.shift().bitmap.close(); }
      return;
    }
    for (let i = 0; i < pick; i++) { state.frames[i].bitmap.close(); state.skipped++; }
    const frame = state.frames[pick];
    state.frames.splice(0, pick + 1);
    if (state.current) state.current.bitmap.close();
    state.current = frame;
    paint(frame.bitmap);
    state.shown++;
    state.shownAt.push(performance.now());
    state.latencies.push(now - frame.t);
    if (state.latencies.length > 240) state.latencies.splice(0, state.latencies.length - 240);
  }

  function quantile(values, q) {
    if (!values.length) return null;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  function stats() {
    const now = performance.now();
    while (state.shownAt.length && state.shownAt[0] < now - 2000) state.shownAt.shift();
    const fps = state.shownAt.length / 2;
    const recent = state.latencies.slice(-90);
    const p50 = quantile(recent, 0.5), p95 = quantile(recent, 0.95);
    const dropped = state.serverDropped + state.skipped;
    $("fps").textContent = `${fps.toFixed(1)} fps`;
    $("latency").textContent = p50 === null ? "latency –" : `latency ${Math.round(p50 * 1000)} ms (p95 ${Math.round(p95 * 1000)})`;
    $("dropped").textContent = `${dropped} dropped`;
    if (state.cfg && state.cfg.mode === "file" && state.audio) {
      const t = state.audio.currentTime;
      $("clock").textContent = `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}`;
    }
    if (state.ws && state.ws.readyState === WebSocket.OPEN && state.ready) {
      state.ws.send(JSON.stringify({
        type: "stats", shown_fps: fps, latency_ms: p50 === null ? null : p50 * 1000,
        latency_p95_ms: p95 === null ? null : p95 * 1000, dropped, page_skipped: state.skipped, shown: state.shown,
        received: state.received, audio_s: audioNow(), delay_s: state.delay,
        playing: state.cfg.mode === "mic" || (state.audio && !state.audio.paused),
      }));
    }
  }

  // ------------------------------------------------------------------ audio in

  function sendAudio(channelsData, frames, rate) {
    // Interleaved int16 at the page's rate: a microphone's drives the analysis, any is recorded.
    state.blockSeconds = frames / rate;
    if (state.cfg.mode === "file" && (!state.cfg.record || !state.audio || state.audio.paused)) return;
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.ready) return;
    const channels = channelsData.length;
    const out = new Int16Array(frames * channels);
    for (let c = 0; c < channels; c++) {
      const data = channelsData[c];
      for (let i = 0; i < frames; i++) {
        const v = Math.max(-1, Math.min(1, data[i]));
        out[i * channels + c] = v < 0 ? v * 32768 : v * 32767;
      }
    }
    state.ws.send(out.buffer);
    state.samplesSent += frames;
    state.lastBlockAt = performance.now();
  }

  async function tapAudio(node, channels) {
    // An AudioWorklet where the page is a secure context (localhost, https); elsewhere (a page
    // opened over plain http from another machine) the older script processor does the same.
    if (state.ctx.audioWorklet && window.isSecureContext) {
      await state.ctx.audioWorklet.addModule("static/capture.js");
      const tap = new AudioWorkletNode(state.ctx, "ganterp-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [channels], processorOptions: { channels },
      });
      tap.port.onmessage = (event) => sendAudio(event.data, event.data[0].length, state.ctx.sampleRate);
      node.connect(tap);
      tap.connect(state.ctx.destination); // its output is silence
      state.tap = tap;
      return;
    }
    const tap = state.ctx.createScriptProcessor(1024, channels, channels);
    tap.onaudioprocess = (event) => {
      const input = event.inputBuffer;
      const data = [];
      for (let c = 0; c < channels; c++) data.push(input.getChannelData(c));
      sendAudio(data, input.length, input.sampleRate);
    };
    node.connect(tap);
    tap.connect(state.ctx.destination); // a script node runs only when connected; its output is silence
    state.tap = tap;
  }

  async function start() {
    if (state.started || state.stopped) return;
    const mode = state.cfg.mode;
    try {
      if (!state.ctx) state.ctx = new AudioContext({ latencyHint: "interactive" });
      if (mode === "file") {
        if (!state.audio) {
          state.audio = new Audio("audio");
          state.audio.preload = "auto";
          state.mediaNode = state.ctx.createMediaElementSource(state.audio);
          state.mediaNode.connect(state.ctx.destination);
          state.channels = 2;
          if (state.cfg.record) await tapAudio(state.mediaNode, 2); // what is heard is sent only to be recorded
          for (const name of ["play", "pause", "seeked", "ended", "ratechange"]) state.audio.addEventListener(name, sendClock);
          state.audio.addEventListener("ended", () => message("the song has ended: press space to play it again"));
          state.audio.addEventListener("error", () => {
            const text = "the page cannot play the input's audio";
            message(text, "error");
            report(text);
          });
        }
        await state.ctx.resume();
        await state.audio.play();
      } else {
        if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
          const err = new Error("this page cannot reach a microphone: open it on this machine at http://127.0.0.1 or localhost, or over https");
          err.name = "NoMediaDevices";
          throw err;
        }
        if (!state.stream) {
          state.stream = await navigator.mediaDevices.getUserMedia({
            audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
          });
          state.channels = 1;
          await tapAudio(state.ctx.createMediaStreamSource(state.stream), 1);
        }
        await state.ctx.resume();
      }
      if (state.ctx.state !== "running") {
        const err = new Error("the browser holds audio until a click");
        err.name = "NotAllowedError";
        throw err;
      }
      state.rate = state.ctx.sampleRate;
      state.started = true;
      $("start-panel").hidden = true;
      connect();
    } catch (err) {
      const panel = $("start-panel");
      panel.hidden = false;
      if (err.name === "NotAllowedError" && (mode === "file" || state.stream)) {
        $("start-text").textContent = "Press start: the browser plays and listens only after a click.";
      } else if (err.name === "NotAllowedError" || err.name === "SecurityError") {
        const text = "no microphone permission: allow the microphone for this page (the icon in the address bar), then press start";
        $("start-text").textContent = text;
        message(text, "error");
        report(text);
      } else if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
        const text = "no microphone or line-in was found: connect one, then press start";
        message(text, "error");
        report(text);
      } else {
        message(err.message || String(err), "error");
        report(err.message || String(err));
      }
    }
  }

  function stop() {
    if (state.stopped) return;
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "stop" }));
    else message("session ended");
    state.stopped = true;
    if (state.audio) state.audio.pause();
    if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  }

  function fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch((err) => message(`fullscreen refused: ${err.message}`));
  }

  let idleTimer = 0;
  function awake() {
    document.body.classList.remove("idle");
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => document.body.classList.add("idle"), 3000);
  }

  async function main() {
    addEventListener("mousemove", awake);
    awake();
    $("fullscreen").onclick = fullscreen;
    canvas.ondblclick = fullscreen;
    $("stop").onclick = stop;
    $("start").onclick = start;
    addEventListener("keydown", (event) => {
      if (event.key === "f") fullscreen();
      if (event.key === " " && state.audio) { event.preventDefault(); state.audio.paused ? state.audio.play() : state.audio.pause(); }
    });
    try {
      state.cfg = await (await fetch("config")).json();
    } catch (err) {
      message("cannot reach ganterp-fast: is `ganterp-fast live` still running?", "error");
      return;
    }
    document.title = state.cfg.input ? `${state.cfg.input} · ganterp-fast live` : "microphone · ganterp-fast live";
    $("start-text").textContent = state.cfg.mode === "file" ? `Press start to play ${state.cfg.input}.` : "Press start to listen to the microphone or line-in.";
    setInterval(sendClock, 100);
    setInterval(stats, 500);
    requestAnimationFrame(draw);
    start(); // starts at once where the browser allows it; the start control otherwise
  }
  main();
})();
