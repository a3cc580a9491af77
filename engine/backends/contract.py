"""The contract between `export/` and the engine: what an exported model's graph and metadata hold.

Bump FORMAT_VERSION on any change to it. BigGAN's own numbers (latent size, classes, the
bound of its truncated normal), the precisions, what the truncation input holds
(`truncation_weights`), the graph's validated inputs (`graph_inputs`) and the "is this a
ready .onnx" rule (`is_ready_model`) live here once; export/, the backends, the latent path and
the CLI read them. `read_metadata` and `check_metadata` read and check a model file's side.
Imports numpy and the project's errors only (onnx when a file's metadata is read).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError

FORMAT_VERSION = "1"
META_PREFIX = "ganterp_fast."
INPUT_NAMES = ("z", "class_vector", "truncation_weights")
OUTPUT_NAME = "frames"
Z_DIM = 128  # BigGAN-deep's latent size
NUM_CLASSES = 1000  # ImageNet's classes, in BigGAN's order
N_STATS = 51  # statistics rows per batch norm: truncations 0, 0.02, ..., 1
TRUNCNORM_BOUND = 2.0  # BigGAN samples z from a normal truncated to [-2, 2], then scales it by the truncation
# The checkpoints the exporter reads (pytorch-pretrained-biggan's layout) and the pretrained names.
PRETRAINED_NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
# Width of each input after its batch axis.
INPUT_WIDTHS = {"z": Z_DIM, "class_vector": NUM_CLASSES, "truncation_weights": N_STATS}

# Run-time choices, named once: the CLI, the render options and the backends read these.
PRECISIONS = ("auto", "fp32", "fp16", "int8", "bf16")  # bf16: the CPU through OpenVINO (engine.backends)
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")  # what an .onnx holds; bf16 runs the fp32 export
AUTO_BF16 = "auto-bf16"  # planned by "auto" on a native-bf16 CPU: bf16 if the model passes its gate, else fp32
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


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], bound: float = TRUNCNORM_BOUND) -> np.ndarray:
    """Standard normal samples truncated to [-bound, bound] by redrawing, in float64."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > bound
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > bound
    return values


# ----------------------------------------------------------------------------------------
# The graph's inputs


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


def graph_inputs(
    z: np.ndarray, class_vectors: np.ndarray, truncation: float | Sequence[float] | np.ndarray = 0.4
) -> dict[str, np.ndarray]:
    """The graph's validated float32 inputs: z [B, 128], class vectors [B, 1000], the truncation's mixing weights.

    `truncation` is one value in (0, 1] or one per sample. Raises `InputError` naming the shape that would work.
    """
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


def psnr(mse: float) -> float:
    """PSNR in dB of uint8 frames from their mean squared error; infinity where they are equal."""
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def frames_psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of uint8 frames against reference frames of the same shape."""
    error = np.asarray(frames, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return psnr(float(np.mean(error**2)))


# ----------------------------------------------------------------------------------------
# A model file: ready or not, and its metadata

MAKE_ONE = "make one with: ganterp-fast export biggan-deep-128 -o model.onnx"
MODEL_CHOICES = (
    "an .onnx made by 'ganterp-fast export', a model name (biggan-deep-128|256|512), a checkpoint directory "
    "or a Hub model (hf:OWNER/REPO[/FILE.onnx])"
)


def is_ready_model(model: str | os.PathLike[str]) -> bool:
    """Whether `model` names a ready .onnx (used as it is) rather than a model name or checkpoint directory."""
    text = os.fspath(model)
    if text.startswith("hf:"):  # hf:OWNER/REPO/FILE.onnx[@REVISION] (engine.backends.hub)
        text = text.partition("@")[0]
    return text.lower().endswith(".onnx")


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


def model_precision(metadata: dict[str, str]) -> str:
    """The precision a model file was exported in ("fp32", "fp16", "int8"), from its metadata."""
    return metadata.get(META_PREFIX + "precision", "fp32")


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
    if metadata.get(META_PREFIX + "kind") == "foreign":  # a wrapped foreign graph (backends.foreign): its roles say
        inputs = INPUT_NAMES
    if inputs != INPUT_NAMES or metadata.get(META_PREFIX + "outputs") != OUTPUT_NAME:
        raise ModelError(
            f"{path} declares inputs {inputs} and output {metadata.get(META_PREFIX + 'outputs')!r}; "
            f"expected {INPUT_NAMES} and {OUTPUT_NAME!r}"
        )
    try:
        int(metadata[META_PREFIX + "resolution"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path} has no valid {META_PREFIX}resolution metadata") from exc
