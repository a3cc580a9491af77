"""Deterministic test media: music- and speech-like audio in every format a user may have,
videos with and without sound, and broken files. Written with soundfile and PyAV only.

Audio arrays are float32 [samples, channels] in [-1, 1]; every channel is different, so a test
can tell channel 0 from a mix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

NOTES_HZ = (110.0, 146.8, 196.0, 261.6, 329.6, 392.0, 523.3, 659.3)


# ---------------------------------------------------------------- signals


def music(sample_rate: int, seconds: float, *, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Notes and chords with plucked envelopes, drum hits and rests; one line per channel."""
    n = int(round(sample_rate * seconds))
    t = np.arange(n) / sample_rate
    out = np.zeros((n, channels), np.float64)
    for channel in range(channels):
        rng = np.random.default_rng(seed * 1000 + channel)
        pos = 0.0
        while pos < seconds:
            length = rng.uniform(0.12, 0.6)
            if rng.random() < 0.2:  # a rest
                pos += length
                continue
            lo, hi = np.searchsorted(t, [pos, pos + length])
            local = t[lo:hi] - pos
            envelope = np.exp(-local * rng.uniform(3, 9)) * np.minimum(1.0, local * 300)
            for f in rng.choice(NOTES_HZ, size=rng.integers(1, 4)):
                f = min(f * (channel + 1) ** 0.5, sample_rate / 2.5)  # distinct per channel, below Nyquist
                out[lo:hi, channel] += envelope * np.sin(2 * np.pi * f * local) * rng.uniform(0.2, 0.5)
            if rng.random() < 0.3:  # a drum hit
                hit = min(hi, lo + int(0.04 * sample_rate))
                out[lo:hit, channel] += rng.normal(0, 0.3, hit - lo) * np.exp(
                    -np.arange(hit - lo) / (0.01 * sample_rate)
                )
            pos += length
    return _normalise(out)


def speech_like(sample_rate: int, seconds: float, *, channels: int = 1, seed: int = 1) -> np.ndarray:
    """Syllable-rate bursts of a voiced carrier with formants and noise, with pauses."""
    n = int(round(sample_rate * seconds))
    t = np.arange(n) / sample_rate
    out = np.zeros((n, channels), np.float64)
    for channel in range(channels):
        rng = np.random.default_rng(seed * 1000 + channel)
        pitch = 110 + 30 * channel
        carrier = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * min(700, sample_rate / 3) * t)
        carrier += 0.2 * rng.normal(0, 1, n)
        syllables = np.sin(2 * np.pi * rng.uniform(3, 5) * t) > 0
        words = np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.3
        out[:, channel] = carrier * syllables * words
    return _normalise(out)


def bursts(sample_rate: int, seconds: float, *, channels: int = 1, seed: int = 2, tone_hz: float = 440.0) -> np.ndarray:
    """Tone bursts of random lengths at random times with hard edges: an envelope whose every
    edge can be located to a millisecond, for checking sync."""
    n = int(round(sample_rate * seconds))
    t = np.arange(n) / sample_rate
    out = np.zeros((n, channels), np.float64)
    rng = np.random.default_rng(seed)
    pos = 0.05
    while pos < seconds:
        length = rng.uniform(0.05, 0.25)
        lo, hi = np.searchsorted(t, [pos, pos + length])
        for channel in range(channels):
            out[lo:hi, channel] = np.sin(2 * np.pi * tone_hz * (channel + 1) * t[lo:hi]) * 0.6
        pos += length + rng.uniform(0.05, 0.3)
    return out.astype(np.float32)


