"""Generator throughput per device: images/s, latency, and the share of the machine's peak.

```python
from ganterp_fast.engine.backends.bench import BenchOptions, bench, markdown
report = bench(["model.onnx"], BenchOptions(device="cpu", batch_sizes=(1, 4)))
print(markdown(report))            # report is a plain dict: every figure, versions, settings
```

For each model and batch size: repeated timed calls after warm-up, for `seconds` each;
images/s from the median call, latency p50/p95 per batch, the providers that ran and the
best batch size. The peak it is compared with is measured in the same run, in the
precision that runs: numpy's sgemm for fp32 on the CPU, a one-MatMul model through the same
runtime for int8 (ONNX Runtime's MatMulInteger) and bf16 (OpenVINO), and an fp16 MatMul
through ONNX Runtime's CUDA provider on a GPU. Useful GFLOP per image is BigGAN-deep's own
work (3-channel last conv), so a rate above the graph's executed work is not counted.
Never imports torch; models named rather than given as `.onnx` are exported through the
model cache, which needs the `[export]` extra.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.contract import META_PREFIX, NUM_CLASSES, PRECISIONS, Z_DIM, parse_device
from ganterp_fast.engine.errors import GanterpError, InputError, MissingExtraError

log = logging.getLogger(__name__)

# Useful GFLOP (2 x multiply-adds) per image of full-size BigGAN-deep (channel_width 128)
# with the 3-channel last conv: convolutions, linears and attention, counted analytically.
GFLOP_PER_IMAGE = {128: 17.9, 256: 58.8, 512: 76.0}
FULL_CHANNEL_WIDTH = 128
RESOLUTIONS = tuple(GFLOP_PER_IMAGE)
DEFAULT_BATCHES = {"cpu": (1, 2, 4, 8), "cuda": (1, 4, 16, 64)}
WARMUP_CALLS = 2  # first calls choose kernels (cuDNN's search), allocate, capture CUDA graphs
MIN_RUNS = 3
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}  # square GEMM side: big enough to reach the machine's rate


@dataclass(frozen=True)
class BenchOptions:
    """What `bench` measures and how. `batch_sizes=()`: a default per device."""

    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"
    batch_sizes: tuple[int, ...] = ()
    seconds: float = 3.0  # timed calls per model and batch size, after warm-up
    threads: int | None = None  # CPU threads of the generator (None: one per physical core)
    cuda_graph: bool = False
    tensorrt: bool = False
    weights: str | None = None  # "random" for a model given by name or checkpoint
    truncation: float = 0.4
    seed: int = 0
    peak: bool = True  # measure the GEMM peak beside the models

    def __post_init__(self) -> None:
        parse_device(self.device)
        if self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        for batch in self.batch_sizes:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise InputError(f"batch size {batch!r}: use whole numbers of at least 1, e.g. 1,4,16,64")
        if not (isinstance(self.seconds, (int, float)) and 0 < self.seconds <= 3600):
            raise InputError(f"seconds {self.seconds!r}: use a number of seconds above 0, e.g. 3")
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


# ----------------------------------------------------------------------------------------
# The machine


def cpu_description() -> dict[str, Any]:
    """CPU model name, logical CPUs usable here, physical cores and the bf16/AMX/VNNI flags."""
    from ganterp_fast.engine.backends.providers import physical_cores, usable_cpus

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == (platform.processor() or platform.machine()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "name": name,
        "logical_cpus": usable_cpus(),
        "physical_cores": physical_cores(),
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
    }


def gpu_description(index: int = 0) -> dict[str, Any]:
    """The GPU's name, memory and driver (nvidia-smi), and the GPUs counted; {} without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [[part.strip() for part in line.split(",")] for line in text.splitlines() if line.count(",") >= 3]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:  # CUDA's index N is the N-th visible GPU
        order = [item.strip() for item in visible.split(",")]
        rows = [row for item in order for row in rows if row[0] == item]
    if not 0 <= index < len(rows):
        return {"gpus": len(rows)}
    _, name, memory, driver = rows[index][:4]
    return {"index": index, "name": name, "memory": memory, "driver": driver, "gpus": len(rows)}


def versions() -> dict[str, str]:
    """Python and the packages that decide the figures."""
    found = {"python": sys.version.split()[0]}
    for package in ("ganterp-fast", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "onnx", "torch"):
        try:
            found[package] = _metadata.version(package)
        except _metadata.PackageNotFoundError:
            continue
    return found


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError("benchmarking a model", "cpu") from exc
    return onnxruntime


# ----------------------------------------------------------------------------------------
# Timing


