"""The BigGAN generator the engine runs: an ONNX Runtime session over a ganterp-fast export.

```python
g = Generator("model.onnx", device="auto")          # "auto" | "cpu" | "cuda" | "cuda:N"
frames = g(z, class_vectors, truncation=0.4)        # uint8 [B, H, W, 3]
g = Generator("model-fp16.onnx", device="cuda", cuda_graph=True, tensorrt=False)
```

The model file is what `ganterp_fast.export` writes: inputs `z` [B, 128] (truncated noise
already multiplied by the truncation, as pytorch-pretrained-biggan expects), `class_vector`
[B, 1000] (one-hot or mixed) and `truncation_weights` [B, 51]; output `frames`, uint8 NHWC.
Truncation reaches the graph as the 51 batch-norm statistics mixing weights, computed here
in float64 exactly as the reference does, so any truncation in (0, 1] matches it.

Provider choice and the IO-binding runner (device buffers, CUDA graphs) live in
`engine.backends.providers`; the shared properties and input checks in `engine.backends.base`.
The backend the choice reads is `BACKEND`. Never imports torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.base import Backend, GeneratorBase, OpenRequest
from ganterp_fast.engine.backends.contract import (
    EXPORT_PRECISIONS,
    INPUT_NAMES,
    INPUT_WIDTHS,
    OUTPUT_NAME,
    parse_device,
)
from ganterp_fast.engine.backends.providers import (
    CPU,
    CUDA,
    TENSORRT,
    BoundRunner,
    ProviderPlan,
    plan_providers,
    preload_cuda_libraries,
)
from ganterp_fast.engine.errors import MissingExtraError, ModelError, ProviderError

log = logging.getLogger(__name__)


def import_onnxruntime() -> Any:
    """The onnxruntime module, or `MissingExtraError` naming the extras that bring it."""
    try:
        import onnxruntime
    except ImportError as exc:
        error = MissingExtraError("running a model", "cpu")
        error.args = (f"{error} (or 'ganterp-fast[gpu]' for an NVIDIA GPU; never both)",)
        raise error from exc
    return onnxruntime


class Generator(GeneratorBase):
    """BigGAN frames from latents, through ONNX Runtime.

    One call at a time per instance (device buffers are reused between calls). On CUDA the
    inputs and frames go through preallocated device buffers (IO binding); `cuda_graph`
    also captures one CUDA graph per batch size and replays it (falls back to plain CUDA,
    with a warning, when the session cannot capture); `tensorrt` puts the TensorRT provider
    first (fp16, engine cache under the model cache).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        threads: int | None = None,
        tensorrt: bool = False,
        cuda_graph: bool = False,
        inputs: Mapping[str, str] | None = None,
        value_range: str = "-1,1",
    ) -> None:
        ort = import_onnxruntime()
        super().__init__(model_path, inputs=inputs, value_range=value_range)
        trt_cache = None
        if tensorrt:
            from ganterp_fast.engine.cache import cache_dir

            trt_cache = cache_dir() / "tensorrt"
            trt_cache.mkdir(parents=True, exist_ok=True)
        plan = plan_providers(
            ort.get_available_providers(),
            device=device,
            precision=self._precision,
            tensorrt=tensorrt,
            cuda_graph=cuda_graph,
            threads=threads,
            trt_cache_dir=trt_cache,
        )
        for note in plan.notes:
            log.warning(note)
        if plan.device == "cuda":
            preload_cuda_libraries(ort)
        try:
            self._session = self._make_session(ort, plan)
        except Exception as exc:  # onnxruntime raises its own non-exported exception types
            if not plan.cuda_graph:
                raise ModelError(f"ONNX Runtime cannot load {self.model_path}: {exc}") from exc
            # Capture needs every node on the GPU; some models or builds keep a few on the CPU.
            log.warning(
                "CUDA graphs are not possible for %s (%s); running without them",
                self.model_path.name,
                str(exc).splitlines()[0][:200],
            )
            plan = plan.without_cuda_graph()
            try:
                self._session = self._make_session(ort, plan)
            except Exception as again:
                raise ModelError(f"ONNX Runtime cannot load {self.model_path}: {again}") from again
        self._providers = list(self._session.get_providers())
        self._plan = self._confirm_providers(plan, device, tensorrt)
        self._device, self._device_id = self._plan.device, self._plan.device_id
        self._threads, self._cuda_graph = self._plan.intra_op_threads, self._plan.cuda_graph
        self._check_signature()
        self._runner = (
            BoundRunner(self._session, ort, "cuda", self._plan.device_id, cuda_graph=self._plan.cuda_graph)
            if self._plan.io_binding
            else None
        )
        log.info(
            "generator %s: %d px %s on %s (providers %s, %d threads%s)",
            self.model_path.name,
            self._resolution,
            self._precision,
            self._plan.device,
            ", ".join(self._providers),
            self._plan.intra_op_threads,
            ", CUDA graphs" if self._plan.cuda_graph else "",
        )

    def _make_session(self, ort: Any, plan: ProviderPlan) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = plan.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        return ort.InferenceSession(
            str(self.model_path),
            sess_options=options,
            providers=[name for name, _ in plan.providers],
            provider_options=[opts for _, opts in plan.providers],
        )

    def _confirm_providers(self, plan: ProviderPlan, device: str, tensorrt: bool) -> ProviderPlan:
        """onnxruntime-gpu falls back to the CPU silently: compare what runs with what was asked."""
        if plan.device != "cuda" or CUDA in self._providers:
            if tensorrt and TENSORRT not in self._providers:
                raise ProviderError(f"TensorRT could not start (providers in use: {', '.join(self._providers)})")
            return plan
        reason = (
            f"the CUDA provider could not start (no GPU, driver or CUDA/cuDNN libraries?); "
            f"ONNX Runtime fell back to {', '.join(self._providers)}"
        )
        if parse_device(device)[0] == "cuda":
            raise ProviderError(reason + "; use device 'cpu' to run on the CPU")
        log.warning("%s: running on the CPU", reason)
        return ProviderPlan("cpu", ((CPU, {}),), plan.intra_op_threads, io_binding=False)

    def _check_signature(self) -> None:
        inputs = {item.name: item for item in self._session.get_inputs()}
        outputs = [item.name for item in self._session.get_outputs()]
        if self._roles is not None:  # a wrapped foreign graph: its own inputs, checked when it was wrapped
            if outputs != [OUTPUT_NAME]:
                raise ModelError(f"{self.model_path} is not a wrapped generator (outputs {outputs})")
            return
        problems = [name for name in INPUT_NAMES if name not in inputs or inputs[name].shape[-1] != INPUT_WIDTHS[name]]
        if problems or outputs != [OUTPUT_NAME]:
            raise ModelError(
                f"{self.model_path} does not have the ganterp-fast BigGAN inputs/outputs "
                f"(inputs {sorted(inputs)}, outputs {outputs})"
            )

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Frames of one validated batch: through the device buffers on CUDA, a plain session run on the CPU."""
        if self._runner is not None:
            return self._runner.run(feeds)
        return self._session.run([OUTPUT_NAME], feeds)[0]


def open_onnxruntime(model_path: str | os.PathLike[str], request: OpenRequest) -> Generator:
    """ONNX Runtime's generator for a request: the export's own precision on CPU, CUDA or TensorRT."""
    return Generator(
        model_path,
        device=request.device,
        threads=request.threads,
        tensorrt=request.tensorrt,
        cuda_graph=request.cuda_graph,
    )


# The exact path: every precision an .onnx holds ("auto": the export's own), on the CPU and on CUDA (and TensorRT).
BACKEND = Backend(
    name="onnxruntime", precisions=("auto", *EXPORT_PRECISIONS), devices=("cpu", "cuda"), open=open_onnxruntime
)
