"""`render`: the one-call API over the render job (`job.prepare`, then `RenderJob.run`)."""

from __future__ import annotations

import os
from collections.abc import Callable

from .backends import FrameGenerator
from .job import Progress, RenderResult, StageTimes, default_batch_size, planned_device, prepare
from .options import ModelOptions, RenderOptions
from .source import Source

__all__ = [
    "ModelOptions",
    "Progress",
    "RenderOptions",
    "RenderResult",
    "StageTimes",
    "default_batch_size",
    "planned_device",
    "render",
]


def render(
    input_path: str | os.PathLike[str] | Source,
    output_path: str | os.PathLike[str],
    options: RenderOptions | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    generator: FrameGenerator | None = None,
) -> RenderResult:
    """Render a music video of `input_path` (the excerpt from `start`, `duration` seconds long)
    into `output_path` (H.264 with the soundtrack).

    `generator`: any object with the generator's interface (`backends.FrameGenerator`) to use
    instead of opening the model the options name.
    """
    job = prepare(input_path, output_path, options, start=start, duration=duration, progress=progress)
    return job.run(generator=generator, progress=progress)
