"""Writing an export's metadata (the engine reads it with `engine.contract.read_metadata`)."""

from __future__ import annotations

from pathlib import Path

import onnx

from ganterp_fast import __version__


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the model's metadata_props and stamp ganterp-fast as its producer."""
    model = onnx.load(str(path))
    model.producer_name = "ganterp-fast"
    model.producer_version = __version__
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
