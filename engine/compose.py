"""The compositor: the generator's square frames into the output's size, aspect and layout.

Between the generator and the encoder, on every path (one process or a segment of a
scale-out), so every output option works everywhere. The plan (`Composition`) is plain data
made once in `prepare`; the work is done per frame range by `Compositor`, which opens the
source video's decoder itself (`source_video.VideoFrames`, seeking to the range's first
frame), so a segment's frames equal those of a single pass.

- Size: `--size WxH` or a preset; default the model's resolution (then nothing is done).
- Fit of a square frame in a cell of another aspect: `pad` (black bars), `crop` (the centre
  of the frame at the cell's aspect), `blur` (the frame scaled to fill the cell, blurred, as
  the background, with the sharp frame centred on it).
- Layout with the input's own picture: `side-by-side` (source left, GAN right), `stack`
  (source above), `pip` (the source in a corner of the GAN frame). Each part keeps its aspect.

Scaling is FFmpeg's swscale through PyAV (lanczos up, area down, one scaler context per size
kept for every frame); the blur is libavfilter's `gblur` on a small copy of the background,
scaled up. Cells are pasted into one uint8 canvas with numpy slices. All of it releases the
GIL, and it runs on its own thread beside the generator's and the encoder's.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import GanterpError, InputError, RenderError
from .source_video import VideoFrames, VideoInfo

SIZE_PRESETS = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "2160p": (3840, 2160),
    "vertical": (1080, 1920),
    "square": (1080, 1080),
}
FITS = ("pad", "crop", "blur")
LAYOUTS = ("side-by-side", "stack", "pip")
PIP_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
MAX_SIZE = 8192  # H.264 level 6.2's limit is 8192 x 4320
PREVIEW_MAX_SIDE = 512  # a preview's output fits in 512 x 512
# Blur: the background is blurred at up to 1/BLUR_SCALE of its size (cheap at any output size;
# its short side kept at BLUR_MIN_SIDE px or more) with a Gaussian whose sigma is BLUR_FRACTION
# of the cell's short side, the strong blur of the social-media look.
BLUR_SCALE = 8
BLUR_MIN_SIDE = 32
BLUR_FRACTION = 1 / 20
PIP_MARGIN = 0.03  # the inset's distance from the edges, as a fraction of the short side
QUEUE_DEPTH = 2


def parse_size(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """(width, height) from 'WxH', a preset name or a pair; InputError naming what would work."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in SIZE_PRESETS:
            return SIZE_PRESETS[text]
        match = re.fullmatch(r"(\d+)\s*[x×:]\s*(\d+)", text)
        if match is None:
            raise InputError(f"size {value!r} is neither WxH (e.g. 1920x1080) nor a preset ({', '.join(SIZE_PRESETS)})")
        width, height = int(match[1]), int(match[2])
    else:
        try:
            width, height = (int(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"size must be WxH or a preset ({', '.join(SIZE_PRESETS)}), got {value!r}") from None
    if not (2 <= width <= MAX_SIZE and 2 <= height <= MAX_SIZE):
        raise InputError(f"size {width}x{height} must be from 2 to {MAX_SIZE} pixels each way")
    if width % 2 or height % 2:
        raise InputError(
            f"size {width}x{height} has an odd side, and H.264's yuv420p needs even sizes: "
            f"use {_even(width)}x{_even(height)}"
        )
    return width, height


def _even(n: float) -> int:
    """The even number nearest n (an odd whole number goes up), at least 2."""
    return max(2, 2 * int(n / 2 + 0.5))


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Composition:
    """Where each part goes in the output frame: plain data, picklable."""

    width: int
    height: int
    resolution: int  # the generator's square frames
    gan: Rect
    fit: str
    source: Rect | None = None  # the source picture's cell (None: no layout)
    source_fit: str = "blur"
    video: VideoInfo | None = None
    offset: float = 0.0  # the excerpt's start in the soundtrack (s)

    @property
    def identity(self) -> bool:
        """Nothing to do: the frames are the output."""
        return self.source is None and (self.width, self.height) == (self.resolution, self.resolution)


def plan_composition(
    *,
    resolution: int,
    size: tuple[int, int] | None,
    fit: str = "blur",
    layout: str | None = None,
    pip_corner: str = "bottom-right",
    pip_size: float = 0.3,
    video: VideoInfo | None = None,
    offset: float = 0.0,
    max_side: int | None = None,
) -> Composition:
    """The output's size and cells for these options; `max_side` caps the size (previews)."""
    if layout is not None and video is None:
        raise InputError(f"layout {layout} needs a video to show, and there is none")
    aspect = video.aspect if video is not None else 1.0
    r = resolution
    natural = size is None  # the parts at their own aspect, the GAN frame at its own size
    source_width = _even(r * aspect) if layout == "side-by-side" else r
    source_height = _even(r / aspect) if layout == "stack" else r
    if size is None:
        if layout == "side-by-side":
            size = (source_width + r, r)
        elif layout == "stack":
            size = (r, source_height + r)
        else:
            size = (r, r)
    width, height = size
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = min(_even(width * scale), max_side), min(_even(height * scale), max_side)
    source = None
    source_fit = fit
    gan = Rect(0, 0, width, height)
    if layout == "side-by-side":
        left = round(width * source_width / (source_width + r)) if natural else width // 2
        source, gan = Rect(0, 0, left, height), Rect(left, 0, width - left, height)
        source_fit = "crop" if natural else fit
    elif layout == "stack":
        top = round(height * source_height / (source_height + r)) if natural else height // 2
        source, gan = Rect(0, 0, width, top), Rect(0, top, width, height - top)
        source_fit = "crop" if natural else fit
    elif layout == "pip":
        inset_w = max(2, round(width * pip_size))
        inset_h = max(2, round(inset_w / aspect))
        if inset_h > height * 0.9:
            inset_h = max(2, round(height * pip_size))
            inset_w = max(2, round(inset_h * aspect))
        margin = round(PIP_MARGIN * min(width, height))
        x = margin if pip_corner.endswith("left") else width - margin - inset_w
        y = margin if pip_corner.startswith("top") else height - margin - inset_h
        source = Rect(max(0, x), max(0, y), min(inset_w, width), min(inset_h, height))
        source_fit = "crop"  # the inset has the picture's own aspect, to the pixel
    return Composition(
        width=width,
        height=height,
        resolution=r,
        gan=gan,
        fit=fit,
        source=source,
        source_fit=source_fit,
        video=video,
        offset=offset,
    )


# ------------------------------------------------------------------------- fitting


def _fit_size(width: float, height: float, cell: Rect, *, cover: bool) -> tuple[int, int]:
    scale = (max if cover else min)(cell.width / width, cell.height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _Fitter:
    """One part (a source of frames of one size and aspect) into its cell, by one fit mode."""

    def __init__(self, width: float, height: float, cell: Rect, fit: str) -> None:
        from av.video.reformatter import VideoReformatter

        self.cell, self.mode = cell, fit
        self.inner = _fit_size(width, height, cell, cover=fit == "crop")
        self.direct = self.inner == (cell.width, cell.height)
        self._scaler = VideoReformatter()
        self._background = VideoReformatter()
        self._upscaler = VideoReformatter()
        self._blur: Any = None
        if fit == "blur" and not self.direct:
            cover = _fit_size(width, height, cell, cover=True)
            self.factor = max(1, min(BLUR_SCALE, min(cell.width, cell.height) // BLUR_MIN_SIDE))
            self.small_cell = (max(2, cell.width // self.factor), max(2, cell.height // self.factor))
            self.small_cover = (
                max(self.small_cell[0], round(cover[0] / self.factor)),
                max(self.small_cell[1], round(cover[1] / self.factor)),
            )
            self._pts = 0

    def _scale(self, reformatter: Any, frame: Any, size: tuple[int, int], interpolation: Any) -> np.ndarray:
        from av.video.reformatter import ColorRange

        source_range = frame.color_range if frame.format.name != "rgb24" and frame.color_range else None
        out = reformatter.reformat(
            frame,
            width=size[0],
            height=size[1],
            format="rgb24",
            interpolation=interpolation,
            src_color_range=source_range,
            dst_color_range=ColorRange.JPEG if source_range else None,
        )
        return out.to_ndarray()

    def __call__(self, frame: Any, out: np.ndarray) -> None:
        """Draw `frame` (an av.VideoFrame) into `out`, this part's cell of the canvas."""
        from av.video.reformatter import Interpolation

        up = self.inner[0] * self.inner[1] >= frame.width * frame.height
        sharp = Interpolation.LANCZOS if up else Interpolation.AREA
        if self.direct:
            if (frame.width, frame.height) == self.inner and frame.format.name == "rgb24":
                out[...] = frame.to_ndarray()
            else:
                out[...] = self._scale(self._scaler, frame, self.inner, sharp)
            return
        if self.mode == "crop":
            image = self._scale(self._scaler, frame, self.inner, sharp)
            x = (self.inner[0] - self.cell.width) // 2
            y = (self.inner[1] - self.cell.height) // 2
            out[...] = image[y : y + self.cell.height, x : x + self.cell.width]
            return
        if self.mode == "pad":
            out[...] = 0
        else:
            out[...] = self._blurred(frame)
        image = self._scale(self._scaler, frame, self.inner, sharp)
        x = (self.cell.width - self.inner[0]) // 2
        y = (self.cell.height - self.inner[1]) // 2
        out[y : y + self.inner[1], x : x + self.inner[0]] = image

    def _blurred(self, frame: Any) -> np.ndarray:
        """The frame scaled to cover the cell, blurred (at 1/BLUR_SCALE of the size), scaled up."""
        import av
        from av.video.reformatter import Interpolation

        small = self._scale(self._background, frame, self.small_cover, Interpolation.AREA)
        cw, ch = self.small_cell
        x, y = (small.shape[1] - cw) // 2, (small.shape[0] - ch) // 2
        small = np.ascontiguousarray(small[y : y + ch, x : x + cw])
        if self._blur is None:
            sigma = max(0.5, BLUR_FRACTION * min(self.cell.width, self.cell.height) / self.factor)
            self._blur = _blur_graph(cw, ch, sigma=sigma)
        graph = self._blur
        image = av.VideoFrame.from_ndarray(small, format="rgb24")
        image.pts = self._pts
        self._pts += 1
        graph.push(image)
        blurred = graph.pull()
        big = self._upscaler.reformat(
            blurred, width=self.cell.width, height=self.cell.height, interpolation=Interpolation.BICUBIC
        )
        return big.to_ndarray()


def _blur_graph(width: int, height: int, *, sigma: float):  # -> av.filter.Graph
    """A libavfilter graph: rgb24 frames of this size in, Gaussian-blurred rgb24 out."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=Fraction(1, 1000))
    blur = graph.add("gblur", f"sigma={sigma:.3f}")
    rgb = graph.add("format", "pix_fmts=rgb24")
    sink = graph.add("buffersink")
    graph.link_nodes(source, blur, rgb, sink).configure()
    return graph


# ------------------------------------------------------------------------- compositing


class Compositor:
    """Composites the generator's frames [start, ...) of a job into output frames, in order."""

    def __init__(self, plan: Composition, fps: Fraction, start: int = 0) -> None:
        self.plan, self.fps = plan, Fraction(fps)
        self.index = start
        r = plan.resolution
        self._gan = _Fitter(r, r, plan.gan, plan.fit)
        self._source: _Fitter | None = None
        self._video: VideoFrames | None = None
        if plan.source is not None and plan.video is not None:
            self._video = VideoFrames(plan.video, plan.offset)
            w, h = plan.video.display_size
            self._source = _Fitter(w, h, plan.source, plan.source_fit)
        self.seconds = 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [B, R, R, 3] generator frames -> uint8 [B, H, W, 3] output frames."""
        import av

        began = time.perf_counter()
        plan = self.plan
        out = np.empty((len(batch), plan.height, plan.width, 3), dtype=np.uint8)
        g = plan.gan
        for image, canvas in zip(batch, out):
            self._gan(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"), _cell(canvas, g))
            if self._source is not None and self._video is not None:
                frame = self._video.at(self.index / float(self.fps))
                self._source(frame, _cell(canvas, plan.source))
            self.index += 1
        self.seconds += time.perf_counter() - began
        return out

    def close(self) -> None:
        if self._video is not None:
            self._video.close()


def _cell(canvas: np.ndarray, rect: Rect | None) -> np.ndarray:
    assert rect is not None
    return canvas[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width]


class ComposedFrames:
    """An iterator of composited batches over an iterator of generator batches (with `close`).

    The compositor runs on its own thread one batch ahead, so scaling overlaps the generator
    and the encoder; closing stops it and closes the frames underneath.
    """

    def __init__(self, frames: Any, compositor: Compositor, on_time: Any = None) -> None:
        self.frames, self.compositor = frames, compositor
        self._on_time = on_time
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._produce, name="ganterp-compose", daemon=True)
        self._started = self._finished = False

    @property
    def batch_size(self) -> int:
        return getattr(self.frames, "batch_size", 0)

    def _produce(self) -> None:
        try:
            for batch in self.frames:
                if self._stop.is_set():
                    return
                self._put(self.compositor(batch))
            self._put(None)
        except BaseException as exc:  # re-raised on the consuming thread
            self._put(exc)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._finished:
            raise StopIteration
        if not self._started:
            self._started = True
            self._worker.start()
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        if item is None or isinstance(item, BaseException):
            self._finished = True
            if item is None:
                raise StopIteration
            if isinstance(item, GanterpError):
                raise item
            reason = " ".join(str(item).split()) or type(item).__name__
            raise RenderError(f"compositing failed at frame {self.compositor.index}: {reason}") from item
        return item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        self.frames.close()
        self.compositor.close()
        if self._on_time is not None:
            self._on_time(self.compositor.seconds)
