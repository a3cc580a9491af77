"""bf16 on the CPU: the same `.onnx` export through OpenVINO's CPU plugin, behind the generator interface.

```python
g = OpenVinoGenerator("model.onnx", precision="bf16")   # native bf16 CPUs (AVX512-BF16, AMX)
frames = g(z, class_vectors, truncation=0.4)            # uint8 [B, H, W, 3], as Generator
gate = quality_gate("model.onnx", g)                    # PSNR and max error vs ONNX Runtime fp32
```

ONNX Runtime's CPU provider has no bf16 kernels on x86 (it widens to fp32), so bf16 on the
CPU means OpenVINO. Three things sit here:

- The capability check: bf16 is native where OpenVINO lists `BF16` in the CPU's
  OPTIMIZATION_CAPABILITIES and /proc/cpuinfo shows `avx512_bf16` or `amx_bf16`. Elsewhere
  OpenVINO emulates it, slower than fp32, so it is refused. Tests pass a `Bf16Capability`
  (or a cpuinfo text) instead of reading the machine's.
- The generator: `INFERENCE_PRECISION_HINT` always explicit (the plugin's default is bf16
  wherever the CPU has it), compiled models cached under the project's cache directory
  (`OpenVINO CACHE_DIR`, one folder per model file and precision, rebuilt when an entry
  will not load), inputs prepared by `Generator.prepare` exactly as ONNX Runtime's.
- The quality gate: the first time a model runs in bf16 on a kind of CPU, its frames on
  held-out latents are compared with the same model's ONNX Runtime fp32 frames; the
  figures are stored under the cache keyed by the model file's sha256, the CPU kind and
  the OpenVINO version, and a model below `GATE_PSNR_DB` is refused.

Never imports torch; imports openvino only when a generator is built or a capability read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.contract import INPUT_WIDTHS, META_PREFIX, NUM_CLASSES, OUTPUT_NAME, Z_DIM
from ganterp_fast.engine.backends.onnxruntime_generator import Generator, check_metadata, read_metadata
from ganterp_fast.engine.backends.providers import physical_cores, usable_cpus
from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError

log = logging.getLogger(__name__)

# OpenVINO's names for the engine's precisions.
PRECISION_HINTS = {"bf16": "bf16", "fp32": "f32"}
# The /proc/cpuinfo flags of native bf16 arithmetic: AVX512-BF16 (dot products) and AMX (tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_CPUS = (
    "Intel Xeon with AMX (4th generation 'Sapphire Rapids' and newer) or AVX512-BF16 (Cooper Lake), "
    "AMD Zen 4 and newer (EPYC 9004, Ryzen 7000)"
)
# The gate: frames within 35 dB of fp32 are indistinguishable in an H.264 video at crf 18.
GATE_PSNR_DB = 35.0
GATE_SEED = 20261201  # held-out latents: no render draws from this seed
GATE_TRUNCATIONS = (0.2, 0.3, 0.4, 0.4, 0.5, 0.6, 0.8, 1.0)  # the range users pick, 0.4 (the default) twice
GATE_BATCH = 4  # the CPU render's batch: the gate reuses its compiled model
GATE_FORMAT = "1"
# The generator's own compile settings; the choice measured in benchmarks/bench_bf16.py.
PERFORMANCE_HINT = "LATENCY"
# Static shapes run faster than OpenVINO's dynamic batch: one compiled model per batch size kept
# (the render's steady batch and the gate's); a batch of at least half a compiled one runs padded in it.
COMPILED_BATCHES_KEPT = 3
CPUINFO_ENV = "GANTERP_CPUINFO"  # a cpuinfo file read instead of /proc/cpuinfo (tests)


def import_openvino() -> Any:
    """The openvino module, or `MissingExtraError` naming the extra that brings it."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingExtraError("bf16 on the CPU (OpenVINO)", "cpu") from exc
    return openvino


# ----------------------------------------------------------------------------------------
# Capability


