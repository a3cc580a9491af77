"""`ganterp-fast analyze`: the audio analysis alone, as a summary, JSON or a plot."""

from __future__ import annotations

import argparse
import contextlib
import json

from ganterp_fast.cli.options import add_analysis_args, add_input_args, analysis_options, resolve_input
from ganterp_fast.engine.analysis import analyze
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.files import atomic_output, check_output, same_file
from ganterp_fast.engine.plot import plot_format


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.main import add_common_flags

    parser = subparsers.add_parser(
        "analyze",
        help="find the inflection points of an audio or video file",
        description=(
            "Run the GANterpretations analysis on channel 0 of INPUT at its own sample rate: "
            "spectrogram, total-variation distances, smoothed signal, inflection points, alphas."
        ),
    )
    add_input_args(parser)
    add_analysis_args(parser)
    out = parser.add_argument_group("outputs")
    out.add_argument("--json", metavar="PATH", help="write the full analysis as JSON")
    out.add_argument("--plot", metavar="PATH.png", help="draw spectrogram, signal with inflection points, and alphas")
    out.add_argument("-y", "--overwrite", action="store_true", help="replace existing output files")
    add_common_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = analysis_options(args)
    source = resolve_input(args)
    for path in (args.json, args.plot):
        if path:
            if same_file(path, source):
                raise InputError(f"output {path} is the input file: choose another name")
            check_output(path, overwrite=args.overwrite)
    if args.json and args.plot and same_file(args.json, args.plot):
        raise InputError(f"--json and --plot both name {args.json}: give them different names")
    if args.plot:
        plot_format(args.plot)
    result = analyze(source, options, keep_plot=bool(args.plot))
    # The plot is drawn while the JSON is still a temporary file: if drawing fails, neither is kept.
    json_output = atomic_output(args.json, overwrite=args.overwrite) if args.json else contextlib.nullcontext()
    with json_output as temporary:
        if temporary is not None:
            temporary.write_text(json.dumps(result.to_dict()), encoding="utf-8")
        if args.plot:
            from ganterp_fast.engine.plot import plot_analysis

            plot_analysis(result, args.plot, overwrite=args.overwrite)
    if not args.quiet:
        times = result.inflection_times
        shown = ", ".join(f"{t:.2f}" for t in times[:40]) + (" ..." if len(times) > 40 else "")
        print(
            f"{source}: {result.duration_s:.2f} s at {result.sample_rate} Hz, {result.num_columns} spectrogram columns"
        )
        print(f"{len(times)} inflection points (s): {shown}")
        for label, path in (("json", args.json), ("plot", args.plot)):
            if path:
                print(f"{label}: {path}")
    return 0
