"""Cue sheets: the path's inflection points as an editable timeline.

A sheet holds one row per cue: its time in seconds, the class (index and name), the z it
uses and the transition into it. Its header holds what reproduces the path on its own: the
analysis parameters, the seed, z mode, truncation and the size of the seeded z draw, the
sample rate and hop of the analysis. `analyze --cues` writes a sheet; `render --cues` reads
it, so a user can move, add and delete cues, change classes (by name or index) and make any
change an instant `cut` instead of the default `smooth` transition.

This module is the sheet itself (`Cue`, `CueSheet`), the times a user types, `--classes-at`
and the sheet of a drawn path; `cue_files` reads and writes sheets as `.csv` and `.json`.
The sheet is plain data (frozen dataclasses, tuples), so a render job that holds it pickles.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.classes import class_index

FORMAT = "ganterp-fast cue sheet"
VERSION = 1
TRANSITIONS = ("smooth", "cut")
COLUMNS = ("time_s", "class", "name", "z", "transition")


@dataclass(frozen=True)
class Cue:
    """One cue: from `time_s` on the video shows `class_id` with z number `z`.

    `transition` is how the video arrives at this cue from the one before: "smooth" follows
    the audio's alphas between the two cues, "cut" holds the previous cue and changes at
    `time_s` at once. `line` is where the cue came from (0: not from a file).
    """

    time_s: float
    class_id: int
    z: int
    transition: str = "smooth"
    line: int = 0


@dataclass(frozen=True)
class CueSheet:
    """Cues in time order, and what the header says about how they were made."""

    cues: tuple[Cue, ...]
    #: How many z the seeded draw holds (z 0..z_count-1 come from it; others are drawn one by one).
    z_count: int
    seed: int = 0
    z_mode: str = "per-point"
    truncation: float = 0.4
    #: The analysis parameters the sheet was made with (AnalysisOptions fields), or empty.
    analysis: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    sample_rate: int | None = None
    hop_length: int | None = None
    duration_s: float | None = None
    start: float = 0.0
    duration: float | None = None
    origin: str = ""  # the file it was read from, for messages

    def where(self, cue: Cue) -> str:
        """'FILE line N' (or 'ORIGIN item N') for messages about `cue`."""
        if self.origin and cue.line:
            return f"{self.origin} line {cue.line}"
        return f"{self.origin or 'cues'} item {self.cues.index(cue) + 1}"


# --------------------------------------------------------------------------- times


_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from '12.5', '1:03', '1:03.25' or '1:02:03' (h:mm:ss); ValueError otherwise."""
    value = text.strip()
    match = _TIME.match(value)
    if not match:
        raise ValueError(f"{text!r} is not a time: give seconds (12.5) or m:ss (1:03.5)")
    a, b, seconds = match.groups()
    hours, minutes = (int(a), int(b)) if b is not None else (0, int(a) if a is not None else 0)
    if (a is not None) and float(seconds) >= 60:
        raise ValueError(f"{text!r} is not a time: seconds after a colon must be below 60")
    total = hours * 3600 + minutes * 60 + float(seconds)
    if not math.isfinite(total):
        raise ValueError(f"{text!r} is not a finite time")
    return total


def format_time(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 60 else f"{int(seconds // 60)}:{seconds % 60:06.3f}"


def check_order(cues: Sequence[Cue], where: Callable[[int], str]) -> None:
    """InputError at the first cue that is not later than the one before (`where(k)` names cue k)."""
    for k in range(1, len(cues)):
        if cues[k].time_s <= cues[k - 1].time_s:
            raise InputError(
                f"{where(k)}: time {format_time(cues[k].time_s)} is not after the cue before it "
                f"({format_time(cues[k - 1].time_s)}): cues must be in time order, each later than the last"
            )


# --------------------------------------------------------------------------- sheets from flags and paths


def parse_classes_at(spec: str, *, seed: int = 0, z_mode: str = "per-point", truncation: float = 0.4) -> CueSheet:
    """`--classes-at "0:00 jellyfish, 0:12.5 mountain bike, 1:03 volcano"` as a cue sheet.

    Each item is a time (seconds or m:ss) and a class (a name or an index); cue k takes z
    number k (per-point) or z 0 (fixed), and every transition is smooth.
    """
    cues = []
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise InputError("--classes-at is empty: give 'TIME CLASS, TIME CLASS, ...' such as '0:00 jellyfish, 12 7'")
    for number, item in enumerate(items, start=1):
        head, _, rest = item.partition(" ")
        try:
            time_s = parse_time(head)
        except ValueError as exc:
            raise InputError(f"--classes-at item {number} ({item!r}): {exc}") from None
        if not rest.strip():
            raise InputError(
                f"--classes-at item {number} ({item!r}) has no class: give 'TIME CLASS', e.g. '0:12 volcano'"
            )
        try:
            cls = class_index(rest.strip())
        except InputError as exc:
            raise InputError(f"--classes-at item {number}: {exc}") from None
        cues.append(Cue(time_s, cls, 0 if z_mode == "fixed" else number - 1, "smooth", 0))
    check_order(cues, lambda k: f"--classes-at item {k + 1}")
    return CueSheet(
        tuple(cues),
        z_count=1 if z_mode == "fixed" else len(cues),
        seed=seed,
        z_mode=z_mode,
        truncation=truncation,
        origin="--classes-at",
    )


def sheet_from_path(path: Any) -> CueSheet:
    """The cue sheet of a `LatentPath`: its points, classes and z, exactly as it draws them."""
    analysis = path.analysis
    options = path.options
    rows = tuple(
        Cue(float(t), int(c), int(z), transition, 0)
        for t, c, z, transition in zip(path.cue_times, path.class_ids, path.cue_z, path.cue_transitions)
    )
    return CueSheet(
        cues=rows,
        z_count=path.z_count,
        seed=int(options.seed),
        z_mode=options.z_mode,
        truncation=float(options.truncation),
        analysis=asdict(analysis.options),
        sample_rate=analysis.sample_rate,
        hop_length=analysis.hop_length,
        duration_s=analysis.duration_s,
        start=float(getattr(analysis, "start", 0.0) or 0.0),
        duration=getattr(analysis, "duration", None),
        origin=os.fspath(analysis.source) if analysis.source else "",
    )
