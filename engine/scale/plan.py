"""Segment plans: which frame ranges a segmented render cuts a video into.

A plan is a pure function of the frame count, the frame rate, the segment length asked for
and the number of workers, so a stopped render finds its segments again; the plan a render
started with is also kept beside its segments (`resume.SegmentStore`), so `--resume` finds
them with any number of workers.

One worker: ranges of `seconds` each from the start, a short tail merged into the one
before it. Several workers: as many segments as that, rounded up to a whole number of
rounds (a multiple of the workers), all of one size, so every worker is busy until the end
instead of most of them idling while the last few segments render.
"""

from __future__ import annotations

from fractions import Fraction

from ganterp_fast.engine.errors import InputError

# Segments: about this long by default. No segment is shorter than MIN_SEGMENT_SECONDS
# (x264 segments of a few frames carry no B-frame delay and break timestamp order).
SEGMENT_SECONDS = 10.0
MIN_SEGMENT_SECONDS = 1.0

Ranges = list[tuple[int, int]]


def check_segment_seconds(seconds: float | None) -> float:
    """`seconds`, or the default for None; InputError for anything but a positive number."""
    if seconds is None:
        return SEGMENT_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
        raise InputError(
            f"segment_seconds must be a positive number of seconds (default {SEGMENT_SECONDS:g}), got {seconds!r}"
        )
    return float(seconds)


def plan_segments(num_frames: int, fps: Fraction, seconds: float = SEGMENT_SECONDS, *, workers: int = 1) -> Ranges:
    """Consecutive frame ranges [a, b) covering 0..num_frames, about `seconds` long each.

    One worker: ranges of `seconds` from the start; a last one shorter than
    MIN_SEGMENT_SECONDS is merged into the one before it. `workers` > 1: the same count
    rounded up to a multiple of `workers` (fewer rounds where segments would fall under
    MIN_SEGMENT_SECONDS), all of one size to a frame.
    """
    seconds = check_segment_seconds(seconds)
    length = max(1, round(seconds * fps))
    minimum = max(1, round(MIN_SEGMENT_SECONDS * fps))
    if workers > 1 and num_frames > length:
        return _balanced(num_frames, -(-num_frames // length), workers, minimum)
    bounds = list(range(0, num_frames, length)) + [num_frames]
    ranges = list(zip(bounds[:-1], bounds[1:]))
    if len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < minimum:
        ranges[-2:] = [(ranges[-2][0], num_frames)]
    return ranges


def _balanced(num_frames: int, count: int, workers: int, minimum: int) -> Ranges:
    """`count` rounded up to whole rounds of `workers` (as many rounds as segments of at least
    `minimum` frames allow), cut into ranges whose lengths differ by at most one frame."""
    rounds = -(-count // workers)
    while rounds > 1 and num_frames // (rounds * workers) < minimum:
        rounds -= 1
    count = rounds * workers
    if num_frames // count < minimum:  # fewer frames than one short segment per worker
        count = max(1, num_frames // minimum)
    bounds = [index * num_frames // count for index in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def covers(ranges: Ranges, num_frames: int) -> bool:
    """Whether `ranges`, in order, cover 0..num_frames with no gap, overlap or empty range."""
    expected = 0
    for start, stop in ranges:
        if start != expected or stop <= start:
            return False
        expected = stop
    return expected == num_frames
