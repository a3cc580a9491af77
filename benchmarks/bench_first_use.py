"""The README's try-out on first use (empty model cache) against the same command cached.

`ganterp-fast render --example --weights random -o demo.mp4` runs in a fresh process with a
fresh `GANTERP_CACHE_DIR` (first use: random weights, ONNX export, parity check, caching, and
the OpenVINO compile and quality gate where bf16 runs), then again in a fresh process on that
cache (cached). The preparation is the difference of the two wall times; the target is at
most 0.75x the cached render. The same two runs of an earlier commit (default 9526868, the
code before first use was made fast) sit beside them: its tree is checked out with
`git worktree` under the temporary folder and run from there with PYTHONPATH, installed nowhere.

    python -m benchmarks.bench_first_use                 # one round, before and after
    python -m benchmarks.bench_first_use --runs 3 --out benchmarks/results
    python -m benchmarks.bench_first_use --before ''     # this code only
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_name, write_results

REPO = Path(__file__).resolve().parent.parent
BEFORE = "9526868"
TARGET_RATIO = 0.75
COMMAND = ["render", "--example", "--weights", "random"]
_SUMMARY = re.compile(r"in all, .*?\bmodel ([0-9.]+) s")
_READY = re.compile(r"model ready in ([0-9.]+) s \((.*)\)")


def before_tree(commit: str) -> Path:
    """A PYTHONPATH entry holding `ganterp_fast` as `commit` had it (a git worktree, laid out as pyproject maps it)."""
    root = Path(tempfile.gettempdir()) / f"ganterp-before-{commit}"
    tree = root / "tree"
    if not tree.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True)
    package = root / "path" / "ganterp_fast"
    if not package.is_dir():
        package.mkdir(parents=True)
        for item in (tree / "src" / "ganterp_fast").iterdir():
            (package / item.name).symlink_to(item)
        for part in ("engine", "export", "cli", "ui"):
            (package / part).symlink_to(tree / part)
    return package.parent


def run_once(label: str, cache: Path, output: Path, pythonpath: Path | None) -> dict[str, Any]:
    """One try-out in a fresh process: wall time, the summary's model time, the steps it printed."""
    env = {**os.environ, "GANTERP_CACHE_DIR": str(cache)}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    argv = [sys.executable, "-m", "ganterp_fast", *COMMAND, "-o", str(output)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cache.parent)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label}: exit {done.returncode}\n{done.stderr[-2000:]}")
    summary = _SUMMARY.search(done.stdout)
    ready = _READY.search(done.stderr)
    steps = {}
    if ready:
        for part in ready.group(2).split(", "):
            name, seconds, _ = part.rsplit(" ", 2)
            steps[name] = float(seconds)
    record = {
        "wall_s": round(wall, 2),
        "model_s": float(summary.group(1)) if summary else None,
        "preparation_s": float(ready.group(1)) if ready else None,
        "steps_s": steps,
        "load_1min_before": round(load, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }
    print(f"{label}: {record}", file=sys.stderr, flush=True)
    return record


def pair(label: str, index: int, pythonpath: Path | None, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """First use on an empty cache, then cached on that cache: each run in a fresh process."""
    cache = work / f"{label}-cache-{index}"
    first = run_once(f"{label} first use {index + 1}", cache, work / f"{label}-first-{index}.mp4", pythonpath)
    cached = run_once(f"{label} cached {index + 1}", cache, work / f"{label}-cached-{index}.mp4", pythonpath)
    return first, cached


def summarise(first: list[dict[str, Any]], cached: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs: walls, the preparation both ways, the ratios, the export's steps."""
    first_wall = statistics.median(r["wall_s"] for r in first)
    cached_wall = statistics.median(r["wall_s"] for r in cached)
    preparation = first_wall - cached_wall
    steps = {name: statistics.median(r["steps_s"].get(name, 0.0) for r in first) for name in first[0]["steps_s"]}
    model_first = statistics.median(r["model_s"] or 0.0 for r in first)
    model_cached = statistics.median(r["model_s"] or 0.0 for r in cached)
    return {
        "first_use_wall_s": round(first_wall, 2),
        "cached_wall_s": round(cached_wall, 2),
        "preparation_s": round(preparation, 2),
        "ratio": round(preparation / cached_wall, 3),
        "model_first_use_s": model_first,
        "model_cached_s": model_cached,
        # The summary's model time, first use minus cached: the preparation alone, unlike the wall
        # times' difference untouched by how busy the machine was while the frames were made.
        "preparation_model_s": round(model_first - model_cached, 2),
        "ratio_model": round((model_first - model_cached) / cached_wall, 3),
        "export_steps_s": steps,
        "runs": {"first_use": first, "cached": cached},
    }


def table(results: dict[str, dict[str, Any]], load: tuple[float, float]) -> str:
    rows = [
        f"Try-out `ganterp-fast {' '.join(COMMAND)}`, {cpu_name()} ({os.cpu_count()} cores), "
        f"load average {load[0]:.2f} before and {load[1]:.2f} after the runs (1 min).",
        "",
        "| code | first use (s) | cached (s) | prep: wall diff (s) | ratio | prep: model time diff (s) | ratio "
        "| export steps (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["export_steps_s"].items()) or "not reported"
        rows.append(
            f"| {name} | {r['first_use_wall_s']:.1f} | {r['cached_wall_s']:.1f} | {r['preparation_s']:.1f} "
            f"| {r['ratio']:.2f} | {r['preparation_model_s']:.1f} | {r['ratio_model']:.2f} | {steps} |"
        )
    rows += [
        "",
        f"Target: preparation at most {TARGET_RATIO}x the cached render's wall time. Preparation is the first use "
        "minus the cached run, in wall time, and in the summary's model time (less sensitive to a busy machine).",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs per code (medians; default 1)")
    parser.add_argument("--before", default=BEFORE, help=f"earlier commit to compare ('' to skip; default {BEFORE})")
    parser.add_argument("--out", default=None, help="folder for first_use.md/.json (e.g. benchmarks/results)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    codes: dict[str, tuple[str, Path | None]] = {"this code": ("after", None)}
    if args.before:
        codes[f"before ({args.before})"] = ("before", before_tree(args.before))
    runs: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {name: ([], []) for name in codes}
    with tempfile.TemporaryDirectory(prefix="ganterp-first-use-") as folder:
        for index in range(args.runs):  # rounds alternate the codes, so a busy spell hits both
            for name, (label, pythonpath) in codes.items():
                first, cached = pair(label, index, pythonpath, Path(folder))
                runs[name][0].append(first)
                runs[name][1].append(cached)
    results = {name: summarise(*pairs) for name, pairs in runs.items()}
    load = (load_before, os.getloadavg()[0])
    record = {"command": " ".join(["ganterp-fast", *COMMAND]), "target_ratio": TARGET_RATIO, "load_1min": load}
    write_results("first_use", {**record, "results": results}, table(results, load), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
