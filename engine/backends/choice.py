"""Generator backends behind one small interface, and the choice between them.

A backend is any object with `resolution`, `precision`, `device`, `providers` and
`__call__(z, class_vectors, truncation=...) -> uint8 [B, H, W, 3]`. `open_generator` is the
one place that builds one for a model file; render jobs, workers and `bench` all call it.

Backends: ONNX Runtime (`engine.generator`: CPU fp32/int8, CUDA, TensorRT; the exact fp32
path) and OpenVINO's CPU plugin (`engine.openvino_backend`: bf16 on CPUs with AVX512-BF16
or AMX, behind a quality gate). `plan_precision` decides, from the request, the device and
the CPU's capability, before any model is exported; `open_generator` resolves the gate.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ganterp_fast.engine.backends.openvino_generator import Bf16Capability, bf16_capability, require_native_bf16
from ganterp_fast.engine.errors import InputError

log = logging.getLogger(__name__)


class FrameGenerator(Protocol):
    """What the render job needs of a generator (ONNX Runtime's, OpenVINO's, or a stand-in)."""

    @property
    def resolution(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def providers(self) -> list[str]: ...

    def __call__(self, z: np.ndarray, class_vector: np.ndarray, truncation: Any = 0.4) -> np.ndarray: ...


AUTO_BF16 = "auto-bf16"  # planned by "auto" on a native-bf16 CPU: bf16 if the model passes its gate, else fp32


def open_generator(
    model_path: str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    tensorrt: bool = False,
    cuda_graph: bool = False,
    capability: Bf16Capability | None = None,
) -> FrameGenerator:
    """The generator for an exported model in the planned `precision` (what `plan_precision` returned).

    "bf16": OpenVINO's CPU plugin, refused (`ModelError`, with the figures) when the model
    fails its quality gate on this CPU kind. `AUTO_BF16`: the same where the model is an
    fp32 export that passes its gate, ONNX Runtime fp32 otherwise. Anything else: ONNX
    Runtime (CPU, CUDA, TensorRT), the exact path. `capability` replaces this CPU's (tests).
    """
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator

    if precision in ("bf16", AUTO_BF16):
        generator = _open_bf16(model_path, precision, threads=threads, capability=capability)
        if generator is not None:
            return generator
        device = "cpu"
    return Generator(model_path, device=device, threads=threads, tensorrt=tensorrt, cuda_graph=cuda_graph)


def _open_bf16(
    model_path: str | os.PathLike[str], precision: str, *, threads: int | None, capability: Bf16Capability | None
) -> FrameGenerator | None:
    """The gated OpenVINO bf16 generator, or None where `AUTO_BF16` falls back to fp32."""
    from ganterp_fast.engine.backends.onnxruntime_generator import META_PREFIX, read_metadata
    from ganterp_fast.engine.backends.openvino_generator import (
        OpenVinoGenerator,
        gate_refusal,
        quality_gate,
        stored_gate,
    )

    auto = precision == AUTO_BF16
    if auto and read_metadata(model_path).get(META_PREFIX + "precision", "fp32") != "fp32":
        return None  # a ready fp16/int8 model runs as it was exported
    if auto:
        capability = capability or bf16_capability()
        if not capability.native:
            return None
    gate = stored_gate(model_path, "bf16", capability=capability)
    if gate is not None and not gate.passed:
        if auto:
            log.info("%s: %s; running fp32", Path(model_path).name, gate.describe())
            return None
        raise gate_refusal(model_path, gate)
    generator = OpenVinoGenerator(model_path, precision="bf16", threads=threads, capability=capability)
    gate = quality_gate(model_path, generator, capability=capability, threads=threads)
    log.info("%s: %s (%s)", Path(model_path).name, gate.describe(), "passed" if gate.passed else "failed")
    if gate.passed:
        return generator
    if auto:
        return None
    raise gate_refusal(model_path, gate)


def plan_precision(
    requested: str,
    device: str,
    *,
    model_precision: str | None = None,
    capability: Bf16Capability | None = None,
) -> str:
    """The precision a render runs in for `requested` ("auto" or a name) on `device` ("cpu"/"cuda").

    "auto": fp16 on CUDA; on the CPU `AUTO_BF16` where bf16 is native (OpenVINO installed,
    AVX512-BF16 or AMX), fp32 elsewhere. `model_precision`: a ready .onnx's own precision,
    which "auto" keeps (an fp32 one may still run as `AUTO_BF16` on the CPU). "bf16" on a CPU
    without native bf16, or on CUDA, is an `InputError` here, before any export or analysis.
    `capability` replaces this CPU's (tests).
    """
    cuda = device.startswith("cuda")
    if requested == "bf16":
        if cuda:
            raise InputError(
                "--precision bf16 runs on the CPU (through OpenVINO); on a GPU use fp16, or --device cpu for bf16"
            )
        require_native_bf16(capability)
        return "bf16"
    if requested != "auto":
        return requested
    if cuda:
        return model_precision or "fp16"
    if model_precision not in (None, "fp32"):
        return model_precision
    capability = capability or bf16_capability()
    return AUTO_BF16 if capability.native else "fp32"


def export_precision(precision: str) -> str:
    """The precision of the exported .onnx that a run in `precision` reads (bf16 reads the fp32 export)."""
    return "fp32" if precision in ("bf16", AUTO_BF16) else precision


def quality_figures(generator: FrameGenerator) -> dict[str, Any] | None:
    """The stored quality-gate figures of a gated generator (OpenVINO bf16), for `bench` and logs; else None."""
    from dataclasses import asdict

    from ganterp_fast.engine.backends.openvino_generator import OpenVinoGenerator, stored_gate

    if not isinstance(generator, OpenVinoGenerator) or generator.precision != "bf16":
        return None
    result = stored_gate(generator.model_path, generator.precision)
    return None if result is None else asdict(result)
