"""ganterp-fast: GANterpretations music videos, rendered with ONNX Runtime and PyAV.

The public API, loaded on first use (`import ganterp_fast` imports neither onnxruntime, av
nor torch)::

    import ganterp_fast as gf

    analysis = gf.analyze("song.mp3", gf.AnalysisOptions(threshold=0.01))
    gf.render("song.mp3", "song.mp4", gf.RenderOptions(path=gf.PathOptions(seed=3)))
    job = gf.prepare("song.mp3", "song.mp4", gf.RenderOptions())  # a picklable RenderJob
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "analyze": "ganterp_fast.engine.analysis.analyze",
    "Analysis": "ganterp_fast.engine.analysis.analyze",
    "AnalysisOptions": "ganterp_fast.engine.analysis.analyze",
    "render": "ganterp_fast.engine.api",
    "prepare": "ganterp_fast.engine.job",
    "RenderJob": "ganterp_fast.engine.job",
    "join": "ganterp_fast.engine.scale.segments",
    "RenderOptions": "ganterp_fast.engine.options",
    "ModelOptions": "ganterp_fast.engine.options",
    "OutputOptions": "ganterp_fast.engine.options",
    "PathOptions": "ganterp_fast.engine.latent.path",
    "Section": "ganterp_fast.engine.audio.excerpt",
    "EncodeOptions": "ganterp_fast.engine.video.encode",
    "Generator": "ganterp_fast.engine.backends.onnxruntime_generator",
    "LiveSession": "ganterp_fast.engine.live.session",
    "LiveOptions": "ganterp_fast.engine.live.session",
    "OnlineAnalysis": "ganterp_fast.engine.analysis.online",
    "analyze_live": "ganterp_fast.engine.analysis.online",
    "GanterpError": "ganterp_fast.engine.errors",
    "InputError": "ganterp_fast.engine.errors",
    "MissingExtraError": "ganterp_fast.engine.errors",
    "ModelError": "ganterp_fast.engine.errors",
    "OptionError": "ganterp_fast.engine.errors",
    "ProviderError": "ganterp_fast.engine.errors",
    "RenderError": "ganterp_fast.engine.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
