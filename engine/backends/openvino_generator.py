"""bf16 on the CPU: the same `.onnx` export through OpenVINO's CPU plugin, behind the generator interface.

```python
g = OpenVinoGenerator("model.onnx", precision="bf16")   # native bf16 CPUs (AVX512-BF16, AMX)
frames = g(z, class_vectors, truncation=0.4)            # uint8 [B, H, W, 3], as Generator
```

ONNX Runtime's CPU provider has no bf16 kernels on x86 (it widens to fp32), so bf16 on the
CPU means OpenVINO. `INFERENCE_PRECISION_HINT` is always explicit (the plugin's default is
bf16 wherever the CPU has it); compiled models are cached under the project's cache
directory (`OpenVINO CACHE_DIR`, one folder per model file and precision, rebuilt when an
entry will not load). Static shapes run faster than OpenVINO's dynamic batch, so one model
is compiled per batch size. `BACKEND` opens it behind the quality gate (`engine.backends.gate`);
whether the CPU has native bf16 is `engine.backends.capability`'s answer.

Never imports torch; imports openvino only when a generator is built.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.base import Backend, GeneratorBase, OpenRequest
from ganterp_fast.engine.backends.capability import (
    Bf16Capability,
    bf16_capability,
    import_openvino,
    require_native_bf16,
)
from ganterp_fast.engine.backends.contract import AUTO_BF16, INPUT_WIDTHS, OUTPUT_NAME, model_precision, read_metadata
from ganterp_fast.engine.backends.gate import (
    GATE_BATCH,
    GateResult,
    gate_refusal,
    model_sha256,
    openvino_cache_root,
    quality_gate,
    stored_gate,
)
from ganterp_fast.engine.backends.machine import physical_cores, usable_cpus
from ganterp_fast.engine.errors import InputError, ModelError

log = logging.getLogger(__name__)

# OpenVINO's names for the engine's precisions.
PRECISION_HINTS = {"bf16": "bf16", "fp32": "f32"}
# The generator's own compile settings; the choice measured in benchmarks/bench_bf16.py.
PERFORMANCE_HINT = "LATENCY"
# Static shapes run faster than OpenVINO's dynamic batch: one compiled model per batch size kept
# (the render's steady batch and the gate's, a short last one).
COMPILED_BATCHES_KEPT = 3


def _threads(threads: int | None) -> int:
    limit = usable_cpus()
    if threads is not None and (not isinstance(threads, int) or not 1 <= threads <= max(limit, physical_cores())):
        raise InputError(f"threads {threads!r}: use 1 to {limit} (the CPUs here), or leave it unset for one per core")
    return threads or physical_cores()


class OpenVinoGenerator(GeneratorBase):
    """BigGAN frames from latents through OpenVINO's CPU plugin, in bf16 (or f32 for comparisons).

    Same interface as `Generator` (`engine.backends.base`). One call at a time per instance.
    `cache=False` compiles without the model cache; `first_batch` is the batch size compiled up
    front. Another batch size gets its own compiled model, except the first time it is met
    where a compiled one holds it at no more than twice the work: that one runs padded (a
    render's short last batch costs no compile; a size that comes again is compiled).
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
        first_batch: int = GATE_BATCH,
    ) -> None:
        if precision not in PRECISION_HINTS:
            raise InputError(f"OpenVINO precision {precision!r}: use one of {', '.join(PRECISION_HINTS)}")
        ov = import_openvino()
        if precision == "bf16":
            capability = require_native_bf16(capability)
        super().__init__(model_path)
        if self.exported_precision != "fp32":
            raise InputError(
                f"{self.model_path} is an {self.exported_precision} export; OpenVINO {precision} reads the fp32 "
                f"export (ganterp-fast export MODEL -o model.onnx --precision fp32)"
            )
        self._precision = precision
        self._threads = _threads(threads)
        self._providers = [f"OpenVINO CPU {precision}"]
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
        self._padded: set[int] = set()  # batch sizes that ran padded once
        started = time.perf_counter()
        self._request_for(first_batch)
        compile_seconds = time.perf_counter() - started
        log.info(
            "generator %s: %d px on cpu through OpenVINO %s (%s, %d threads, %s; compiled in %.2f s%s)",
            self.model_path.name,
            self._resolution,
            ov.__version__,
            precision,
            self._threads,
            performance_hint,
            compile_seconds,
            f", cache {self._cache_dir}" if self._cache_dir else "",
        )

    @property
    def compiled_batches(self) -> list[int]:
        """The batch sizes compiled and kept, least recently used first."""
        return list(self._compiled)

    @property
    def gate(self) -> GateResult | None:
        """This model's stored bf16 gate figures on this CPU kind (None in fp32, or where none are stored)."""
        return stored_gate(self.model_path, self._precision) if self._precision == "bf16" else None

    def _request_for(self, batch: int) -> tuple[int, Any]:
        """(compiled batch size, its infer request) for `batch` rows: its own compiled model, or the first
        time a size is met, the smallest compiled one that holds it at no more than twice the work."""
        if batch in self._compiled:
            self._compiled.move_to_end(batch)
            return batch, self._compiled[batch]
        fits = [size for size in self._compiled if batch < size <= 2 * batch]
        if fits and batch not in self._padded:
            self._padded.add(batch)
            size = min(fits)
            self._compiled.move_to_end(size)
            return size, self._compiled[size]
        if self._model is None:
            self._model = self._ov.Core().read_model(os.fspath(self.model_path))
        if self.roles is None:
            self._model.reshape({name: [batch, width] for name, width in INPUT_WIDTHS.items()})
        else:  # a wrapped foreign graph: its own inputs, the batch axis first
            shapes = {item.get_any_name(): [batch, *item.get_partial_shape()[1:]] for item in self._model.inputs}
            self._model.reshape(shapes)
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

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Frames of one validated batch, through the model compiled for its size (or padded into a larger one)."""
        batch = feeds["z"].shape[0]
        size, request = self._request_for(batch)
        if size > batch:  # samples do not see each other: the padding rows are dropped
            feeds = {
                name: np.concatenate([array, np.repeat(array[-1:], size - batch, 0)]) for name, array in feeds.items()
            }
        try:
            results = request.infer(feeds)
        except Exception as exc:
            raise ModelError(f"OpenVINO failed on {self.model_path.name}: {' '.join(str(exc).split())[:300]}") from exc
        return np.array(results[OUTPUT_NAME][:batch], dtype=np.uint8, copy=True)


def open_openvino(model_path: str | os.PathLike[str], request: OpenRequest) -> OpenVinoGenerator | None:
    """The gated bf16 generator; None where "auto-bf16" falls back to fp32 (an fp16/int8 export,
    a CPU without native bf16, a model below its gate). `--precision bf16` refuses such a model."""
    auto = request.precision == AUTO_BF16
    capability: Bf16Capability | None = request.capability
    if auto:
        if model_precision(read_metadata(model_path)) != "fp32":
            return None  # a ready fp16/int8 model runs as it was exported
        capability = capability or bf16_capability()
        if not capability.native:
            return None
    gate = stored_gate(model_path, "bf16", capability=capability)
    if gate is not None and not gate.passed:
        if auto:
            log.info("%s: %s; running fp32", Path(model_path).name, gate.describe())
            return None
        raise gate_refusal(model_path, gate)
    generator = OpenVinoGenerator(
        model_path, precision="bf16", threads=request.threads, capability=capability, first_batch=GATE_BATCH
    )
    gate = quality_gate(model_path, generator, capability=capability, threads=request.threads)
    log.info("%s: %s (%s)", Path(model_path).name, gate.describe(), "passed" if gate.passed else "failed")
    if gate.passed:
        return generator
    if auto:
        return None
    raise gate_refusal(model_path, gate)


# bf16 on CPUs that compute it natively, behind the quality gate; "auto-bf16" falls back to ONNX Runtime fp32.
BACKEND = Backend(name="openvino", precisions=("bf16", AUTO_BF16), devices=("cpu",), open=open_openvino, reads="fp32")
