"""`ganterp-fast analyze`: the audio analysis alone, as a summary, JSON or a plot."""

from __future__ import annotations

import argparse
import contextlib
import json
from fractions import Fraction

from ganterp_fast.cli.direct import add_direction_args, add_path_args, directed_options
from ganterp_fast.cli.options import add_analysis_args, add_input_args, resolve_input
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
from ganterp_fast.engine.analysis.online import LEVELS
from ganterp_fast.engine.analysis.plot import plot_format
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.files import atomic_output, check_output, same_file
from ganterp_fast.engine.latent.classes import class_label
from ganterp_fast.engine.latent.cue_files import cue_format, format_sheet
from ganterp_fast.engine.latent.cue_sheet import sheet_from_path
from ganterp_fast.engine.latent.path import LatentPath


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "analyze",
        help="find the inflection points of an audio or video file",
        description=(
            "Run the GANterpretations analysis on channel 0 of INPUT at its own sample rate: "
            "spectrogram, total-variation distances, smoothed signal, inflection points, alphas."
        ),
    )
    add_input_args(parser, excerpt="--start and --duration cut an excerpt out of INPUT: the excerpt alone is analysed")
    add_analysis_args(parser)
    path = add_path_args(parser, "the path through latent space (as render draws it)")
    add_direction_args(
        path,
        cues_help="write the cue sheet: one row per inflection point (time, class, z, transition) and the "
        "parameters that reproduce the path; edit it and give it to 'render --cues'",
    )
    live = parser.add_argument_group(
        "live", "play INPUT through the online analysis, as if it were playing, beside the offline analysis"
    )
    live.add_argument(
        "--live",
        action="store_true",
        help="report each inflection point with the time it became known (JSON: detected_at_s) and how far "
        "the live points agree with the offline ones; --plot draws both",
    )
    live.add_argument(
        "--level",
        choices=LEVELS,
        default="peak",
        help="with --live, what the TV is normalised by: the largest distance so far (peak, the default), a peak "
        "hold with a 30 s release (hold) or the largest of the first 10 s (calibrated)",
    )
    out = parser.add_argument_group("outputs")
    out.add_argument("--json", metavar="PATH", help="write the full analysis as JSON")
    out.add_argument("--plot", metavar="PATH.png", help="draw spectrogram, signal with inflection points, and alphas")
    out.add_argument("-y", "--overwrite", action="store_true", help="replace existing output files")
    add_common_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options, path_options = directed_options(args, read_cues=False)
    source = resolve_input(args)
    outputs = [
        (flag, path) for flag, path in (("--json", args.json), ("--plot", args.plot), ("--cues", args.cues)) if path
    ]
    for _, path in outputs:
        if same_file(path, source):
            raise InputError(f"output {path} is the input file: choose another name")
        check_output(path, overwrite=args.overwrite)
    for i, (flag, path) in enumerate(outputs):
        for other_flag, other in outputs[i + 1 :]:
            if same_file(path, other):
                raise InputError(f"{flag} and {other_flag} both name {path}: give them different names")
    if args.plot:
        plot_format(args.plot)
    if args.cues:
        cue_format(args.cues)
    if args.live:
        return run_live(args, options, source)
    if args.level != "peak":
        raise InputError(f"--level {args.level} is for the live analysis: add --live")
    result = analyze(source, options, start=args.start, duration=args.duration, keep_plot=bool(args.plot))
    latent = LatentPath(result, path_options, Fraction(30))  # the classes, z and times render would use
    # Every output is a temporary file until all are written: if one fails, none is kept.
    with contextlib.ExitStack() as stack:
        if args.json:
            temporary = stack.enter_context(atomic_output(args.json, overwrite=args.overwrite))
            temporary.write_text(json.dumps(result.to_dict()), encoding="utf-8")
        if args.cues:
            temporary = stack.enter_context(atomic_output(args.cues, overwrite=args.overwrite))
            sheet = sheet_from_path(latent)
            temporary.write_text(format_sheet(sheet, cue_format(args.cues)), encoding="utf-8")
        if args.plot:
            from ganterp_fast.engine.analysis.plot import plot_analysis

            plot_analysis(result, args.plot, overwrite=args.overwrite, latent=latent)
    if not args.quiet:
        times = result.inflection_times
        shown = ", ".join(f"{t:.2f}" for t in times[:40]) + (" ..." if len(times) > 40 else "")
        print(
            f"{source}: {result.duration_s:.2f} s at {result.sample_rate} Hz, {result.num_columns} spectrogram columns"
        )
        print(f"{len(times)} inflection points (s): {shown}")
        if path_options.cues is not None or options.snap_to_beats:
            cues = ", ".join(f"{t:.2f}s {class_label(c)}" for t, c in latent.schedule()[:20])
            print(f"{latent.num_points} cues: {cues}" + (" ..." if latent.num_points > 20 else ""))
        for label, path in (("json", args.json), ("plot", args.plot), ("cues", args.cues)):
            if path:
                print(f"{label}: {path}")
    return 0


def run_live(args: argparse.Namespace, options: AnalysisOptions, source: str) -> int:
    """`analyze --live`: the online analysis of INPUT played in blocks, beside the offline one."""
    from ganterp_fast.engine.analysis.online import analyze_live

    if args.cues:
        raise InputError("--cues writes the offline analysis's cue sheet: leave out --live, or --cues")
    result = analyze_live(
        source, options, onsets=options.onsets, level=args.level, start=args.start, duration=args.duration
    )
    with contextlib.ExitStack() as stack:
        if args.json:
            temporary = stack.enter_context(atomic_output(args.json, overwrite=args.overwrite))
            temporary.write_text(json.dumps(result.to_dict()), encoding="utf-8")
        if args.plot:
            from ganterp_fast.engine.analysis.plot import plot_live

            plot_live(result, args.plot, overwrite=args.overwrite)
    if not args.quiet:
        offline = result.offline
        print(f"{source}: {offline.duration_s:.2f} s at {offline.sample_rate} Hz, live (level {result.level})")
        print(f"detection delay: {result.delay_s:.3f} s look-ahead (+ up to one block of {result.block_size} samples)")
        print(f"{len(result.points)} live points (index: time s, detected at s):")
        for p in result.points:
            print(f"  {p.index:3d}: {p.time_s:8.2f}  detected at {p.detected_at_s:8.2f}")
        shown = ", ".join(f"{t:.2f}" for t in offline.inflection_times[:40])
        more = " ..." if len(offline.inflection_times) > 40 else ""
        print(f"{len(offline.inflection_points)} offline points (s): {shown}{more}")
        a = result.agreement()
        summary = (
            f"agreement within {a['tolerance_s']:g} s: {a['matched']} matched of "
            f"{a['live']} live and {a['offline']} offline points (the start and the end left out)"
        )
        if a["live"] and a["offline"]:
            summary += f" (precision {a['precision']:.2f}, recall {a['recall']:.2f})"
        if a["median_abs_difference_s"] is not None:
            median, p95 = a["median_abs_difference_s"], a["p95_abs_difference_s"]
            summary += f", |time difference| median {median:.3f} s, p95 {p95:.3f} s"
        if a["median_delay_s"] is not None:
            summary += f"; delay median {a['median_delay_s']:.3f} s, p95 {a['p95_delay_s']:.3f} s"
        print(summary)
        for label, path in (("json", args.json), ("plot", args.plot)):
            if path:
                print(f"{label}: {path}")
    return 0
