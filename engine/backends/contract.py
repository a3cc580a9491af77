"""The contract between `export/` and the engine: what an exported model's graph and metadata hold.

Bump FORMAT_VERSION on any change to it. Names are re-exported by `engine.generator`.
`read_metadata` and `check_metadata` read and check a model file's side of it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError

FORMAT_VERSION = "1"
META_PREFIX = "ganterp_fast."
INPUT_NAMES = ("z", "class_vector", "truncation_weights")
OUTPUT_NAME = "frames"
Z_DIM = 128
NUM_CLASSES = 1000
N_STATS = 51  # statistics rows per batch norm: truncations 0, 0.02, ..., 1
# The checkpoints the exporter reads (pytorch-pretrained-biggan's layout) and the pretrained names.
PRETRAINED_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
# Width of each input after its batch axis.
INPUT_WIDTHS = {"z": Z_DIM, "class_vector": NUM_CLASSES, "truncation_weights": N_STATS}

# Run-time choices, named once: the CLI, the render options and the backends read these.
PRECISIONS = ("auto", "fp32", "fp16", "int8", "bf16")  # bf16: the CPU through OpenVINO (engine.backends)
DEVICES = ("auto", "cpu", "cuda")


def parse_device(device: str) -> tuple[str, int]:
    """("auto" | "cpu" | "cuda", device index) of a device string: "cuda:1" -> ("cuda", 1).

    One of `DEVICES`, or "cuda:N" for the N-th GPU (CUDA's numbering, after
    CUDA_VISIBLE_DEVICES). Raises `InputError` naming what would work.
    """
    text = str(device).strip().lower()
    kind, colon, index = text.partition(":")
    if not colon and kind in DEVICES:
        return kind, 0
    if kind == "cuda" and colon and index.isdigit():
        return "cuda", int(index)
    raise InputError(
        f"device {device!r}: use one of {', '.join(DEVICES)}, or cuda:N for the N-th GPU (cuda:0, cuda:1, ...)"
    )


# ----------------------------------------------------------------------------------------
# A model file's metadata

MAKE_ONE = "make one with: ganterp-fast export biggan-deep-128 -o model.onnx"


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata_props of an ONNX file, read by onnx (external data off), no session built.

    onnx parses the whole file (0.3-1 s for a 200 MB model), so the result is kept per file
    (path, size, modification time) for the process: a render reads a model once.
    Raises `ModelError` for a file that is not ONNX or only part of one.
    """
    path = Path(path)
    try:
        stat = path.stat()
        return dict(_metadata_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino))
    except OSError as exc:
        raise ModelError(f"cannot read the model {path}: {exc.strerror or exc}") from exc
    except ImportError as exc:
        raise MissingExtraError("reading a model", "cpu") from exc
    except Exception as exc:  # protobuf's DecodeError, onnx's own errors: not ONNX, or cut short
        raise ModelError(
            f"{path} is not an ONNX model, or only part of one (onnx cannot parse it); {MAKE_ONE}"
        ) from exc


@functools.lru_cache(maxsize=16)
def _metadata_of(path: str, size: int, mtime_ns: int, inode: int) -> tuple[tuple[str, str], ...]:
    del size, mtime_ns, inode  # the cache key only: a file written again is read again
    import onnx

    model = onnx.load(path, load_external_data=False)
    return tuple((entry.key, entry.value) for entry in model.metadata_props)


def check_metadata(metadata: dict[str, str], path: str | os.PathLike[str]) -> None:
    """Raise `ModelError` unless `metadata` marks a ganterp-fast BigGAN export this engine reads."""
    version = metadata.get(META_PREFIX + "format_version")
    if version is None:
        raise ModelError(
            f"{path} is not a ganterp-fast BigGAN export (no {META_PREFIX}format_version metadata); {MAKE_ONE}"
        )
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{path} has model format {version}, this version reads format {FORMAT_VERSION}; "
            "export the model again with this version of ganterp-fast"
        )
    inputs = tuple(metadata.get(META_PREFIX + "inputs", "").split(","))
    if inputs != INPUT_NAMES or metadata.get(META_PREFIX + "outputs") != OUTPUT_NAME:
        raise ModelError(
            f"{path} declares inputs {inputs} and output {metadata.get(META_PREFIX + 'outputs')!r}; "
            f"expected {INPUT_NAMES} and {OUTPUT_NAME!r}"
        )
    try:
        int(metadata[META_PREFIX + "resolution"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path} has no valid {META_PREFIX}resolution metadata") from exc
