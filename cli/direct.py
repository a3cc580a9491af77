"""Flags that direct the video (cue sheets, --classes-at, beats, pulse, HPSS) and their translation.

`render` and `analyze` share them: `add_direction_args` adds the flags, `directed_options`
turns them (and a cue sheet's header) into the analysis and path options.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields, replace

from ganterp_fast.cli.options import analysis_options
from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.cue_files import read_sheet
from ganterp_fast.engine.latent.cue_sheet import CueSheet, parse_classes_at
from ganterp_fast.engine.latent.path import Z_MODES, PathOptions

_ANALYSIS = AnalysisOptions()
_PATH = PathOptions()
# Analysis flags whose value a cue sheet's header also holds: option name -> flag.
_ANALYSIS_FLAGS = {
    "threshold": "--threshold",
    "inflection_type": "--inflection-type",
    "absolute_threshold": "--absolute-threshold",
    "rolling_length": "--rolling-length",
    "smoothing": "--smoothing",
    "analysis_source": "--analysis-source",
}


def add_path_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--classes, --z-mode, --truncation and --seed (for `analyze`; `render` has its own)."""
    path = parser.add_argument_group("the path through latent space (as render draws it)")
    path.add_argument(
        "--classes",
        metavar="LIST",
        help="comma-separated ImageNet class names or indices, one per inflection point in order; "
        "missing ones are drawn at random",
    )
    path.add_argument("--z-mode", choices=Z_MODES, default=_PATH.z_mode, help="(default: %(default)s)")
    path.add_argument("--truncation", type=float, default=_PATH.truncation, help="(default: %(default)s)")
    path.add_argument("--seed", type=int, default=_PATH.seed, help="seed of the random classes and z (default: 0)")
    return path


def add_direction_args(group: argparse._ArgumentGroup, *, cues_help: str) -> None:
    """--cues, --classes-at and --pulse."""
    group.add_argument("--cues", metavar="FILE.csv|.json", help=cues_help)
    group.add_argument(
        "--classes-at",
        metavar="LIST",
        help="classes at given times, e.g. '0:00 jellyfish, 0:12.5 mountain bike, 1:03 volcano' "
        "(seconds or m:ss; instead of the inflection points)",
    )
    group.add_argument(
        "--pulse",
        type=float,
        default=0.0,
        metavar="S",
        help="strength of the onset pulse: z jumps on each onset (librosa) and relaxes between them; 0: off "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--pulse-truncation",
        type=float,
        default=0.0,
        metavar="S",
        help="the same pulse on the truncation: T x (1 + S x pulse), at most 1; 0: off (default: %(default)s)",
    )


def _classes(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(item.strip() for item in args.classes.split(",") if item.strip()) if args.classes else ()


def directed_options(args: argparse.Namespace, *, read_cues: bool) -> tuple[AnalysisOptions, PathOptions]:
    """The analysis and path options from the flags; with `read_cues`, --cues names a sheet to render.

    A sheet's header supplies the seed, z mode, truncation, analysis parameters and excerpt;
    a flag left at its default takes the sheet's value, a flag set to another value than the
    sheet's is an error. --classes, --classes-at and --cues exclude each other.
    """
    for flag, value in (("--pulse", args.pulse), ("--pulse-truncation", args.pulse_truncation)):
        if not (isinstance(value, float) and math.isfinite(value) and value >= 0):
            raise InputError(f"{flag} must be a number >= 0 (0: off), got {value}")
    given = [flag for flag, value in (("--classes", args.classes), ("--classes-at", args.classes_at)) if value]
    if read_cues and args.cues:
        given.append("--cues")
    if len(given) > 1:
        raise InputError(f"give one of {' and '.join(given)}: each names the classes of the whole video")
    if read_cues and args.cues:
        sheet = read_sheet(args.cues)
        return _analysis_for_sheet(args, sheet), _path_for_sheet(args, sheet)
    analysis = analysis_options(args)
    if args.classes_at:
        sheet = parse_classes_at(args.classes_at, seed=args.seed, z_mode=args.z_mode, truncation=args.truncation)
        return analysis, PathOptions.from_sheet(sheet, pulse=args.pulse, pulse_truncation=args.pulse_truncation)
    path = PathOptions(
        classes=_classes(args),
        z_mode=args.z_mode,
        truncation=args.truncation,
        seed=args.seed,
        pulse=args.pulse,
        pulse_truncation=args.pulse_truncation,
    )
    return analysis, path


def _conflict(flag: str, value: object, default: object, sheet_value: object, sheet: CueSheet) -> None:
    if value != default and value != sheet_value:
        raise InputError(
            f"{flag} {value} differs from the cue sheet's {sheet_value} ({sheet.origin}): "
            f"leave {flag} out to use the sheet's, or edit the sheet's header"
        )


def _path_for_sheet(args: argparse.Namespace, sheet: CueSheet) -> PathOptions:
    _conflict("--seed", args.seed, _PATH.seed, sheet.seed, sheet)
    _conflict("--z-mode", args.z_mode, _PATH.z_mode, sheet.z_mode, sheet)
    _conflict("--truncation", args.truncation, _PATH.truncation, sheet.truncation, sheet)
    return PathOptions.from_sheet(sheet, pulse=args.pulse, pulse_truncation=args.pulse_truncation)


def _analysis_for_sheet(args: argparse.Namespace, sheet: CueSheet) -> AnalysisOptions:
    known = {f.name for f in fields(AnalysisOptions)}
    stored = {key: value for key, value in sheet.analysis.items() if key in known}
    try:
        options = AnalysisOptions(**stored)
    except (InputError, TypeError) as exc:
        raise InputError(f"{sheet.origin} (analysis header): {exc}") from None
    for name, flag in _ANALYSIS_FLAGS.items():
        _conflict(flag, getattr(args, name), getattr(_ANALYSIS, name), getattr(options, name), sheet)
    # The cues' times are the sheet's own: no snapping; the signal still gives the alphas.
    options = replace(options, snap_to_beats=False, onsets=bool(args.pulse or args.pulse_truncation))
    for flag, mine, theirs, default in (
        ("--start", args.start, sheet.start, 0.0),
        ("--duration", args.duration, sheet.duration, None),
    ):
        if mine != default and mine != theirs:
            raise InputError(
                f"{flag} {mine} differs from the excerpt of the cue sheet {sheet.origin} ({theirs}): "
                f"its times count from the excerpt's start; leave {flag} out"
            )
    args.start, args.duration = sheet.start, sheet.duration  # the sheet's excerpt
    return options
