"""Generator throughput per device: images/s, latency, and the share of the machine's peak.

```python
from ganterp_fast.engine.backends.bench import BenchOptions, bench, markdown
report = bench(["model.onnx"], BenchOptions(device="cpu", batch_sizes=(1, 4)))
print(markdown(report))            # report is a plain dict: every figure, versions, settings
```

For each model and batch size: repeated timed calls after warm-up, for `seconds` each;
images/s from the median call, latency p50/p95 per batch, the providers that ran and the
best batch size. The peak it is compared with (`engine.backends.peak`) is measured in the
same run, in the precision that runs; the machine's description is `engine.backends.machine`'s.
Useful GFLOP per image is BigGAN-deep's own work (3-channel last conv), so a rate above the
graph's executed work is not counted. Never imports torch; models named rather than given
as `.onnx` are exported through the model cache, which needs the `[export]` extra.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.contract import (
    AUTO_BF16,
    META_PREFIX,
    NUM_CLASSES,
    PRECISIONS,
    Z_DIM,
    model_precision,
    parse_device,
    read_metadata,
    truncated_normal,
)
from ganterp_fast.engine.backends.describe import graph_gflop
from ganterp_fast.engine.backends.hub import ready_model
from ganterp_fast.engine.backends.machine import (
    cpu_description,
    describe_device,
    gpu_description,
    load_average,
    versions,
)
from ganterp_fast.engine.backends.peak import gemm_peak, peak_precision
from ganterp_fast.engine.backends.timing import rate_figures, time_calls
from ganterp_fast.engine.errors import GanterpError, InputError, MissingExtraError
from ganterp_fast.engine.fields import Options, option, real

log = logging.getLogger(__name__)

# Useful GFLOP (2 x multiply-adds) per image of full-size BigGAN-deep (channel_width 128)
# with the 3-channel last conv: convolutions, linears and attention, counted analytically.
GFLOP_PER_IMAGE = {128: 17.9, 256: 58.8, 512: 76.0}
FULL_CHANNEL_WIDTH = 128
RESOLUTIONS = tuple(GFLOP_PER_IMAGE)
DEFAULT_BATCHES = {"cpu": (1, 2, 4, 8), "cuda": (1, 4, 16, 64)}


@dataclass(frozen=True)
class BenchOptions(Options):
    """What `bench` measures and how. `batch_sizes=()`: a default per device."""

    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"
    batch_sizes: tuple[int, ...] = ()
    seconds: float = option(
        3.0,
        flag="--seconds",
        check=real(0, 3600, above=True, rule="must be a number of seconds above 0 and at most 3600, e.g. 3"),
        metavar="S",
        help="timed calls per model and batch size, after warm-up",
    )
    threads: int | None = None  # CPU threads of the generator (None: one per physical core)
    cuda_graph: bool = False
    tensorrt: bool = False
    weights: str | None = None  # "random" for a model given by name or checkpoint
    truncation: float = 0.4
    seed: int = 0
    peak: bool = True  # measure the GEMM peak beside the models

    def check_together(self) -> None:  # the fields without a declaration (seconds has one)
        parse_device(self.device)
        if self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        for batch in self.batch_sizes:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise InputError(f"batch size {batch!r}: use whole numbers of at least 1, e.g. 1,4,16,64")
        if self.weights not in (None, "random"):
            raise InputError(f"weights {self.weights!r}: use 'random' or leave it unset")


def parse_int_list(text: str, *, what: str, example: str, allowed: Sequence[int] | None = None) -> tuple[int, ...]:
    """ "1,4,16" -> (1, 4, 16); `InputError` naming `what` and what would work."""
    values: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1 or (allowed is not None and int(item) not in allowed):
            choices = f" from {', '.join(map(str, allowed))}" if allowed is not None else " of at least 1"
            raise InputError(f"{what} {text!r}: use comma-separated whole numbers{choices}, e.g. {example}")
        if int(item) not in values:
            values.append(int(item))
    return tuple(values)


def useful_figures(images_per_s: float, gflop_per_image: float | None, peak_gflops: float | None) -> dict[str, Any]:
    """Useful GFLOP/s of a rate, and its share of the peak (None where either is unknown)."""
    if gflop_per_image is None:
        return {"useful_gflops": None, "share_of_peak": None}
    useful = images_per_s * gflop_per_image
    share = round(useful / peak_gflops, 4) if peak_gflops else None
    return {"useful_gflops": round(useful, 1), "share_of_peak": share}


def gflop_per_image(resolution: int, channel_width: int | None) -> float | None:
    """Useful GFLOP per image of a full-size model; None for narrower test models."""
    if channel_width not in (None, FULL_CHANNEL_WIDTH):
        return None
    return GFLOP_PER_IMAGE.get(resolution)


def latents(
    batch: int, *, seed: int, truncation: float, z_dim: int = Z_DIM, num_classes: int = NUM_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Truncated-normal z (scaled by the truncation, as a render's) and one-hot classes (none: [batch, 0])."""
    rng = np.random.default_rng(seed)
    z = (truncated_normal(rng, (batch, z_dim)) * truncation).astype(np.float32)
    classes = np.eye(max(num_classes, 1), dtype=np.float32)[rng.integers(0, max(num_classes, 1), batch)]
    return z, classes[:, :num_classes]


