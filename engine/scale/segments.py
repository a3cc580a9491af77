"""Joining rendered segments into the video: stream copy, the soundtrack muxed once, atomic.

A segment is a video-only H.264 mp4 of frames [start, stop) of a job (`RenderJob.render_segment`),
its timestamps starting at 0. `join` checks that the segments cover the job's frames in
order with identical codec parameters (x264's `stitchable=1` makes the SPS/PPS of every
segment equal), shifts each one's timestamps by its first frame, copies the packets into
the output (no re-encoding) with the soundtrack encoded once beside them, checks that
decoding timestamps rise, and renames the file into place only when all of it succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ganterp_fast.engine.audio.soundtrack import Soundtrack
from ganterp_fast.engine.errors import GanterpError, InputError, RenderError
from ganterp_fast.engine.files import check_output, temporary_beside
from ganterp_fast.engine.video.encode import container_for

if TYPE_CHECKING:
    from ganterp_fast.engine.job import RenderJob

log = logging.getLogger(__name__)

_STOP_CHECK_SECONDS = 5.0  # encode_soundtrack looks at its stop flag this often (seconds of audio)

Segment = tuple[int, int, Path]  # first frame, end frame (exclusive), file


def check_coverage(segments: Sequence[Segment], num_frames: int) -> None:
    """The segments, in order, cover frames 0..num_frames with no gap or overlap; else RenderError."""
    expected = 0
    for start, stop, path in segments:
        if start != expected or stop <= start:
            raise RenderError(f"segment {path} holds frames {start}..{stop}, expected one starting at frame {expected}")
        expected = stop
    if expected != num_frames:
        raise RenderError(f"the segments end at frame {expected}, the video has {num_frames} frames")


def join(
    job: RenderJob,
    segments: Sequence[Segment],
    *,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool | None = None,
    soundtrack: str | os.PathLike[str] | None = None,
) -> Path:
    """Stream-copy `segments` (in order) into `output` (default: the job's) with the soundtrack.

    `soundtrack`: a file whose first audio stream is the job's soundtrack encoded already
    (`encode_soundtrack`, made while the segments render): its packets are copied instead.
    """
    import av

    segments = [(int(a), int(b), Path(p)) for a, b, p in segments]
    check_coverage(segments, job.num_frames)
    overwrite = job.options.overwrite if overwrite is None else overwrite
    target = check_output(output if output is not None else job.output, overwrite=overwrite)
    container_format = container_for(target)
    try:
        temporary = temporary_beside(target, prefix=f".{target.stem}.partial-", suffix=target.suffix)
    except OSError as exc:
        raise InputError(f"cannot write into {target.parent}: {exc.strerror or exc}") from exc
    try:
        options = {"movflags": "+faststart"} if container_format != "matroska" and job.options.encode.faststart else {}
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(av.open(os.fspath(temporary), "w", format=container_format, options=options))
            _copy(job, segments, out, Path(soundtrack) if soundtrack is not None else None)
        if not overwrite and target.exists():
            raise InputError(f"output {target} appeared while joining: pass --overwrite (-y) to replace it")
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(exc, (av.FFmpegError, OSError)) and not isinstance(exc, GanterpError):
            raise RenderError(f"joining the segments into {target} failed: {exc}") from exc
        raise
    log.info("joined %d segments into %s (%d frames)", len(segments), target, job.num_frames)
    return target


def encode_soundtrack(
    job: RenderJob, destination: str | os.PathLike[str], *, stop: threading.Event | None = None
) -> Path:
    """The job's soundtrack alone, encoded as `join` would, into an .m4a (written beside, renamed).

    `stop`: checked every few seconds of audio; once set, the file is dropped (RenderError)."""
    import av

    target = Path(destination)
    temporary = target.with_name(f".{target.name}.partial")
    try:
        with av.open(os.fspath(temporary), "w", format="mp4") as out:
            track = Soundtrack(
                out,
                job.soundtrack.info,
                start=job.soundtrack.start,
                duration=job.soundtrack.duration_s,
                bitrate=job.options.encode.audio_bitrate,
            )
            seconds = _STOP_CHECK_SECONDS
            while seconds < job.soundtrack.duration_s:
                if stop is not None and stop.is_set():
                    raise RenderError(f"encoding the soundtrack of {job.output} was stopped")
                track.mux_until(seconds)
                seconds += _STOP_CHECK_SECONDS
            track.mux_until(None)
            track.close()
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return target


class _CopiedSoundtrack:
    """`Soundtrack`'s interface over an encoded audio file: its packets copied up to a time."""

    def __init__(self, path: Path, out) -> None:  # out: av.container.OutputContainer
        import av

        try:
            self.source = av.open(os.fspath(path))
            stream = self.source.streams.audio[0]
        except (av.FFmpegError, OSError, IndexError) as exc:
            raise RenderError(f"soundtrack {path} cannot be read: {exc}") from exc
        self.stream = out.add_stream_from_template(stream)
        self.out, self.time_base = out, stream.time_base
        self.packets = (p for p in self.source.demux(stream) if p.dts is not None)
        self.pending = None

    def mux_until(self, seconds: float | None) -> None:
        while True:
            packet = self.pending if self.pending is not None else next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if seconds is not None and packet.pts * self.time_base >= seconds:
                self.pending = packet
                return
            packet.stream = self.stream
            self.out.mux(packet)

    def close(self) -> None:
        self.source.close()


def _copy(job: RenderJob, segments: list[Segment], out, encoded: Path | None = None) -> None:  # out: OutputContainer
    import av

    fps = Fraction(job.fps)
    video = None
    reference: tuple | None = None
    soundtrack: Soundtrack | _CopiedSoundtrack | None = None
    last_dts: int | None = None  # in the output stream's time base, once known
    for start, stop, path in segments:
        try:
            source = av.open(os.fspath(path))
        except (av.FFmpegError, OSError) as exc:
            raise RenderError(f"segment {path} cannot be read: {exc}") from exc
        with source:
            streams = source.streams.video
            if len(streams) != 1 or source.streams.audio:
                raise RenderError(f"segment {path} must hold one video stream and nothing else")
            stream = streams[0]
            context = stream.codec_context
            facts = (context.name, context.width, context.height, context.pix_fmt, bytes(context.extradata or b""))
            if reference is None:
                reference = facts
                video = out.add_stream_from_template(stream)
                soundtrack = (
                    _CopiedSoundtrack(encoded, out)
                    if encoded is not None
                    else Soundtrack(
                        out,
                        job.soundtrack.info,
                        start=job.soundtrack.start,
                        duration=job.soundtrack.duration_s,
                        bitrate=job.options.encode.audio_bitrate,
                    )
                )
            elif facts != reference:
                changed = [
                    name
                    for name, a, b in zip(("codec", "width", "height", "pixel format", "extradata"), facts, reference)
                    if a != b
                ]
                raise RenderError(
                    f"segment {path} was encoded with other settings than the first ({', '.join(changed)} differ): "
                    "render every segment of a video with the same options"
                )
            time_base = stream.time_base
            offset = Fraction(start) / fps / time_base
            if offset.denominator != 1:
                raise RenderError(f"segment {path}: frame {start} does not fall on a tick of its time base {time_base}")
            frames = 0
            for packet in source.demux(stream):
                if packet.size == 0 or packet.dts is None:
                    continue  # the demuxer's flush packet
                packet.pts += int(offset)
                packet.dts += int(offset)
                dts = Fraction(packet.dts) * time_base
                if last_dts is not None and dts <= last_dts:
                    raise RenderError(
                        f"segment {path}: decoding timestamps run backwards at frame {start + frames} "
                        f"({float(dts):.4f} s after {float(last_dts):.4f} s)"
                    )
                last_dts = dts
                packet.stream = video
                out.mux(packet)
                frames += 1
                if frames % 32 == 0:
                    soundtrack.mux_until(float(Fraction(start + frames) / fps))
            if frames != stop - start:
                raise RenderError(f"segment {path} holds {frames} frames, expected {stop - start} ({start}..{stop})")
            soundtrack.mux_until(float(Fraction(stop) / fps))
    soundtrack.mux_until(None)
    soundtrack.close()
