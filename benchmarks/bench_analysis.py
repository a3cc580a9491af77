"""Analysis speed: the engine against the seed's plain loop on the same long song.

The seed's loop runs on the engine's own signal, so the comparison isolates the
inflection-point search; the engine's full time (spectrogram included) is reported too.
Both must give identical indices.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from benchmarks.common import markdown_table, write_results
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze_samples, inflection_points
from ganterp_fast.engine.audio.example import example_music


def seed_loop(arr, threshold, absolute_threshold=8e-2, type="both", rolling_length=200):
    """The seed's get_inflection_points, as published."""
    points = [0]
    i = 0
    while i < len(arr) - rolling_length - 1:
        prev_mean = np.mean(arr[i : i + rolling_length])
        c = i + rolling_length + 1
        next_mean = np.mean(arr[c + 1 : c + rolling_length + 1])
        is_peak = np.sign(arr[c] - prev_mean) == np.sign(arr[c] - next_mean) and np.sign(
            arr[c] - arr[c - 1]
        ) == np.sign(arr[c] - arr[c + 1])
        if is_peak and np.abs(arr[c] - prev_mean) > threshold and np.abs(arr[c] - next_mean) > threshold:
            if (type == "min" and (arr[c] > arr[c - 1] or arr[c] > absolute_threshold)) or (
                type == "max" and arr[c] < arr[c - 1]
            ):
                i += rolling_length
                continue
            points.append(c)
            i += rolling_length
        else:
            i += 1
    points.append(len(arr) - 1)
    return np.array(points)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--out", help="folder for the JSON and Markdown results")
    args = parser.parse_args(argv)

    rate = args.sample_rate
    base = example_music(sample_rate=rate)[0]
    samples = np.tile(base, int(np.ceil(args.minutes * 60 * rate / len(base))))[: int(args.minutes * 60 * rate)]
    rows, record = [], {"minutes": args.minutes, "sample_rate": rate, "cases": []}
    for kind in ("min", "both"):
        options = AnalysisOptions(inflection_type=kind, threshold=2e-3)
        began = time.perf_counter()
        result = analyze_samples(samples, rate, options)
        engine_total = time.perf_counter() - began
        began = time.perf_counter()
        fast = inflection_points(
            result.signal, options.threshold, options.absolute_threshold, kind, options.rolling_length
        )
        engine_search = time.perf_counter() - began
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = seed_loop(
                result.signal, options.threshold, options.absolute_threshold, kind, options.rolling_length
            )
        seed_search = time.perf_counter() - began
        identical = bool(np.array_equal(fast, reference) and np.array_equal(result.inflection_points, reference))
        case = {
            "inflection_type": kind,
            "columns": result.num_columns,
            "points": len(reference),
            "engine_total_s": engine_total,
            "engine_search_s": engine_search,
            "seed_search_s": seed_search,
            "search_speedup": seed_search / engine_search,
            "identical_indices": identical,
        }
        record["cases"].append(case)
        rows.append(
            [
                kind,
                result.num_columns,
                len(reference),
                f"{engine_total:.2f}",
                f"{engine_search * 1000:.1f} ms",
                f"{seed_search:.2f} s",
                f"{case['search_speedup']:.0f}x",
                identical,
            ]
        )
    table = markdown_table(
        [
            "type",
            "columns",
            "points",
            "engine analysis (s)",
            "engine search",
            "seed loop",
            "search speed-up",
            "same indices",
        ],
        rows,
    )
    write_results("analysis", record, f"Analysis of {args.minutes:g} min at {rate} Hz\n\n{table}", args.out)


if __name__ == "__main__":
    main()
