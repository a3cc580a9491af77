"""Export a BigGAN-deep generator to ONNX, check it against PyTorch, then write it.

The graph is written to a temporary file beside the output, checked with ONNX Runtime
against pytorch-pretrained-biggan's own forward on random inputs (batches 1, 5 and 3,
truncations 0.4, 0.58 and 1.0, one-hot and mixed class vectors, a batch mixing two
truncations), and renamed onto the output only when it is within tolerance:
fp32 within 2 uint8 levels of `clip((x + 1) / 2 * 256, 0, 255)`, fp16 finite with a PSNR of
at least 35 dB against it.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from pytorch_pretrained_biggan import BigGAN

from ganterp_fast import __version__
from ganterp_fast.engine.backends.onnxruntime_generator import (
    FORMAT_VERSION,
    INPUT_NAMES,
    META_PREFIX,
    N_STATS,
    NUM_CLASSES,
    OUTPUT_NAME,
    Z_DIM,
    truncation_weights,
)
from ganterp_fast.engine.errors import InputError, ModelError

from .checkpoint import (
    PRETRAINED_NAMES,
    LoadedModel,
    describe,
    load_source,
    read_config,
    resolution_of,
    state_dict_sha256,
)
from .graph import PRECISIONS, ExportableBigGAN
from .metadata import write_metadata
from .random_weights import make_random_biggan

log = logging.getLogger(__name__)

FP32_MAX_LEVELS = 2.0  # uint8 levels
FP16_MIN_PSNR_DB = 35.0
WEIGHTS_CHOICES = (None, "random")
# Parity cases: (batch, truncation(s), mixed class vectors?)
_PARITY_CASES: tuple[tuple[int, tuple[float, ...], bool], ...] = (
    (1, (0.4,), False),
    (5, (0.58,), True),
    (3, (1.0,), True),
    (2, (0.4, 0.73), True),
)
_PARITY_SEED = 1234


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
) -> ExportReport:
    """Export `source` (a pretrained name or checkpoint directory) to the ONNX file `output`.

    `weights="random"` replaces the weights with seeded random ones (`seed`) in the source's
    architecture: a name's resolution (or `resolution`), or a directory's config.json. Raises
    `ModelError` when loading, exporting or the parity check fails; nothing is written then.
    """
    started = time.perf_counter()
    if precision == "int8":
        return _export_int8(
            source, output, opset=opset, weights=weights, seed=seed, resolution=resolution, check=check, started=started
        )
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: use one of {', '.join([*PRECISIONS, 'int8'])}")
    if weights not in WEIGHTS_CHOICES:
        raise InputError(f"weights {weights!r}: use 'random' or leave it unset for the source's own weights")
    if opset is not None and (not isinstance(opset, int) or opset < 18):
        raise InputError(f"opset {opset!r}: the exporter writes opset 18 or newer")
    loaded = _random_source(source, seed, resolution) if weights == "random" else load_source(source)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        log.info("exporting %s (%d px, %s) to %s", loaded.name, loaded.resolution, precision, output)
        graph = ExportableBigGAN(loaded.model, precision=precision).eval()
        used_opset = _torch_export(graph, temporary, opset)
        metadata = _metadata(loaded, precision, used_opset)
        parity: dict[str, float] | None = None
        if check:
            log.info("checking the export against PyTorch")
            parity = check_parity(loaded.model, temporary, precision=precision)
            metadata.update(
                {
                    META_PREFIX + "parity_max_abs_diff": f"{parity['max_abs_diff']:.4f}",
                    META_PREFIX + "parity_mean_abs_diff": f"{parity['mean_abs_diff']:.4f}",
                    META_PREFIX + "parity_psnr_db": f"{parity['psnr_db']:.2f}",
                    META_PREFIX + "parity_cases": _cases_text(),
                }
            )
        else:
            metadata[META_PREFIX + "parity_max_abs_diff"] = "unchecked"
        write_metadata(temporary, metadata)
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
    )
    log.info("wrote %s (%.1f MB) in %.1f s", output, report.size_bytes / 1e6, report.seconds)
    return report


def _export_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    opset: int | None,
    weights: str | None,
    seed: int,
    resolution: int | None,
    check: bool,
    started: float,
) -> ExportReport:
    """fp32 export (parity-checked), then int8 static quantisation behind its PSNR gate."""
    from .quantize import quantize_int8

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fp32 = output.with_name(f".{output.name}.{os.getpid()}.fp32.partial")
    try:
        base = export_model(
            source, fp32, precision="fp32", opset=opset, weights=weights, seed=seed, resolution=resolution, check=check
        )
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
    )


def _random_source(source: str | os.PathLike[str], seed: int, resolution: int | None) -> LoadedModel:
    """Random weights in the architecture a name (or a checkpoint directory's config) describes."""
    text = os.fspath(source)
    if text in PRETRAINED_NAMES:
        named = int(text.rsplit("-", 1)[1])
        if resolution is not None and resolution != named:
            raise InputError(f"resolution {resolution} contradicts {text}")
        model = make_random_biggan(named, seed=seed)
        base = text
    elif Path(text).is_dir() and (Path(text) / "config.json").is_file():
        config = read_config(Path(text) / "config.json")
        model = make_random_biggan(config=config, seed=seed)
        base = f"biggan-deep-{resolution_of(config)}-cw{config.channel_width}"
    else:
        raise InputError(
            f"random weights need an architecture: a name ({', '.join(PRETRAINED_NAMES)}) "
            f"or a checkpoint directory with a config.json, not {text!r}"
        )
    arch = describe(model.config)
    return LoadedModel(
        model,
        f"{base}-random-seed{seed}",
        f"random:{base}:seed={seed}",
        state_dict_sha256(model.state_dict()),
        arch["resolution"],
    )


def _torch_export(graph: ExportableBigGAN, path: Path, opset: int | None) -> int:
    """torch.onnx.export (the dynamo exporter) with a dynamic batch axis; returns the opset."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = _inputs(2, (0.5,), mixed=True, generator=np.random.default_rng(0))
    args = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # "torchvision is not installed" is noise here
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
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
            program.save(str(path))
    except Exception as exc:  # the exporter raises many types
        raise ModelError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        registry_log.setLevel(level)
    model = onnx.load(str(path), load_external_data=False)
    return int(next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")))


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


def _cases_text() -> str:
    return "; ".join(f"batch {b} t={'/'.join(map(str, t))}{' mixed' if m else ''}" for b, t, m in _PARITY_CASES)


def _inputs(
    batch: int, truncations: tuple[float, ...], *, mixed: bool, generator: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random graph inputs: truncated noise scaled per sample, one-hot or mixed classes."""
    per_sample = np.array([truncations[i % len(truncations)] for i in range(batch)], dtype=np.float64)
    noise = generator.standard_normal((batch, Z_DIM))
    while (outside := np.abs(noise) > 2.0).any():
        noise[outside] = generator.standard_normal(int(outside.sum()))
    classes = np.zeros((batch, NUM_CLASSES))
    for row in range(batch):
        picks = generator.choice(NUM_CLASSES, size=2, replace=False)
        if mixed:
            share = generator.uniform(0.2, 0.8)
            classes[row, picks[0]], classes[row, picks[1]] = share, 1.0 - share
        else:
            classes[row, picks[0]] = 1.0
    return {
        "z": (noise * per_sample[:, None]).astype(np.float32),
        "class_vector": classes.astype(np.float32),
        "truncation_weights": truncation_weights(per_sample).astype(np.float32),
        "_truncation": per_sample,
    }


def reference_frames(model: BigGAN, z: np.ndarray, class_vector: np.ndarray, truncation: float) -> np.ndarray:
    """pytorch-pretrained-biggan's output as float `clip((x + 1) / 2 * 256, 0, 255)`, NHWC."""
    with torch.no_grad():
        image = model(torch.from_numpy(z), torch.from_numpy(class_vector), float(truncation))
    return torch.clamp((image.float() + 1.0) / 2.0 * 256.0, 0.0, 255.0).permute(0, 2, 3, 1).numpy()


def _with_tanh_output(model: onnx.ModelProto, precision: str) -> tuple[onnx.ModelProto, str]:
    """The model with the last Tanh's output (the image before the uint8 cast) also returned."""
    tanh = [node for node in model.graph.node if node.op_type == "Tanh"]
    if not tanh:
        raise ModelError("the exported graph has no Tanh node: unexpected graph structure")
    name = tanh[-1].output[0]
    elem = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return model, name


def check_parity(model: BigGAN, onnx_path: Path, *, precision: str) -> dict[str, float]:
    """Compare the ONNX model (ONNX Runtime, CPU) with PyTorch; raise `ModelError` outside tolerance."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    probe, probe_name = _with_tanh_output(onnx.load(str(onnx_path)), precision)
    session = ort.InferenceSession(probe.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    del probe
    generator = np.random.default_rng(_PARITY_SEED)
    errors: list[np.ndarray] = []
    for batch, truncations, mixed in _PARITY_CASES:
        feeds = _inputs(batch, truncations, mixed=mixed, generator=generator)
        per_sample = feeds.pop("_truncation")
        frames, activations = session.run([OUTPUT_NAME, probe_name], feeds)
        if not np.isfinite(activations).all():
            raise ModelError(
                f"export check failed: the {precision} graph produces NaN or infinity "
                f"(batch {batch}, truncation {truncations}); export fp32 instead"
            )
        frames = frames.astype(np.float64)
        reference = np.concatenate(
            [
                reference_frames(model, feeds["z"][i : i + 1], feeds["class_vector"][i : i + 1], per_sample[i])
                for i in range(batch)
            ]
        ).astype(np.float64)
        if not np.isfinite(reference).all():
            raise ModelError("the PyTorch reference itself produces NaN or infinity: the weights are broken")
        errors.append((frames - reference).ravel())
    diff = np.concatenate(errors)
    mse = float(np.mean(diff**2))
    figures = {
        "max_abs_diff": float(np.max(np.abs(diff))),
        "mean_abs_diff": float(np.mean(np.abs(diff))),
        "psnr_db": 10.0 * math.log10(255.0**2 / mse) if mse > 0 else float("inf"),
    }
    log.info(
        "parity (%s): max %.2f levels, mean %.3f, PSNR %.1f dB",
        precision,
        figures["max_abs_diff"],
        figures["mean_abs_diff"],
        figures["psnr_db"],
    )
    if precision == "fp32" and figures["max_abs_diff"] > FP32_MAX_LEVELS:
        raise ModelError(
            f"export parity check failed: the fp32 graph differs from PyTorch by up to "
            f"{figures['max_abs_diff']:.2f} uint8 levels (tolerance {FP32_MAX_LEVELS:g}; "
            f"PSNR {figures['psnr_db']:.1f} dB)"
        )
    if precision == "fp16" and not figures["psnr_db"] >= FP16_MIN_PSNR_DB:
        raise ModelError(
            f"export parity check failed: the fp16 graph reaches only {figures['psnr_db']:.1f} dB "
            f"PSNR against PyTorch (needs {FP16_MIN_PSNR_DB:g} dB; max diff "
            f"{figures['max_abs_diff']:.0f} levels); export fp32 instead"
        )
    return figures
