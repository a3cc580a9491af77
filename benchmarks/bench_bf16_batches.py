"""OpenVINO bf16 per batch size: each size's own compiled model against a batch run padded in a larger one.

`ganterp-fast bench` once measured bf16 batch 2 at half the rate of batch 1: the generator
compiles one static-shape model per batch size, and ran a size it had not compiled padded in
a compiled one up to twice its size (batch 2 in the gate's batch 4), every call. Now a size
met a second time gets its own model. This measures both in one process, call by call in
rotating order, so other work on a shared machine slows every variant alike: images/s from
the median call of each, and the ratios that matter (padded 2 against own 2, own 2 against 1).

    python -m benchmarks.bench_bf16_batches --model /tmp/bg128.onnx
    python -m benchmarks.bench_bf16_batches --model bg128.onnx --batches 1 2 4 8 --rounds 15 --hints LATENCY THROUGHPUT

The model is a full-size fp32 export (`ganterp-fast export biggan-deep-128 --weights random -o bg128.onnx`).
Needs a CPU with native bf16 (AVX512-BF16 or AMX); says so and exits 0 elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import load_average


def _variants(
    model: Path, batches: Sequence[int], hints: Sequence[str], threads: int | None
) -> dict[str, tuple[int, Callable[[], Any]]]:
    """name -> (images per call, one call): each batch in its own compiled model, and batch b padded in 2b."""
    from ganterp_fast.engine.backends.gate import gate_latents
    from ganterp_fast.engine.backends.openvino_generator import OpenVinoGenerator

    z, classes, truncations = gate_latents(2 * max(batches))
    variants: dict[str, tuple[int, Callable[[], Any]]] = {}
    for hint in hints:
        generators = {
            batch: OpenVinoGenerator(model, threads=threads, performance_hint=hint, first_batch=batch)
            for batch in sorted(set(batches))
        }
        for batch in batches:
            generator = generators[batch]
            variants[f"{hint} batch {batch}"] = (
                batch,
                _call(generator, z[:batch], classes[:batch], truncations[:batch]),
            )
            if 2 * batch in generators:  # the former rule: its rows repeated up to the compiled 2b, every call
                padded = np.concatenate([np.arange(batch), np.full(batch, batch - 1)])
                variants[f"{hint} batch {batch} padded in {2 * batch}"] = (
                    batch,
                    _call(generators[2 * batch], z[padded], classes[padded], truncations[padded]),
                )
    return variants


def _call(generator: Any, z: np.ndarray, classes: np.ndarray, truncations: np.ndarray) -> Callable[[], Any]:
    return lambda: generator(z, classes, truncation=truncations)


def _interleaved(variants: dict[str, tuple[int, Callable[[], Any]]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each call, the variants in rotating order each round, after two warm-up calls each."""
    names = list(variants)
    for name in names:
        for _ in range(2):
            variants[name][1]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            variants[name][1]()
            times[name].append(time.perf_counter() - started)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a full-size fp32 export (.onnx)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--hints", nargs="+", default=["LATENCY"], choices=["LATENCY", "THROUGHPUT"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--out", type=Path, default=None, help="also save bf16-batches.json and .md here")
    args = parser.parse_args(argv)
    from ganterp_fast.engine.backends.capability import bf16_capability

    capability = bf16_capability()
    if not capability.native:
        print(f"bench_bf16_batches: this CPU ({capability.describe()}) has no native bf16, skipped.")
        return 0
    load_before = load_average()
    variants = _variants(args.model, args.batches, args.hints, args.threads)
    times = _interleaved(variants, args.rounds)
    rows = {}
    for name, seconds in times.items():
        batch = variants[name][0]
        median = statistics.median(seconds)
        rows[name] = {
            "images_per_call": batch,
            "images_per_s": round(batch / median, 3),
            "latency_ms_p50": round(1000 * median, 1),
            "latency_ms_min": round(1000 * min(seconds), 1),
        }
    ratios = {}
    for hint in args.hints:
        own, padded, one = (rows.get(f"{hint} batch {b}") for b in (2, "2 padded in 4", 1))
        if own and padded:
            ratios[f"{hint}: own batch 2 / padded in 4 (images/s)"] = round(
                own["images_per_s"] / padded["images_per_s"], 3
            )
        if own and one:
            ratios[f"{hint}: own batch 2 / batch 1 (images/s)"] = round(own["images_per_s"] / one["images_per_s"], 3)
    result = {
        "settings": {
            "model": str(args.model),
            "batches": args.batches,
            "hints": args.hints,
            "rounds": args.rounds,
            "threads": args.threads,
            "cpu": capability.describe(),
            "openvino": capability.openvino_version,
            "load_average_1min_before_after": [load_before, load_average()],
        },
        "variants": rows,
        "ratios": ratios,
    }
    table = markdown_table(
        ["variant", "images/s", "p50 ms", "min ms"],
        [[name, r["images_per_s"], r["latency_ms_p50"], r["latency_ms_min"]] for name, r in rows.items()],
    )
    table += "\n\n" + "\n".join(f"{name}: {value}" for name, value in ratios.items())
    write_results("bf16-batches", result, table, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
