"""Generator backends behind one small interface, and the choice between them.

A backend is any object with `resolution`, `precision`, `device`, `providers` and
`__call__(z, class_vectors, truncation=...) -> uint8 [B, H, W, 3]`. `open_generator` is the
one place that builds one for a model file; render jobs, workers and `bench` all call it.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np


class FrameGenerator(Protocol):
    """What the render job needs of a generator (ONNX Runtime's, OpenVINO's, or a stand-in)."""

    @property
    def resolution(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def providers(self) -> list[str]: ...

    def __call__(self, z: np.ndarray, class_vector: np.ndarray, truncation: Any = 0.4) -> np.ndarray: ...


def open_generator(
    model_path: str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    tensorrt: bool = False,
    cuda_graph: bool = False,
) -> FrameGenerator:
    """The generator for an exported model: ONNX Runtime (CPU, CUDA, TensorRT)."""
    from .generator import Generator

    return Generator(model_path, device=device, threads=threads, tensorrt=tensorrt, cuda_graph=cuda_graph)


def plan_precision(requested: str, device: str) -> str:
    """The precision a render runs in for `requested` ("auto" or a name) on `device` ("cpu"/"cuda")."""
    if requested != "auto":
        return requested
    return "fp16" if device.startswith("cuda") else "fp32"


def export_precision(precision: str) -> str:
    """The precision of the exported .onnx that a run in `precision` reads."""
    return precision
