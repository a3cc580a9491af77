"""`render`: the one-call API over the render job (`job.prepare`, then `RenderJob.run`).

The module is `api`, not `render`, so that importing it never shadows the function on the
`ganterp_fast.engine` package (`from ganterp_fast.engine import render` is always the function).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ganterp_fast.engine.audio.excerpt import Section
from ganterp_fast.engine.audio.source import Source
from ganterp_fast.engine.backends.choice import FrameGenerator
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.options import RenderOptions
from ganterp_fast.engine.result import Progress, RenderResult
from ganterp_fast.engine.scale.plan import check_segment_seconds

if TYPE_CHECKING:
    from ganterp_fast.engine.scale.cluster import Cluster


def render(
    input_path: str | os.PathLike[str] | Source,
    output_path: str | os.PathLike[str],
    options: RenderOptions | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
    section: Section | None = None,
    progress: Callable[[Progress], None] | None = None,
    generator: FrameGenerator | None = None,
    cluster: Cluster | None = None,
    segment_seconds: float | None = None,
    resume: bool = False,
) -> RenderResult:
    """Render a music video of `input_path` (the excerpt from `start`, `duration` seconds long)
    into `output_path` (H.264 with the soundtrack).

    `section`: a part of that render alone (`Section(start=2, duration=6)`, seconds from the
    excerpt's start): the whole excerpt is analysed, and the frames and soundtrack are the
    full render's there (what `ganterp-fast render --preview --start 2 --duration 6` shows).

    `generator`: any object with the generator's interface (`backends.FrameGenerator`) to use
    instead of opening the model the options name. `cluster`: render on a Ray pool
    (`cluster.Cluster.local(workers=2)`, `Cluster.connect("auto")`). `segment_seconds` or
    `resume` (with or without a cluster): render in segments of about that length, kept in the
    output's hidden segments folder until joined; `resume` reuses the ones a stopped render left.
    """
    check_segment_seconds(segment_seconds)  # before any work
    job = prepare(input_path, output_path, options, start=start, duration=duration, section=section, progress=progress)
    if cluster is not None:
        return cluster.render_one(job, segment_seconds=segment_seconds, resume=resume, progress=progress)
    if segment_seconds is not None or resume:
        from ganterp_fast.engine.scale.scheduler import render_segmented

        return render_segmented(
            job, segment_seconds=segment_seconds, resume=resume, generator=generator, progress=progress
        )
    return job.run(generator=generator, progress=progress)
