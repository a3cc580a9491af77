"""The options that render a cue sheet: its header's analysis, seed, z mode and truncation.

`render --cues` and the web page's render both take them from here. The analysis is the
one the header states, without snapping to beats (the cues' times are the sheet's own; the
signal still gives the alphas between them); the path is drawn with the sheet's seed, z mode
and truncation.
"""

from __future__ import annotations

from dataclasses import fields, replace

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.errors import InputError, OptionError
from ganterp_fast.engine.latent.cue_sheet import CueSheet
from ganterp_fast.engine.latent.path import PathOptions


def sheet_analysis(sheet: CueSheet, *, onsets: bool = False) -> AnalysisOptions:
    """The analysis options of `sheet`'s header; an `InputError` naming the sheet and the header's key."""
    known = {item.name for item in fields(AnalysisOptions)}
    stored = {key: value for key, value in sheet.analysis.items() if key in known}
    try:
        options = AnalysisOptions(**stored)
    except OptionError as exc:
        key = exc.field.rpartition(".")[2]
        raise InputError(f"{sheet.origin} (analysis header): {exc.named(key)}") from None
    return replace(options, snap_to_beats=False, onsets=onsets)


def sheet_options(
    sheet: CueSheet, *, pulse: float = 0.0, pulse_truncation: float = 0.0
) -> tuple[AnalysisOptions, PathOptions]:
    """The analysis and path options that render `sheet`, with the onset pulse's strengths."""
    path = PathOptions.from_sheet(sheet, pulse=pulse, pulse_truncation=pulse_truncation)
    return sheet_analysis(sheet, onsets=path.pulsing), path
