"""Keyframes for an open-ended stream: the class and z of inflection point k, for any k.

A file's path (`latent.path.LatentPath`) knows all its points in advance; a microphone's
points arrive one by one, so here each keyframe is drawn on its own from the seed and its
index: the given classes (or a cue sheet's) for the first points in order, then seeded random
ones, as a render does; z per point or one fixed z. Between keyframes z moves by lerp or slerp
and the class vector mixes the two classes, with `LatentPath.frames`'s own functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ganterp_fast.engine.backends.contract import truncated_normal
from ganterp_fast.engine.latent.classes import class_index
from ganterp_fast.engine.latent.keyframes import between, class_vectors, model_classes
from ganterp_fast.engine.latent.path import PathOptions


class LivePath:
    """z and class vectors at path positions u (point index + fraction) of an open-ended stream."""

    def __init__(self, options: PathOptions, *, z_dim: int, num_classes: int, z_truncated: bool = True) -> None:
        self.options = options
        self.z_dim, self.num_classes = z_dim, num_classes
        if options.cues is not None:
            given: Sequence[int | str] = [cue.class_id for cue in options.cues.cues]
        else:
            given = model_classes(options, options.classes, num_classes)
        self._given = [class_index(item) if num_classes == 1000 else int(item) for item in given]
        self._scale = options.truncation if z_truncated else 1.0
        self._pulse_direction = options.pulse_direction(z_dim)  # the render's own
        self._z_cache: dict[int, np.ndarray] = {}
        self._class_cache: dict[int, int] = {}

    def class_id(self, k: int) -> int:
        """The class of keyframe k: the given ones in order, then drawn from the seed and k."""
        if not self.num_classes:
            return 0
        if k < len(self._given):
            return self._given[k]
        if k not in self._class_cache:
            self._trim(self._class_cache, k)
            rng = np.random.default_rng([self.options.seed, 5, k])
            self._class_cache[k] = int(rng.integers(0, self.num_classes))
        return self._class_cache[k]

    def z(self, k: int) -> np.ndarray:
        """z of keyframe k (scaled by the truncation where the model takes z so)."""
        k = 0 if self.options.z_mode == "fixed" else k
        if k not in self._z_cache:
            self._trim(self._z_cache, k)
            rng = np.random.default_rng([self.options.seed, 4, k])
            self._z_cache[k] = (truncated_normal(rng, (self.z_dim,)) * self._scale).astype(np.float32)
        return self._z_cache[k]

    @staticmethod
    def _trim(cache: dict, k: int) -> None:
        """Keep the cache small however long the session runs: only keyframes near k."""
        for old in [key for key in cache if key < k - 4]:
            del cache[old]

    def latents(self, positions: np.ndarray, pulses: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """z [B, D] and class vectors [B, C] at path positions u (with the pulse's push on z, 0..1 each)."""
        u = np.maximum(np.asarray(positions, dtype=np.float64), 0.0)
        low = np.floor(u).astype(np.int64)
        frac = (u - low).astype(np.float32)
        z_low = np.stack([self.z(int(k)) for k in low])
        z_high = np.stack([self.z(int(k) + 1) for k in low])
        z = z_low.copy() if self.options.z_mode == "fixed" else between(z_low, z_high, frac, self.options.interpolation)
        if pulses is not None and self.options.pulse > 0:
            z = self.options.pulsed(z, np.asarray(pulses, dtype=np.float64), self._pulse_direction)
        low_ids = [self.class_id(int(k)) for k in low]
        high_ids = [self.class_id(int(k) + 1) for k in low]
        return z.astype(np.float32), class_vectors(low_ids, high_ids, frac, self.num_classes)
