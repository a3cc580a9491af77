"""The compositor's plan for a render's output options: size, fit, layout, and the input's own video."""

from __future__ import annotations

from ganterp_fast.engine.audio.source import Source
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.options import OutputOptions
from ganterp_fast.engine.video.compose import PREVIEW_MAX_SIDE, Composition, plan_composition
from ganterp_fast.engine.video.input_video import probe_video


def plan_output(
    output: OutputOptions, source: Source, resolution: int, frame_width: int | None = None
) -> Composition | None:
    """The compositor's plan for the output options (None: the generator's frames as they are)."""
    video = None
    if output.layout is not None:
        video = probe_video(source.path)
        if video is None:
            raise InputError(
                f"input {source.path} has no video stream, and --layout {output.layout} shows the input's video: "
                "give a video file (mp4, mkv, mov, webm), or leave --layout out"
            )
    plan = plan_composition(
        resolution=resolution,
        size=output.size,
        fit=output.fit,
        layout=output.layout,
        pip_corner=output.pip_corner,
        pip_size=output.pip_size,
        video=video,
        offset=source.start,
        max_side=PREVIEW_MAX_SIDE if output.preview else None,
        frame_width=frame_width,
    )
    return None if plan.identity else plan
