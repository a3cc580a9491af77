"""Where the generator runs: ONNX Runtime execution providers, threads and device buffers.

`plan_providers` chooses providers and their options in one pure function (unit-tested
without a GPU). `BoundRunner` runs a session through IO binding with preallocated buffers
per batch size and, on CUDA, optionally replays one captured CUDA graph per batch size.
Never imports torch or onnxruntime at import time.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.contract import INPUT_WIDTHS, OUTPUT_NAME, parse_device
from ganterp_fast.engine.backends.machine import physical_cores, usable_cpus
from ganterp_fast.engine.errors import InputError, ProviderError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# Batch sizes whose device buffers are kept (the steady batch, a short last one, ...).
# With CUDA graphs none is dropped: a captured graph keeps pointing at its buffers.
BOUND_BATCHES_KEPT = 4
# TensorRT optimisation profile for the dynamic batch axis.
TRT_BATCH = {"min": 1, "opt": 8, "max": 64}


@dataclass(frozen=True)
class ProviderPlan:
    """What to ask ONNX Runtime for: providers with options, threads, IO binding, CUDA graphs."""

    device: str  # "cuda" or "cpu"
    providers: tuple[tuple[str, dict[str, str]], ...]
    intra_op_threads: int
    io_binding: bool
    notes: tuple[str, ...] = field(default=())
    cuda_graph: bool = False
    device_id: int = 0  # the GPU's index on CUDA ("cuda:N"); 0 on the CPU

    @property
    def provider_names(self) -> list[str]:
        return [name for name, _ in self.providers]

    def without_cuda_graph(self) -> ProviderPlan:
        """The same plan with CUDA graph capture switched off (the fallback when a session refuses it)."""
        providers = tuple(
            (name, {k: v for k, v in options.items() if k not in _GRAPH_KEYS}) for name, options in self.providers
        )
        return ProviderPlan(
            self.device,
            providers,
            self.intra_op_threads,
            self.io_binding,
            self.notes,
            cuda_graph=False,
            device_id=self.device_id,
        )


_GRAPH_KEYS = ("enable_cuda_graph", "trt_cuda_graph_enable")


def plan_providers(
    available: Sequence[str],
    *,
    device: str = "auto",
    precision: str = "fp32",
    tensorrt: bool = False,
    cuda_graph: bool = False,
    threads: int | None = None,
    cpu_cores: int | None = None,
    trt_cache_dir: str | os.PathLike[str] | None = None,
    device_id: int | None = None,
) -> ProviderPlan:
    """Choose execution providers and options for a model of `precision` on `device`.

    CUDA (with IO binding and device buffers) when asked for or, for "auto", when ONNX Runtime
    offers it; the CPU otherwise, with one intra-op thread per physical core. `cuda_graph`
    asks the CUDA (or TensorRT) provider to capture and replay a CUDA graph per batch size;
    it is ignored on the CPU. `device` may name a GPU ("cuda:1"), or `device_id` gives its
    index; the CUDA and TensorRT providers run on that GPU. Pure: unit-testable without a GPU.
    Raises `ProviderError` when "cuda" or TensorRT is asked for and not offered.
    """
    asked, named = device, ":" in str(device)
    device, index = parse_device(device)
    if device_id is not None:
        if not isinstance(device_id, int) or device_id < 0 or (named and index != device_id):
            raise InputError(
                f"device_id {device_id!r} with device {device!r}: give the GPU's index once, e.g. 'cuda:1'"
            )
        index = device_id
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads {threads!r}: use a positive whole number, or None for one per physical core")
    available = list(available)
    cores = max(1, cpu_cores if cpu_cores is not None else physical_cores())
    # More threads than CPUs only makes ONNX Runtime's spinning workers fight (2000 threads on
    # 2 CPUs: a 1-frame render measured at 2 minutes instead of half a second).
    limit = max(cores, usable_cpus())
    if threads is not None and threads > limit:
        raise InputError(
            f"threads {threads}: use 1 to {limit} (the CPUs here), or leave it unset for one per physical core"
        )
    intra = threads or cores
    if device == "cuda" and CUDA not in available:
        raise ProviderError(
            f"device {asked!r} asked for, but ONNX Runtime offers only {', '.join(available) or 'nothing'}; "
            "install the GPU build instead of the CPU one (pip uninstall onnxruntime; "
            "pip install 'ganterp-fast[gpu]'), or use device 'cpu'"
        )
    if tensorrt and device == "cpu":
        raise InputError("TensorRT runs on the GPU: drop tensorrt or use device 'cuda'/'auto'")
    if tensorrt and TENSORRT not in available:
        raise ProviderError(
            f"TensorRT asked for, but ONNX Runtime offers only {', '.join(available)}; "
            "install onnxruntime-gpu with TensorRT, or drop the TensorRT option"
        )
    use_cuda = device == "cuda" or (device == "auto" and CUDA in available)
    notes: list[str] = []
    if not use_cuda:
        if precision == "fp16":
            notes.append(
                "an fp16 model on the CPU runs slower than fp32 (no fp16 convolutions there); "
                "export with --precision fp32 for CPUs"
            )
        if cuda_graph:
            notes.append("CUDA graphs apply on the GPU only; running on the CPU without them")
        return ProviderPlan("cpu", ((CPU, {}),), intra, io_binding=False, notes=tuple(notes))
    if precision == "fp32":
        notes.append("an fp32 model on a GPU; --precision fp16 runs about twice as fast there")
    providers: list[tuple[str, dict[str, str]]] = []
    if tensorrt:
        trt = _tensorrt_options(trt_cache_dir, index)
        if cuda_graph:
            trt["trt_cuda_graph_enable"] = "True"
        providers.append((TENSORRT, trt))
    cuda = {
        "device_id": str(index),
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "do_copy_in_default_stream": "1",
        "arena_extend_strategy": "kSameAsRequested",
    }
    if cuda_graph:
        cuda["enable_cuda_graph"] = "1"
    providers.append((CUDA, cuda))
    providers.append((CPU, {}))
    return ProviderPlan(
        "cuda", tuple(providers), intra, io_binding=True, notes=tuple(notes), cuda_graph=cuda_graph, device_id=index
    )


def _tensorrt_options(cache_dir: str | os.PathLike[str] | None, device_id: int = 0) -> dict[str, str]:
    """TensorRT: fp16 kernels, engine and timing caches, a profile for the batch axis."""

    def shapes(batch: int) -> str:
        return ",".join(f"{name}:{batch}x{width}" for name, width in INPUT_WIDTHS.items())

    options = {
        "device_id": str(device_id),
        "trt_fp16_enable": "True",
        "trt_profile_min_shapes": shapes(TRT_BATCH["min"]),
        "trt_profile_opt_shapes": shapes(TRT_BATCH["opt"]),
        "trt_profile_max_shapes": shapes(TRT_BATCH["max"]),
    }
    if cache_dir is not None:
        options.update(
            {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": os.fspath(cache_dir),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": os.fspath(cache_dir),
            }
        )
    return options


_preloaded = False


def preload_cuda_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of the NVIDIA wheels before the first CUDA session.

    `onnxruntime-gpu[cuda,cudnn]` installs them into site-packages, where the CUDA provider
    does not look on its own; `onnxruntime.preload_dlls()` (onnxruntime-gpu 1.21 and newer)
    loads them from there or from the default library path. Once per process; does nothing
    for an onnxruntime without it or without the CUDA provider. Its messages go to the log.
    """
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    preload = getattr(ort, "preload_dlls", None)
    if preload is None or CUDA not in ort.get_available_providers():
        return
    messages = io.StringIO()
    try:
        with contextlib.redirect_stdout(messages):
            preload()
    except Exception as exc:  # a missing or broken library: the CUDA session says what it lacks
        log.info("onnxruntime.preload_dlls() failed: %s", exc)
    for line in messages.getvalue().splitlines():
        if line.strip():
            log.info("onnxruntime.preload_dlls: %s", line.strip())


