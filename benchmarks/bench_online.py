"""The live analysis against the offline one on real music, for each normalisation level.

Each file is played through `OnlineAnalysis` in blocks (as if playing) with every `level`
choice and analysed offline with the same options. Per file and in total: points offline
and live (the start and the end left out), matched within the tolerance, precision and
recall, median and p95 |time difference| of the matches, median and p95 detection delay
(detected_at_s - time_s), and the realtime factor (audio seconds analysed per wall second
of the live pass).

    python -m benchmarks.bench_online /work/music/*.ogg --out benchmarks/results
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import load_average
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
from ganterp_fast.engine.analysis.online import (
    LEVELS,
    MATCH_TOLERANCE_S,
    OnlineAnalysis,
    agreement,
    matched_differences,
)
from ganterp_fast.engine.audio.decode import iter_channel0
from ganterp_fast.engine.audio.source import open_source


def live_pass(source: Any, options: AnalysisOptions, level: str, block_size: int) -> tuple[OnlineAnalysis, float]:
    """The file through OnlineAnalysis; the wall seconds of feeding it (decoding not counted)."""
    blocks = list(iter_channel0(source.info, block_size=block_size))
    online = OnlineAnalysis(source.sample_rate, options, level=level)
    began = time.perf_counter()
    for block in blocks:
        online.feed(block)
    return online, time.perf_counter() - began


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="audio files (real music)")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--tolerance", type=float, default=MATCH_TOLERANCE_S, help="seconds")
    parser.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    parser.add_argument("--out", help="folder for the JSON and Markdown results")
    args = parser.parse_args(argv)

    options = AnalysisOptions()
    record: dict[str, Any] = {
        "options": {k: getattr(options, k) for k in ("threshold", "inflection_type", "rolling_length", "smoothing")},
        "block_size": args.block_size,
        "tolerance_s": args.tolerance,
        "load_average_before": load_average(),
        "files": [],
        "totals": {},
    }
    rows = []
    pooled: dict[str, dict[str, list[float]]] = {
        level: {"live": [], "offline": [], "matched": [], "diff": [], "delay": [], "audio": [], "wall": []}
        for level in args.levels
    }
    for path in args.files:
        source = open_source(path)
        offline = analyze(source, options)
        offline_times = offline.inflection_times[1:-1]
        for level in args.levels:
            online, wall = live_pass(source, options, level, args.block_size)
            live_times = np.array([p.time_s for p in online.points[1:]])
            delays = np.array([p.detected_at_s - p.time_s for p in online.points[1:]])
            result = agreement(live_times, offline_times, delays, args.tolerance)
            matched_diffs = matched_differences(live_times, offline_times, args.tolerance)
            result.update(
                file=path.name, level=level, duration_s=offline.duration_s, realtime_factor=offline.duration_s / wall
            )
            record["files"].append(result)
            total = pooled[level]
            total["live"].append(result["live"])
            total["offline"].append(result["offline"])
            total["matched"].append(result["matched"])
            total["diff"].extend(matched_diffs)
            total["delay"].extend(delays.tolist())
            total["audio"].append(offline.duration_s)
            total["wall"].append(wall)
            rows.append(
                [
                    path.name,
                    level,
                    f"{offline.duration_s:.0f}",
                    result["offline"],
                    result["live"],
                    result["matched"],
                    fmt(result["precision"], 2),
                    fmt(result["recall"], 2),
                    fmt(result["median_abs_difference_s"]),
                    fmt(result["p95_abs_difference_s"]),
                    fmt(result["median_delay_s"]),
                    fmt(result["p95_delay_s"]),
                    f"{result['realtime_factor']:.0f}x",
                ]
            )
    for level, total in pooled.items():
        live, offline_count, matched = sum(total["live"]), sum(total["offline"]), sum(total["matched"])
        summary = {
            "live": live,
            "offline": offline_count,
            "matched": matched,
            "precision": matched / live if live else None,
            "recall": matched / offline_count if offline_count else None,
            "median_abs_difference_s": float(np.median(total["diff"])) if total["diff"] else None,
            "p95_abs_difference_s": float(np.percentile(total["diff"], 95)) if total["diff"] else None,
            "median_delay_s": float(np.median(total["delay"])) if total["delay"] else None,
            "p95_delay_s": float(np.percentile(total["delay"], 95)) if total["delay"] else None,
            "realtime_factor": sum(total["audio"]) / sum(total["wall"]),
        }
        record["totals"][level] = summary
        rows.append(
            [
                "**all**",
                level,
                f"{sum(total['audio']):.0f}",
                offline_count,
                live,
                matched,
                fmt(summary["precision"], 2),
                fmt(summary["recall"], 2),
                fmt(summary["median_abs_difference_s"]),
                fmt(summary["p95_abs_difference_s"]),
                fmt(summary["median_delay_s"]),
                fmt(summary["p95_delay_s"]),
                f"{summary['realtime_factor']:.0f}x",
            ]
        )
    record["load_average_after"] = load_average()
    table = markdown_table(
        [
            "file",
            "level",
            "s",
            "offline",
            "live",
            "matched",
            "precision",
            "recall",
            "median |dt| s",
            "p95 |dt| s",
            "median delay s",
            "p95 delay s",
            "realtime",
        ],
        rows,
    )
    title = (
        f"Live vs offline inflection points, within {args.tolerance:g} s, blocks of {args.block_size} samples "
        f"(load average {record['load_average_before']} before, {record['load_average_after']} after)"
    )
    write_results("online", record, f"{title}\n\n{table}", args.out)


if __name__ == "__main__":
    main()
