"""Argument groups shared by several subcommands, and their translation to option objects."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.analysis.beats import SOURCES

_DEFAULTS = AnalysisOptions()


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand takes."""
    group = parser.add_argument_group("output control")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    group.add_argument("-v", "--verbose", action="store_true", help="log what happens (providers, cache, timings)")
    group.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def add_input_args(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """INPUT (a list of them where `many`), --example and the excerpt."""
    parser.add_argument(
        "input",
        metavar="INPUT",
        nargs="*" if many else "?",
        help="audio or video file (wav, flac, mp3, ogg, opus, m4a, mp4, mkv, mov, webm)"
        + ("; several render one after another, or on one Ray pool with --ray" if many else ""),
    )
    add_example_flag(parser)
    group = parser.add_argument_group("excerpt")
    group.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="start of the excerpt (default: 0)")
    group.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="length of the excerpt (default: to the end)"
    )


def add_analysis_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("analysis (the seed's inflection-point detection)")
    group.add_argument(
        "--threshold",
        type=float,
        default=_DEFAULTS.threshold,
        help="how far a peak must stand above the means around it (default: %(default)s)",
    )
    group.add_argument(
        "--inflection-type",
        choices=("min", "max", "both"),
        default=_DEFAULTS.inflection_type,
        help="which extrema count as inflection points (default: %(default)s)",
    )
    group.add_argument(
        "--absolute-threshold",
        type=float,
        default=_DEFAULTS.absolute_threshold,
        help="with 'min': minima above this are ignored (default: %(default)s)",
    )
    group.add_argument(
        "--rolling-length",
        type=int,
        default=_DEFAULTS.rolling_length,
        metavar="COLUMNS",
        help="window of the means, in spectrogram columns (default: %(default)s)",
    )
    group.add_argument(
        "--smoothing",
        type=int,
        default=_DEFAULTS.smoothing,
        metavar="COLUMNS",
        help="running mean over the TV distances; 0: none (default: %(default)s)",
    )
    add_source_args(group)


def add_source_args(group: argparse._ArgumentGroup) -> None:
    """--analysis-source and --snap-to-beats, in the analysis group."""
    group.add_argument(
        "--analysis-source",
        choices=SOURCES,
        default=_DEFAULTS.analysis_source,
        help="run the analysis on the mix, or on its harmonic or percussive part (librosa's HPSS) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--snap-to-beats",
        action="store_true",
        help="move each inflection point to the nearest beat (librosa's beat tracker); the first and last stay",
    )


def analysis_options(args: argparse.Namespace) -> AnalysisOptions:
    return AnalysisOptions(
        threshold=args.threshold,
        inflection_type=args.inflection_type,
        absolute_threshold=args.absolute_threshold,
        rolling_length=args.rolling_length,
        smoothing=args.smoothing,
        analysis_source=args.analysis_source,
        snap_to_beats=args.snap_to_beats,
        onsets=bool(getattr(args, "pulse", 0.0) or getattr(args, "pulse_truncation", 0.0)),
    )


def add_example_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--example", action="store_true", help="use the built-in example music instead of INPUT")


def default_output(source: str, example: bool) -> Path:
    """INPUT's name with .mp4 beside it (NAME.ganterp.mp4 where INPUT is an .mp4 already)."""
    if example:
        return Path("ganterp-example.mp4")
    path = Path(source)
    candidate = path.with_suffix(".mp4")
    return candidate.with_name(f"{path.stem}.ganterp.mp4") if candidate == path else candidate


def resolve_input(args: argparse.Namespace) -> str:
    """INPUT, or the built-in example music with --example."""
    from ganterp_fast.engine.errors import InputError

    if getattr(args, "example", False):
        if args.input:
            raise InputError(f"give either INPUT ({args.input}) or --example, not both")
        from ganterp_fast.engine.audio.example import write_example

        return str(write_example())
    if not args.input:
        raise InputError("no INPUT given: name an audio or video file, or pass --example for built-in music")
    return args.input
