"""`ganterp-fast bench [MODEL ...]`: generator throughput on this machine's CPU or GPU."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ganterp_fast.cli.flags import add_options, from_args
from ganterp_fast.engine.backends.bench import BenchOptions
from ganterp_fast.engine.options import ModelOptions


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bench` subcommand."""
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "bench",
        help="measure generator throughput (images/s) on this machine's CPU or GPU",
        description=(
            "Measure the generator: images/s (median of timed calls after warm-up), latency p50/p95\n"
            "per batch, the providers that ran, and the share of the machine's GEMM peak measured in\n"
            "the same run. Prints a Markdown table; --json writes every figure with versions and settings."
        ),
        epilog=(
            "examples:\n"
            "  ganterp-fast bench model.onnx --device cpu --batch-sizes 1,4\n"
            "  ganterp-fast bench --resolutions 128,256,512 --device cuda:0 --batch-sizes 1,4,16,64 --json gpu.json\n"
            "  ganterp-fast bench model-fp16.onnx --device cuda --cuda-graph"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "models",
        metavar="MODEL",
        nargs="*",
        help="an exported .onnx (no PyTorch needed), or biggan-deep-128|256|512 or a checkpoint "
        "directory (exported once into the cache; needs the [export] extra)",
    )
    parser.add_argument(
        "--resolutions",
        metavar="LIST",
        help="also (or, with no MODEL, only) BigGAN-deep with seeded random weights at these sizes, "
        "e.g. 128,256,512 (default without MODEL: 128)",
    )
    add_options(parser, ModelOptions, ("weights", "device", "precision"))
    parser.add_argument(
        "--batch-sizes",
        metavar="LIST",
        help="comma-separated batch sizes (default: 1,2,4,8 on the CPU, 1,4,16,64 on CUDA)",
    )
    add_options(parser, BenchOptions, ("seconds",))
    add_options(parser, ModelOptions, ("threads", "cuda_graph", "tensorrt"))
    parser.add_argument("--no-peak", action="store_true", help="skip the GEMM peak measurement")
    parser.add_argument("--json", metavar="PATH", help="write every figure, the versions, date and settings as JSON")
    parser.add_argument("-y", "--overwrite", action="store_true", help="replace the --json file if it exists")
    add_common_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ganterp_fast.engine.backends.bench import DEFAULT_BATCHES, RESOLUTIONS, bench, markdown, parse_int_list
    from ganterp_fast.engine.files import atomic_output, check_output

    model = from_args(ModelOptions, args)  # the flags bench shares with render, checked by the same rules
    batches = (
        parse_int_list(args.batch_sizes, what="--batch-sizes", example=",".join(map(str, DEFAULT_BATCHES["cuda"])))
        if args.batch_sizes is not None
        else ()
    )
    resolutions = (
        parse_int_list(args.resolutions, what="--resolutions", example="128,256,512", allowed=RESOLUTIONS)
        if args.resolutions is not None
        else ()
    )
    options = BenchOptions(
        device=model.device,
        precision=model.precision,
        batch_sizes=batches,
        seconds=args.seconds,
        threads=model.threads,
        cuda_graph=model.cuda_graph,
        tensorrt=model.tensorrt,
        weights=model.weights,
        peak=not args.no_peak,
    )
    if args.json:
        check_output(args.json, overwrite=args.overwrite)
    if not args.models and not resolutions:
        resolutions = (128,)

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    report = bench(args.models, options, resolutions=resolutions, progress=progress)
    print(markdown(report))
    if args.json:
        with atomic_output(args.json, overwrite=args.overwrite) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if any(model["best_batch_size"] is not None for model in report["models"]) else 1
