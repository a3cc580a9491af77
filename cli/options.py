"""Argument groups shared by several subcommands: output control, the input and its excerpt, the analysis."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganterp_fast.cli.flags import add_options
from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.audio.excerpt import Excerpt


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand takes."""
    group = parser.add_argument_group("output control")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    group.add_argument("-v", "--verbose", action="store_true", help="log what happens (providers, cache, timings)")
    group.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def add_input_args(parser: argparse.ArgumentParser, *, many: bool = False, excerpt: str | None = None) -> None:
    """INPUT (a list of them where `many`), --example and the excerpt (`excerpt`: what it does here)."""
    parser.add_argument(
        "input",
        metavar="INPUT",
        nargs="*" if many else "?",
        help="audio or video file (wav, flac, mp3, ogg, opus, m4a, mp4, mkv, mov, webm)"
        + ("; several render one after another, or on one Ray pool with --ray" if many else ""),
    )
    add_example_flag(parser)
    group = parser.add_argument_group("excerpt", excerpt)
    add_options(group, Excerpt)


def add_analysis_args(parser: argparse.ArgumentParser) -> None:
    """The analysis's flags: every field of `AnalysisOptions` that has one."""
    group = parser.add_argument_group("analysis (the seed's inflection-point detection)")
    add_options(group, AnalysisOptions)


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
