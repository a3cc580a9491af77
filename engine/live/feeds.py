"""What a live session draws at each moment: latents for frame times, and the music's events.

`FileFeed`: a file's offline analysis and its `LatentPath` (the render's own path, so frame k
of a live session is frame k of `render` with the same options). `MicFeed`: audio blocks as
they arrive through the online analysis (`analysis.online`), its path position and pulse at
each frame's time through `LivePath`. Both give (z, classes, truncations) for frame indices
k at times k / fps, and the inflection points, onsets, beats and class changes as `Cue`s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ganterp_fast.engine.analysis.analyze import Analysis
from ganterp_fast.engine.latent.classes import class_label
from ganterp_fast.engine.latent.path import LatentPath, PathOptions
from ganterp_fast.engine.live.path import LivePath

Latents = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


@dataclass(frozen=True)
class Cue:
    """A moment of the music another program may follow (`osc`): an inflection point, an onset,
    a beat, or the class the picture moves to."""

    kind: str  # "inflection", "onset", "beat" or "class"
    time_s: float
    index: int
    value: float = 1.0  # the onset's strength; the class index for "class"
    name: str = ""  # the class's name for "class"


def class_name(class_id: int, num_classes: int) -> str:
    if num_classes == 1000:
        return class_label(class_id)
    return str(class_id) if num_classes else f"keyframe {class_id}"


class FileFeed:
    """A file played by the page: its render path, sampled at any frame."""

    mode = "file"

    def __init__(self, analysis: Analysis, path: LatentPath) -> None:
        self.analysis, self.path = analysis, path
        self.fps = Fraction(path.fps)
        self.num_frames = path.num_frames
        cues = []
        for k, (time_s, class_id) in enumerate(path.schedule()):
            if k:
                cues.append(Cue("inflection", time_s, k))
            index = k if not path.num_classes else class_id
            cues.append(Cue("class", time_s, k, float(index), class_name(index, path.num_classes)))
        if analysis.beat_times is not None:
            cues += [Cue("beat", float(t), i) for i, t in enumerate(analysis.beat_times)]
        order = {"inflection": 0, "class": 1, "onset": 2, "beat": 3}
        self.cues = sorted(cues, key=lambda cue: (cue.time_s, order[cue.kind]))
        self._cue_times = np.array([cue.time_s for cue in self.cues])

    def frames(self, start: int, stop: int) -> Latents:
        z, classes = self.path.frames(start, stop)
        return z, classes, self.path.truncations(start, stop)

    def cues_between(self, begin_s: float, end_s: float) -> list[Cue]:
        """The cues with begin_s < time <= end_s (as the clock passes them)."""
        a, b = np.searchsorted(self._cue_times, [begin_s, end_s], side="right")
        return self.cues[a:b]


class MicFeed:
    """Audio blocks as they arrive (a microphone, a line-in): the online analysis drives the path."""

    mode = "mic"

    def __init__(
        self,
        sample_rate: int,
        analysis_options,  # AnalysisOptions
        path_options: PathOptions,
        fps: Fraction,
        *,
        z_dim: int,
        num_classes: int,
        z_truncated: bool = True,
    ) -> None:
        from ganterp_fast.engine.analysis.online import OnlineAnalysis

        self.analysis = OnlineAnalysis(int(sample_rate), analysis_options, onsets=path_options.pulsing)
        self.path = LivePath(path_options, z_dim=z_dim, num_classes=num_classes, z_truncated=z_truncated)
        self.options = path_options
        self.fps = Fraction(fps)
        self.sample_rate = int(sample_rate)
        self.num_frames = math.inf

    @property
    def time_s(self) -> float:
        return self.analysis.time_s

    @property
    def delay_s(self) -> float:
        return float(self.analysis.delay_s)

    def feed(self, samples: np.ndarray) -> list[Cue]:
        """Mono float samples in; the cues they revealed out."""
        cues = []
        for event in self.analysis.feed(np.asarray(samples, dtype=np.float32)):
            cues.append(Cue(event.kind, float(event.time_s), int(event.index), float(event.strength)))
            if event.kind == "inflection":
                k = int(event.index)
                class_id = self.path.class_id(k) if self.path.num_classes else k
                cues.append(
                    Cue("class", float(event.time_s), k, float(class_id), class_name(class_id, self.path.num_classes))
                )
        return cues

    def frames(self, start: int, stop: int) -> Latents:
        return self.at(np.arange(start, stop) / float(self.fps))

    def at(self, times: Sequence[float] | np.ndarray) -> Latents:
        times = np.minimum(np.asarray(times, dtype=np.float64), self.time_s)
        u = np.array([self.analysis.position(float(t)) for t in times])
        pulses = np.array([self.analysis.pulse(float(t)) for t in times]) if self.options.pulsing else None
        z, classes = self.path.latents(u, pulses)
        truncations = None
        if pulses is not None and self.options.pulse_truncation > 0:
            truncations = self.options.pulsed_truncations(pulses)
        return z, classes, truncations
