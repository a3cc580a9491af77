"""`ganterp-fast inspect MODEL [--json PATH]`: what the engine sees in a model, ours or foreign."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ganterp_fast.cli.flags import add_options
from ganterp_fast.engine.errors import GanterpError, InputError, ModelError
from ganterp_fast.engine.options import ModelOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "inspect",
        help="show a model's inputs, roles, sizes, FLOPs and the backends that run it here",
        description="What the engine sees in an .onnx generator (a ganterp-fast export or any ONNX image "
        "generator): inputs and outputs, the roles assigned, latent size, classes (0: unconditional), "
        "resolution, value range, precision, FLOPs per image counted from the graph, and which backends "
        "and precisions can run it on this machine. An upscaler for --upscaler is described too: its "
        "factor, input and output, and FLOPs per frame.",
    )
    parser.add_argument("model", metavar="MODEL", help="an .onnx file")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH ('-': standard output)")
    add_options(parser, ModelOptions, ("model_inputs", "model_range"))
    add_common_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganterp_fast.engine.backends.hub import ready_model

    options = ModelOptions(model=args.model, model_inputs=args.model_inputs, model_range=args.model_range)
    path = ready_model(args.model)  # a local .onnx, or one from the Hub (hf:OWNER/REPO/FILE.onnx)
    if path is None:
        raise InputError(f"inspect reads an .onnx file, got {args.model!r}; export a model name first")
    report = _describe(path, options)
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return 0
    if args.json:
        target = Path(args.json)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
        temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    print(text(report) if report["kind"] != "upscaler" else upscaler_text(report))
    return 0


def _describe(path: Path, options: ModelOptions) -> dict[str, Any]:
    """The generator's report; a graph that is no generator but an upscaler (--upscaler) gets the upscaler's."""
    from ganterp_fast.engine.backends.describe import describe_model
    from ganterp_fast.engine.backends.roles import parse_inputs
    from ganterp_fast.engine.backends.upscaler_graph import describe_upscaler

    try:
        return describe_model(path, inputs=parse_inputs(options.model_inputs), value_range=options.model_range)
    except ModelError as not_a_generator:
        try:
            report = describe_upscaler(path)
        except GanterpError:
            raise not_a_generator from None
        return {**report, "path": os.fspath(report["path"])}


def upscaler_text(report: dict[str, Any]) -> str:
    """An upscaler's report as lines for a terminal."""
    fixed = report["fixed_input"]
    gflop = report["gflop_per_frame"]
    return "\n".join(
        [
            f"{report['path']}: upscaler (--upscaler), x{report['factor']}",
            f"  input:       {report['input']}" + (f" (fixed {fixed[0]} x {fixed[1]}: run in tiles)" if fixed else ""),
            f"  output:      {report['output']}",
            f"  frames:      {report['frame'][0]} x {report['frame'][1]} -> "
            f"{report['upscaled'][0]} x {report['upscaled'][1]}",
            f"  FLOPs:       {'unknown' if gflop is None else f'{gflop:g} GFLOP'} per {report['frame'][0]} px frame",
        ]
    )


def text(report: dict[str, Any]) -> str:
    """The report as lines for a terminal."""

    def tensor(item: dict[str, Any]) -> str:
        dims = ", ".join("N" if dim is None else str(dim) for dim in item["shape"])
        return f"{item['name']} {item['dtype']} [{dims}]"

    roles = ", ".join(f"{role}={name}" for role, name in report["roles"].items() if name) or "none"
    runs = ", ".join(f"{r['backend']} {r['device']} {r['precision']}" for r in report["runs_here"]) or "none here"
    lines = [
        f"{report['model']}: {report['kind']}",
        f"  inputs:      {'; '.join(tensor(item) for item in report['inputs'])}",
        f"  outputs:     {'; '.join(tensor(item) for item in report['outputs'])}",
        f"  roles:       {roles}; image output {report['output']['name']} ({report['output']['layout']}, "
        f"{report['output']['dtype']})",
        f"  latent size: {report['z_dim']}",
        f"  classes:     {report['num_classes']}{' (unconditional)' if not report['num_classes'] else ''}",
        f"  resolution:  {report['height']} x {report['width']} (H x W)",
        f"  value range: {report['value_range']}",
        f"  precision:   {report['precision']}",
        f"  FLOPs:       {report['gflops_per_image']:g} GFLOP per image"
        + (f" ({report['uncounted_nodes']} nodes of unknown shape left out)" if report["uncounted_nodes"] else ""),
        f"  runs here:   {runs}",
    ]
    return "\n".join(lines)
