"""Audio decoding: any audio or video file to float samples at its own sample rate.

soundfile (librosa's reader) handles wav/flac/ogg; PyAV's bundled FFmpeg handles
everything else (mp3, m4a/aac, opus, and the audio of mp4, mkv, mov and webm videos). Both are
streamed in blocks, so memory does not depend on the file's length. Samples are never
resampled: the analysis depends on the file's own rate.

An excerpt (`start`, `duration` in seconds) is a range of whole samples counted from the first
decoded sample; channel 0 for the analysis (`iter_channel0`) and the full mix for the
soundtrack (`iter_audio_frames`) come from the same backend, so they are the same samples.

This module probes, picks the backend, reads soundfile's formats and serves the excerpts;
the PyAV backend (probing, decoding, damaged packets) lives in `audio_pyav`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ganterp_fast.engine.audio.excerpt import Excerpt
from ganterp_fast.engine.audio.info import BACKENDS, WHAT_WORKS, AudioInfo, Backend
from ganterp_fast.engine.audio.pyav_decode import default_layout, probe_pyav, pyav_blocks
from ganterp_fast.engine.errors import InputError, OptionError
from ganterp_fast.engine.fields import error

log = logging.getLogger(__name__)

# Samples per av.AudioFrame built from soundfile blocks (PyAV's decoders give their own sizes).
_FRAME_SAMPLES = 4096
# How the formats soundfile is given start (wav, rf64, w64, aiff, flac, ogg, caf, au). Not mp3,
# though libsndfile 1.1+ reads it: its mpg123 decoder prints resync notes straight to stderr
# for anything it is tried on (text or noise named .mp3), and its reads in blocks are not
# sample-exact for some files (measured here with libsndfile 1.2.2: 0.3 off after a read of
# 11025 samples, on a file it reads whole correctly). FFmpeg decodes the same samples.
_SOUNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"riff", b"FORM", b"fLaC", b"OggS", b"caff", b".snd")
# soundfile subtypes as FFmpeg names the codec, so `AudioInfo.codec` reads the same for both.
_SOUNDFILE_CODECS = {
    **{f"PCM_{k}": f"pcm_{v}" for k, v in (("S8", "s8"), ("U8", "u8"), ("16", "s16"), ("24", "s24"), ("32", "s32"))},
    **{"FLOAT": "pcm_f32", "DOUBLE": "pcm_f64", "ULAW": "pcm_mulaw", "ALAW": "pcm_alaw"},
    **{"FLAC": "flac", "VORBIS": "vorbis", "OPUS": "opus"},
}


# ---------------------------------------------------------------- probing


def probe_audio(path: str | os.PathLike[str], *, backend: Backend | None = None) -> AudioInfo:
    """Find how to decode `path` and what it holds; InputError naming the file otherwise.

    `backend` forces "soundfile" or "pyav" (default: soundfile for wav/flac/ogg and the other
    formats libsndfile reads, PyAV's FFmpeg for everything else, mp3 included).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    file = _check_file(path)
    if backend in (None, "soundfile"):
        info = _probe_soundfile(file, sniff=backend is None)
        if info is not None:
            return info
        if backend == "soundfile":
            raise InputError(f"the soundfile backend does not decode {file}: use backend 'pyav' or None")
    return probe_pyav(file)


def _check_file(path: str | os.PathLike[str]) -> Path:
    file = Path(path)
    if not file.exists():
        raise InputError(f"input {file} does not exist")
    if file.is_dir():
        raise InputError(f"input {file} is a directory: give an audio or video file ({WHAT_WORKS})")
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from exc
    if size == 0:
        raise InputError(f"input {file} is empty (0 bytes): give an audio or video file ({WHAT_WORKS})")
    if not os.access(file, os.R_OK):
        raise InputError(f"cannot read {file}: permission denied")
    return file


def _looks_like_soundfile_format(file: Path) -> bool:
    """Whether the file starts like a format soundfile is given (not mp3: see _SOUNDFILE_MAGIC)."""
    with open(file, "rb") as f:
        return f.read(4) in _SOUNDFILE_MAGIC


def _probe_soundfile(file: Path, *, sniff: bool = True) -> AudioInfo | None:
    import soundfile

    if sniff and not _looks_like_soundfile_format(file):
        return None
    try:
        info = soundfile.info(os.fspath(file))
    except (RuntimeError, ValueError, TypeError, OSError) as exc:  # LibsndfileError is a RuntimeError
        log.debug("soundfile cannot read %s (%s): trying PyAV", file, exc)
        return None
    if info.samplerate <= 0 or info.channels <= 0:
        return None
    if info.format == "MP3":  # its reads in blocks are not sample-exact: FFmpeg decodes mp3
        log.debug("%s is an mp3: decoding it with PyAV", file)
        return None
    if info.frames <= 0:
        raise InputError(f"{file} holds no audio samples: give a file with sound ({WHAT_WORKS})")
    codec = _SOUNDFILE_CODECS.get(info.subtype, info.subtype.lower())
    if info.format == "FLAC":
        codec = "flac"
    elif codec.startswith("pcm_") and codec[-1].isdigit() and codec not in ("pcm_s8", "pcm_u8"):
        big_endian = info.format in ("AIFF", "AU", "CAF") or info.endian == "BIG"
        codec += "be" if big_endian else "le"
    return AudioInfo(
        path=file,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        num_samples=int(info.frames),
        duration_s=info.frames / info.samplerate,
        backend="soundfile",
        codec=codec,
        layout=default_layout(info.channels),
        exact=True,
    )


# ---------------------------------------------------------------- excerpts


def excerpt_samples(info: AudioInfo, start: float = 0.0, duration: float | None = None) -> tuple[int, int]:
    """(first_sample, num_samples) of the excerpt [start, start + duration) in seconds.

    first = round(start * rate), num = round(duration * rate), or to the end without a duration;
    a duration running past the end is clipped (with a warning).
    """
    length = f"{info.path} is {info.duration_s:.2f} s long"
    try:
        Excerpt(start=start, duration=duration)  # the bounds, as the declarations state them
    except OptionError as exc:
        raise error(Excerpt, exc.field.rpartition(".")[2], f"{exc.rule} ({length})") from None
    first = round(start * info.sample_rate)
    if first >= info.num_samples:
        raise error(Excerpt, "start", f"{start:g} s is at or past the end of the audio: {length}")
    available = info.num_samples - first
    if duration is None:
        return first, available
    count = round(duration * info.sample_rate)
    if count < 1:
        raise error(Excerpt, "duration", f"{duration:g} s is shorter than one sample at {info.sample_rate} Hz")
    if count > available:
        if info.exact:
            log.warning(
                "start %g s + duration %g s runs past the end of %s (%.2f s): using %.2f s",
                start,
                duration,
                info.path,
                info.duration_s,
                available / info.sample_rate,
            )
            count = available
        # An estimated length: read what is there; the stream's end decides.
    return first, count


def _resolve(source: str | os.PathLike[str] | AudioInfo) -> AudioInfo:
    return source if isinstance(source, AudioInfo) else probe_audio(source)


def _blocks(
    info: AudioInfo, first: int, count: int | None, *, all_channels: bool, block_size: int
) -> Iterator[np.ndarray]:
    """float32 [channels, n] blocks of samples [first, first + count) (count None: to the end)."""
    produced = 0
    reader = _soundfile_blocks if info.backend == "soundfile" else pyav_blocks
    with contextlib.closing(reader(info, first, count, all_channels=all_channels, block_size=block_size)) as inner:
        for block in inner:
            produced += block.shape[1]
            yield block
    expected = count if count is not None else info.num_samples - first
    missing = (expected - produced) / info.sample_rate
    # An estimated length (mkv, mp3) may be off by a few frames; a truncated file by much more.
    tolerance = 0.05 if info.exact else max(0.5, 0.02 * expected / info.sample_rate)
    if missing > tolerance:
        log.warning(
            "%s ends %.2f s earlier than its header says (at %.2f s): the file may be truncated",
            info.path,
            missing,
            (first + produced) / info.sample_rate,
        )


def _soundfile_blocks(
    info: AudioInfo, first: int, count: int | None, *, all_channels: bool, block_size: int
) -> Iterator[np.ndarray]:
    import soundfile

    remaining = info.num_samples - first if count is None else count
    try:
        with soundfile.SoundFile(os.fspath(info.path)) as f:
            if first:
                f.seek(first)
            while remaining > 0:
                data = f.read(min(block_size, remaining), dtype="float32", always_2d=True)
                if not len(data):
                    break
                remaining -= len(data)
                yield np.ascontiguousarray(data.T if all_channels else data[:, :1].T)
    except (RuntimeError, OSError) as exc:
        raise InputError(f"cannot decode {info.path}: {exc}") from exc


# ---------------------------------------------------------------- public readers


def _excerpt(info: AudioInfo, start: float, duration: float | None) -> tuple[int, int | None]:
    """(first, count) to read; count None (to the stream's end) where the length is an estimate."""
    first, count = excerpt_samples(info, start, duration)
    return first, (None if duration is None and not info.exact else count)


def iter_channel0(
    path: str | os.PathLike[str] | AudioInfo,
    *,
    start: float = 0.0,
    duration: float | None = None,
    block_size: int = 1 << 18,
) -> Iterator[np.ndarray]:
    """Channel 0 ("left") of the excerpt as float32 1-D blocks of `block_size` samples (the
    last one shorter), at the file's own rate; memory is independent of the file's length.

    The file and the excerpt are checked at the call (InputError), before the first block.
    PyAV-decoded files are decoded from their start, so a late `start` costs decoding time.
    """
    if not isinstance(block_size, int) or block_size <= 0:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    info = _resolve(path)
    first, count = _excerpt(info, start, duration)
    return _rebuffered(_blocks(info, first, count, all_channels=False, block_size=block_size), block_size)


def _rebuffered(blocks: Generator[np.ndarray, None, None], block_size: int) -> Iterator[np.ndarray]:
    """Row 0 of [1, n] blocks of any size, regrouped into 1-D blocks of exactly `block_size`."""
    pending: list[np.ndarray] = []
    held = 0
    with contextlib.closing(blocks):  # closing this generator closes the file at once
        for block in blocks:
            pending.append(block[0])
            held += block.shape[1]
            while held >= block_size:
                joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
                yield joined[:block_size]
                rest = joined[block_size:]
                pending = [rest] if len(rest) else []
                held = len(rest)
    if held:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def read_channel0(
    path: str | os.PathLike[str] | AudioInfo, *, start: float = 0.0, duration: float | None = None
) -> tuple[np.ndarray, int]:
    """Channel 0 of the excerpt as one float32 array, and the sample rate."""
    info = _resolve(path)
    blocks = list(iter_channel0(info, start=start, duration=duration))
    if not blocks:
        raise InputError(f"{info.path} holds no audio samples from {start:g} s")
    return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), info.sample_rate


def iter_audio_frames(
    path: str | os.PathLike[str] | AudioInfo, *, start: float = 0.0, duration: float | None = None
) -> Iterator:  # -> Iterator[av.AudioFrame]
    """The full mix (all channels) of the same excerpt samples as `iter_channel0`, as float
    planar av.AudioFrames at the file's own rate, pts counted in samples from the excerpt's
    start (time base 1/rate). Checked at the call, like `iter_channel0`."""
    info = _resolve(path)
    first, count = _excerpt(info, start, duration)
    return _as_frames(info, _blocks(info, first, count, all_channels=True, block_size=_FRAME_SAMPLES))


def _as_frames(info: AudioInfo, blocks: Generator[np.ndarray, None, None]) -> Generator:
    import av

    layout = info.layout or default_layout(info.channels)
    time_base = Fraction(1, info.sample_rate)
    pts = 0
    with contextlib.closing(blocks):
        for block in blocks:
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = info.sample_rate
            frame.pts = pts
            frame.time_base = time_base
            pts += block.shape[1]
            yield frame
