"""The excerpt of an input: where it starts and how long it lasts, declared once.

`decode.excerpt_samples` checks an excerpt against the audio (a start past the end, a
duration shorter than a sample) and names the same fields; the command line's --start and
--duration and the web page's boxes come from these declarations. A `Section` is the same pair
read on a render's timeline: the part of the full render a preview of a section shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ganterp_fast.engine.fields import Options, error, option, optional, real

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Section(Excerpt):
    """A section of a render's timeline, rendered alone: from `start` seconds of the analysed
    audio (the whole input, or its excerpt), `duration` seconds long (None: to the end).

    The whole analysed audio decides the path; the section's frames and soundtrack are the full
    render's there. The command line's --preview --start/--duration make one."""

    def samples(self, num_samples: int, sample_rate: int, *, what: str) -> tuple[int, int]:
        """(first, count) of the section in the analysed audio's samples, clipped at its end;
        `what` says what was analysed ("song.wav is 8.00 s long") for the errors."""
        first = round(self.start * sample_rate)
        if first >= num_samples:
            raise error(self, "start", f"{self.start:g} s is at or past the end of the audio: {what}")
        if self.duration is None:
            return first, num_samples - first
        count = round(self.duration * sample_rate)
        if count < 1:
            raise error(self, "duration", f"{self.duration:g} s is shorter than one sample at {sample_rate} Hz")
        if count > num_samples - first:
            log.warning(
                "section %g s + %g s runs past the end of the audio (%s): using %.2f s",
                self.start,
                self.duration,
                what,
                (num_samples - first) / sample_rate,
            )
            count = num_samples - first
        return first, count
