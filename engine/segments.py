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
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from .encode import container_for
from .errors import GanterpError, InputError, RenderError
from .files import check_output, temporary_beside
from .soundtrack import Soundtrack

if TYPE_CHECKING:
    from .job import RenderJob

log = logging.getLogger(__name__)

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
) -> Path:
    """Stream-copy `segments` (in order) into `output` (default: the job's) with the soundtrack."""
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
            _copy(job, segments, out)
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


def _copy(job: RenderJob, segments: list[Segment], out) -> None:  # out: av.container.OutputContainer
    import av

    fps = Fraction(job.fps)
    video = None
    reference: tuple | None = None
    soundtrack: Soundtrack | None = None
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
                soundtrack = Soundtrack(
                    out,
                    job.soundtrack.info,
                    start=job.soundtrack.start,
                    duration=job.soundtrack.duration_s,
                    bitrate=job.options.encode.audio_bitrate,
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
