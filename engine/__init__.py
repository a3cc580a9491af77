"""The runtime engine: audio analysis, latent paths, ONNX Runtime generation, encoding.

Never imports torch. Heavy modules (onnxruntime, av) load on first use of the names that
need them, so `import ganterp_fast.engine` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import GanterpError, InputError, MissingExtraError, ModelError, ProviderError, RenderError

_LAZY = {
    "analyze": "analysis",
    "Analysis": "analysis",
    "AnalysisOptions": "analysis",
    "Generator": "generator",
    "render": "api",  # the module is not named `render`, so `from ganterp_fast.engine import render` is the function
    "prepare": "job",
    "RenderJob": "job",
    "RenderOptions": "options",
    "ModelOptions": "options",
    "RenderResult": "job",
    "resolve_model": "models",
    "find_classes": "classes",
    "class_index": "classes",
}

__all__ = [
    "GanterpError",
    "InputError",
    "MissingExtraError",
    "ModelError",
    "ProviderError",
    "RenderError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
