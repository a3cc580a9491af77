"""Run the benchmarks one after another, saving each table and JSON record under `--out`.

    python -m benchmarks.run_all                          # everything, into benchmarks/results
    python -m benchmarks.run_all --only render scaling    # a selection

Each benchmark runs once with its defaults (see benchmarks/README.md for their options and
running times); `bench_gpu` skips itself where no CUDA GPU is present. Run it on a quiet
machine: other work distorts every figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# name -> (module, extra arguments)
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "analysis": ("benchmarks.bench_analysis", []),
    "generator": ("benchmarks.bench_generator", []),
    "int8": ("benchmarks.bench_int8", ["--no-sweep"]),
    "render": ("benchmarks.bench_render", ["--variants", "--int8"]),
    "scaling": ("benchmarks.bench_scaling", []),
    "gpu": ("benchmarks.bench_gpu", []),
    "openvino": ("benchmarks.bench_openvino", ["--batches", "1", "4", "8"]),
    "live": ("benchmarks.bench_live", []),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only:
        module, extra = BENCHMARKS[name]
        print(f"== {name} ({module})", flush=True)
        started = time.perf_counter()
        # Each in a fresh process: thread pools (ONNX Runtime's, torch's OpenMP) left by one
        # benchmark may keep spinning and slow the next.
        code = subprocess.run(
            [sys.executable, "-m", module, *extra, "--out", str(args.out.resolve())],
            cwd=Path(__file__).resolve().parent.parent,
        ).returncode
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
