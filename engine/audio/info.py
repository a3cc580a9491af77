"""What an audio probe finds (`AudioInfo`), shared by `audio` and its PyAV backend `audio_pyav`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Backend = Literal["soundfile", "pyav"]
BACKENDS: tuple[Backend, ...] = ("soundfile", "pyav")

WHAT_WORKS = "wav, flac, mp3, ogg, opus, m4a, or a video with an audio track"


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: its own rate and channel count, its length, and who decodes it."""

    path: Path
    sample_rate: int
    channels: int
    num_samples: int  # per channel, whole file
    duration_s: float
    backend: Backend
    codec: str  # FFmpeg's name: "pcm_s16le", "flac", "mp3", "aac", "opus", ...
    layout: str = ""  # FFmpeg's channel layout name ("mono", "stereo", "5.1", ...)
    # num_samples is exact (soundfile; PyAV for mp4/mov/ogg/flac/wav, whose stream durations
    # are exact). False: estimated from the container's duration (mp3, mkv/webm): without a
    # duration the readers then read to the stream's end.
    exact: bool = True
