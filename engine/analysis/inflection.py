"""Inflection points of the smoothed signal: the seed's `get_inflection_points`, vectorised.

The seed's Python loop takes two window means at every position it visits; this tests every
position at once with numpy and returns the same indices. Kept apart from `analysis`, which
calls it, because the argument for that exactness (window means, re-tests near a threshold)
reads on its own.
"""

from __future__ import annotations

import numpy as np

from ganterp_fast.engine.errors import InputError

INFLECTION_TYPES = ("min", "max", "both")


def inflection_points(
    arr: np.ndarray,
    threshold: float,
    absolute_threshold: float = 8e-2,
    type: str = "both",
    rolling_length: int = 200,
) -> np.ndarray:
    """The seed's `get_inflection_points`, with identical output, in O(n) vectorised steps.

    The loop slides a position c = i + R + 1 and tests whether arr[c] is a peak against the
    mean of the R values before c - 1 and the R values after c; on a hit it jumps R ahead.
    Here every position is tested at once (window means from a cumulative sum), positions
    whose outcome lies within rounding of a threshold are re-tested with the loop's own
    `np.mean`, and the jumps are then followed through the (sparse) hits.
    """
    if type not in INFLECTION_TYPES:
        raise InputError(f"inflection type must be one of {', '.join(INFLECTION_TYPES)}, got {type!r}")
    a = np.asarray(arr, dtype=np.float64)
    n = len(a)
    r = int(rolling_length)
    points = [0]
    c = np.arange(r + 1, n)  # every position the loop can visit
    if len(c):
        hits, accepted = _peak_tests(a, c, r, threshold, absolute_threshold, type)
        hit_positions = c[hits]
        position = r + 1
        while True:
            k = np.searchsorted(hit_positions, position)
            if k == len(hit_positions):
                break
            hit = hit_positions[k]
            if accepted[hit - (r + 1)]:
                points.append(int(hit))
            position = hit + r
    points.append(n - 1)
    if n <= 1:
        points = [0]
    return np.array(points, dtype=np.int64)


def _peak_tests(
    a: np.ndarray, c: np.ndarray, r: int, threshold: float, absolute_threshold: float, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """For each position c: does the loop's peak test pass (a jump), and is c then kept."""
    n = len(a)
    # Window means over strided views: the same pairwise summation as the loop's np.mean.
    window_mean = np.lib.stride_tricks.sliding_window_view(a, r).mean(axis=1)  # mean(a[s:s+r])
    prev_mean = window_mean[c - 1 - r]
    next_mean = np.full(len(c), np.nan)
    full = c + 1 + r <= n
    next_mean[full] = window_mean[c[full] + 1]
    for j in np.flatnonzero(~full & (c + 1 < n)):  # the last r positions: shorter windows
        next_mean[j] = np.mean(a[c[j] + 1 :])
    next_len = np.minimum(c + 1 + r, n) - (c + 1)
    right = a[np.minimum(c + 1, n - 1)]
    local_peak = np.sign(a[c] - a[c - 1]) == np.sign(a[c] - right)
    local_peak &= next_len > 0  # at the last position the loop's test is already false

    d_prev = a[c] - prev_mean
    d_next = a[c] - next_mean
    passes = _test(d_prev, d_next, local_peak, threshold)

    # Should a window mean ever differ from np.mean in the last bits, re-evaluate the
    # positions whose outcome that could change exactly as the loop does.
    tol = 1e-12 * max(1.0, float(np.max(np.abs(a))) if n else 1.0)
    with np.errstate(invalid="ignore"):
        surely_small = (np.abs(d_prev) < threshold - tol) | (np.abs(d_next) < threshold - tol)
        near = (
            (np.abs(d_prev) <= tol)
            | (np.abs(d_next) <= tol)
            | (np.abs(np.abs(d_prev) - threshold) <= tol)
            | (np.abs(np.abs(d_next) - threshold) <= tol)
        )
    for j in np.flatnonzero(local_peak & near & ~surely_small):
        pos = int(c[j])
        i = pos - r - 1
        exact_prev = np.mean(a[i : i + r])
        exact_next = np.mean(a[pos + 1 : pos + r + 1])
        passes[j] = _test(
            np.array([a[pos] - exact_prev]), np.array([a[pos] - exact_next]), np.array([True]), threshold
        )[0]

    if kind == "min":
        skipped = (a[c] > a[c - 1]) | (a[c] > absolute_threshold)
    elif kind == "max":
        skipped = a[c] < a[c - 1]
    else:
        skipped = np.zeros(len(c), dtype=bool)
    return passes, passes & ~skipped


def _test(d_prev: np.ndarray, d_next: np.ndarray, local_peak: np.ndarray, threshold: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (
            (np.sign(d_prev) == np.sign(d_next))
            & local_peak
            & (np.abs(d_prev) > threshold)
            & (np.abs(d_next) > threshold)
        )
