"""What a render reports: progress while it runs, then its result with the time of each stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ganterp_fast.engine.analysis.analyze import Analysis


@dataclass
class StageTimes:
    """Seconds spent in each stage (inference and encoding overlap, so they add up to more than the wall time)."""

    model: float = 0.0
    analysis: float = 0.0
    path: float = 0.0
    inference: float = 0.0
    encode: float = 0.0
    compose: float = 0.0  # scaling and layout (its own thread), 0 where the frames are the output
    upscale: float = 0.0  # the learned upscaler (its own thread), 0 without one
    render: float = 0.0  # the frames' loop of `run`, from the first batch asked for to the file closed
    wall: float = 0.0

    def bound(self) -> str:
        """The stage the pipeline waited on most."""
        stages = {"inference": self.inference, "encode": self.encode, "compose": self.compose, "upscale": self.upscale}
        return max(stages, key=stages.__getitem__)


@dataclass(frozen=True)
class Progress:
    """A progress report: `stage` is "model", "analysis" or "render" (frames counted in the last)."""

    frames_done: int
    frames_total: int
    stage: str = "render"


@dataclass
class RenderResult:
    output: Path
    frames: int
    fps: Fraction
    resolution: int
    batch_size: int
    device: str
    providers: list[str]
    model_path: Path
    classes: list[tuple[float, int]]
    unused_classes: list[int]
    analysis: Analysis
    times: StageTimes
    width: int = 0  # the output's size (the model's resolution unless --size or --layout)
    height: int = 0
    full_frames: int = 0  # a preview: the full render's frame count (0 otherwise)
    section_s: tuple[float, float] | None = None  # a section rendered alone: (start, duration) in seconds
    upscaler: str = ""  # the learned upscaler and its factor ("realesrgan.onnx x4"); "" without one
    num_classes: int = 1000  # the model's classes (ImageNet's 1000 for BigGAN; 0: unconditional, keyframes alone)

    @property
    def duration_s(self) -> float:
        """The video's length in seconds of audio: the section's, or the analysed audio's."""
        return self.section_s[1] if self.section_s is not None else self.analysis.duration_s

    @property
    def frames_per_second(self) -> float:
        busy = self.times.wall - self.times.model - self.times.analysis
        return self.frames / busy if busy > 0 else float("inf")

    @property
    def full_render_seconds(self) -> float:
        """A preview: how long the full render would take here (this run's time per frame x its frames)."""
        return self.full_frames * self.seconds_per_frame if self.full_frames else 0.0

    @property
    def seconds_per_frame(self) -> float:
        """The frames' loop's time per frame (model and analysis left out)."""
        return self.times.render / self.frames if self.frames else 0.0


def reporter(progress: Callable[[Progress], None] | None) -> Callable[..., None]:
    """report(stage, done, total) -> a Progress for `progress`, where there is one."""

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(Progress(done, total, stage))

    return report
