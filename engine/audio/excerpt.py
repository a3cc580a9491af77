"""The excerpt of an input: where it starts and how long it lasts, declared once.

`decode.excerpt_samples` checks an excerpt against the audio (a start past the end, a
duration shorter than a sample) and names the same fields; the command line's --start and
--duration and the web page's boxes come from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganterp_fast.engine.fields import Options, option, optional, real


@dataclass(frozen=True)
class Excerpt(Options):
    """The part of the input to use: from `start`, `duration` seconds long (None: to the end)."""

    start: float = option(
        0.0,
        flag="--start",
        check=real(0, rule="must be a number of seconds >= 0"),
        metavar="SECONDS",
        label="start (s)",
        help="start of the excerpt (default: 0)",
    )
    duration: float | None = option(
        None,
        flag="--duration",
        parse=float,
        check=optional(real(0, above=True, rule="must be a positive number of seconds")),
        metavar="SECONDS",
        label="duration (s; 0: to the end)",
        help="length of the excerpt (default: to the end)",
    )
