"""What every generator backend shares: the interface the render job needs, the model file's
checks, the properties, the input validation, and the record a backend registers itself with.

A backend is one module `engine/backends/<name>_generator.py` that defines a subclass of
`GeneratorBase` (its `infer(feeds)` runs one validated batch) and a module-level
`BACKEND = Backend(...)`: the precisions and devices it serves and how to open one.
`engine.backends.choice` finds the modules by that name and picks one as a pure function of
the request; no backend imports another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ganterp_fast.engine.backends.contract import (
    META_PREFIX,
    NUM_CLASSES,
    Z_DIM,
    check_metadata,
    graph_inputs,
    model_precision,
    read_metadata,
)
from ganterp_fast.engine.backends.foreign import (
    CLASS_NAME,
    LATENT_NAME,
    TRUNCATION_NAME,
    is_foreign,
    wrap_foreign,
    wrapped_roles,
)
from ganterp_fast.engine.backends.roles import Roles
from ganterp_fast.engine.errors import InputError


class FrameGenerator(Protocol):
    """What the render job needs of a generator (any backend's, or a stand-in)."""

    @property
    def resolution(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def providers(self) -> list[str]: ...

    def __call__(self, z: np.ndarray, class_vector: np.ndarray, truncation: Any = 0.4) -> np.ndarray: ...


@dataclass(frozen=True)
class OpenRequest:
    """How a generator is asked for: what `open_generator` passes to a backend's `open`."""

    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "fp32"  # the planned run precision
    threads: int | None = None
    tensorrt: bool = False
    cuda_graph: bool = False
    capability: Any = None  # the CPU's bf16 capability, replaced in tests (engine.backends.capability)


@dataclass(frozen=True)
class Backend:
    """A kind of generator, as the backend choice sees it.

    `open(model_path, request)` returns the generator, or None where the backend declines a
    model it only runs when that is safe (OpenVINO's "auto-bf16" for a model below its gate):
    the run then goes on in `reads` on the CPU. `reads`: the export precision it runs
    (None: the precision itself). Among backends serving the same precision and device the
    lowest `rank` wins.
    """

    name: str
    precisions: tuple[str, ...]
    devices: tuple[str, ...]  # device kinds: "cpu", "cuda"
    open: Callable[[str | os.PathLike[str], OpenRequest], FrameGenerator | None]
    reads: str | None = None
    rank: int = 100


class GeneratorBase:
    """A BigGAN generator over a ganterp-fast export: the file, its metadata and what every backend offers.

    Subclasses set `_providers` and `_threads` (and `_device`, `_device_id`, `_cuda_graph`
    where they differ from the CPU's) and implement `infer(feeds)` for a validated, non-empty batch.
    """

    _device = "cpu"
    _device_id = 0
    _cuda_graph = False
    _threads: int | None = None
    _providers: Sequence[str] = ()

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        inputs: Mapping[str, str] | None = None,
        value_range: str = "-1,1",
    ) -> None:
        self.model_path = self.source_path = Path(model_path)
        if not self.model_path.is_file():
            raise InputError(f"model file {self.model_path} does not exist; pass an .onnx image generator")
        self._metadata = read_metadata(self.model_path)
        if is_foreign(self._metadata):  # any ONNX image generator: wrapped once into the cache
            self.model_path = wrap_foreign(self.model_path, inputs=inputs, value_range=value_range)
            self._metadata = read_metadata(self.model_path)
        check_metadata(self._metadata, self.model_path)
        self._roles = wrapped_roles(self._metadata)
        self._resolution = int(self._metadata[META_PREFIX + "resolution"])
        self._precision = self.exported_precision

    @property
    def exported_precision(self) -> str:
        """The precision the model file was exported in: "fp32", "fp16" or "int8"."""
        return model_precision(self._metadata)

    @property
    def resolution(self) -> int:
        """Height of the frames in pixels (their side where they are square)."""
        return self._resolution

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames in pixels."""
        roles = self._roles
        return (roles.height, roles.width) if roles is not None else (self._resolution, self._resolution)

    @property
    def z_dim(self) -> int:
        """Width of the latent input."""
        return self._roles.z_dim if self._roles is not None else Z_DIM

    @property
    def num_classes(self) -> int:
        """Width of the class input; 0 for an unconditional model."""
        return self._roles.num_classes if self._roles is not None else NUM_CLASSES

    @property
    def roles(self) -> Roles | None:
        """What the engine assigned in a foreign graph (None for this project's exports)."""
        return self._roles

    @property
    def precision(self) -> str:
        """The precision that runs: the export's own, or what the backend computes in (bf16)."""
        return self._precision

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's metadata (name, source, weights hash, parity figures, ...)."""
        return dict(self._metadata)

    @property
    def device(self) -> str:
        """Where the model runs: "cuda" or "cpu"."""
        return self._device

    @property
    def device_id(self) -> int:
        """The GPU's index on CUDA (`device="cuda:N"`); 0 on the CPU."""
        return self._device_id

    @property
    def providers(self) -> list[str]:
        """What runs the model, in priority order (ONNX Runtime's execution providers, or the runtime's name)."""
        return list(self._providers)

    @property
    def threads(self) -> int | None:
        """CPU threads of the runtime."""
        return self._threads

    @property
    def cuda_graph(self) -> bool:
        """Whether batches replay captured CUDA graphs."""
        return self._cuda_graph

    @property
    def gate(self) -> Any:
        """The stored quality-gate figures of a gated generator (OpenVINO bf16); None for an exact one."""
        return None

    def __call__(
        self,
        z: np.ndarray,
        class_vectors: np.ndarray | None = None,
        truncation: float | Sequence[float] | np.ndarray = 0.4,
    ) -> np.ndarray:
        """Frames uint8 [B, H, W, 3] for latents `z` [B, z_dim] and class vectors [B, num_classes].

        `z` is used as given (for BigGAN already multiplied by the truncation, as
        pytorch-pretrained-biggan expects); `truncation` is one value in (0, 1] or one per
        sample. An unconditional model takes `z` alone (`class_vectors` None or [B, 0]).
        """
        if self._roles is not None:
            feeds = foreign_feeds(self._roles, z, class_vectors, truncation)
        else:
            if class_vectors is None:
                raise InputError(f"{self.source_path} is class-conditional: give class_vectors [batch, {NUM_CLASSES}]")
            feeds = self.prepare(z, class_vectors, truncation)
        if feeds[LATENT_NAME].shape[0] == 0:
            return np.zeros((0, *self.size, 3), dtype=np.uint8)
        fixed = self._roles.batch if self._roles is not None else None
        if fixed is not None and feeds[LATENT_NAME].shape[0] != fixed:  # a graph made for one batch size
            parts = [
                self.infer({k: v[i : i + fixed] for k, v in feeds.items()})
                for i in range(0, len(feeds[LATENT_NAME]), fixed)
            ]
            return np.concatenate(parts)
        return self.infer(feeds)

    @staticmethod
    def prepare(
        z: np.ndarray, class_vectors: np.ndarray, truncation: float | Sequence[float] | np.ndarray = 0.4
    ) -> dict[str, np.ndarray]:
        """Validated float32 inputs of the graph, truncation turned into mixing weights."""
        return graph_inputs(z, class_vectors, truncation)

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Frames uint8 [B, H, W, 3] of one validated, non-empty batch of graph inputs."""
        raise NotImplementedError


def foreign_feeds(
    roles: Roles, z: np.ndarray, class_vectors: np.ndarray | None, truncation: float | Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """The validated float32 inputs of a wrapped foreign graph (`engine.backends.foreign`)."""
    z_array = np.ascontiguousarray(z, dtype=np.float32)
    if z_array.ndim != 2 or z_array.shape[1] != roles.z_dim:
        raise InputError(f"z has shape {z_array.shape}; expected [batch, {roles.z_dim}]")
    batch = z_array.shape[0]
    feeds = {LATENT_NAME: z_array}
    if roles.class_input is not None:
        if class_vectors is None:
            raise InputError(f"the model is class-conditional: give class_vectors [batch, {roles.num_classes}]")
        classes = np.ascontiguousarray(class_vectors, dtype=np.float32)
        if classes.shape != (batch, roles.num_classes):
            raise InputError(f"class_vectors has shape {classes.shape}; expected [{batch}, {roles.num_classes}]")
        feeds[CLASS_NAME] = classes
    elif class_vectors is not None and np.asarray(class_vectors).size:
        raise InputError("the model is unconditional: it takes no class vectors")
    if roles.truncation is not None:
        values = np.asarray(truncation, dtype=np.float32)
        if values.ndim == 0:
            values = np.full(batch, values, dtype=np.float32)
        if values.shape != (batch,):
            raise InputError(f"truncation has shape {values.shape}; give one value or one per sample ({batch})")
        feeds[TRUNCATION_NAME] = np.ascontiguousarray(values)
    if not all(np.isfinite(value).all() for value in feeds.values()):
        raise InputError("z and class_vectors must be finite (found NaN or infinity)")
    return feeds
