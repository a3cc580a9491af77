"""Timing a call: repeated runs after warm-up, and the rates a benchmark reports from them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

WARMUP_CALLS = 2  # first calls choose kernels (cuDNN's search), allocate, capture CUDA graphs
MIN_RUNS = 3


def time_calls(
    run: Callable[[], Any], *, seconds: float, warmup: int = WARMUP_CALLS, min_runs: int = MIN_RUNS
) -> list[float]:
    """Seconds of each call of `run`, repeated for `seconds` (at least `min_runs` calls) after warm-up."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - began < seconds:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def rate_figures(times: Sequence[float], batch: int) -> dict[str, Any]:
    """images/s from the median call, latency p50/p95 in ms, and the window's own images/s."""
    median = statistics.median(times)
    return {
        "images_per_s": round(batch / median, 3),
        "latency_ms_p50": round(1000 * median, 3),
        "latency_ms_p95": round(1000 * float(np.percentile(times, 95)), 3),
        "images_per_s_window": round(batch * len(times) / sum(times), 3),
        "runs": len(times),
        "seconds": round(sum(times), 3),
    }
