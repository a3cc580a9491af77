"""The compositor: the generator's frames into the output's size, aspect and layout.

Between the generator and the encoder, on every path (one process or a segment of a
scale-out), so every output option works everywhere. The plan (`Composition`) is plain data
made once in `prepare`; the work is done per frame range by `Compositor`, which opens the
source video's decoder itself (`source_video.VideoFrames`, seeking to the range's first
frame), so a segment's frames equal those of a single pass.

- Size: `--size WxH` or a preset; default the model's resolution (then nothing is done).
- Fit of a frame in a cell of another aspect: `pad` (black bars), `crop` (the centre
  of the frame at the cell's aspect), `blur` (the frame scaled to fill the cell, blurred, as
  the background, with the sharp frame centred on it).
- Layout with the input's own picture: `side-by-side` (source left, GAN right), `stack`
  (source above), `pip` (the source in a corner of the GAN frame). Each part keeps its aspect:
  without `--size`, the GAN cell is the generator's frame (square or not) at its own size.

Scaling is FFmpeg's swscale through PyAV (lanczos up, area down, one scaler context per size
kept for every frame); the blur is libavfilter's `gblur` on a small copy of the background,
scaled up. Cells are pasted into one uint8 canvas with numpy slices. All of it releases the
GIL, and it runs on its own thread beside the generator's and the encoder's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.pipeline import Ahead, reason
from ganterp_fast.engine.video.input_video import VideoFrames, VideoInfo

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
    resolution: int  # the generator's frames' height (their side where square)
    gan: Rect
    fit: str
    source: Rect | None = None  # the source picture's cell (None: no layout)
    source_fit: str = "blur"
    video: VideoInfo | None = None
    offset: float = 0.0  # the excerpt's start in the soundtrack (s)
    frame_width: int | None = None  # the generator's frames' width where it differs from their height

    @property
    def identity(self) -> bool:
        """Nothing to do: the frames are the output."""
        return self.source is None and (self.width, self.height) == (
            self.frame_width or self.resolution,
            self.resolution,
        )


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
    frame_width: int | None = None,
) -> Composition:
    """The output's size and cells for these options; `max_side` caps the size (previews);
    `frame_width`: the generator's frames' width where they are not square (fitted like any size)."""
    if layout is not None and video is None:
        raise InputError(f"layout {layout} needs a video to show, and there is none")
    aspect = video.aspect if video is not None else 1.0
    r = resolution
    gw = frame_width or r  # the generator's frames are gw x r
    natural = size is None  # the parts at their own aspect, the GAN frame at its own size
    source_width = _even(r * aspect) if layout == "side-by-side" else gw  # beside it: its height
    source_height = _even(gw / aspect) if layout == "stack" else r  # above it: its width
    if size is None:
        if layout == "side-by-side":
            size = (source_width + gw, r)
        elif layout == "stack":
            size = (gw, source_height + r)
        else:
            size = (gw, r)
    width, height = size
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = min(_even(width * scale), max_side), min(_even(height * scale), max_side)
    source = None
    source_fit = fit
    gan = Rect(0, 0, width, height)
    if layout == "side-by-side":
        left = 2 * round(width * source_width / (source_width + gw) / 2) if natural else width // 4 * 2
        source, gan = Rect(0, 0, left, height), Rect(left, 0, width - left, height)
        source_fit = "crop" if natural else fit
    elif layout == "stack":
        top = 2 * round(height * source_height / (source_height + r) / 2) if natural else height // 4 * 2
        source, gan = Rect(0, 0, width, top), Rect(0, top, width, height - top)
        source_fit = "crop" if natural else fit
    elif layout == "pip":
        inset_w = _even(width * pip_size)
        inset_h = _even(inset_w / aspect)
        if inset_h > height * 0.9:
            inset_h = _even(height * pip_size)
            inset_w = min(_even(inset_h * aspect), width)
        margin = 2 * round(PIP_MARGIN * min(width, height) / 2)
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
        frame_width=frame_width,
    )


# ------------------------------------------------------------------------- fitting
#
# Work is done in 4:2:0 planes: swscale scales RGB into yuv420p and converts yuv420p back to
# RGB on its fast paths (at 1080 px, a lanczos upscale into packed RGB took ~60 ms here, into
# yuv420p ~4 ms). The intermediate is BT.709 full range; every cell sits on even pixels.


def _even_floor(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def _fit_size(width: float, height: float, cell: Rect, *, cover: bool) -> tuple[int, int]:
    scale = (max if cover else min)(cell.width / width, cell.height / height)
    w, h = _even(width * scale), _even(height * scale)
    if not cover:  # never past the cell
        w, h = min(w, cell.width), min(h, cell.height)
    return w, h


class _Planes:
    """Views of a yuv420p image held as FFmpeg's packed ndarray [H * 3 / 2, W]."""

    def __init__(self, data: np.ndarray, width: int, height: int) -> None:
        flat = data.reshape(-1)
        luma, chroma = width * height, (width // 2) * (height // 2)
        self.data = data
        self.y = flat[:luma].reshape(height, width)
        self.u = flat[luma : luma + chroma].reshape(height // 2, width // 2)
        self.v = flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2)

    def region(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            self.y[y : y + h, x : x + w],
            self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2],
            self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2],
        )

    def paste(self, other: _Planes, x: int, y: int, *, crop: tuple[int, int, int, int] | None = None) -> None:
        """Copy `other` (or its region `crop` = x, y, w, h) to (x, y) of this image."""
        source = other.region(*crop) if crop is not None else (other.y, other.u, other.v)
        h, w = source[0].shape
        for target, plane in zip(self.region(x, y, w, h), source):
            target[...] = plane


