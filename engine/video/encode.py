"""The video writer: RGB frames into H.264 and the input's audio into AAC, streamed with PyAV
into a temporary file beside the output that is renamed only on success.

Sync: video pts are frame indices in a 1/fps time base; audio pts (`soundtrack.Soundtrack`)
count samples from 0, so both start at t = 0. The AAC encoder's start-up delay (1024 samples
of priming, 128 ms at 8 kHz) is carried by FFmpeg as a negative pts on the first packet; the mp4/mov muxer turns it
into an edit list and decoders drop the priming, so the decoded soundtrack starts at 0 and its
length (the edit list's) is the excerpt's, not a whole number of AAC frames. After every
`write` the audio is muxed up to the video time written so far: memory stays flat and the
file is interleaved as it goes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import numpy as np

from ganterp_fast.engine.audio.soundtrack import Soundtrack
from ganterp_fast.engine.audio.source import Source, open_source
from ganterp_fast.engine.errors import GanterpError, InputError, RenderError
from ganterp_fast.engine.fields import Options, option, whole
from ganterp_fast.engine.files import check_output, temporary_beside

log = logging.getLogger(__name__)

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
H264_ENCODERS = ("h264_nvenc", "libx264")  # preference order for codec="auto"
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# NVENC's presets p1 (fastest) .. p7 (best) for the x264 names.
_NVENC_PRESETS = dict(zip(X264_PRESETS, ("p1", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p7", "p7")))
# BT.709 matrix, limited range, tagged in the stream (AVCOL_SPC/PRI/TRC_BT709 = 1, AVCOL_RANGE_MPEG = 1).
_BT709 = 1
_RANGE_LIMITED = 1


@dataclass(frozen=True)
class EncodeOptions(Options):
    """Video encoder settings. `codec`: "libx264", "h264_nvenc", or "auto" (NVENC where it works)."""

    crf: int = option(
        18,  # 18 is visually lossless for x264
        flag="--crf",
        check=whole(0, 51, note="lower is better quality"),
        help="x264 quality, 0-51, lower is better",
    )
    preset: str = option(
        "medium",
        flag="--preset",
        choices=X264_PRESETS,
        help="x264 speed/size trade-off",  # mapped to p1..p7 for NVENC
    )
    codec: str = option(
        "libx264",
        flag="--codec",
        choices=(*H264_ENCODERS, "auto"),
        help="H.264 encoder: libx264 (CPU), h264_nvenc (NVIDIA GPUs with NVENC), or auto: NVENC where it opens, "
        "else libx264",
    )
    threads: int = option(
        0,
        flag="--encoder-threads",
        check=whole(0, note="0: automatic"),
        metavar="N",
        help="x264 threads; 0: automatic",
    )
    #: AAC bits/s; 0 = 96 kb/s per channel within AAC's limit at low rates.
    audio_bitrate: int = option(0, check=whole(0, note="bits per second; 0: automatic"))
    #: mp4/mov: put the index first so playback starts before the download ends.
    faststart: bool = option(True)
    #: x264: identical stream headers whatever the frames (stitchable=1), so segments join by stream copy.
    stitchable: bool = option(True)


@dataclass(frozen=True)
class AudioClip:
    """The soundtrack to mux: the excerpt [start, start + duration) of `path`, as in audio.py
    (a `source.Source` probed already can be given to the writer instead)."""

    path: Path
    start: float = 0.0
    duration: float | None = None


@functools.cache
def probe_h264_encoders() -> tuple[str, ...]:
    """The H.264 encoders that open on this machine, best first (NVENC needs an NVENC GPU)."""
    import av

    working = []
    for name in H264_ENCODERS:
        try:
            context = av.CodecContext.create(name, "w")
            context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
            context.time_base = Fraction(1, 30)
            context.open()
        except (av.FFmpegError, ValueError, OSError) as exc:
            log.debug("H.264 encoder %s does not open here: %s", name, exc)
            continue
        working.append(name)
    return tuple(working)


def choose_h264_encoder(requested: str) -> str:
    """The encoder to use for `requested` ("auto" or a name); InputError if it cannot run here."""
    if requested == "libx264":  # in every PyAV wheel: no need to probe
        return requested
    working = probe_h264_encoders()
    if requested == "auto":
        if not working:
            raise RenderError("no H.264 encoder opens on this machine (PyAV's FFmpeg lacks libx264)")
        return working[0]
    if requested not in working:
        raise InputError(f"the {requested} encoder does not work on this machine: use codec libx264 or auto")
    return requested


def _as_fps(fps: object) -> Fraction:
    try:
        value = Fraction(fps) if not isinstance(fps, float) else Fraction(fps).limit_denominator(1_000_000)
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"fps must be a positive number such as 30 or 30000/1001, got {fps!r}") from None
    if value <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    return value


def container_for(output: str | os.PathLike[str]) -> str:
    """The container format of an output file name (by its suffix); InputError for any other."""
    container_format = CONTAINERS.get(Path(output).suffix.lower())
    if container_format is None:
        raise InputError(f"output {output} must end in one of {', '.join(CONTAINERS)}")
    return container_format


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class VideoWriter:
    """Streams uint8 RGB frames (and a soundtrack) into an H.264 video, atomically.

    Use as a context manager: leaving the block normally finishes the file (`close`), an
    exception (KeyboardInterrupt included) removes the temporary file (`abort`).
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: Fraction | int | str,
        audio: AudioClip | Source | None,
        options: EncodeOptions = EncodeOptions(),
        overwrite: bool = False,
    ) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, (int, np.integer)) or value <= 0 or value % 2:
                raise InputError(f"video {name} must be a positive even number of pixels (yuv420p), got {value!r}")
        self.width, self.height = int(width), int(height)
        self.fps = _as_fps(fps)
        self.output = check_output(output, overwrite=overwrite)
        self.overwrite = overwrite
        self.options = options
        self.frames_written = 0
        # One reformatter for every frame: it keeps its scaler context (a fresh one per frame,
        # as VideoFrame.reformat makes, costs three times the conversion at 128 px).
        self._reformatter = VideoReformatter()
        container_format = container_for(self.output)
        codec = choose_h264_encoder(options.codec)

        # The soundtrack's problems are input errors: find them before any work.
        if isinstance(audio, AudioClip):
            audio = open_source(audio.path, start=audio.start, duration=audio.duration)

        folder = self.output.parent
        try:
            self._temporary = temporary_beside(
                self.output, prefix=f".{self.output.stem}.partial-", suffix=self.output.suffix
            )
        except OSError as exc:
            raise InputError(f"cannot write into {folder}: {exc.strerror or exc}") from exc
        # A writer dropped without close() or abort() still leaves no temporary file behind.
        self._finalizer = weakref.finalize(self, _remove, self._temporary)
        self._closed = False
        self._finished = False
        try:
            container_options = (
                {"movflags": "+faststart"} if options.faststart and container_format != "matroska" else {}
            )
            self._container = av.open(
                os.fspath(self._temporary), "w", format=container_format, options=container_options
            )
            self._video = self._add_video(codec)
            self._audio = (
                None
                if audio is None
                else Soundtrack(
                    self._container,
                    audio.info,
                    start=audio.start,
                    # To the stream's end where the length is only an estimate and no duration was asked.
                    duration=audio.num_samples / audio.sample_rate
                    if audio.duration is not None or audio.info.exact
                    else None,
                    bitrate=options.audio_bitrate,
                )
            )
        except BaseException as exc:
            self.abort()
            if isinstance(exc, (av.FFmpegError, OSError)):
                raise RenderError(f"cannot start encoding {self.output}: {_reason(exc)}") from exc
            raise
        log.debug(
            "writing %s via %s (%dx%d at %s fps, %s)", self.output, self._temporary.name, width, height, self.fps, codec
        )

    def _add_video(self, codec: str):  # -> av.VideoStream
        opts = self.options
        if codec == "h264_nvenc":
            codec_options = {"preset": _NVENC_PRESETS[opts.preset], "rc": "vbr", "cq": str(opts.crf)}
        else:
            codec_options = {"crf": str(opts.crf), "preset": opts.preset}
            if opts.stitchable:
                codec_options["x264-params"] = "stitchable=1"
        stream = self._container.add_stream(codec, rate=self.fps, options=codec_options)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.thread_type = "AUTO"
        stream.thread_count = opts.threads
        stream.time_base = 1 / self.fps
        context = stream.codec_context
        context.time_base = 1 / self.fps
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = _RANGE_LIMITED
        return stream

    # ------------------------------------------------------------ writing

    def write(self, frames: np.ndarray) -> None:
        """Encode uint8 RGB frames [B, H, W, 3] (or one [H, W, 3]), then mux the audio up to
        the end of the last one."""
        import av
        from av.video.reformatter import ColorRange, Colorspace

        if self._closed:
            raise RuntimeError(f"the writer for {self.output} is closed")
        batch = np.asarray(frames)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"frames must be uint8 [B, {self.height}, {self.width}, 3] RGB, got {batch.dtype} {list(batch.shape)}"
            )
        try:
            for image in batch:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame = self._reformatter.reformat(
                    frame, format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
                )
                frame.pts = self.frames_written
                self._container.mux(self._video.encode(frame))
                self.frames_written += 1
            if self._audio is not None:
                self._audio.mux_until(self.frames_written / self.fps)
        except BaseException as exc:
            self._fail(exc, "writing")

    def close(self) -> Path:
        """Flush the encoders, mux the rest of the soundtrack, and move the file into place."""
        if self._finished:
            return self.output
        if self._closed:
            raise RuntimeError(f"the writer for {self.output} was aborted")
        try:
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.mux_until(None)
                self._audio.close()
            self._container.close()
            self._closed = True
            if not self.overwrite and self.output.exists():  # appeared while we worked
                raise InputError(f"output {self.output} appeared while writing: pass --overwrite (-y) to replace it")
            os.replace(self._temporary, self.output)
        except BaseException as exc:
            self._fail(exc, "finishing")
        self._finished = True
        self._finalizer.detach()
        seconds = self.frames_written / self.fps
        log.info("wrote %s: %d frames, %.2f s at %s fps", self.output, self.frames_written, seconds, self.fps)
        return self.output

    def abort(self) -> None:
        """Stop and delete the temporary file; the output is left as it was."""
        if self._finished:
            return
        was_closed, self._closed = self._closed, True
        # Unlinked first, so closing does not finish a file nobody wants (the mp4 trailer and
        # faststart's rewrite); where an open file cannot be unlinked, it goes after closing.
        with contextlib.suppress(OSError):
            self._temporary.unlink()
        soundtrack = getattr(self, "_audio", None)
        if soundtrack is not None:
            soundtrack.close()
        container = getattr(self, "_container", None)
        if container is not None and not was_closed:
            with contextlib.suppress(Exception):
                container.close()
        _remove(self._temporary)
        self._finalizer.detach()

    def _fail(self, exc: BaseException, doing: str) -> NoReturn:
        """Abort, then raise: encoder and disk faults as RenderError, anything else as it is."""
        import av

        self.abort()
        if isinstance(exc, (av.FFmpegError, OSError)) and not isinstance(exc, GanterpError):
            raise RenderError(
                f"encoding {self.output} failed while {doing} after {self.frames_written} frames: {_reason(exc)}"
            ) from exc
        raise exc

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
