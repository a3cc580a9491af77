"""The live page's server: Starlette routes over a `LiveSession`, run by uvicorn on one socket.

Routes: `/` the page, `/static/*` its script and style, `/config` what the page needs to
start, `/audio` the input's soundtrack (a WAV the page plays and seeks), `/stats` every page's
latest statistics (JSON), and `/ws`, one WebSocket per page:

  page -> server  text: {"type": "hello", "rate": Hz, "channels": n}   first, once
                        {"type": "clock", "t": seconds, "playing": bool}  a file's playback clock
                        {"type": "stats", ...}  what the page measures (fps shown, latency, drops)
                        {"type": "stop"}  end the session (the recording is written)
                        {"type": "error", "message": text}  e.g. no microphone permission
                  bytes: int16 PCM, interleaved, at the page's rate: the audio it hears
  server -> page  text: {"type": "ready", ...}, {"type": "message", "text": ...}, {"type": "stopped", ...}
                  bytes: a frame: little-endian uint32 slot, float64 time (s), uint32 frames
                         dropped so far, then the JPEG

Frames are sent from each page's frame loop and wait for the socket (the loop then skips to
the newest slot), so a slow network drops frames instead of queueing them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.live.producer import Frames
from ganterp_fast.engine.live.session import LiveSession, Page

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page"
HEADER = struct.Struct("<IdI")
#: A frame the socket has not taken within this long counts the page as gone.
SEND_TIMEOUT_S = 10.0


class JpegEncoder:
    """uint8 RGB frames -> JPEG bytes with FFmpeg's mjpeg encoder (one context per frame size)."""

    def __init__(self, quality: int = 3) -> None:
        self.quality = quality
        self._context = None
        self._size: tuple[int, int] | None = None

    def __call__(self, image: np.ndarray) -> bytes:
        import av

        height, width = image.shape[:2]
        if self._size != (width, height):
            context = av.CodecContext.create("mjpeg", "w")
            context.width, context.height = width, height
            context.pix_fmt = "yuvj420p"
            context.time_base = Fraction(1, 30)
            context.options = {"qscale": str(self.quality)}
            self._context, self._size = context, (width, height)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuvj420p")
        return b"".join(bytes(packet) for packet in self._context.encode(frame))


@dataclass
class PageLink:
    """One page's socket, as its frame loop sees it."""

    websocket: Any
    loop: asyncio.AbstractEventLoop
    encoder: JpegEncoder = field(default_factory=JpegEncoder)
    open: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one send at a time on the socket

    def send_frames(self, frames: Frames) -> bool:
        for slot, (t, image) in enumerate(zip(frames.times, frames.images), start=frames.first):
            if not self.open:
                return False
            payload = HEADER.pack(slot, float(t), frames.dropped) + self.encoder(image)
            if not self._send(self.websocket.send_bytes(payload)):
                return False
        return True

    async def _one_at_a_time(self, coroutine: Any) -> None:
        async with self.lock:
            await coroutine

    def send_json(self, message: dict[str, Any]) -> bool:
        return self._send(self.websocket.send_text(json.dumps(message)))

    def _send(self, coroutine: Any) -> bool:
        if not self.open:
            coroutine.close()
            return False
        future = asyncio.run_coroutine_threadsafe(self._one_at_a_time(coroutine), self.loop)
        try:
            future.result(SEND_TIMEOUT_S)
            return True
        except Exception:  # closed, or too slow to take a frame at all
            self.open = False
            return False