def _yuv(frame: Any, reformatter: Any, size: tuple[int, int], interpolation: Any) -> _Planes:
    """`frame` (any format) scaled to `size` in BT.709 full-range yuv420p."""
    from av.video.reformatter import ColorRange, Colorspace

    source_range = None
    if frame.format.name not in ("rgb24", "gbrp") and frame.color_range:
        source_range = frame.color_range
    out = reformatter.reformat(
        frame,
        width=size[0],
        height=size[1],
        format="yuv420p",
        interpolation=interpolation,
        src_color_range=source_range,
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.JPEG,
    )
    return _Planes(out.to_ndarray(), size[0], size[1])


class _Fitter:
    """One part (a source of frames of one size and aspect) into its cell, by one fit mode."""

    def __init__(self, width: float, height: float, cell: Rect, fit: str) -> None:
        from av.video.reformatter import VideoReformatter

        self.cell, self.mode = cell, fit
        self.inner = _fit_size(width, height, cell, cover=fit == "crop")
        self.direct = fit != "crop" and self.inner == (cell.width, cell.height)
        if fit == "crop" and abs(self.inner[0] - cell.width) <= 2 and abs(self.inner[1] - cell.height) <= 2:
            self.inner, self.direct = (cell.width, cell.height), True  # the aspects agree to the pixel
        self._scaler = VideoReformatter()
        self._background = VideoReformatter()
        self._upscaler = VideoReformatter()
        self._blur: Any = None
        if fit == "blur" and not self.direct:
            cover = _fit_size(width, height, cell, cover=True)
            self.factor = max(1, min(BLUR_SCALE, min(cell.width, cell.height) // BLUR_MIN_SIDE))
            self.small_cell = (_even_floor(cell.width / self.factor), _even_floor(cell.height / self.factor))
            self.small_cover = (
                max(self.small_cell[0], _even(cover[0] / self.factor)),
                max(self.small_cell[1], _even(cover[1] / self.factor)),
            )
            self._pts = 0

    def __call__(self, frame: Any, canvas: _Planes) -> None:
        """Draw `frame` (an av.VideoFrame) into this part's cell of `canvas`."""
        from av.video.reformatter import Interpolation

        cell = self.cell
        up = self.inner[0] * self.inner[1] >= frame.width * frame.height
        sharp = Interpolation.LANCZOS if up else Interpolation.AREA
        image = _yuv(frame, self._scaler, self.inner, sharp)
        if self.direct:
            canvas.paste(image, cell.x, cell.y)
            return
        if self.mode == "crop":
            x = (self.inner[0] - cell.width) // 4 * 2
            y = (self.inner[1] - cell.height) // 4 * 2
            canvas.paste(image, cell.x, cell.y, crop=(x, y, cell.width, cell.height))
            return
        if self.mode == "pad":
            luma, u, v = canvas.region(cell.x, cell.y, cell.width, cell.height)
            luma[...], u[...], v[...] = 0, 128, 128  # black, full range
        else:
            canvas.paste(self._blurred(frame), cell.x, cell.y)
        x = (cell.width - self.inner[0]) // 4 * 2
        y = (cell.height - self.inner[1]) // 4 * 2
        canvas.paste(image, cell.x + x, cell.y + y)

    def _blurred(self, frame: Any) -> _Planes:
        """The frame scaled to cover the cell, blurred (at 1/factor of the size), scaled up."""
        from av.video.reformatter import Interpolation

        small = _yuv(frame, self._background, self.small_cover, Interpolation.AREA)
        cw, ch = self.small_cell
        x = (self.small_cover[0] - cw) // 4 * 2
        y = (self.small_cover[1] - ch) // 4 * 2
        cropped = _Planes(np.empty((ch * 3 // 2, cw), np.uint8), cw, ch)
        cropped.paste(small, 0, 0, crop=(x, y, cw, ch))
        if self._blur is None:
            sigma = max(0.5, BLUR_FRACTION * min(self.cell.width, self.cell.height) / self.factor)
            self._blur = _blur_graph(cw, ch, sigma=sigma)
        graph = self._blur
        image = _frame_of(cropped)
        image.pts = self._pts
        self._pts += 1
        graph.push(image)
        blurred = graph.pull()
        big = self._upscaler.reformat(
            blurred, width=self.cell.width, height=self.cell.height, interpolation=Interpolation.BICUBIC
        )
        return _Planes(big.to_ndarray(), self.cell.width, self.cell.height)


def _frame_of(planes: _Planes):  # -> av.VideoFrame
    import av
    from av.video.reformatter import ColorRange, Colorspace

    frame = av.VideoFrame.from_ndarray(planes.data, format="yuv420p")
    frame.colorspace, frame.color_range = Colorspace.ITU709, ColorRange.JPEG
    return frame


def _blur_graph(width: int, height: int, *, sigma: float):  # -> av.filter.Graph
    """A libavfilter graph: yuv420p frames of this size in, Gaussian-blurred yuv420p out."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="yuv420p", time_base=Fraction(1, 1000))
    blur = graph.add("gblur", f"sigma={sigma:.3f}")
    sink = graph.add("buffersink")
    graph.link_nodes(source, blur, sink).configure()
    return graph


# ------------------------------------------------------------------------- compositing


class Compositor:
    """Composites the generator's frames [start, ...) of a job into output frames, in order."""

    def __init__(self, plan: Composition, fps: Fraction, start: int = 0) -> None:
        from av.video.reformatter import VideoReformatter

        self.plan, self.fps = plan, Fraction(fps)
        self.index = start
        r = plan.resolution
        self._gan = _Fitter(plan.frame_width or r, r, plan.gan, plan.fit)
        self._source: _Fitter | None = None
        self._video: VideoFrames | None = None
        if plan.source is not None and plan.video is not None:
            self._video = VideoFrames(plan.video, plan.offset)
            w, h = plan.video.display_size
            self._source = _Fitter(w, h, plan.source, plan.source_fit)
        self._rgb = VideoReformatter()
        self.seconds = 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [B, R, R, 3] generator frames -> uint8 [B, H, W, 3] output frames."""
        import av
        from av.video.reformatter import ColorRange, Colorspace

        began = time.perf_counter()
        plan = self.plan
        out = np.empty((len(batch), plan.height, plan.width, 3), dtype=np.uint8)
        canvas = _Planes(np.zeros((plan.height * 3 // 2, plan.width), np.uint8), plan.width, plan.height)
        for image, rgb in zip(batch, out):
            self._gan(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"), canvas)
            if self._source is not None and self._video is not None:
                self._source(self._video.at(self.index / float(self.fps)), canvas)
            frame = self._rgb.reformat(
                av.VideoFrame.from_ndarray(canvas.data, format="yuv420p"),
                format="rgb24",
                src_colorspace=Colorspace.ITU709,
                src_color_range=ColorRange.JPEG,
            )
            rgb[...] = frame.to_ndarray()
            self.index += 1
        self.seconds += time.perf_counter() - began
        return out

    def close(self) -> None:
        if self._video is not None:
            self._video.close()


def composed(frames: Any, compositor: Compositor, on_time: Any = None) -> Ahead[np.ndarray]:
    """Composited batches over generator batches: the compositor runs on its own thread one
    batch ahead, so scaling overlaps the generator and the encoder; closing stops it and
    closes the frames underneath (`on_time` gets the compositor's seconds)."""

    def close() -> None:
        frames.close()
        compositor.close()
        if on_time is not None:
            on_time(compositor.seconds)

    return Ahead(
        lambda: (compositor(batch) for batch in frames),
        name="ganterp-compose",
        failure=lambda exc: RenderError(f"compositing failed at frame {compositor.index}: {reason(exc)}"),
        on_close=close,
    )