# ----------------------------------------------------------------------------------------
# Models


def describe_precision(precision: str) -> str:
    """The planned precision in words, with the export it reads: "bf16, from its fp32 export"."""
    from ganterp_fast.engine.backends.choice import export_precision

    ran = "bf16 if it passes its quality gate, else fp32" if precision == AUTO_BF16 else precision
    read = export_precision(precision)
    return ran if read == ran else f"{ran}, from its {read} export"


def quality_figures(generator: Any) -> dict[str, Any] | None:
    """The stored quality-gate figures of a gated generator (OpenVINO bf16), for the report; else None."""
    gate = getattr(generator, "gate", None)
    return None if gate is None else asdict(gate)


def default_models(resolutions: Sequence[int]) -> list[str]:
    """The random-weights BigGAN-deep names of `resolutions`."""
    for resolution in resolutions:
        if resolution not in RESOLUTIONS:
            raise InputError(f"resolution {resolution}: use {', '.join(map(str, RESOLUTIONS))}")
    return [f"biggan-deep-{resolution}" for resolution in resolutions]


def _check_model(model: str, precision: str, weights: str | None, seed: int) -> None:
    """`InputError` for a model that is neither an existing .onnx, a pretrained name nor a checkpoint."""
    from ganterp_fast.engine.backends.models import cache_key

    if ready_model(model) is None:
        cache_key(model, precision=precision, weights=weights, seed=seed)


def _resolve(model: str, precision: str, weights: str | None, seed: int) -> Path:
    """The .onnx of `model`: as given, or exported once into the cache."""
    from ganterp_fast.engine.backends.models import resolve_model

    ready = ready_model(model)
    if ready is not None:
        return ready
    try:
        return resolve_model(model, precision=precision, weights=weights, seed=seed)
    except MissingExtraError as exc:
        error = MissingExtraError(f"benchmarking {model} (exported first)", "export")
        error.args = (
            f"{error}; or give a ready .onnx as MODEL, made where [export] is installed with: "
            f"ganterp-fast export {model} --weights random --precision {precision} -o model.onnx",
        )
        raise error from exc


def _check_precision(path: Path, requested: str) -> None:
    """A ready model runs in the precision it was exported in: refuse another one asked for."""
    exported = model_precision(read_metadata(path))
    if requested not in ("auto", exported) and not (requested == "bf16" and exported == "fp32"):
        raise InputError(
            f"--precision {requested} asked for, but {path} is a {exported} model; leave --precision at auto, "
            f"or export the model with --precision {requested}"
        )


