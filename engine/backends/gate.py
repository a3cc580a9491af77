"""The quality gate of a generator that is not exact (OpenVINO bf16): its frames against ONNX Runtime fp32.

The first time a model runs in bf16 on a kind of CPU, its frames on held-out latents are
compared with the same model's ONNX Runtime fp32 frames (an upscaler's, on sample frames:
`upscaler`); the figures are stored under the
cache keyed by the model file's sha256, the CPU kind and the OpenVINO version, and a model
below `GATE_PSNR_DB` is refused. The gate takes the generator it gates as an argument, so it
imports no backend but the reference's (ONNX Runtime, when the figures are measured).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ganterp_fast.engine.backends.capability import Bf16Capability, bf16_capability
from ganterp_fast.engine.backends.contract import NUM_CLASSES, TRUNCNORM_BOUND, Z_DIM, psnr
from ganterp_fast.engine.cache import cache_dir, file_sha256
from ganterp_fast.engine.errors import ModelError

log = logging.getLogger(__name__)

# The gate: frames within 35 dB of fp32 are indistinguishable in an H.264 video at crf 18.
GATE_PSNR_DB = 35.0
GATE_SEED = 20261201  # held-out latents: no render draws from this seed
GATE_TRUNCATIONS = (0.2, 0.3, 0.4, 0.4, 0.5, 0.6, 0.8, 1.0)  # the range users pick, 0.4 (the default) twice
GATE_BATCH = 4  # the CPU render's batch: the gate reuses its compiled model
GATE_FORMAT = "1"


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # the cache key only: a file written again is hashed again
    return file_sha256(Path(path))


def model_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a model file, computed once per file version in a process."""
    stat = Path(path).stat()
    return _sha256(os.fspath(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def openvino_cache_root() -> Path:
    """Where compiled models and gate figures live: `<cache_dir>/openvino`."""
    return cache_dir() / "openvino"


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


def gate_latents(
    samples: int = len(GATE_TRUNCATIONS), *, z_dim: int = Z_DIM, num_classes: int = NUM_CLASSES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out (z, class vectors, truncations): truncated noise, two-class mixes, GATE_TRUNCATIONS
    (a model's own latent and class widths; one-hot classes for a one-class model, none for an unconditional one)."""
    rng = np.random.default_rng(GATE_SEED)
    truncations = np.resize(np.asarray(GATE_TRUNCATIONS, dtype=np.float64), samples)
    # Clipped, not redrawn as a render's truncated normal is: the stored figures (and README's) are
    # measured on these latents, and a redraw would shift every later draw of the seed.
    z = np.clip(rng.standard_normal((samples, z_dim)), -TRUNCNORM_BOUND, TRUNCNORM_BOUND) * truncations[:, None]
    classes = np.zeros((samples, num_classes), dtype=np.float32)
    classes[:, :1] = 1.0 if num_classes == 1 else 0.0
    for row in range(samples if num_classes > 1 else 0):
        a, b = rng.choice(num_classes, 2, replace=False)
        share = rng.uniform(0.5, 1.0)
        classes[row, a] += share
        classes[row, b] += 1.0 - share
    return z.astype(np.float32), classes, truncations


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
    capability: Bf16Capability | None = None,
    threads: int | None = None,
    threshold_db: float = GATE_PSNR_DB,
) -> GateResult:
    """Compare `candidate`'s frames with the fp32 reference (ONNX Runtime on the same file) on held-out latents."""
    capability = capability or bf16_capability()
    started = time.perf_counter()
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator

    reference = Generator(model_path, device="cpu", threads=threads)
    z, classes, truncations = gate_latents(z_dim=reference.z_dim, num_classes=reference.num_classes)

    def frames_of(generator: Callable[..., np.ndarray]) -> np.ndarray:
        return np.concatenate(
            [
                generator(
                    z[i : i + GATE_BATCH], classes[i : i + GATE_BATCH], truncation=truncations[i : i + GATE_BATCH]
                )
                for i in range(0, len(z), GATE_BATCH)
            ]
        ).astype(np.float64)

    expected, frames = frames_of(reference), frames_of(candidate)
    figures = {"precision": precision, "capability": capability, "threshold_db": threshold_db, "since": started}
    return compare_frames(model_path, expected, frames, **figures)


def compare_frames(
    model_path: str | os.PathLike[str],
    expected: np.ndarray,
    frames: np.ndarray,
    *,
    precision: str,
    capability: Bf16Capability,
    threshold_db: float = GATE_PSNR_DB,
    since: float | None = None,
) -> GateResult:
    """The gate figures of `frames` against the fp32 reference's `expected` (uint8 [N, ...] each):
    PSNR over all and of the worst frame, the largest and mean error. `since`: when the measurement began."""
    if frames.shape != expected.shape:
        raise ModelError(f"{precision} frames have shape {frames.shape}, fp32 frames {expected.shape}")
    error = frames.astype(np.float64) - expected.astype(np.float64)
    per_frame = np.mean(error.reshape(len(error), -1) ** 2, axis=1)
    overall = psnr(float(per_frame.mean()))
    return GateResult(
        precision=precision,
        psnr_db=round(overall, 2) if math.isfinite(overall) else 99.0,
        worst_frame_psnr_db=round(min(psnr(float(m)) if m > 0 else 99.0 for m in per_frame), 2),
        max_abs_error=int(np.abs(error).max()),
        mean_abs_error=round(float(np.abs(error).mean()), 3),
        threshold_db=threshold_db,
        passed=bool(overall >= threshold_db),
        samples=len(error),
        model_sha256=model_sha256(model_path),
        cpu=capability.kind,
        openvino=str(capability.openvino_version),
        seconds=round(time.perf_counter() - since, 2) if since is not None else 0.0,
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
    candidate: Callable[..., np.ndarray],
    *,
    precision: str = "bf16",
    capability: Bf16Capability | None = None,
    threads: int | None = None,
) -> GateResult:
    """The model's gate figures on this CPU kind: stored ones, else measured once (with `candidate`) and stored.

    `candidate` is the generator being gated (an `OpenVinoGenerator`, or any stand-in); it
    runs only where no figures are stored.
    """
    capability = capability or bf16_capability()
    return gated(
        model_path,
        lambda: measure_gate(model_path, candidate, precision=precision, capability=capability, threads=threads),
        precision=precision,
        capability=capability,
    )


def gated(
    model_path: str | os.PathLike[str],
    measure: Callable[[], GateResult],
    *,
    precision: str = "bf16",
    capability: Bf16Capability | None = None,
) -> GateResult:
    """The stored gate figures of the file at `model_path` (a generator or an upscaler) on this CPU
    kind, else `measure()`'s, stored for the next time."""
    capability = capability or bf16_capability()
    result = stored_gate(model_path, precision, capability=capability)
    if result is not None:
        return result
    result = measure()
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
