"""The PyAV backend of `audio`: probing and decoding through PyAV's bundled FFmpeg.

Everything soundfile is not given goes through here (mp3, m4a/aac, opus, and the audio of mp4,
mkv, mov and webm videos), streamed frame by frame at the file's own rate. `audio` imports this
module; both take `AudioInfo` and `WHAT_WORKS` from `audio_info`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ganterp_fast.engine.audio.info import WHAT_WORKS, AudioInfo
from ganterp_fast.engine.errors import InputError

log = logging.getLogger(__name__)

# Damaged packets skipped (as FFmpeg's command line does) before a file counts as unreadable.
_MAX_BAD_PACKETS = 32
# Containers whose audio stream duration is exact (edit lists, granule positions, sample
# counts); elsewhere (mp3, mkv/webm, adts) it is an estimate and the stream's end decides.
_EXACT_DURATION_FORMATS = ("mov", "mp4", "ogg", "flac", "wav", "aiff", "w64", "caf")


def probe_pyav(file: Path) -> AudioInfo:
    import av

    container = _open_pyav(file)
    try:
        stream = _audio_stream(container, file)
        frames = _decode(container, stream, file)
        first = next(frames, None)
        if first is None:
            raise InputError(
                f"the audio track of {file} holds no decodable sound: the file may be truncated or corrupt"
            )
        sample_rate = int(first.sample_rate or stream.codec_context.sample_rate or 0)
        if sample_rate <= 0:
            raise InputError(f"the audio track of {file} has no sample rate: the file may be corrupt")
        channels = first.layout.nb_channels
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / av.time_base
        else:
            seconds = 0.0
        num_samples = round(seconds * sample_rate)
        formats = set(container.format.name.split(","))
        exact = bool(stream.duration) and not formats.isdisjoint(_EXACT_DURATION_FORMATS)
        if num_samples <= 0:  # nothing says how long it is: count every sample once
            num_samples = first.samples + sum(frame.samples for frame in frames)
            exact = True
        return AudioInfo(
            path=file,
            sample_rate=sample_rate,
            channels=channels,
            num_samples=num_samples,
            duration_s=num_samples / sample_rate,
            backend="pyav",
            codec=stream.codec_context.codec.canonical_name,
            layout=_layout_name(first.layout),
            exact=exact,
        )
    finally:
        container.close()


def _open_pyav(file: Path):  # -> av.container.InputContainer
    import av

    try:
        return av.open(os.fspath(file), metadata_errors="ignore")
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(
            f"cannot read {file}: not an audio or video file ganterp-fast can decode ({reason.lower()}); "
            f"use {WHAT_WORKS}"
        ) from exc


def _audio_stream(container, file: Path):  # -> av.AudioStream
    if not container.streams.audio:
        raise InputError(
            f"no audio track in {file}: ganterp-fast needs a file with sound (wav, flac, mp3, ogg, m4a, "
            "or a video with an audio track)"
        )
    streams = [s for s in container.streams.audio if s.codec_context is not None]  # None: no decoder
    if not streams:
        raise InputError(f"cannot decode the audio track of {file}: its codec is not one FFmpeg here decodes")
    return container.streams.best("audio") or streams[0]


def _decode(container, stream, file: Path) -> Iterator:  # -> Iterator[av.AudioFrame]
    """Decoded frames of `stream`, skipping a few damaged packets as FFmpeg's command line does."""
    import av

    bad = 0
    seconds = 0.0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
                bad += 1
                if bad == 1:
                    log.warning("%s: skipping damaged audio near %.2f s (%s)", file, seconds, exc)
                if bad > _MAX_BAD_PACKETS:
                    raise InputError(
                        f"cannot decode the audio of {file}: more than {_MAX_BAD_PACKETS} damaged packets "
                        f"(the file is corrupt near {seconds:.1f} s)"
                    ) from exc
                continue
            for frame in frames:
                if frame.sample_rate:
                    seconds += frame.samples / frame.sample_rate
                yield frame
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot decode the audio of {file} after {seconds:.2f} s: {reason}") from exc


def default_layout(channels: int) -> str:
    import av

    return {1: "mono", 2: "stereo"}.get(channels) or av.AudioLayout(f"{channels}c").name


def _layout_name(layout) -> str:
    """A layout name FFmpeg parses back; unordered layouts ("6 channels") get the default order."""
    name = layout.name
    return default_layout(layout.nb_channels) if name.endswith("channels") else name


def pyav_blocks(
    info: AudioInfo, first: int, count: int | None, *, all_channels: bool, block_size: int
) -> Iterator[np.ndarray]:
    import av

    del block_size  # PyAV's decoders choose their own frame sizes
    end = None if count is None else first + count
    position = 0  # index of the next decoded sample
    container = _open_pyav(info.path)
    try:
        stream = _audio_stream(container, info.path)
        # Float planar at the file's own rate: plane 0 is channel 0. The layout is pinned to
        # the first frame's, so a stream that changes layout part-way keeps its channel count.
        resampler = av.AudioResampler(format="fltp", layout=info.layout or None, rate=info.sample_rate)

        def converted() -> Iterator:
            for frame in _decode(container, stream, info.path):
                yield from resampler.resample(frame)
            yield from resampler.resample(None)

        for frame in converted():
            n = frame.samples
            if position + n <= first:
                position += n
                continue
            lo = max(first - position, 0)
            hi = n if end is None else min(n, end - position)
            if all_channels:
                block = frame.to_ndarray()[:, lo:hi]
            else:
                block = np.frombuffer(frame.planes[0], dtype=np.float32, count=n)[None, lo:hi]
            position += n
            if hi > lo:
                yield np.ascontiguousarray(block)
            if end is not None and position >= end:
                return
    except av.FFmpegError as exc:
        raise InputError(f"cannot decode the audio of {info.path}: {exc}") from exc
    finally:
        container.close()