def time_calls(run: Callable[[], Any], *, seconds: float, warmup: int = WARMUP_CALLS) -> list[float]:
    """Seconds of each call of `run`, repeated for `seconds` (at least `MIN_RUNS` calls) after warm-up."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - began < seconds:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def rate_figures(times: Sequence[float], batch: int) -> dict[str, Any]:
    """images/s from the median call, latency p50/p95 in ms, and the window's own images/s."""
    median = statistics.median(times)
    return {
        "images_per_s": round(batch / median, 3),
        "latency_ms_p50": round(1000 * median, 3),
        "latency_ms_p95": round(1000 * float(np.percentile(times, 95)), 3),
        "images_per_s_window": round(batch * len(times) / sum(times), 3),
        "runs": len(times),
        "seconds": round(sum(times), 3),
    }


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


def latents(batch: int, *, seed: int, truncation: float) -> tuple[np.ndarray, np.ndarray]:
    """Truncated-normal z (scaled by the truncation, as a render's) and one-hot classes."""
    rng = np.random.default_rng(seed)
    z = (np.clip(rng.standard_normal((batch, Z_DIM)), -2, 2) * truncation).astype(np.float32)
    classes = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, batch)]
    return z, classes


# ----------------------------------------------------------------------------------------
# The peak: one GEMM in the precision that runs


def gemm_peak(
    kind: str, precision: str, *, device_id: int = 0, threads: int | None = None, seconds: float = 1.0
) -> dict[str, Any]:
    """The best GEMM rate (GFLOP/s, or GOP/s for int8) on this device in `precision`.

    The record names how it was measured; `gflops` is None with a `why` where it cannot be
    (the onnx package builds the int8 and CUDA models; OpenVINO runs bf16).
    """
    size = GEMM_SIZE["cuda" if kind == "cuda" else "cpu"]
    try:
        if kind == "cuda":
            run, how = _ort_matmul("fp16", size, device_id=device_id, threads=threads), "ONNX Runtime CUDA fp16 MatMul"
        elif precision == "int8":
            run, how = _ort_matmul("int8", size, threads=threads), "ONNX Runtime MatMulInteger (u8 x s8)"
        elif precision == "bf16":
            run, how = _openvino_matmul(size, threads=threads), "OpenVINO CPU MatMul, bf16 hint"
        else:
            run, how = _numpy_sgemm(size), "numpy sgemm (fp32)"
        times = time_calls(run, seconds=seconds, warmup=2)
    except ImportError as exc:
        return {"gflops": None, "precision": precision, "why": f"needs the {exc.name or exc} package to build the GEMM"}
    except Exception as exc:  # a runtime that cannot run the GEMM: the models' figures stand without it
        return {"gflops": None, "precision": precision, "why": " ".join(str(exc).split())[:200]}
    flop = 2.0 * size**3
    return {
        "gflops": round(flop / min(times) / 1e9, 1),
        "gflops_median": round(flop / statistics.median(times) / 1e9, 1),
        "method": how,
        "precision": "fp16" if kind == "cuda" else precision,
        "size": size,
        "runs": len(times),
    }


def peak_precision(kind: str, precision: str) -> str:
    """The GEMM precision a model's rate is compared with: fp16 on CUDA; on the CPU its own (fp16 runs as fp32)."""
    if kind == "cuda":
        return "fp16"
    return precision if precision in ("int8", "bf16") else "fp32"


def _numpy_sgemm(size: int) -> Callable[[], Any]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    return lambda: a @ b


def _ort_matmul(precision: str, size: int, *, device_id: int = 0, threads: int | None = None) -> Callable[[], Any]:
    """A one-node ONNX model (MatMul fp16, or MatMulInteger u8 x s8) run through ONNX Runtime."""
    from onnx import TensorProto, helper, numpy_helper

    from ganterp_fast.engine.backends.providers import CPU, CUDA, physical_cores, preload_cuda_libraries

    ort = _onnxruntime()
    rng = np.random.default_rng(0)
    if precision == "int8":
        a = rng.integers(0, 255, (size, size), dtype=np.uint8)
        b = rng.integers(-127, 127, (size, size), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        types = (TensorProto.UINT8, TensorProto.INT32)
    else:
        a = rng.standard_normal((size, size)).astype(np.float16)
        b = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float16)
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        types = (TensorProto.FLOAT16, TensorProto.FLOAT16)
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("a", types[0], [size, size])],
        [helper.make_tensor_value_info("c", types[1], [size, size])],
        initializer=[numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    if precision == "int8":
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[CPU])
        return lambda: session.run(None, {"a": a})
    preload_cuda_libraries(ort)
    session = ort.InferenceSession(
        model.SerializeToString(),
        options,
        providers=[CUDA],
        provider_options=[{"device_id": str(device_id)}],
    )
    if CUDA not in session.get_providers():
        raise MissingExtraError("the CUDA GEMM peak (the CUDA provider did not start)", "gpu")
    binding = session.io_binding()
    a_device = ort.OrtValue.ortvalue_from_numpy(a, "cuda", device_id)
    c_device = ort.OrtValue.ortvalue_from_shape_and_type([size, size], np.float16, "cuda", device_id)
    binding.bind_ortvalue_input("a", a_device)
    binding.bind_ortvalue_output("c", c_device)
    return lambda: session.run_with_iobinding(binding)  # synchronous: returns when the GPU is done