@dataclass(frozen=True)
class Bf16Capability:
    """What this CPU offers for bf16: the flags, OpenVINO's view, and whether it is native."""

    cpu_model: str
    cpu_flags: tuple[str, ...]  # the BF16_CPU_FLAGS present
    openvino_version: str | None  # None: openvino is not installed
    openvino_capabilities: tuple[str, ...]

    @property
    def native(self) -> bool:
        """bf16 arithmetic in hardware, and an OpenVINO that uses it."""
        return bool(self.cpu_flags) and "BF16" in self.openvino_capabilities

    @property
    def kind(self) -> str:
        """The CPU kind the quality gate is stored for: model name and bf16 flags."""
        return f"{self.cpu_model} [{'+'.join(self.cpu_flags) or 'no bf16'}]"

    def describe(self) -> str:
        flags = ", ".join(self.cpu_flags) or "neither avx512_bf16 nor amx_bf16"
        return f"{self.cpu_model} ({flags})"


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(model name, the bf16 flags present) from /proc/cpuinfo's text."""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    name = model.group(1).strip() if model else (platform.processor() or platform.machine() or "unknown CPU")
    return name, tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def _read_cpuinfo() -> str:
    path = os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo"
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def bf16_capability(
    *, cpuinfo: str | None = None, openvino_capabilities: Sequence[str] | None = None
) -> Bf16Capability:
    """This machine's bf16 capability; `cpuinfo` / `openvino_capabilities` replace what is read (tests)."""
    if cpuinfo is None and openvino_capabilities is None:
        return _machine_capability()
    return _capability(cpuinfo if cpuinfo is not None else _read_cpuinfo(), openvino_capabilities)


@functools.lru_cache(maxsize=1)
def _machine_capability() -> Bf16Capability:
    return _capability(_read_cpuinfo(), None)


def _capability(cpuinfo: str, openvino_capabilities: Sequence[str] | None) -> Bf16Capability:
    model, flags = parse_cpuinfo(cpuinfo)
    version = None
    try:
        ov = import_openvino()
        version = ov.__version__
        if openvino_capabilities is None:
            openvino_capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except MissingExtraError:
        openvino_capabilities = openvino_capabilities or ()
    return Bf16Capability(model, flags, version, tuple(openvino_capabilities))


def require_native_bf16(capability: Bf16Capability | None = None) -> Bf16Capability:
    """The capability when bf16 is native here; `InputError` (or `MissingExtraError`) otherwise."""
    capability = capability or bf16_capability()
    if capability.openvino_version is None:
        raise MissingExtraError("--precision bf16 (OpenVINO)", "cpu")
    if not capability.native:
        why = (
            "OpenVINO does not list BF16 for it"
            if capability.cpu_flags
            else "it has neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo"
        )
        raise InputError(
            f"--precision bf16 needs a CPU with native bf16, and this one ({capability.cpu_model}) has none: {why} "
            f"(emulated bf16 is slower than fp32). CPUs that have it: {BF16_CPUS}. Use --precision fp32 or auto here"
        )
    return capability


# ----------------------------------------------------------------------------------------
# The generator


