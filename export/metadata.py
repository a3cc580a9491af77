"""Writing an export's metadata (the engine reads it with `engine.backends.contract.read_metadata`)."""

from __future__ import annotations

from pathlib import Path

import onnx

from ganterp_fast import __version__


def stamp(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata_props (in memory) and stamp ganterp-fast as its producer."""
    model.producer_name = "ganterp-fast"
    model.producer_version = __version__
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """`stamp` a model file: load it, replace its metadata, save it."""
    model = onnx.load(str(path))
    stamp(model, metadata)
    onnx.save(model, str(path))