class BoundRunner:
    """IO binding with preallocated buffers per batch size (inputs and output).

    Inputs are copied into the buffers, the session runs device to device, and only the
    uint8 frames come back. Works with any device ONNX Runtime knows ("cuda", "cpu").

    With `cuda_graph` (a session made with the CUDA provider's `enable_cuda_graph`), each
    batch size's buffers get their own graph id: ONNX Runtime captures that batch's graph on
    its first runs and replays it after, always on the same buffers, which are therefore
    never dropped.
    """

    _graph_ids = itertools.count(1)  # ids are per process: ONNX Runtime keys graphs by id per session

    def __init__(
        self, session: Any, ort: Any, device_type: str, device_id: int = 0, *, cuda_graph: bool = False
    ) -> None:
        self._session = session
        self._ort = ort
        self._device = (device_type, device_id)
        self._cuda_graph = cuda_graph
        self._buffers: OrderedDict[int, tuple[Any, dict[str, Any], Any, Any]] = OrderedDict()
        self._ids: dict[int, int] = {}
        output = session.get_outputs()[0]
        self._frame_shape = tuple(int(d) for d in output.shape[1:])

    @property
    def cuda_graph(self) -> bool:
        return self._cuda_graph

    def graph_ids(self) -> dict[int, int]:
        """Batch size -> CUDA graph id (empty without CUDA graphs)."""
        if not self._cuda_graph:
            return {}
        return dict(self._ids)

    def _allocate(self, batch: int, feeds: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any], Any, Any]:
        value = self._ort.OrtValue.ortvalue_from_shape_and_type
        binding = self._session.io_binding()
        inputs = {}
        for name, array in feeds.items():
            inputs[name] = value(list(array.shape), array.dtype.type, *self._device)
            binding.bind_ortvalue_input(name, inputs[name])
        output = value([batch, *self._frame_shape], np.uint8, *self._device)
        binding.bind_ortvalue_output(OUTPUT_NAME, output)
        run_options = self._ort.RunOptions()
        if self._cuda_graph:
            self._ids[batch] = next(self._graph_ids)
            run_options.add_run_config_entry("gpu_graph_id", str(self._ids[batch]))
        self._buffers[batch] = (binding, inputs, output, run_options)
        while not self._cuda_graph and len(self._buffers) > BOUND_BATCHES_KEPT:
            self._buffers.popitem(last=False)
        return self._buffers[batch]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        batch = feeds["z"].shape[0]
        entry = self._buffers.get(batch)
        if entry is None:
            entry = self._allocate(batch, feeds)
        else:
            self._buffers.move_to_end(batch)
        binding, inputs, output, run_options = entry
        for name, array in feeds.items():
            inputs[name].update_inplace(array)
        self._session.run_with_iobinding(binding, run_options)
        return np.array(output.numpy(), copy=True)
