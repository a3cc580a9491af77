"""Export a BigGAN-deep generator to ONNX, check it against PyTorch, then write it.

The graph is exported in memory, checked with ONNX Runtime against pytorch-pretrained-biggan's
own forward (`parity.check_parity`), stamped with its metadata and written to a temporary file
beside the output, renamed onto it only when it is within tolerance. Each step (weights,
export, parity, save) is reported to an optional progress callback with an ETA.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from ganterp_fast import __version__
from ganterp_fast.engine.backends.contract import (
    FORMAT_VERSION,
    INPUT_NAMES,
    META_PREFIX,
    N_STATS,
    NUM_CLASSES,
    OUTPUT_NAME,
    PRETRAINED_NAMES,
    Z_DIM,
)
from ganterp_fast.engine.backends.preparation import ModelProgress, Preparation
from ganterp_fast.engine.errors import InputError, ModelError

from .checkpoint import (
    DEFAULT_CHANNEL_WIDTH,
    LoadedModel,
    load_source,
    read_config,
    resolution_of,
)
from .graph import PRECISIONS, ExportableBigGAN
from .metadata import stamp
from .parity import PARITY_CASES, check_parity, sample_inputs
from .random_weights import random_source

log = logging.getLogger(__name__)

WEIGHTS_CHOICES = (None, "random")
# torch.onnx's TorchScript exporter writes this graph in a few seconds, the dynamo exporter
# (torch.export, decompositions, onnxscript's optimiser) in 5 to 10 times as long; the
# dynamo exporter is used only for the opsets the TorchScript one does not write.
TORCHSCRIPT_MAX_OPSET = 20
DEFAULT_OPSET = 20
# Expected seconds per step for biggan-deep-128 (channel width 128, fp32) on a quiet 2-core
# AMD EPYC; other sizes scale by their compute (`_COMPUTE`) or parameters (channel width^2).
# Only the ETA uses them, rescaled by how fast the finished steps ran.
_PLAN_128 = {"weights": 3.0, "export": 3.0, "parity": 3.0, "save": 1.0, "quantize": 120.0}
_LOAD_SECONDS_PER_GB = 5.0
_COMPUTE = {128: 1.0, 256: 77.7 / 22.6, 512: 151.5 / 22.6}  # GFLOP per image against 128 px


@dataclass(frozen=True)
class ExportReport:
    """What `export_model` wrote and how closely it matches PyTorch."""

    path: Path
    model_name: str
    source: str
    resolution: int
    precision: str
    opset: int
    weights_sha256: str
    size_bytes: int
    max_abs_diff: float | None  # uint8 levels against the PyTorch reference
    mean_abs_diff: float | None
    psnr_db: float | None
    seconds: float
    metadata: dict[str, str] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)  # seconds of each step (weights, export, ...)


def export_model(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    opset: int | None = None,
    weights: str | None = None,
    seed: int = 0,
    resolution: int | None = None,
    check: bool = True,
    progress: Callable[[ModelProgress], None] | Preparation | None = None,
) -> ExportReport:
    """Export `source` (a pretrained name or checkpoint directory) to the ONNX file `output`.

    `weights="random"` replaces the weights with seeded random ones (`seed`) in the source's
    architecture: a name's resolution (or `resolution`), or a directory's config.json. Raises
    `ModelError` when loading, exporting or the parity check fails; nothing is written then.
    `progress` gets each step with an ETA (`ModelProgress`). A `Preparation` passed instead is
    left running after the last step for its owner to finish (`models.resolve_model` adds the
    cache's bookkeeping to the last step that way).
    """
    if precision not in (*PRECISIONS, "int8"):
        raise InputError(f"precision {precision!r}: use one of {', '.join([*PRECISIONS, 'int8'])}")
    if weights not in WEIGHTS_CHOICES:
        raise InputError(f"weights {weights!r}: use 'random' or leave it unset for the source's own weights")
    if opset is not None and (not isinstance(opset, int) or opset < 18):
        raise InputError(f"opset {opset!r}: the exporter writes opset 18 or newer")
    steps = progress if isinstance(progress, Preparation) else Preparation(progress)
    owned = steps is not progress
    if not steps.plan:
        steps.plan = preparation_plan(source, precision=precision, weights=weights, resolution=resolution, check=check)
    if precision == "int8":
        report = _export_int8(
            source, output, opset=opset, weights=weights, seed=seed, resolution=resolution, check=check, steps=steps
        )
    else:
        report = _export_float(
            source,
            Path(output),
            precision,
            opset=opset,
            weights=weights,
            seed=seed,
            resolution=resolution,
            check=check,
            steps=steps,
        )
    if owned:
        steps.finish()
    return report


def _export_float(
    source: str | os.PathLike[str],
    output: Path,
    precision: str,
    *,
    opset: int | None,
    weights: str | None,
    seed: int,
    resolution: int | None,
    check: bool,
    steps: Preparation,
) -> ExportReport:
    started = time.perf_counter()
    text = os.fspath(source)
    if weights == "random":
        steps.begin("weights", f"seeded random weights in the architecture of {text} (seed {seed})")
        loaded = random_source(source, seed=seed, resolution=resolution)
    else:
        steps.begin("weights", f"loading the weights of {text}")
        loaded = load_source(source)
    used_opset = opset or DEFAULT_OPSET
    exporter = "TorchScript" if used_opset <= TORCHSCRIPT_MAX_OPSET else "dynamo"
    steps.begin("export", f"{loaded.name} to ONNX ({precision}, opset {used_opset}, {exporter} exporter)")
    log.info("exporting %s (%d px, %s) to %s", loaded.name, loaded.resolution, precision, output)
    graph = ExportableBigGAN(loaded.model, precision=precision).eval()
    model = _torch_export(graph, used_opset, loaded.resolution)
    del graph
    metadata = _metadata(loaded, precision, used_opset)
    parity: dict[str, float] | None = None
    if check:
        steps.begin("parity", f"checking the export against PyTorch ({PARITY_CASES})")
        parity = check_parity(loaded.model, model, precision=precision)
        metadata.update(
            {
                META_PREFIX + "parity_max_abs_diff": f"{parity['max_abs_diff']:.4f}",
                META_PREFIX + "parity_mean_abs_diff": f"{parity['mean_abs_diff']:.4f}",
                META_PREFIX + "parity_psnr_db": f"{parity['psnr_db']:.2f}",
                META_PREFIX + "parity_cases": PARITY_CASES,
            }
        )
    else:
        metadata[META_PREFIX + "parity_max_abs_diff"] = "unchecked"
    steps.begin("save", f"writing {output}")
    stamp(model, metadata)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        onnx.save(model, os.fspath(temporary))
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    report = ExportReport(
        path=output,
        model_name=loaded.name,
        source=loaded.source,
        resolution=loaded.resolution,
        precision=precision,
        opset=used_opset,
        weights_sha256=loaded.weights_sha256,
        size_bytes=output.stat().st_size,
        max_abs_diff=parity["max_abs_diff"] if parity else None,
        mean_abs_diff=parity["mean_abs_diff"] if parity else None,
        psnr_db=parity["psnr_db"] if parity else None,
        seconds=time.perf_counter() - started,
        metadata=metadata,
        steps=dict(steps.times),
    )
    log.info("wrote %s (%.1f MB) in %.1f s", output, report.size_bytes / 1e6, report.seconds)
    return report


def preparation_plan(
    source: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    weights: str | None = None,
    resolution: int | None = None,
    check: bool = True,
) -> list[tuple[str, float]]:
    """The steps of `export_model` with their expected seconds on the reference machine (for the ETA)."""
    text = os.fspath(source)
    size, width = resolution or 128, DEFAULT_CHANNEL_WIDTH
    weights_file: Path | None = None
    if text in PRETRAINED_NAMES:
        size = int(text.rsplit("-", 1)[1])
    elif Path(text).is_dir():
        try:
            config = read_config(Path(text) / "config.json")
            size, width = resolution_of(config), int(config.channel_width)
        except ModelError:  # export_model reports it
            pass
        weights_file = Path(text) / "pytorch_model.bin"
    compute = _COMPUTE.get(size, 1.0) * (width / DEFAULT_CHANNEL_WIDTH) ** 2
    params = (width / DEFAULT_CHANNEL_WIDTH) ** 2
    if weights == "random":
        load = _PLAN_128["weights"] * compute
    elif weights_file is not None and weights_file.is_file():
        load = _LOAD_SECONDS_PER_GB * weights_file.stat().st_size / 1e9
    else:
        load = _LOAD_SECONDS_PER_GB * 0.25 * params  # a pretrained name's download is not foreseeable
    plan = [("weights", load), ("export", _PLAN_128["export"] * params)]
    if check:
        plan.append(("parity", _PLAN_128["parity"] * compute))
    plan.append(("save", _PLAN_128["save"] * params))
    if precision == "int8":
        plan.append(("quantize", _PLAN_128["quantize"] * compute))
    return plan


def _export_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    opset: int | None,
    weights: str | None,
    seed: int,
    resolution: int | None,
    check: bool,
    steps: Preparation,
) -> ExportReport:
    """fp32 export (parity-checked), then int8 static quantisation behind its PSNR gate."""
    from .quantize import quantize_int8

    started = time.perf_counter()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fp32 = output.with_name(f".{output.name}.{os.getpid()}.fp32.partial")
    try:
        base = _export_float(
            source,
            fp32,
            "fp32",
            opset=opset,
            weights=weights,
            seed=seed,
            resolution=resolution,
            check=check,
            steps=steps,
        )
        steps.begin("quantize", "int8 static quantisation behind its quality gate")
        quantized = quantize_int8(fp32, output, seed=seed)
    finally:
        fp32.unlink(missing_ok=True)
    metadata = dict(quantized.metadata)
    return ExportReport(
        path=output,
        model_name=base.model_name,
        source=base.source,
        resolution=base.resolution,
        precision="int8",
        opset=base.opset,
        weights_sha256=base.weights_sha256,
        size_bytes=output.stat().st_size,
        max_abs_diff=quantized.max_abs_diff,
        mean_abs_diff=quantized.mean_abs_diff,
        psnr_db=quantized.psnr_db,
        seconds=time.perf_counter() - started,
        metadata=metadata,
        steps=dict(steps.times),
    )


def _torch_export(graph: ExportableBigGAN, opset: int, resolution: int) -> onnx.ModelProto:
    """The graph as an ONNX model in memory, with a dynamic batch axis and static frame sizes."""
    example = sample_inputs((0.5, 0.5), (True, True), generator=np.random.default_rng(0))
    args = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # "torchvision is not installed" is noise here
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if opset <= TORCHSCRIPT_MAX_OPSET:
                buffer = io.BytesIO()
                torch.onnx.export(
                    graph,
                    args,
                    buffer,
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(INPUT_NAMES),
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
                    do_constant_folding=True,
                )
                model = onnx.load_from_string(buffer.getvalue())
            else:
                batch = torch.export.Dim("batch", min=1, max=4096)
                program = torch.onnx.export(
                    graph,
                    args,
                    dynamo=True,
                    opset_version=opset,
                    input_names=list(INPUT_NAMES),
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
                    optimize=True,
                    verbose=False,
                )
                model = program.model_proto
    except Exception as exc:  # the exporter raises many types
        raise ModelError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        registry_log.setLevel(level)
    frames = model.graph.output[0].type.tensor_type.shape
    for axis, size in ((1, resolution), (2, resolution), (3, 3)):
        frames.dim[axis].Clear()
        frames.dim[axis].dim_value = size
    return model


def _metadata(loaded: LoadedModel, precision: str, opset: int) -> dict[str, str]:
    config = loaded.model.config
    return {
        META_PREFIX + "format_version": FORMAT_VERSION,
        META_PREFIX + "model": "biggan-deep",
        META_PREFIX + "model_name": loaded.name,
        META_PREFIX + "resolution": str(loaded.resolution),
        META_PREFIX + "channel_width": str(int(config.channel_width)),
        META_PREFIX + "precision": precision,
        META_PREFIX + "source": loaded.source,
        META_PREFIX + "weights_sha256": loaded.weights_sha256,
        META_PREFIX + "exporter_version": __version__,
        META_PREFIX + "torch_version": torch.__version__,
        META_PREFIX + "opset": str(opset),
        META_PREFIX + "inputs": ",".join(INPUT_NAMES),
        META_PREFIX + "outputs": OUTPUT_NAME,
        META_PREFIX + "z_dim": str(Z_DIM),
        META_PREFIX + "num_classes": str(NUM_CLASSES),
        META_PREFIX + "n_stats": str(N_STATS),
        META_PREFIX + "truncation_input": "truncation_weights [batch, 51]: reference batch-norm row mixing weights",
    }
