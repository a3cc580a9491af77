"""The same fp32 export through OpenVINO's CPU plugin (f32 and bf16) against the engine's ONNX Runtime.

A measurement for deciding where CPU speed comes from next, not an engine backend: the
engine runs ONNX Runtime only. OpenVINO reads the exported .onnx as it is; with
`INFERENCE_PRECISION_HINT` bf16 it computes in bfloat16 on CPUs with AVX512-BF16 or AMX.
Images/s (best of `--repeats` after a warm-up) and the frames' PSNR against ONNX Runtime
fp32 on the same latents, in one run. Needs `pip install openvino`; says so and exits 0
without it.

    python -m benchmarks.bench_openvino --out benchmarks/results
    python -m benchmarks.bench_openvino --batches 1 4 8 --repeats 8
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, measure, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average, model_folder, prepare_checkpoint, prepare_export
from ganterp_fast.engine.backends.contract import NUM_CLASSES, Z_DIM, truncated_normal
from ganterp_fast.engine.backends.contract import frames_psnr as psnr

RESOLUTION = 128


def _best_rate(run: Callable[[], Any], batch: int, repeats: int) -> float:
    return batch / measure(run, repeats)["seconds_best"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="checkpoint and export kept here")
    parser.add_argument("--out", type=Path, default=None, help="also save openvino.json and openvino.md here")
    args = parser.parse_args(argv)
    try:
        import openvino as ov
    except ImportError:
        print(json.dumps({"benchmark": "openvino", "skipped": True, "reason": "openvino is not installed"}))
        print("bench_openvino: openvino is not installed (pip install openvino), skipped.")
        return 0

    from ganterp_fast.engine.backends.machine import physical_cores
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator

    threads = args.threads or physical_cores()
    folder = model_folder(args.work, RESOLUTION, args.seed)
    checkpoint, _ = prepare_checkpoint(folder, resolution=RESOLUTION, seed=args.seed)
    onnx_path, _ = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
    core = ov.Core()
    load_before = load_average()
    generator = Generator(onnx_path, device="cpu", threads=threads)
    rows: dict[int, Any] = {}
    for batch in args.batches:
        rng = np.random.default_rng([args.seed, batch])
        z = (truncated_normal(rng, (batch, Z_DIM)) * args.truncation).astype(np.float32)
        classes = np.eye(NUM_CLASSES, dtype=np.float32)[rng.choice(NUM_CLASSES, batch, replace=False)]
        feeds = Generator.prepare(z, classes, args.truncation)
        reference = generator(z, classes, args.truncation)
        row: dict[str, Any] = {
            "onnxruntime_fp32": {
                "images_per_s": round(
                    _best_rate(lambda: generator(z, classes, args.truncation), batch, args.repeats), 2
                )
            }
        }
        model = core.read_model(str(onnx_path))
        model.reshape({name: list(array.shape) for name, array in feeds.items()})
        for hint in ("f32", "bf16"):
            compiled = core.compile_model(
                model,
                "CPU",
                {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
            )
            request = compiled.create_infer_request()
            frames = next(iter(request.infer(feeds).values()))
            row[f"openvino_{hint}"] = {
                "images_per_s": round(_best_rate(lambda r=request: r.infer(feeds), batch, args.repeats), 2),
                "psnr_vs_onnxruntime_fp32_db": round(psnr(frames, reference), 2),
                "max_abs_diff_levels": int(np.abs(frames.astype(np.int16) - reference.astype(np.int16)).max()),
            }
            del request, compiled
        rows[batch] = row
    record = {
        "settings": {
            "model": f"biggan-deep-{RESOLUTION}",
            "weights": f"random seed {args.seed} (full architecture)",
            "threads": threads,
            "repeats": args.repeats,
            "truncation": args.truncation,
            "openvino": ov.__version__,
            "cpu_capabilities": core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
            "load_average_1min_before_after": [load_before, load_average()],
        },
        "results": rows,
    }
    table = []
    for batch, row in rows.items():
        base = row["onnxruntime_fp32"]["images_per_s"]
        for name, r in row.items():
            table.append(
                [
                    batch,
                    name,
                    f"{r['images_per_s']:.2f}",
                    f"{r['images_per_s'] / base:.2f}x",
                    r.get("psnr_vs_onnxruntime_fp32_db", "-"),
                    r.get("max_abs_diff_levels", "-"),
                ]
            )
    text = "\n".join(
        [
            f"BigGAN-deep-{RESOLUTION} fp32 export ({record['settings']['weights']}), {threads} threads, OpenVINO "
            f"{ov.__version__} (CPU: {', '.join(record['settings']['cpu_capabilities'])})",
            "",
            markdown_table(
                ["batch", "runtime", "images/s", "vs ONNX Runtime fp32", "PSNR vs ORT fp32 (dB)", "max diff (levels)"],
                table,
            ),
        ]
    )
    write_results("openvino", record, text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
