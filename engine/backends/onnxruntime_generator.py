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
`engine.providers`. Never imports torch.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.contract import (  # noqa: F401  (some re-exported: the exporter and the tests import them from here)
    FORMAT_VERSION,
    INPUT_NAMES,
    INPUT_WIDTHS,
    META_PREFIX,
    N_STATS,
    NUM_CLASSES,
    OUTPUT_NAME,
    Z_DIM,
    check_metadata,
    parse_device,
    read_metadata,
)
from ganterp_fast.engine.backends.providers import (  # noqa: F401  (CPU, DEVICES, physical_cores: re-exported for callers)
    CPU,
    CUDA,
    DEVICES,
    TENSORRT,
    BoundRunner,
    ProviderPlan,
    physical_cores,
    plan_providers,
    preload_cuda_libraries,
)
from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError, ProviderError

log = logging.getLogger(__name__)


def truncation_weights(truncation: float | Sequence[float] | np.ndarray, n_stats: int = N_STATS) -> np.ndarray:
    """Batch-norm statistics mixing weights of each truncation, float64 [n_stats] or [B, n_stats].

    The reference (pytorch-pretrained-biggan's BigGANBatchNorm) does
    `coef, i = math.modf(t / (1 / (n_stats - 1)))` and mixes `row[i] * coef + row[i + 1] * (1 - coef)`
    (weights reversed against ordinary interpolation), or takes `row[i]` alone when `coef == 0`.
    The same float64 arithmetic here picks the same rows: 0.58 / 0.02 is 28.999999999999996.
    """
    values = np.asarray(truncation, dtype=np.float64)
    flat = values.reshape(-1)
    step = 1.0 / (n_stats - 1)
    out = np.zeros((flat.size, n_stats), dtype=np.float64)
    for row, t in enumerate(flat.tolist()):
        if not (math.isfinite(t) and 0.0 < t <= 1.0):
            raise InputError(f"truncation {t!r} is outside (0, 1]; BigGAN truncations are in (0, 1], e.g. 0.4")
        coef, start = math.modf(t / step)
        index = int(start)
        if coef != 0.0:
            out[row, index] = coef
            out[row, index + 1] = 1.0 - coef
        else:
            out[row, index] = 1.0
    return out.reshape(values.shape + (n_stats,))


# ----------------------------------------------------------------------------------------
# The generator


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        error = MissingExtraError("running a model", "cpu")
        error.args = (f"{error} (or 'ganterp-fast[gpu]' for an NVIDIA GPU; never both)",)
        raise error from exc
    return onnxruntime


class Generator:
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
    ) -> None:
        ort = import_onnxruntime()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InputError(
                f"model file {self.model_path} does not exist; pass an .onnx made by 'ganterp-fast export'"
            )
        self._metadata = read_metadata(self.model_path)
        check_metadata(self._metadata, self.model_path)
        self._resolution = int(self._metadata[META_PREFIX + "resolution"])
        self._precision = self._metadata.get(META_PREFIX + "precision", "fp32")

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
        problems = [name for name in INPUT_NAMES if name not in inputs or inputs[name].shape[-1] != INPUT_WIDTHS[name]]
        if problems or outputs != [OUTPUT_NAME]:
            raise ModelError(
                f"{self.model_path} does not have the ganterp-fast BigGAN inputs/outputs "
                f"(inputs {sorted(inputs)}, outputs {outputs})"
            )

    # -- properties -----------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        """Side of the square frames in pixels."""
        return self._resolution

    @property
    def precision(self) -> str:
        """Precision the model was exported in: "fp32" or "fp16"."""
        return self._precision

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's metadata (name, source, weights hash, parity figures, ...)."""
        return dict(self._metadata)

    @property
    def device(self) -> str:
        """Where the model runs: "cuda" or "cpu"."""
        return self._plan.device

    @property
    def device_id(self) -> int:
        """The GPU's index on CUDA (`device="cuda:N"`); 0 on the CPU."""
        return self._plan.device_id

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses, in priority order."""
        return list(self._providers)

    @property
    def threads(self) -> int:
        """Intra-op threads of the session."""
        return self._plan.intra_op_threads

    @property
    def cuda_graph(self) -> bool:
        """Whether batches replay captured CUDA graphs (asked for, on CUDA, and accepted by the session)."""
        return self._plan.cuda_graph

    # -- running --------------------------------------------------------------------------

    def __call__(
        self, z: np.ndarray, class_vectors: np.ndarray, truncation: float | Sequence[float] | np.ndarray = 0.4
    ) -> np.ndarray:
        """Frames uint8 [B, H, W, 3] for latents `z` [B, 128] and class vectors [B, 1000].

        `z` is used as given (already multiplied by the truncation, as pytorch-pretrained-biggan
        expects); `truncation` is one value in (0, 1] or one per sample.
        """
        feeds = self.prepare(z, class_vectors, truncation)
        batch = feeds["z"].shape[0]
        if batch == 0:
            return np.zeros((0, self._resolution, self._resolution, 3), dtype=np.uint8)
        if self._runner is not None:
            return self._runner.run(feeds)
        return self._session.run([OUTPUT_NAME], feeds)[0]

    @staticmethod
    def prepare(
        z: np.ndarray, class_vectors: np.ndarray, truncation: float | Sequence[float] | np.ndarray = 0.4
    ) -> dict[str, np.ndarray]:
        """Validated float32 inputs of the graph, truncation turned into mixing weights."""
        z_array = np.ascontiguousarray(z, dtype=np.float32)
        classes = np.ascontiguousarray(class_vectors, dtype=np.float32)
        if z_array.ndim != 2 or z_array.shape[1] != Z_DIM:
            raise InputError(f"z has shape {z_array.shape}; expected [batch, {Z_DIM}]")
        if classes.ndim != 2 or classes.shape[1] != NUM_CLASSES:
            raise InputError(f"class_vectors has shape {classes.shape}; expected [batch, {NUM_CLASSES}]")
        if classes.shape[0] != z_array.shape[0]:
            raise InputError(f"z has {z_array.shape[0]} rows but class_vectors has {classes.shape[0]}")
        if not (np.isfinite(z_array).all() and np.isfinite(classes).all()):
            raise InputError("z and class_vectors must be finite (found NaN or infinity)")
        batch = z_array.shape[0]
        values = np.asarray(truncation, dtype=np.float64)
        if values.ndim == 0:
            weights = np.broadcast_to(truncation_weights(float(values)), (batch, N_STATS))
        elif values.shape == (batch,):
            weights = truncation_weights(values)
        else:
            raise InputError(f"truncation has shape {values.shape}; give one value or one per sample ({batch})")
        return {
            "z": z_array,
            "class_vector": classes,
            "truncation_weights": np.ascontiguousarray(weights, dtype=np.float32),
        }
