"""`ganterp-fast export MODEL -o OUT.onnx`: BigGAN-deep to ONNX, checked against PyTorch."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganterp_fast.cli.flags import add_options, from_args
from ganterp_fast.engine.backends.contract import EXPORT_PRECISIONS
from ganterp_fast.engine.errors import InputError, MissingExtraError
from ganterp_fast.engine.fields import Options, option, optional, whole


@dataclass(frozen=True)
class ExportFlags(Options):
    """The numeric flags of `export`, checked before PyTorch is imported."""

    opset: int | None = option(
        None,
        flag="--opset",
        parse=int,
        check=optional(whole(18, note="the exporter writes opset 18 or newer")),
        help="ONNX opset (18 or newer; default: the exporter's)",
    )
    seed: int = option(0, flag="--seed", check=whole(0), help="seed of --weights random")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `export` subcommand."""
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "export",
        help="export BigGAN-deep to an ONNX model (needs the [export] extra)",
        description=(
            "Export a BigGAN-deep generator to ONNX: dynamic batch, truncation as a run-time input, "
            "uint8 frames out. The export is checked against PyTorch before it is written."
        ),
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="biggan-deep-128, biggan-deep-256, biggan-deep-512 (downloaded once), or a "
        "checkpoint directory holding config.json and pytorch_model.bin",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.onnx", help="file to write")
    parser.add_argument(
        "--precision",
        choices=EXPORT_PRECISIONS,
        default="fp32",
        help="fp32 for CPUs, fp16 for GPUs, int8 for CPUs with VNNI (quantised, gated at 40 dB PSNR against fp32) "
        "(default: %(default)s)",
    )
    add_options(parser, ExportFlags, ("opset",))
    parser.add_argument(
        "--weights",
        choices=("random",),
        default=None,
        help="seeded random weights in MODEL's architecture (tests, benchmarks, offline try-outs)",
    )
    add_options(parser, ExportFlags, ("seed",))
    parser.add_argument("-y", "--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    add_common_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export, then print a short summary (file, size, parity figures, time)."""
    flags = from_args(ExportFlags, args)  # before PyTorch is imported
    output: Path = args.output
    if output.suffix.lower() != ".onnx":
        raise InputError(f"output {output} should end in .onnx")
    if output.exists() and not args.overwrite:
        raise InputError(f"{output} exists; pass --overwrite (-y) to replace it")
    try:
        export = importlib.import_module("ganterp_fast.export")
    except ImportError as exc:
        raise MissingExtraError("exporting a model", "export") from exc
    started = time.perf_counter()
    report = export.export_model(
        args.model, output, precision=args.precision, opset=flags.opset, weights=args.weights, seed=flags.seed
    )
    if not args.quiet:
        parity = (
            f"max {report.max_abs_diff:.2f} uint8 levels, mean {report.mean_abs_diff:.3f}, PSNR {report.psnr_db:.1f} dB"
            if report.max_abs_diff is not None
            else "not checked"
        )
        print(
            f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB): {report.model_name}, "
            f"{report.resolution} px, {report.precision}, opset {report.opset}",
            file=sys.stdout,
        )
        against = "fp32 (int8 quality gate)" if report.precision == "int8" else "PyTorch"
        print(f"parity vs {against}: {parity}; {time.perf_counter() - started:.1f} s", file=sys.stdout)
    return 0