def _bench_model(
    path: Path,
    options: BenchOptions,
    precision: str,
    batches: Sequence[int],
    peaks: dict[str, dict[str, Any]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    from ganterp_fast.engine.backends.choice import open_generator

    progress(f"opening {path.name}")
    started = time.perf_counter()
    generator = open_generator(
        path,
        device=options.device,
        precision=precision,
        threads=options.threads,
        tensorrt=options.tensorrt,
        cuda_graph=options.cuda_graph,
    )
    opened_s = time.perf_counter() - started
    meta = dict(getattr(generator, "metadata", {}) or {})
    width = meta.get(META_PREFIX + "channel_width")
    channel_width = int(width) if width and width.isdigit() else None
    resolution = int(generator.resolution)
    kind = "cuda" if str(generator.device).startswith("cuda") else "cpu"
    device_id = int(getattr(generator, "device_id", 0) or 0)
    ran_precision = str(getattr(generator, "precision", precision))
    peak_key = f"{kind}:{device_id}:{peak_precision(kind, ran_precision)}"
    if options.peak and peak_key not in peaks:
        progress(f"measuring the {peak_precision(kind, ran_precision)} GEMM peak on {kind}")
        peaks[peak_key] = gemm_peak(
            kind,
            peak_precision(kind, ran_precision),
            device_id=device_id,
            threads=options.threads,
            seconds=min(1.0, options.seconds),
        )
    peak = peaks.get(peak_key, {})
    foreign = getattr(generator, "roles", None) is not None  # a foreign graph: its FLOPs counted from the graph
    work = graph_gflop(generator.model_path) if foreign else gflop_per_image(resolution, channel_width)
    points: list[dict[str, Any]] = []
    for batch in batches:
        progress(f"{path.name}: batch {batch}, {options.seconds:g} s")
        widths = getattr(generator, "z_dim", Z_DIM), getattr(generator, "num_classes", NUM_CLASSES)
        z, classes = latents(
            batch, seed=options.seed, truncation=options.truncation, z_dim=widths[0], num_classes=widths[1]
        )
        try:
            times = time_calls(lambda: generator(z, classes, options.truncation), seconds=options.seconds)
        except GanterpError:
            raise
        except Exception as exc:  # out of memory at a large batch: record it, go on with the next
            points.append({"batch": batch, "error": " ".join(str(exc).split())[:300]})
            log.warning("%s: batch %d failed: %s", path.name, batch, points[-1]["error"])
            continue
        figures = rate_figures(times, batch)
        figures.update(useful_figures(figures["images_per_s"], work, peak.get("gflops")))
        points.append({"batch": batch, **figures})
    measured = [point for point in points if "images_per_s" in point]
    best = max(measured, key=lambda point: point["images_per_s"], default=None)
    return {
        "model": str(path),
        "name": meta.get(META_PREFIX + "model_name", path.stem),
        "resolution": resolution,
        "channel_width": channel_width,
        "precision": ran_precision,
        "device": kind if kind == "cpu" else f"cuda:{device_id}",
        "providers": list(generator.providers),
        "cuda_graph": bool(getattr(generator, "cuda_graph", False)),
        "tensorrt": "TensorrtExecutionProvider" in generator.providers,
        "threads": getattr(generator, "threads", None),
        "open_s": round(opened_s, 2),
        "quality_gate": quality_figures(generator),  # bf16: its PSNR against fp32, as stored; else None
        "gflop_per_image": work,
        "peak": peak_key if peak else None,
        "points": points,
        "best_batch_size": best["batch"] if best else None,
        "best_images_per_s": best["images_per_s"] if best else None,
    }


def bench(
    models: Sequence[str | os.PathLike[str]],
    options: BenchOptions | None = None,
    *,
    resolutions: Sequence[int] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure each model at each batch size on `options.device`; a JSON-ready record of everything.

    `models`: exported `.onnx` files, pretrained names or checkpoint directories (the last two
    exported once into the cache, with `options.weights`); `resolutions` adds BigGAN-deep of
    those sizes with seeded random weights. Raises `ProviderError` when the device is not
    there (checked before any export), `InputError` for a missing model.
    """
    from ganterp_fast.engine.backends.choice import export_precision, plan_precision
    from ganterp_fast.engine.backends.onnxruntime_generator import import_onnxruntime
    from ganterp_fast.engine.backends.providers import plan_providers

    options = options or BenchOptions()
    say = progress or (lambda message: None)
    requests = [(os.fspath(model), options.weights) for model in models]
    requests += [(name, "random") for name in default_models(resolutions)]
    if not requests:
        raise InputError("no model to benchmark: give an .onnx, a model name, or resolutions (128, 256, 512)")
    kind, _ = parse_device(options.device)
    ort = import_onnxruntime()
    plan = plan_providers(
        ort.get_available_providers(), device=options.device, tensorrt=options.tensorrt, threads=options.threads
    )
    precision = plan_precision(options.precision, plan.device)
    batches = options.batch_sizes or DEFAULT_BATCHES[plan.device]
    load_before = load_average()
    began = time.perf_counter()
    for model, weights in requests:  # every model checked before any export
        _check_model(model, export_precision(precision), weights, options.seed)
    paths = []
    for model, weights in requests:
        if ready_model(model) is None:
            say(f"preparing {model} ({describe_precision(precision)}; exported once, then cached)")
        paths.append(_resolve(model, export_precision(precision), weights, options.seed))
        _check_precision(paths[-1], options.precision)
    peaks: dict[str, dict[str, Any]] = {}
    results = [_bench_model(path, options, precision, batches, peaks, say) for path in paths]
    device: dict[str, Any] = {"cpu": cpu_description()}
    if plan.device == "cuda":
        device["gpu"] = gpu_description(plan.device_id)
    return {
        "benchmark": "ganterp-fast bench",
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {
            **asdict(options),
            "batch_sizes": list(batches),
            "resolutions": list(resolutions),
            "device_kind": kind,
            "planned": plan.device,
        },
        "device": device,
        "versions": versions(),
        "onnxruntime_providers_available": list(ort.get_available_providers()),
        "load_average_1min": {"before": load_before, "after": load_average()},
        "seconds": round(time.perf_counter() - began, 1),
        "peaks": peaks,
        "models": results,
    }


# ----------------------------------------------------------------------------------------
# Reporting


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the device, one row per model and batch size, the best batches, the peaks."""
    columns = ["model", "px", "precision", "device", "providers", "batch", "images/s", "p50 ms", "p95 ms"]
    columns += ["useful GFLOP/s", "share of peak"]
    lines = [
        f"ganterp-fast bench, {report['date']}: {describe_device(report)}; "
        f"load average {report['load_average_1min']['before']} before, {report['load_average_1min']['after']} after",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for model in report["models"]:
        providers = ", ".join(name.replace("ExecutionProvider", "") for name in model["providers"])
        if model["cuda_graph"]:
            providers += " + CUDA graphs"
        for point in model["points"]:
            cells = [model["name"], model["resolution"], model["precision"], model["device"], providers, point["batch"]]
            if "error" in point:
                cells += [f"failed: {point['error'][:80]}", "", "", "", ""]
            else:
                share = point["share_of_peak"]
                cells += [
                    f"{point['images_per_s']:.2f}",
                    f"{point['latency_ms_p50']:.1f}",
                    f"{point['latency_ms_p95']:.1f}",
                    "-" if point["useful_gflops"] is None else f"{point['useful_gflops']:.0f}",
                    "-" if share is None else f"{100 * share:.0f}%",
                ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines.append("")
    for model in report["models"]:
        if model["best_batch_size"] is not None:
            lines.append(
                f"best batch for {model['name']} ({model['resolution']} px, {model['precision']}): "
                f"{model['best_batch_size']} at {model['best_images_per_s']:.2f} images/s"
            )
    for model in report["models"]:
        gate = model.get("quality_gate")
        if gate:
            lines.append(
                f"{model['precision']} quality gate of {model['name']}: {gate.get('psnr_db', float('nan')):.1f} dB "
                f"against its fp32 frames (max error {gate.get('max_abs_error', '?')} levels)"
            )
    for key, peak in report["peaks"].items():
        if peak.get("gflops") is None:
            lines.append(f"peak {key}: not measured ({peak.get('why')})")
        else:
            unit = "GOP/s" if peak["precision"] == "int8" else "GFLOP/s"
            lines.append(
                f"peak {key}: {peak['gflops']:.0f} {unit}, {peak['method']} {peak['size']}x{peak['size']} (same run)"
            )
    if any(model["gflop_per_image"] is None for model in report["models"]):
        lines.append("useful GFLOP/s: full-size models only (17.9 / 58.8 / 76.0 GFLOP per image at 128 / 256 / 512)")
    return "\n".join(lines)
