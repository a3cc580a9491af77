"""The input of a render or an analysis: a file probed once, and the excerpt of it to use.

A `Source` is plain data (picklable): the analysis, the soundtrack and the writer take it
and never probe the file again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ganterp_fast.engine.audio.decode import AudioInfo, excerpt_samples, probe_audio


@dataclass(frozen=True)
class Source:
    """An audio or video file and the excerpt [start, start + duration) of it."""

    info: AudioInfo
    start: float = 0.0
    duration: float | None = None  # as asked; None: to the end
    first_sample: int = 0
    num_samples: int = 0  # of the excerpt, on channel 0 at the file's own rate

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def duration_s(self) -> float:
        """The excerpt's length in seconds (estimated where the container's length is)."""
        return self.num_samples / self.info.sample_rate

    def length_text(self) -> str:
        """How long the excerpt is, in words for an error ("song.wav is 12.00 s long")."""
        if self.start or self.duration is not None:
            return f"the excerpt of {self.path.name} from {self.start:g} s is {self.duration_s:.2f} s long"
        return f"{self.path.name} is {self.duration_s:.2f} s long"

    def identity(self) -> dict[str, object]:
        """What names this input's bytes: path, size and modification time (for fingerprints)."""
        stat = self.path.stat()
        return {"path": os.fspath(self.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def open_source(path: str | os.PathLike[str] | Source, *, start: float = 0.0, duration: float | None = None) -> Source:
    """Probe `path` once and check the excerpt; InputError naming the file and what would work."""
    if isinstance(path, Source):
        return path
    info = probe_audio(path)
    first, count = excerpt_samples(info, start, duration)
    return Source(info=info, start=float(start), duration=duration, first_sample=first, num_samples=count)