def parity_music(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Mono notes with attacks and decays, chord changes, a loud section and silences (1-D float32).

    The analysis parity cases (tests/test_analysis.py) were checked on exactly this signal.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    out = np.zeros_like(t)
    pos = 0.0
    while pos < seconds:
        length = rng.uniform(0.15, 1.2)
        if rng.random() < 0.15:  # a rest
            pos += length
            continue
        mask = (t >= pos) & (t < pos + length)
        local = t[mask] - pos
        envelope = np.exp(-local * rng.uniform(2, 8)) * np.minimum(1, local * 200)
        for f in rng.choice([110, 146.8, 196, 261.6, 329.6, 392, 523.3, 659.3], size=rng.integers(1, 4)):
            out[mask] += envelope * np.sin(2 * np.pi * f * local) * rng.uniform(0.2, 0.5)
        if rng.random() < 0.3:  # a drum hit
            hit = mask & (t < pos + 0.05)
            out[hit] += rng.normal(0, 0.3, hit.sum())
        pos += length
    return (out / max(1e-9, np.abs(out).max()) * 0.8).astype(np.float32)


def parity_speech(sr: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Mono syllable-rate amplitude-modulated noise bursts with formants and pauses (1-D float32).

    The analysis parity cases were checked on exactly this signal.
    """
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    noise = rng.normal(0, 1, n)
    t = np.arange(n) / sr
    carrier = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 700 * t) + 0.2 * noise
    syllables = (np.sin(2 * np.pi * 4 * t) > 0).astype(float)
    words = (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.3).astype(float)
    return (0.3 * carrier * syllables * words).astype(np.float32)


# ---------------------------------------------------------------- generator inputs and measures


def latents(
    batch: int, truncation: float | np.ndarray, seed: int = 0, *, mixed: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """z as the engine draws it (its truncated normal, times the truncation), and one-hot or
    two-class mixed class vectors; float32."""
    from ganterp_fast.engine.backends.contract import NUM_CLASSES, Z_DIM, truncated_normal

    rng = np.random.default_rng(seed)
    z = truncated_normal(rng, (batch, Z_DIM)) * np.reshape(truncation, (-1, 1))
    classes = np.zeros((batch, NUM_CLASSES), dtype=np.float32)
    for row in range(batch):
        a, b = rng.choice(NUM_CLASSES, 2, replace=False)
        share = rng.uniform(0.2, 0.8) if mixed else 1.0
        classes[row, a] += share
        classes[row, b] += 1.0 - share
    return z.astype(np.float32), classes


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8-range images or frame stacks, in dB (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = np.abs(x).max(axis=0, keepdims=True)
    return (x / np.maximum(peak, 1e-9) * 0.8).astype(np.float32)


def frame_colour(index: int) -> tuple[int, int, int]:
    """A distinctive RGB colour for frame `index` (every frame differs from its neighbours)."""
    return ((index * 37) % 200 + 28, (index * 91 + 60) % 200 + 28, (index * 53 + 120) % 200 + 28)


def frames_rgb(first: int, count: int, width: int, height: int) -> np.ndarray:
    """uint8 [count, height, width, 3] frames: each a flat frame_colour with a bright moving bar."""
    out = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        out[i] = frame_colour(first + i)
        x = (first + i) * 4 % max(1, width - 8)
        out[i, :, x : x + 8] = 255
    return out


# ---------------------------------------------------------------- writers


def write_soundfile(
    path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int, *, subtype: str | None = None
) -> Path:
    """wav/flac/ogg (vorbis) with soundfile; the format follows the extension."""
    import soundfile

    path = Path(path)
    if subtype is None and path.suffix.lower() in (".wav", ".flac"):
        subtype = "PCM_16"
    soundfile.write(path, samples, sample_rate, subtype=subtype)
    return path


@dataclass(frozen=True)
class Song:
    """The song a test module uses (conftest's `song` fixture writes it as a .wav).

    By default three seconds of `music`, 8 kHz mono: quick to analyse and to render. A module
    that needs another declares it: `SONG = media.Song(rate=22050, seconds=4.0)`; `samples`
    (a function giving [samples, channels]) replaces the music.
    """

    rate: int = 8000
    seconds: float = 3.0
    seed: int = 0
    name: str = "song.wav"
    samples: Callable[[], np.ndarray] | None = None

    def write(self, folder: str | os.PathLike[str]) -> Path:
        signal = self.samples() if self.samples is not None else music(self.rate, self.seconds, seed=self.seed)
        return write_soundfile(Path(folder) / self.name, signal, self.rate)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo", 6: "5.1"}.get(channels) or f"{channels}c"


def _add_audio(container, codec: str, samples: np.ndarray, sample_rate: int, *, bitrate: int | None = None):
    options = {"strict": "experimental"} if codec == "vorbis" else {}
    rate = 48000 if "opus" in codec else sample_rate  # Opus only runs at 48 kHz (and a few lower rates)
    stream = container.add_stream(codec, rate=rate, layout=_layout(samples.shape[1]), options=options)
    if bitrate or codec == "aac":  # FFmpeg's default AAC rate is low for a codec-tolerance test
        stream.bit_rate = bitrate or min(96_000 * samples.shape[1], 6 * rate * samples.shape[1])
    return stream


def _audio_frames(samples: np.ndarray, sample_rate: int, chunk: int = 4096):
    import av

    for start in range(0, len(samples), chunk):
        block = np.ascontiguousarray(samples[start : start + chunk].T, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=_layout(samples.shape[1]))
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        yield frame


def write_pyav_audio(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_rate: int,
    *,
    codec: str,
    container_format: str | None = None,
    bitrate: int | None = None,
) -> Path:
    """An audio-only file encoded with PyAV (mp3 via libmp3lame, m4a/aac, opus, ...)."""
    import av

    path = Path(path)
    with av.open(os.fspath(path), "w", format=container_format) as container:
        stream = _add_audio(container, codec, samples, sample_rate, bitrate=bitrate)
        for frame in _audio_frames(samples, sample_rate):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_video(
    path: str | os.PathLike[str],
    samples: np.ndarray | None,
    sample_rate: int,
    *,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    seconds: float | None = None,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
) -> Path:
    """A video (container by extension) of moving frames, with `samples` as its audio track
    (None: no audio track). Audio and video are interleaved as a real file would be."""
    import av

    path = Path(path)
    if seconds is None:
        seconds = len(samples) / sample_rate if samples is not None else 2.0
    width, height = size
    with av.open(os.fspath(path), "w") as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if video_codec.startswith("libvpx"):
            video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        audio = _add_audio(container, audio_codec, samples, sample_rate) if samples is not None else None
        frames = iter(_audio_frames(samples, sample_rate)) if samples is not None else iter(())
        audio_time = 0.0
        for index in range(int(round(seconds * fps))):
            while audio is not None and audio_time <= index / fps:
                frame = next(frames, None)
                if frame is None:
                    container.mux(audio.encode(None))
                    audio = None
                    break
                container.mux(audio.encode(frame))
                audio_time += frame.samples / sample_rate
            image = av.VideoFrame.from_ndarray(frames_rgb(index, 1, width, height)[0], format="rgb24")
            image.pts = index
            container.mux(video.encode(image))
        if audio is not None:
            for frame in frames:
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
        container.mux(video.encode(None))
    return path


def truncate(source: str | os.PathLike[str], path: str | os.PathLike[str], *, keep: float = 0.5) -> Path:
    """A copy of `source` cut to its first `keep` fraction of bytes (a half-downloaded file)."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_random_bytes(path: str | os.PathLike[str], size: int = 5000, *, seed: int = 0) -> Path:
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def write_empty(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_text(path: str | os.PathLike[str]) -> Path:
    """Text under an audio name (a .mp3 that is not one)."""
    path = Path(path)
    path.write_text("hello, this is not audio\n" * 40)
    return path


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Format:
    """One way of writing audio: file name suffix, writer, and how close decoding comes back."""

    name: str
    suffix: str
    write: Callable[[Path, np.ndarray, int], Path]
    lossless: bool
    rate: int | None = None  # the only rate the format decodes at (opus: 48 kHz), else the source's


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("wav", ".wav", lambda p, x, sr: write_soundfile(p, x, sr), True),
        Format("wav-float", ".wav", lambda p, x, sr: write_soundfile(p, x, sr, subtype="FLOAT"), True),
        Format("flac", ".flac", lambda p, x, sr: write_soundfile(p, x, sr), True),
        Format("ogg-vorbis", ".ogg", lambda p, x, sr: write_soundfile(p, x, sr, subtype="VORBIS"), False),
        Format(
            "opus",
            ".opus",
            lambda p, x, sr: write_pyav_audio(p, x, sr, codec="libopus", container_format="ogg", bitrate=128000),
            False,
            48000,
        ),
        Format("mp3", ".mp3", lambda p, x, sr: write_pyav_audio(p, x, sr, codec="libmp3lame", bitrate=192000), False),
        Format("mp3-soundfile", ".mp3", lambda p, x, sr: write_soundfile(p, x, sr, subtype="MPEG_LAYER_III"), False),
        Format(
            "m4a",
            ".m4a",
            lambda p, x, sr: write_pyav_audio(p, x, sr, codec="aac", container_format="ipod", bitrate=192000),
            False,
        ),
        Format(
            "aac-adts",
            ".aac",
            lambda p, x, sr: write_pyav_audio(p, x, sr, codec="aac", container_format="adts", bitrate=192000),
            False,
        ),
        Format("mp4", ".mp4", lambda p, x, sr: write_video(p, x, sr, video_codec="libx264", audio_codec="aac"), False),
        Format("mov", ".mov", lambda p, x, sr: write_video(p, x, sr, video_codec="libx264", audio_codec="aac"), False),
        Format(
            "mkv",
            ".mkv",
            lambda p, x, sr: write_video(p, x, sr, video_codec="libx264", audio_codec="libmp3lame"),
            False,
        ),
        Format(
            "webm-vp9-opus",
            ".webm",
            lambda p, x, sr: write_video(p, x, sr, video_codec="libvpx-vp9", audio_codec="libopus"),
            False,
            48000,
        ),
        Format(
            "webm-vp8-vorbis",
            ".webm",
            lambda p, x, sr: write_video(p, x, sr, video_codec="libvpx", audio_codec="vorbis"),
            False,
        ),
    ]
}


def write_format(
    directory: str | os.PathLike[str], name: str, samples: np.ndarray, sample_rate: int, *, stem: str = "clip"
) -> Path:
    """Write `samples` in the named format (a key of FORMATS) into `directory`."""
    fmt = FORMATS[name]
    return fmt.write(Path(directory) / f"{stem}-{name}{fmt.suffix}", samples, sample_rate)


def write_bad_inputs(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Every kind of input that must be refused with a clear message, by name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    good = write_video(directory / "good.mp4", music(22050, 2.0, channels=2), 22050)
    folder = directory / "a folder.wav"
    folder.mkdir(exist_ok=True)
    return {
        "missing": directory / "missing.wav",
        "directory": folder,
        "empty": write_empty(directory / "empty.wav"),
        "random-bytes": write_random_bytes(directory / "noise.bin"),
        "random-bytes-mp3": write_random_bytes(directory / "noise.mp3", seed=1),
        "text-mp3": write_text(directory / "text.mp3"),
        "truncated-mp4": truncate(good, directory / "truncated.mp4", keep=0.5),
        "no-audio-track": write_video(directory / "silent film.mp4", None, 22050, seconds=1.0),
        "header-only-wav": write_soundfile(directory / "header only.wav", np.zeros((0, 1), np.float32), 8000),
    }


def render_options(**flat):  # -> RenderOptions
    """RenderOptions from flat keywords (model, fps, crf, batch_size, codec, ...), each to its part."""
    from dataclasses import fields

    from ganterp_fast.engine.options import ModelOptions, RenderOptions
    from ganterp_fast.engine.video.encode import EncodeOptions

    renames = {"encoder_threads": "threads"}
    model_keys = {f.name for f in fields(ModelOptions)}
    encode_keys = {f.name for f in fields(EncodeOptions)} | set(renames)
    model = {k: flat.pop(k) for k in list(flat) if k in model_keys}
    encode = {renames.get(k, k): flat.pop(k) for k in list(flat) if k in encode_keys}
    return RenderOptions(model=ModelOptions(**model), encode=EncodeOptions(**encode), **flat)