def build_app(session: LiveSession, *, on_stop: Callable[[], None] | None = None, title: str = "ganterp-fast live"):
    """The Starlette application serving `session`."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket, WebSocketDisconnect

    stats: dict[int, dict[str, Any]] = {}
    counter = iter(range(1, 1 << 62))

    async def index(request: Any) -> Response:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-store"})

    async def config(request: Any) -> Response:
        return JSONResponse(
            {
                "mode": session.mode,
                "title": title,
                "fps": float(session.fps),
                "width": session.width,
                "height": session.height,
                "batch": session.batch_size,
                "record": session.live.record,
                "input": session.source.path.name if session.source is not None else None,
                "duration_s": session.analysis.duration_s if session.analysis is not None else None,
            }
        )

    async def audio(request: Any) -> Response:
        if session.audio_file is None:
            return JSONResponse({"error": "this session listens to a microphone: it has no audio file"}, 404)
        return FileResponse(session.audio_file, media_type="audio/wav")

    async def statistics(request: Any) -> Response:
        return JSONResponse({"pages": list(stats.values()), "mode": session.mode, "fps": float(session.fps)})

    async def socket_route(websocket: WebSocket) -> None:
        await websocket.accept()
        number = next(counter)
        link = PageLink(websocket, asyncio.get_running_loop())
        page: Page | None = None
        loop = asyncio.get_running_loop()

        def message(text: str) -> None:
            session.notify(text)
            link.send_json({"type": "message", "text": text, "level": "warning"})

        try:
            while True:
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    break
                if received.get("bytes") is not None:
                    if page is not None:
                        data = np.frombuffer(received["bytes"], dtype="<i2")
                        channels = page.channels
                        block = data[: len(data) // channels * channels].reshape(-1, channels)
                        clock = page.clock.now()[0] if session.mode == "file" else None
                        await loop.run_in_executor(None, lambda: page.audio(block, clock_s=clock))
                    continue
                try:
                    request = json.loads(received.get("text") or "{}")
                except json.JSONDecodeError:
                    continue
                kind = request.get("type")
                if kind == "hello" and page is None:
                    try:
                        rate = int(request.get("rate") or 0)
                        page = session.connect(link.send_frames, sample_rate=rate or None, message=message)
                    except InputError as exc:
                        await websocket.send_text(json.dumps({"type": "message", "text": str(exc), "level": "error"}))
                        break
                    page.channels = max(1, min(8, int(request.get("channels") or 1)))
                    page.stats["page"] = number
                    stats[number] = page.stats
                    await link._one_at_a_time(
                        websocket.send_text(
                            json.dumps(
                                {
                                    "type": "ready",
                                    "mode": session.mode,
                                    "fps": float(page.feed.fps),
                                    "batch": session.batch_size,
                                    "delay_s": getattr(page.feed, "delay_s", 0.0),
                                }
                            )
                        )
                    )
                elif kind == "clock" and page is not None:
                    page.report_clock(float(request.get("t") or 0.0), bool(request.get("playing")))
                elif kind == "stats" and page is not None:
                    page.stats.update({k: v for k, v in request.items() if k != "type"})
                    page.stats.update(
                        made=page.producer.stats.made,
                        server_dropped=page.producer.stats.dropped,
                        generator_fps=round(page.producer.stats.frames_per_s(session.batch_size), 2),
                        updated=time.time(),
                    )
                elif kind == "error":
                    text = str(request.get("message") or "the page reported an error")[:500]
                    session.notify(f"the page says: {text}")
                elif kind == "stop":
                    await link._one_at_a_time(
                        websocket.send_text(json.dumps({"type": "stopped", "record": session.live.record}))
                    )
                    if on_stop is not None:
                        on_stop()
                    break
        except WebSocketDisconnect:
            pass
        finally:
            link.open = False
            if page is not None:
                await loop.run_in_executor(None, session.disconnect, page)
            stats.pop(number, None)

    routes = [
        Route("/", index),
        Route("/config", config),
        Route("/audio", audio),
        Route("/stats", statistics),
        WebSocketRoute("/ws", socket_route),
        Mount("/static", StaticFiles(directory=PAGE), name="static"),
    ]
    return Starlette(routes=routes)


class LiveServer:
    """uvicorn serving the app on a bound socket, until `stop()` or Ctrl-C."""

    def __init__(self, session: LiveSession, sock: socket.socket, *, title: str = "ganterp-fast live") -> None:
        import uvicorn

        self.session = session
        self.sock = sock
        app = build_app(session, on_stop=self.stop, title=title)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws_max_size=4 * 1024 * 1024)
        self.server = uvicorn.Server(config)
        self.stopped_by_page = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def stop(self) -> None:
        self.stopped_by_page.set()
        self.server.should_exit = True

    def run(self) -> None:
        """Serve until stopped; Ctrl-C (SIGINT) or SIGTERM end it as uvicorn does."""
        self.server.run(sockets=[self.sock])