def _openvino_matmul(size: int, *, threads: int | None = None) -> Callable[[], Any]:
    """A one-MatMul OpenVINO model compiled for the CPU with the bf16 precision hint."""
    import openvino as ov
    from openvino import opset13

    from ganterp_fast.engine.backends.providers import physical_cores

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    parameter = opset13.parameter([size, size], ov.Type.f32, name="a")
    product = opset13.matmul(parameter, opset13.constant(b), False, False)
    model = ov.Model([product], [parameter], "gemm")
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": str(threads or physical_cores())},
    )
    request = compiled.create_infer_request()
    return lambda: request.infer({0: a})


# ----------------------------------------------------------------------------------------
# Models


def default_models(resolutions: Sequence[int]) -> list[str]:
    """The random-weights BigGAN-deep names of `resolutions`."""
    for resolution in resolutions:
        if resolution not in RESOLUTIONS:
            raise InputError(f"resolution {resolution}: use {', '.join(map(str, RESOLUTIONS))}")
    return [f"biggan-deep-{resolution}" for resolution in resolutions]


def _check_model(model: str, precision: str, weights: str | None, seed: int) -> None:
    """`InputError` for a model that is neither an existing .onnx, a pretrained name nor a checkpoint."""
    from ganterp_fast.engine.backends.models import cache_key

    if model.lower().endswith(".onnx"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise InputError(
                f"model file {path} does not exist; give an .onnx made by 'ganterp-fast export', "
                "a model name (biggan-deep-128|256|512) or a checkpoint directory"
            )
    else:
        cache_key(model, precision=precision, weights=weights, seed=seed)


def _resolve(model: str, precision: str, weights: str | None, seed: int) -> Path:
    """The .onnx of `model`: as given, or exported once into the cache."""
    from ganterp_fast.engine.backends.models import resolve_model

    if model.lower().endswith(".onnx"):
        return Path(model).expanduser()
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
    from ganterp_fast.engine.backends.onnxruntime_generator import read_metadata

    exported = read_metadata(path).get(META_PREFIX + "precision", "fp32")
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
    from ganterp_fast.engine.backends.choice import open_generator, quality_figures

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
    work = gflop_per_image(resolution, channel_width)
    points: list[dict[str, Any]] = []
    for batch in batches:
        progress(f"{path.name}: batch {batch}, {options.seconds:g} s")
        z, classes = latents(batch, seed=options.seed, truncation=options.truncation)
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
    from ganterp_fast.engine.backends.providers import plan_providers

    options = options or BenchOptions()
    say = progress or (lambda message: None)
    requests = [(os.fspath(model), options.weights) for model in models]
    requests += [(name, "random") for name in default_models(resolutions)]
    if not requests:
        raise InputError("no model to benchmark: give an .onnx, a model name, or resolutions (128, 256, 512)")
    kind, _ = parse_device(options.device)
    ort = _onnxruntime()
    plan = plan_providers(
        ort.get_available_providers(), device=options.device, tensorrt=options.tensorrt, threads=options.threads
    )
    precision = plan_precision(options.precision, plan.device)
    batches = options.batch_sizes or DEFAULT_BATCHES[plan.device]
    load_before = _load_average()
    began = time.perf_counter()
    for model, weights in requests:  # every model checked before any export
        _check_model(model, export_precision(precision), weights, options.seed)
    paths = []
    for model, weights in requests:
        if not model.lower().endswith(".onnx"):
            say(f"preparing {model} ({export_precision(precision)}; exported once, then cached)")
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
        "load_average_1min": {"before": load_before, "after": _load_average()},
        "seconds": round(time.perf_counter() - began, 1),
        "peaks": peaks,
        "models": results,
    }


# ----------------------------------------------------------------------------------------
# Reporting


def describe_device(report: dict[str, Any]) -> str:
    """One line: the CPU (and GPU) the figures were measured on."""
    cpu = report["device"]["cpu"]
    text = (
        f"{cpu['name']}, {cpu['logical_cpus']} CPUs ({cpu['physical_cores']} cores), "
        f"flags {' '.join(cpu['flags']) or 'none of ' + '/'.join(CPU_FLAGS[2:])}"
    )
    gpu = report["device"].get("gpu")
    if gpu is not None:
        if "name" in gpu:
            text = f"GPU {gpu['index']}: {gpu['name']} ({gpu['memory']}, driver {gpu['driver']}); host {text}"
        else:
            text = f"GPU (nvidia-smi not found: name unknown); host {text}"
    return text


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
