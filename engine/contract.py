"""The contract between `export/` and the engine: what an exported model's graph and metadata hold.

Bump FORMAT_VERSION on any change to it. Names are re-exported by `engine.generator`.
"""

from __future__ import annotations

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
PRECISIONS = ("auto", "fp32", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda")
