"""The latent path: a (class, z) pair per inflection point, sampled at each video frame's time.

Segment k of the analysis runs from inflection point k to k+1 and its alphas rise from near 0
to 1, so the path's position at spectrogram column j is u = k + alpha[j]: class and z are
interpolated between point floor(u) and the next one. Frames sample u at their own time
(t = f / fps, column j sits at j * hop / sample_rate, as the original's one frame per
column did), so any frame rate follows the same path. Everything is derived from the
analysis, the classes and the seed: any frame range can be computed on its own, with
identical results whatever the batch size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .analysis import Analysis
from .classes import NUM_CLASSES, class_index
from .errors import InputError

log = logging.getLogger(__name__)

Z_DIM = 128  # BigGAN-deep's latent size
Z_MODES = ("per-point", "fixed")
TRUNCNORM_BOUND = 2.0  # BigGAN samples z from a normal truncated to [-2, 2]
MIN_FPS, MAX_FPS = 1, 1000


@dataclass(frozen=True)
class PathOptions:
    """How the path is drawn; the same options and seed give the same frames."""

    classes: tuple[int | str, ...] = ()
    z_mode: str = "per-point"
    truncation: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.z_mode not in Z_MODES:
            raise InputError(f"z mode must be one of {', '.join(Z_MODES)}, got {self.z_mode!r}")
        if not (isinstance(self.truncation, (int, float)) and 0 < self.truncation <= 1):
            raise InputError(f"truncation must be in (0, 1], got {self.truncation}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {self.seed}")
        for item in self.classes:  # unknown names and indices fail here, before any work
            class_index(item)


def parse_fps(value: str | float | int | Fraction, *, sample_rate: int | None = None) -> Fraction:
    """A frame rate from '30', '29.97', '30000/1001' or 'native' (sample rate / 128)."""
    text = str(value).strip().lower()
    if text == "native":
        if sample_rate is None:
            raise InputError("fps 'native' needs the audio's sample rate")
        fps = Fraction(sample_rate, 128)
        if fps > MAX_FPS:
            raise InputError(
                f"fps 'native' is {float(fps):g} at {sample_rate} Hz, above {MAX_FPS}: give a rate such as 30 or 60"
            )
        return fps
    try:
        fps = Fraction(text).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise InputError(
            f"fps must be a positive number, a ratio such as 30000/1001, or 'native'; got {value!r}"
        ) from None
    # Below 1 fps a single frame would outlast a short song (frames are at least 1), leaving a
    # video longer than its soundtrack; above 1000 no player shows the frames.
    if not MIN_FPS <= fps <= MAX_FPS:
        raise InputError(
            f"fps must be from {MIN_FPS} to {MAX_FPS} frames per second (e.g. 24, 30, 30000/1001), got {value!r}"
        )
    return fps


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], bound: float = TRUNCNORM_BOUND) -> np.ndarray:
    """Standard normal samples truncated to [-bound, bound] by redrawing, in float64."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > bound
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > bound
    return values


class LatentPath:
    """Per-frame z and class vectors for a render, computed batch by batch."""

    def __init__(self, analysis: Analysis, options: PathOptions, fps: Fraction) -> None:
        self.analysis = analysis
        self.options = options
        self.fps = Fraction(fps)
        points = analysis.inflection_points
        self.num_points = len(points)
        self.class_ids, self.unused_classes, self.random_classes = _choose_classes(
            options.classes, self.num_points, options.seed
        )
        z_rng = np.random.default_rng([options.seed, 1])
        count = 1 if options.z_mode == "fixed" else self.num_points
        self.z_points = (truncated_normal(z_rng, (count, Z_DIM)) * options.truncation).astype(np.float32)
        # Path position per spectrogram column: segment index + alpha, the last column = K-1.
        segment = np.searchsorted(points, np.arange(analysis.num_columns), side="right") - 1
        segment = np.minimum(segment, max(self.num_points - 2, 0))
        self._u = segment + analysis.alphas if self.num_points > 1 else np.zeros(analysis.num_columns)
        self._u[-1] = self.num_points - 1
        self._column_times = np.arange(analysis.num_columns) * analysis.hop_length / analysis.sample_rate
        self.num_frames = frame_count(analysis.duration_s, self.fps)

    def positions(self, frames: np.ndarray) -> np.ndarray:
        """The path position u (inflection point index + fraction) at each frame index."""
        times = np.asarray(frames, dtype=np.float64) / float(self.fps)
        return np.interp(times, self._column_times, self._u)

    def frames(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """z [B, 128] (already scaled by truncation) and class vectors [B, 1000] for frames start..stop-1."""
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(f"frame range {start}..{stop} outside 0..{self.num_frames}")
        u = self.positions(np.arange(start, stop))
        low = np.minimum(np.floor(u).astype(np.int64), self.num_points - 1)
        high = np.minimum(low + 1, self.num_points - 1)
        frac = (u - low).astype(np.float32)
        if self.options.z_mode == "fixed":
            z = np.repeat(self.z_points, len(u), axis=0)
        else:
            z = self.z_points[low] * (1 - frac)[:, None] + self.z_points[high] * frac[:, None]
        classes = np.asarray(self.class_ids)
        vectors = np.zeros((len(u), NUM_CLASSES), dtype=np.float32)
        rows = np.arange(len(u))
        np.add.at(vectors, (rows, classes[low]), 1 - frac)
        np.add.at(vectors, (rows, classes[high]), frac)
        return z.astype(np.float32), vectors

    def batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first frame index, z, class vectors) for consecutive batches of frames."""
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        stop = self.num_frames if stop is None else stop
        for first in range(start, stop, batch_size):
            z, vectors = self.frames(first, min(first + batch_size, stop))
            yield first, z, vectors

    def schedule(self) -> list[tuple[float, int]]:
        """(time in seconds, class index) at each inflection point."""
        times = self.analysis.inflection_points * self.analysis.hop_length / self.analysis.sample_rate
        return [(float(t), int(c)) for t, c in zip(times, self.class_ids)]


def _choose_classes(requested: Sequence[int | str], count: int, seed: int) -> tuple[list[int], list[int], int]:
    """The first `count` requested classes, the rest drawn at random (seeded).

    Returns (classes, requested ones left unused, how many were drawn).
    """
    given = [class_index(item) for item in requested]
    chosen = given[:count]
    unused = given[count:]
    missing = count - len(chosen)
    if missing > 0:
        rng = np.random.default_rng([seed, 0])
        chosen += [int(i) for i in rng.integers(0, NUM_CLASSES, size=missing)]
    if unused:
        log.warning(
            "%d inflection point%s but %d classes given: %d unused (%s)",
            count,
            "" if count == 1 else "s",
            len(given),
            len(unused),
            ", ".join(map(str, unused)),
        )
    return chosen, unused, max(missing, 0)


def frame_count(duration_s: float, fps: Fraction) -> int:
    """Frames for a soundtrack of `duration_s` seconds at `fps`: the nearest whole number, at least 1."""
    return max(1, math.floor(Fraction(duration_s) * Fraction(fps) + Fraction(1, 2)))
