"""The contract between `export/` and the engine: what an exported model's graph and metadata hold.

Bump FORMAT_VERSION on any change to it. Names are re-exported by `engine.generator`.
"""

from __future__ import annotations

from .errors import InputError

FORMAT_VERSION = "1"
META_PREFIX = "ganterp_fast."
INPUT_NAMES = ("z", "class_vector", "truncation_weights")
OUTPUT_NAME = "frames"
Z_DIM = 128
NUM_CLASSES = 1000
N_STATS = 51  # statistics rows per batch norm: truncations 0, 0.02, ..., 1
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