def _threads(threads: int | None) -> int:
    limit = usable_cpus()
    if threads is not None and (not isinstance(threads, int) or not 1 <= threads <= max(limit, physical_cores())):
        raise InputError(f"threads {threads!r}: use 1 to {limit} (the CPUs here), or leave it unset for one per core")
    return threads or physical_cores()


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a model file, computed once per file version in a process."""
    stat = Path(path).stat()
    return _sha256(os.fspath(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def openvino_cache_root() -> Path:
    """Where compiled models and gate figures live: `<cache_dir>/openvino`."""
    from ganterp_fast.engine.backends.models import cache_dir

    return cache_dir() / "openvino"


class OpenVinoGenerator:
    """BigGAN frames from latents through OpenVINO's CPU plugin, in bf16 (or f32 for comparisons).

    Same interface as `Generator`: `resolution`, `precision`, `device`, `providers`,
    `metadata`, `threads`, and `__call__(z, class_vectors, truncation)` -> uint8 NHWC.
    One call at a time per instance. `cache=False` compiles without the model cache;
    `first_batch` is the batch size compiled up front (others are compiled when first met).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        precision: str = "bf16",
        threads: int | None = None,
        cache: bool = True,
        capability: Bf16Capability | None = None,
        performance_hint: str = PERFORMANCE_HINT,
        config: dict[str, Any] | None = None,
        first_batch: int = 4,
    ) -> None:
        if precision not in PRECISION_HINTS:
            raise InputError(f"OpenVINO precision {precision!r}: use one of {', '.join(PRECISION_HINTS)}")
        ov = import_openvino()
        if precision == "bf16":
            capability = require_native_bf16(capability)
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InputError(
                f"model file {self.model_path} does not exist; pass an .onnx made by 'ganterp-fast export'"
            )
        self._metadata = read_metadata(self.model_path)
        check_metadata(self._metadata, self.model_path)
        exported = self._metadata.get(META_PREFIX + "precision", "fp32")
        if exported != "fp32":
            raise InputError(
                f"{self.model_path} is an {exported} export; OpenVINO {precision} reads the fp32 export "
                f"(ganterp-fast export MODEL -o model.onnx --precision fp32)"
            )
        self._resolution = int(self._metadata[META_PREFIX + "resolution"])
        self._precision = precision
        self._threads = _threads(threads)
        self._config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
            "INFERENCE_NUM_THREADS": self._threads,
            "PERFORMANCE_HINT": performance_hint,
            **(config or {}),
        }
        self._cache_dir: Path | None = None
        if cache:
            self._cache_dir = openvino_cache_root() / "compiled" / f"{model_sha256(self.model_path)[:20]}-{precision}"
        self._ov = ov
        self._model: Any = None
        self._compiled: OrderedDict[int, Any] = OrderedDict()  # batch size -> infer request
        started = time.perf_counter()
        self._request_for(first_batch)
        self.compile_seconds = time.perf_counter() - started
        log.info(
            "generator %s: %d px on cpu through OpenVINO %s (%s, %d threads, %s; compiled in %.2f s%s)",
            self.model_path.name,
            self._resolution,
            ov.__version__,
            precision,
            self._threads,
            performance_hint,
            self.compile_seconds,
            f", cache {self._cache_dir}" if self._cache_dir else "",
        )

    def _request_for(self, batch: int) -> tuple[int, Any]:
        """(compiled batch size, its infer request) for `batch` rows: the smallest compiled size that holds them
        at no more than twice the work (a render's short last batch), else one compiled for `batch`."""
        fits = [size for size in self._compiled if batch <= size <= 2 * batch]
        if fits:
            size = min(fits)
            self._compiled.move_to_end(size)
            return size, self._compiled[size]
        if self._model is None:
            self._model = self._ov.Core().read_model(os.fspath(self.model_path))
        self._model.reshape({name: [batch, width] for name, width in INPUT_WIDTHS.items()})
        request = self._compile(self._ov).create_infer_request()
        self._compiled[batch] = request
        while len(self._compiled) > COMPILED_BATCHES_KEPT:
            self._compiled.popitem(last=False)
        return batch, request

    def _compile(self, ov: Any) -> Any:
        core = ov.Core()
        if self._cache_dir is None:
            return self._compile_with(core, self._config)
        try:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot use the OpenVINO cache %s (%s); compiling without it", self._cache_dir, exc)
            return self._compile_with(core, self._config)
        config = {**self._config, "CACHE_DIR": os.fspath(self._cache_dir)}
        try:
            return self._compile_with(core, config)
        except ModelError as exc:
            # A cache entry that will not load (a truncated or damaged blob): drop it and build it again.
            log.warning("OpenVINO cache %s did not load (%s); rebuilding it", self._cache_dir, exc)
            for entry in self._cache_dir.iterdir():
                if entry.is_file():
                    entry.unlink(missing_ok=True)
            return self._compile_with(ov.Core(), config)

    def _compile_with(self, core: Any, config: dict[str, Any]) -> Any:
        try:
            return core.compile_model(self._model, "CPU", config)
        except Exception as exc:  # openvino raises plain RuntimeErrors
            reason = " ".join(str(exc).split())[:300]
            raise ModelError(f"OpenVINO cannot compile {self.model_path}: {reason}") from exc

    # -- properties -----------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        """Side of the square frames in pixels."""
        return self._resolution

    @property
    def precision(self) -> str:
        """What the convolutions compute in: "bf16" (or "fp32")."""
        return self._precision

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's metadata."""
        return dict(self._metadata)

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def providers(self) -> list[str]:
        return [f"OpenVINO CPU {self._precision}"]

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def cuda_graph(self) -> bool:
        return False

    # -- running --------------------------------------------------------------------------

    def __call__(
        self, z: np.ndarray, class_vectors: np.ndarray, truncation: float | Sequence[float] | np.ndarray = 0.4
    ) -> np.ndarray:
        """Frames uint8 [B, H, W, 3]; the inputs mean what they mean for `Generator`."""
        feeds = Generator.prepare(z, class_vectors, truncation)
        batch = feeds["z"].shape[0]
        if batch == 0:
            return np.zeros((0, self._resolution, self._resolution, 3), dtype=np.uint8)
        size, request = self._request_for(batch)
        if size > batch:  # a short batch (a render's last) runs padded: samples do not see each other
            feeds = {
                name: np.concatenate([array, np.repeat(array[-1:], size - batch, 0)]) for name, array in feeds.items()
            }
        try:
            results = request.infer(feeds)
        except Exception as exc:
            raise ModelError(f"OpenVINO failed on {self.model_path.name}: {' '.join(str(exc).split())[:300]}") from exc
        return np.array(results[OUTPUT_NAME][:batch], dtype=np.uint8, copy=True)


