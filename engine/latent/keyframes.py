"""Keyframes of the latent path: slerp between latents, and the classes a model takes.

A foreign generator has its own latent size and classes (0: unconditional, keyframes alone;
C: indices 0..C-1, ImageNet's names only for 1000-class models); `latent.path` asks here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ganterp_fast.engine.backends.contract import NUM_CLASSES
from ganterp_fast.engine.fields import Options, error


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows of a to rows of b along the great circle at fractions t (lerp where they are parallel)."""
    a64, b64, t64 = a.astype(np.float64), b.astype(np.float64), t.astype(np.float64)[:, None]
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cosine = np.clip(np.sum(a64 * b64, axis=1) / np.maximum(norms, 1e-12), -1.0, 1.0)
    omega = np.arccos(cosine)[:, None]
    sin = np.sin(omega)
    straight = sin[:, 0] < 1e-6
    safe = np.where(sin == 0, 1.0, sin)
    out = (np.sin((1 - t64) * omega) * a64 + np.sin(t64 * omega) * b64) / safe
    out[straight] = (a64 * (1 - t64) + b64 * t64)[straight]
    return out.astype(np.float32)


def between(low: np.ndarray, high: np.ndarray, frac: np.ndarray, interpolation: str) -> np.ndarray:
    """Rows of `low` to rows of `high` at fractions `frac`: along the sphere ("slerp") or straight."""
    if interpolation == "slerp":
        return slerp(low, high, frac)
    return low * (1 - frac)[:, None] + high * frac[:, None]


def class_vectors(low: np.ndarray, high: np.ndarray, frac: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 [B, num_classes]: class `low[i]` weighted 1 - frac[i] plus class `high[i]` weighted frac[i]
    ([B, 0] for an unconditional model)."""
    vectors = np.zeros((len(frac), num_classes), dtype=np.float32)
    if num_classes:
        rows = np.arange(len(frac))
        np.add.at(vectors, (rows, low), 1 - frac)
        np.add.at(vectors, (rows, high), frac)
    return vectors


def model_classes(options: Options, classes: Sequence[int | str], num_classes: int) -> tuple[int | str, ...]:
    """`options`' requested classes, checked against a model's own count (0: unconditional, no classes);
    a refusal is the `classes` field's `OptionError`."""
    if num_classes == NUM_CLASSES or not classes:
        return tuple(classes)
    if num_classes == 0:
        raise error(options, "classes", "must be left out: the model is unconditional (it has no class input)")
    for item in classes:
        if not str(item).strip().isdigit() or int(item) >= num_classes:
            rule = f"must be class indices 0 to {num_classes - 1} for this {num_classes}-class model, got {item!r}"
            raise error(options, "classes", rule)
    return tuple(int(item) for item in classes)
