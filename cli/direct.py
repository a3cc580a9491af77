"""Flags that direct the video (cue sheets, --classes-at, beats, pulse, HPSS) and their translation.

`render` and `analyze` share them: `add_path_args` and `add_direction_args` add the flags,
`directed_options` turns them (and a cue sheet's header) into the analysis and path options.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ganterp_fast.cli.flags import add_options, dest, from_args
from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.audio.excerpt import Excerpt
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.fields import declared, default_of
from ganterp_fast.engine.latent.cue_files import read_sheet
from ganterp_fast.engine.latent.cue_sheet import CueSheet, parse_classes_at
from ganterp_fast.engine.latent.path import PathOptions
from ganterp_fast.engine.latent.sheet_options import sheet_options

PATH_FLAGS = ("classes", "z_mode", "truncation", "seed", "interpolation")  # PathOptions' fields set by flags


def add_path_args(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """--classes, --z-mode, --truncation, --seed and --interpolation, in a group of their own."""
    group = parser.add_argument_group(title)
    add_options(group, PathOptions, PATH_FLAGS)
    return group


def add_direction_args(group: argparse._ArgumentGroup, *, cues_help: str) -> None:
    """--cues, --classes-at, --pulse and --pulse-truncation."""
    group.add_argument("--cues", metavar="FILE.csv|.json", help=cues_help)
    group.add_argument(
        "--classes-at",
        metavar="LIST",
        help="classes at given times, e.g. '0:00 jellyfish, 0:12.5 mountain bike, 1:03 volcano' "
        "(seconds or m:ss; instead of the inflection points)",
    )
    add_options(group, PathOptions, ("pulse", "pulse_truncation"))


def directed_options(args: argparse.Namespace, *, read_cues: bool) -> tuple[AnalysisOptions, PathOptions]:
    """The analysis and path options from the flags; with `read_cues`, --cues names a sheet to render.

    A sheet's header supplies the seed, z mode, truncation, analysis parameters and excerpt;
    a flag left at its default takes the sheet's value, a flag set to another value than the
    sheet's is an error. --classes, --classes-at and --cues exclude each other.
    """
    from_args(Excerpt, args)  # --start and --duration within their bounds
    given = [flag for flag, value in (("--classes", args.classes), ("--classes-at", args.classes_at)) if value]
    if read_cues and args.cues:
        given.append("--cues")
    if len(given) > 1:
        raise InputError(f"give one of {' and '.join(given)}: each names the classes of the whole video")
    if read_cues and args.cues:
        return _options_for_sheet(args, read_sheet(args.cues))
    path = from_args(PathOptions, args)
    analysis = from_args(AnalysisOptions, args, onsets=path.pulsing)
    if args.classes_at:
        sheet = parse_classes_at(args.classes_at, seed=path.seed, z_mode=path.z_mode, truncation=path.truncation)
        sheet_path = PathOptions.from_sheet(sheet, pulse=path.pulse, pulse_truncation=path.pulse_truncation)
        path = replace(sheet_path, interpolation=path.interpolation)
    return analysis, path


def _options_for_sheet(args: argparse.Namespace, sheet: CueSheet) -> tuple[AnalysisOptions, PathOptions]:
    """The sheet's options (`sheet_options`), after checking that no flag contradicts its header;
    the excerpt becomes the sheet's (`args.start`, `args.duration`)."""
    analysis, path = sheet_options(sheet, pulse=args.pulse, pulse_truncation=args.pulse_truncation)
    path = replace(path, interpolation=args.interpolation)  # how to move between the cues: the flag's
    for owner, theirs in ((PathOptions, path), (AnalysisOptions, analysis), (Excerpt, sheet)):
        for item, found in declared(owner):
            own = item.name in ("pulse", "pulse_truncation", "interpolation")  # the flags', not the sheet's
            if found.flag is None or not hasattr(args, dest(found.flag)) or own:
                continue
            default, mine = default_of(item), getattr(args, dest(found.flag))
            if isinstance(default, bool) or mine == default or mine == getattr(theirs, item.name):
                continue  # left at its default, or the sheet's own; --snap-to-beats has no say over cues
            if owner is Excerpt:
                raise InputError(
                    f"{found.flag} {mine} differs from the excerpt of the cue sheet {sheet.origin} "
                    f"({getattr(sheet, item.name)}): its times count from the excerpt's start; leave {found.flag} out"
                )
            raise InputError(
                f"{found.flag} {mine} differs from the cue sheet's {getattr(theirs, item.name)} ({sheet.origin}): "
                f"leave {found.flag} out to use the sheet's, or edit the sheet's header"
            )
    args.start, args.duration = sheet.start, sheet.duration  # the sheet's excerpt
    return analysis, path