# ----------------------------------------------------------------------------------------
# The quality gate


@dataclass(frozen=True)
class GateResult:
    """A model's figures in `precision` against its own ONNX Runtime fp32 frames, on held-out latents."""

    precision: str
    psnr_db: float  # over all held-out frames
    worst_frame_psnr_db: float
    max_abs_error: int  # uint8 levels
    mean_abs_error: float
    threshold_db: float
    passed: bool
    samples: int
    model_sha256: str
    cpu: str
    openvino: str
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.precision} vs ONNX Runtime fp32 on {self.samples} held-out latents: "
            f"PSNR {self.psnr_db:.1f} dB (worst frame {self.worst_frame_psnr_db:.1f} dB, "
            f"gate {self.threshold_db:g} dB), "
            f"max error {self.max_abs_error} levels, mean {self.mean_abs_error:.2f}"
        )


def gate_latents(samples: int = len(GATE_TRUNCATIONS)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out (z, class vectors, truncations): truncated noise, two-class mixes, GATE_TRUNCATIONS."""
    rng = np.random.default_rng(GATE_SEED)
    truncations = np.resize(np.asarray(GATE_TRUNCATIONS, dtype=np.float64), samples)
    z = np.clip(rng.standard_normal((samples, Z_DIM)), -2, 2) * truncations[:, None]
    classes = np.zeros((samples, NUM_CLASSES), dtype=np.float32)
    for row in range(samples):
        a, b = rng.choice(NUM_CLASSES, 2, replace=False)
        share = rng.uniform(0.5, 1.0)
        classes[row, a] += share
        classes[row, b] += 1.0 - share
    return z.astype(np.float32), classes, truncations


def _psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def gate_path(model_path: str | os.PathLike[str], precision: str, capability: Bf16Capability) -> Path:
    """Where a model's gate figures are stored: keyed by file hash, precision, CPU kind and OpenVINO version."""
    key = hashlib.sha256(f"{capability.kind}|{capability.openvino_version}".encode()).hexdigest()[:12]
    return openvino_cache_root() / "gates" / f"{model_sha256(model_path)[:20]}-{precision}-{key}.json"


def stored_gate(
    model_path: str | os.PathLike[str], precision: str = "bf16", *, capability: Bf16Capability | None = None
) -> GateResult | None:
    """The stored gate figures of a model on this kind of CPU, or None when it was never measured here."""
    capability = capability or bf16_capability()
    path = gate_path(model_path, precision, capability)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != GATE_FORMAT:
            return None
        result = GateResult(**record["result"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    expected = (model_sha256(model_path), capability.kind, capability.openvino_version, precision)
    if (result.model_sha256, result.cpu, result.openvino, result.precision) != expected:
        return None
    return result


def measure_gate(
    model_path: str | os.PathLike[str],
    candidate: Callable[..., np.ndarray],
    *,
    precision: str = "bf16",
    reference: Callable[..., np.ndarray] | None = None,
    capability: Bf16Capability | None = None,
    threads: int | None = None,
    threshold_db: float = GATE_PSNR_DB,
) -> GateResult:
    """Compare `candidate`'s frames with the fp32 reference (ONNX Runtime on the same file) on held-out latents."""
    capability = capability or bf16_capability()
    started = time.perf_counter()
    z, classes, truncations = gate_latents()
    if reference is None:
        reference = Generator(model_path, device="cpu", threads=threads)

    def frames_of(generator: Callable[..., np.ndarray]) -> np.ndarray:
        return np.concatenate(
            [
                generator(
                    z[i : i + GATE_BATCH], classes[i : i + GATE_BATCH], truncation=truncations[i : i + GATE_BATCH]
                )
                for i in range(0, len(z), GATE_BATCH)
            ]
        ).astype(np.float64)

    expected = frames_of(reference)
    frames = frames_of(candidate)
    if frames.shape != expected.shape:
        raise ModelError(f"{precision} frames have shape {frames.shape}, fp32 frames {expected.shape}")
    error = frames - expected
    per_frame = np.mean(error.reshape(len(z), -1) ** 2, axis=1)
    psnr = _psnr(float(per_frame.mean()))
    return GateResult(
        precision=precision,
        psnr_db=round(psnr, 2) if math.isfinite(psnr) else 99.0,
        worst_frame_psnr_db=round(min(_psnr(float(m)) if m > 0 else 99.0 for m in per_frame), 2),
        max_abs_error=int(np.abs(error).max()),
        mean_abs_error=round(float(np.abs(error).mean()), 3),
        threshold_db=threshold_db,
        passed=bool(psnr >= threshold_db),
        samples=len(z),
        model_sha256=model_sha256(model_path),
        cpu=capability.kind,
        openvino=str(capability.openvino_version),
        seconds=round(time.perf_counter() - started, 2),
    )


def store_gate(model_path: str | os.PathLike[str], result: GateResult, capability: Bf16Capability) -> Path:
    """Write the figures atomically beside the compiled-model cache."""
    path = gate_path(model_path, result.precision, capability)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    record = {"format": GATE_FORMAT, "model": os.fspath(model_path), "result": asdict(result)}
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)
    return path


def quality_gate(
    model_path: str | os.PathLike[str],
    candidate: Callable[..., np.ndarray] | None = None,
    *,
    precision: str = "bf16",
    capability: Bf16Capability | None = None,
    threads: int | None = None,
) -> GateResult:
    """The model's gate figures on this CPU kind: stored ones, else measured once (with `candidate`) and stored.

    `candidate` is the generator being gated (an `OpenVinoGenerator`, or any stand-in);
    without one, an `OpenVinoGenerator` of the model is built. For `bench` and `-v`.
    """
    capability = capability or bf16_capability()
    result = stored_gate(model_path, precision, capability=capability)
    if result is not None:
        return result
    if candidate is None:
        candidate = OpenVinoGenerator(model_path, precision=precision, threads=threads, capability=capability)
    result = measure_gate(model_path, candidate, precision=precision, capability=capability, threads=threads)
    try:
        store_gate(model_path, result, capability)
    except OSError as exc:
        log.warning("cannot store the %s gate figures of %s: %s", precision, model_path, exc)
    log.debug("quality gate measured for %s: %s", Path(model_path).name, result.describe())
    return result


def gate_refusal(model_path: str | os.PathLike[str], result: GateResult) -> ModelError:
    """The error for a model that failed its gate: the figures, and the advice to use fp32."""
    return ModelError(
        f"{Path(model_path).name} fails the {result.precision} quality gate on this CPU: {result.describe()}; "
        f"render it with --precision fp32 (exact), or auto (which falls back to fp32 for it)"
    )
