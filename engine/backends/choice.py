"""The choice of generator backend: which one runs a planned precision on a device, and opening it.

Backends are the modules `engine/backends/*_generator.py`, each with a `BACKEND` record
(`engine.backends.base.Backend`): ONNX Runtime (`onnxruntime_generator`: CPU fp32/int8,
CUDA, TensorRT; the exact path) and OpenVINO's CPU plugin (`openvino_generator`: bf16 on CPUs
with AVX512-BF16 or AMX, behind a quality gate). A third is one more such module.

`plan_precision` decides, from the request, the device and the CPU's capability, before any
model is exported; `choose_backend` picks the backend for that precision and device (both
pure functions, tested without the hardware); `open_generator` builds it.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from collections.abc import Sequence

from ganterp_fast.engine.backends.base import Backend, FrameGenerator, OpenRequest
from ganterp_fast.engine.backends.capability import Bf16Capability, bf16_capability, require_native_bf16
from ganterp_fast.engine.backends.contract import AUTO_BF16, parse_device
from ganterp_fast.engine.errors import InputError

BACKEND_SUFFIX = "_generator"  # engine/backends/<name>_generator.py defines a backend


@functools.cache
def registered_backends() -> tuple[Backend, ...]:
    """Every backend module's `BACKEND`, lowest rank first (importing a backend module imports no runtime)."""
    package = importlib.import_module(__package__)
    found = []
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith(BACKEND_SUFFIX):
            found.append(importlib.import_module(f"{__package__}.{module.name}").BACKEND)
    return tuple(sorted(found, key=lambda backend: (backend.rank, backend.name)))


def choose_backend(precision: str, device: str, backends: Sequence[Backend] | None = None) -> Backend:
    """The backend that runs `precision` (as planned) on `device` ("auto", "cpu", "cuda", "cuda:N").

    The lowest-ranked of `backends` (default: the registered ones) serving both; `InputError` where none does.
    """
    kind = parse_device(device)[0]
    candidates = registered_backends() if backends is None else sorted(backends, key=lambda backend: backend.rank)
    for backend in candidates:
        if precision in backend.precisions and (kind == "auto" or kind in backend.devices):
            return backend
    raise InputError(f"no generator backend runs precision {precision!r} on {device!r}")


def export_precision(precision: str, backends: Sequence[Backend] | None = None) -> str:
    """The precision of the exported .onnx that a run in `precision` reads (bf16 reads the fp32 export)."""
    for backend in registered_backends() if backends is None else backends:
        if precision in backend.precisions:
            return backend.reads or precision
    return precision


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
    fp32 export that passes its gate, ONNX Runtime fp32 otherwise. Anything else ("auto": the
    export's own): ONNX Runtime (CPU, CUDA, TensorRT), the exact path. `capability` replaces
    this CPU's (tests).
    """
    request = OpenRequest(device, precision, threads, tensorrt, cuda_graph, capability)
    backend = choose_backend(precision, device)
    generator = backend.open(model_path, request)
    if generator is None:  # declined (a model below its gate under "auto"): its export runs exactly on the CPU
        fallback = OpenRequest("cpu", backend.reads or "fp32", threads, tensorrt, cuda_graph, capability)
        generator = choose_backend(fallback.precision, "cpu").open(model_path, fallback)
        if generator is None:
            raise InputError(f"no generator backend opens {model_path} in {fallback.precision} on the CPU")
    return generator


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
