"""The live page on this machine: frames/s shown against `bench`'s images/s, latency from sound
to picture, and memory over a long session.

BigGAN-deep-128 with seeded random weights (the full architecture) is exported once; then, in
one run:
1. `bench` images/s for the model and precision at the live batch sizes (1 and the file batch);
2. `ganterp-fast live MUSIC --fps F` with F above what the generator makes (and at most the
   page's 60 Hz, or the page could not show every frame made), the page in Debian's Chromium
   (Playwright) playing the music: the frames/s it shows, against images/s at the same batch
   (the share is the live loop's cost: latents, JPEG, the socket, and the browser itself,
   which shares the CPU);
3. `ganterp-fast live --mic`, a fake microphone fed with the music, at --fps 30 and batch 1:
   the page's latency from a sound to its picture (the frame's audio time to the moment it
   is drawn), median and p95, and the frames/s shown;
4. the same microphone session on a WAV of silence and then music, with `--pulse 1` and
   `--record`: the time from the step in the recording's audio to the first frame of the
   recording whose picture moves (what the page showed, with what it heard);
5. with `--memory-minutes M`: a microphone session of M minutes (the fake microphone loops its
   file), the server's resident memory sampled every 10 s: first, last, max and the slope.

    python -m benchmarks.bench_live --precision bf16 --out benchmarks/results
    python -m benchmarks.bench_live --model tiny.onnx --skip bench,file,mic --memory-minutes 10

Run it with nothing else running: every figure is the machine's, and the load is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average, model_folder, prepare_checkpoint, prepare_export, write_music

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


class Live:
    """`ganterp-fast live ...` in a subprocess; its URL read from its first lines."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ganterp_fast", "live", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if "the page is at " in line:
                self.url = line.split("the page is at ")[1].split(" ")[0]
                break
        else:
            raise SystemExit("ganterp-fast live did not start:\n" + "\n".join(self.lines))

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "stats", timeout=10) as response:
            pages = json.load(response)["pages"]
        return pages[0] if pages else {}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _session(p: Any, args: list[str], seconds: float, *, browser_args: list[str] = (), every: float = 1.0) -> dict:
    """Run a live session with one page for `seconds`; the page's figures sampled each second."""
    import psutil

    live = Live(args)
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*FLAGS, *browser_args])
    samples: list[dict[str, Any]] = []
    memory: list[tuple[float, float]] = []
    try:
        page = browser.new_page()
        page.goto(live.url)
        began = time.monotonic()
        process = psutil.Process(live.process.pid)
        latencies: list[float] = []
        while time.monotonic() - began < seconds:
            time.sleep(every)
            samples.append({**live.stats(), "at": time.monotonic() - began})
            memory.append((time.monotonic() - began, process.memory_info().rss / 2**20))
            latencies += page.evaluate("() => ganterpLive.latencies.splice(0)")
    finally:
        browser.close()
        live.stop()
    settled = [s for s in samples if s.get("at", 0) > min(5.0, seconds / 3) and s.get("shown_fps") is not None]
    ordered = sorted(latencies[len(latencies) // 5 :])  # after the first frames
    return {
        "shown_fps": round(statistics.median(s["shown_fps"] for s in settled), 2) if settled else None,
        "generator_fps": round(statistics.median(s["generator_fps"] for s in settled), 2) if settled else None,
        "dropped": samples[-1].get("dropped") if samples else None,
        "latency_p50_ms": round(1000 * ordered[len(ordered) // 2], 1) if ordered else None,
        "latency_p95_ms": round(1000 * ordered[int(len(ordered) * 0.95)], 1) if ordered else None,
        "latency_frames": len(ordered),
        "memory_mb": memory,
    }


def _step_music(path: Path, rate: int = 22050) -> Path:
    """4 s of digital silence, then 8 s of the example music (a microphone's file loops)."""
    import numpy as np
    import soundfile

    from ganterp_fast.engine.audio.example import example_music

    music = example_music(8.0, rate)[0]
    samples = np.concatenate([np.zeros(4 * rate), music / max(1e-9, float(np.abs(music).max())) * 0.9])
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.stack([samples, samples], axis=1).astype(np.float32), rate)
    return path


def step_delay(record: Path, *, fps: int) -> dict[str, float]:
    """In a recording, the step in the audio (the level passing 0.01) and the first later frame
    whose picture changes more than 3x the changes before it: their times and the delay."""
    import av
    import numpy as np

    with av.open(str(record)) as container:
        rate = container.streams.audio[0].rate
        sound = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    with av.open(str(record)) as container:
        pictures = np.stack([f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)])
    level = np.sqrt(np.convolve(sound**2, np.ones(441) / 441, mode="same"))
    step_s = float(np.flatnonzero(level > 0.01)[0] / rate)
    change = np.abs(np.diff(pictures, axis=0)).mean(axis=(1, 2, 3))
    before = change[: max(1, int((step_s - 0.5) * fps))]
    moved = np.flatnonzero(change > max(3 * float(np.median(before)), 0.5))
    moved = moved[moved >= int((step_s - 0.2) * fps)]
    seen_s = float((moved[0] + 1) / fps)
    return {"heard_s": round(step_s, 3), "seen_s": round(seen_s, 3), "seen_after_s": round(seen_s - step_s, 3)}


def _images_per_s(model: Path, precision: str, batches: list[int]) -> dict[int, float]:
    from ganterp_fast.engine.backends.bench import BenchOptions, bench

    report = bench([model], BenchOptions(device="cpu", precision=precision, batch_sizes=tuple(batches), seconds=5.0))
    points = report["models"][0]["points"]
    return {int(point["batch"]): float(point["images_per_s"]) for point in points if "images_per_s" in point}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an .onnx to use instead of the random-weight BigGAN-deep-128")
    parser.add_argument("--precision", default="bf16", help="fp32, bf16 or int8 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each session (default: %(default)s)")
    parser.add_argument("--file-batch", type=int, default=4, help="the file page's --live-batch (default: %(default)s)")
    parser.add_argument(
        "--file-fps", default="30", help="the file page's --fps: above the generator's rate, at most 60"
    )
    parser.add_argument("--memory-minutes", type=float, default=0.0, help="a microphone session this long (0: none)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: bench, file, mic, step")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    from playwright.sync_api import sync_playwright

    if args.model:
        model = Path(args.model)
    else:
        folder = model_folder(args.work, 128, 0)
        checkpoint, _ = prepare_checkpoint(folder, resolution=128, seed=0)
        model, _ = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
    music = write_music(args.work / "live" / "music.wav", max(args.seconds + 10, 60.0))
    common = ["--model", str(model), "--precision", args.precision, "-q"]
    results: dict[str, Any] = {"model": str(model), "precision": args.precision, "load_before": load_average()}
    rows = []
    if "bench" not in skip:
        rates = _images_per_s(model, args.precision, sorted({1, args.file_batch}))
        results["bench_images_per_s"] = rates
    with sync_playwright() as p:
        if "file" not in skip:
            file_args = [str(music), *common, "--fps", args.file_fps, "--live-batch", str(args.file_batch)]
            file = _session(p, file_args, args.seconds)
            results["file"] = {k: v for k, v in file.items() if k != "memory_mb"}
            bench_rate = results.get("bench_images_per_s", {}).get(args.file_batch)
            share = file["shown_fps"] / bench_rate if bench_rate and file["shown_fps"] else None
            rows.append(
                [
                    f"file, --fps {args.file_fps}",
                    args.file_batch,
                    file["shown_fps"],
                    bench_rate,
                    f"{share:.0%}" if share else "-",
                    "-",
                    "-",
                    file["dropped"],
                ]
            )
        if "mic" not in skip:
            mic = _session(
                p,
                ["--mic", *common, "--fps", "30"],
                args.seconds,
                browser_args=[f"--use-file-for-fake-audio-capture={music}"],
            )
            results["mic"] = {k: v for k, v in mic.items() if k != "memory_mb"}
            bench_rate = results.get("bench_images_per_s", {}).get(1)
            rows.append(
                [
                    "microphone, --fps 30",
                    1,
                    mic["shown_fps"],
                    bench_rate,
                    "-",
                    mic["latency_p50_ms"],
                    mic["latency_p95_ms"],
                    mic["dropped"],
                ]
            )
        if "step" not in skip:
            step_wav = _step_music(args.work / "live" / "step.wav")
            record = args.work / "live" / "step.mp4"
            record.unlink(missing_ok=True)
            _session(
                p,
                ["--mic", *common, "--fps", "30", "--pulse", "1", "--record", str(record)],
                10.0,
                browser_args=[f"--use-file-for-fake-audio-capture={step_wav}"],
            )
            results["step"] = step_delay(record, fps=30)
            rows.append(
                [
                    "microphone, silence then music",
                    1,
                    "-",
                    "-",
                    "-",
                    f"step seen {results['step']['seen_after_s'] * 1000:.0f} ms after heard",
                    "-",
                    "-",
                ]
            )
        if args.memory_minutes > 0:
            long = _session(
                p,
                ["--mic", *common, "--fps", "30"],
                args.memory_minutes * 60,
                browser_args=[f"--use-file-for-fake-audio-capture={music}"],
                every=10.0,
            )
            memory = long["memory_mb"]
            settled = [(t, m) for t, m in memory if t >= 60] or memory
            slope = 0.0
            if len(settled) > 2:
                ts, ms = zip(*settled)
                mean_t, mean_m = statistics.fmean(ts), statistics.fmean(ms)
                slope = sum((t - mean_t) * (m - mean_m) for t, m in settled) / sum((t - mean_t) ** 2 for t in ts) * 60
            results["memory"] = {
                "minutes": args.memory_minutes,
                "rss_mb_first": round(settled[0][1], 1),
                "rss_mb_last": round(memory[-1][1], 1),
                "rss_mb_max": round(max(m for _, m in memory), 1),
                "slope_mb_per_min_after_1_min": round(slope, 3),
                "shown_fps": long["shown_fps"],
                "samples": memory,
            }
    results["load_after"] = load_average()
    table = markdown_table(
        [
            "session",
            "batch",
            "frames/s shown",
            "bench images/s",
            "share",
            "latency p50 ms",
            "latency p95 ms",
            "dropped",
        ],
        rows,
    )
    if "memory" in results:
        m = results["memory"]
        table += (
            f"\n\nmemory over {m['minutes']:g} min: {m['rss_mb_first']} MB at 1 min, {m['rss_mb_last']} MB at the end, "
            f"max {m['rss_mb_max']} MB, slope {m['slope_mb_per_min_after_1_min']} MB/min"
        )
    write_results(f"live-{args.precision}", results, table, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
