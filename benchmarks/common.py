"""What every benchmark prints beside its numbers: the machine, the versions, the date."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Device, versions and date for a result record."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": {
            name: _version(name)
            for name in ("ganterp-fast", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "av", "librosa")
            if _version(name)
        },
    }


def write_results(name: str, results: dict[str, Any], table: str, out_dir: str | os.PathLike[str] | None) -> None:
    """Print the Markdown table and the JSON record; save both under out_dir when given."""
    record = {"benchmark": name, "environment": environment(), **results}
    print(table)
    print(json.dumps(record, indent=2, default=str))
    if out_dir:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        (folder / f"{name}.md").write_text(table + "\n")


def timed(run: Callable[[], Any]) -> float:
    """Seconds one call of `run` takes."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(run: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Best and median of `repeats` timed runs after a warm-up (allocations, kernel choice).

    Rates use the best run: on a shared machine it is the one least disturbed by other work.
    """
    run()
    times = [timed(run) for _ in range(repeats)]
    return {"seconds_best": min(times), "seconds_median": statistics.median(times), "runs": repeats}


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
