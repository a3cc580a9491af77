"""Full BigGAN-deep generator: ONNX Runtime (CPU, fp32) against eager pytorch-pretrained-biggan.

Same well-conditioned random weights on both sides (badly scaled weights make denormals that
slow everything several-fold), the same batch, measured in one run next to the machine's
sgemm rate, across batch sizes and resolutions. Checkpoints and exports are cached under
`--work` (shared with bench_render). Prints a Markdown table and a JSON record (machine, versions, settings beside
the numbers); `--out DIR` also saves both as generator.md / generator.json.

    python -m benchmarks.bench_generator                     # BigGAN-deep-128, batches 1 2 4 8
    python -m benchmarks.bench_generator --resolutions 128 256 --batches 4 8 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import measure, timed, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average, model_folder, prepare_checkpoint, prepare_export
from ganterp_fast.engine.backends.contract import NUM_CLASSES, Z_DIM, truncated_normal


def generator_gflop(config: Any, *, rgb_channels: int = 3, subpixel: bool = False) -> float:
    """Analytic GFLOP (2 x multiply-adds) of one image: convolutions, linears, attention.

    With `subpixel`, each upsampling block's first 3x3 convolution is counted as the export
    computes it: one 2x2 convolution with 4x the output channels on an (H+1)x(W+1) grid.
    """
    ch = int(config.channel_width)
    side = 4
    flops = 2.0 * 256 * 16 * 16 * ch  # gen_z
    for index, (up, c_in, c_out) in enumerate(config.layers):
        if index == config.attention_layer_position:
            c, n = ch * c_in, side * side
            flops += 2 * c * (c // 8 * 2 + c // 2) * n  # theta, phi, g projections
            flops += 2 * n * (n / 4) * (c / 8) + 2 * (c / 2) * n * (n / 4)  # two attention products
            flops += 2 * (c / 2) * c * n  # output projection
        c_in, c_out = ch * c_in, ch * c_out
        mid = c_in // 4
        flops += 2 * c_in * mid * side * side  # conv_0, 1x1
        if up and subpixel:
            flops += 2 * 4 * mid * mid * 4 * (side + 1) ** 2
            side *= 2
        else:
            side *= 2 if up else 1
            flops += 2 * 9 * mid * mid * side * side
        flops += 2 * 9 * mid * mid * side * side + 2 * mid * c_out * side * side  # conv_2, conv_3
    flops += 2 * 9 * ch * rgb_channels * side * side  # conv_to_rgb
    return flops / 1e9


def sgemm_gflops(threads: int, *, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best single-precision matrix-multiply rate of numpy and torch on this machine."""
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flop = 2.0 * size**3
    results = {}
    for name, run in (("numpy", lambda: a @ b), ("torch", _torch_matmul(torch, a, b, threads))):
        run()
        best = min(timed(run) for _ in range(repeats))
        results[name] = flop / best / 1e9
    return results


def _torch_matmul(torch: Any, a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], Any]:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.set_num_threads(threads)
    return lambda: torch.matmul(ta, tb)


def _ort_session(
    ort: Any,
    path: Path,
    threads: int,
    *,
    level: Any,
    denormal_as_zero: bool,
    save_optimized: Path | None = None,
    spinning: bool = True,
) -> tuple[Any, float]:
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if denormal_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if save_optimized is not None:
        options.optimized_model_filepath = str(save_optimized)
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return session, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--resolutions",
        type=int,
        nargs="+",
        default=[128],
        choices=(128, 256, 512),
        help="models to measure (default: 128; 256 takes minutes more on 2 cores)",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (best reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="checkpoints and exports are kept here")
    parser.add_argument("--out", type=Path, default=None, help="also save generator.json and generator.md here")
    parser.add_argument("--skip-variants", action="store_true", help="only the engine's default session")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from ganterp_fast.engine.backends.machine import physical_cores
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator
    from ganterp_fast.export import load_biggan

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    load_before = load_average()
    sgemm = sgemm_gflops(threads)
    machine_sgemm = max(sgemm.values())
    result: dict[str, Any] = {
        "settings": {
            "weights": f"random seed {args.seed} (full architecture)",
            "batches": args.batches,
            "truncation": args.truncation,
            "repeats": args.repeats,
            "threads": threads,
            "physical_cores": physical_cores(),
            "logical_cpus": os.cpu_count(),
            "onnxruntime_providers": ort.get_available_providers(),
        },
        "sgemm_gflops": {k: round(v, 1) for k, v in sgemm.items()},
        "preparation": {},
        "results": {},
        "session_variants": {},
    }
    for resolution in args.resolutions:
        folder = model_folder(args.work, resolution, args.seed)
        checkpoint, weights_s = prepare_checkpoint(folder, resolution=resolution, seed=args.seed)
        onnx_path, export_s = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
        result["preparation"][resolution] = {"random_weights_s": weights_s, "export_and_check_s": export_s}
        model = load_biggan(checkpoint)
        useful = generator_gflop(model.config, rgb_channels=3)
        executed = generator_gflop(model.config, rgb_channels=3, subpixel=True)
        latents = {batch: _latents(args.seed, batch, args.truncation) for batch in args.batches}
        # Eager first, then ONNX Runtime, not interleaved: each runtime's idle worker threads
        # spin for a while after a run. Interleaved on a machine busy with other work, eager
        # once measured 20x slow; bench_int8 interleaves on a quiet machine without that effect.
        eager_times, eager_frames = {}, {}
        for batch, (z, classes) in latents.items():
            tz, tc = torch.from_numpy(z), torch.from_numpy(classes)

            def eager(tz: Any = tz, tc: Any = tc) -> Any:
                with torch.inference_mode():
                    return model(tz, tc, args.truncation)

            eager_times[batch] = measure(eager, args.repeats)
            eager_frames[batch] = torch.clamp((eager() + 1) / 2 * 256, 0, 255).permute(0, 2, 3, 1).numpy()
        generator = Generator(onnx_path, device="cpu", threads=threads)
        rows: dict[int, Any] = {}
        for batch, (z, classes) in latents.items():
            ort_time = measure(lambda z=z, c=classes: generator(z, c, args.truncation), args.repeats)
            parity = float(
                np.abs(generator(z, classes, args.truncation).astype(np.float64) - eager_frames[batch]).max()
            )
            eager_ips, ort_ips = batch / eager_times[batch]["seconds_best"], batch / ort_time["seconds_best"]
            rows[batch] = {
                "eager_pytorch": {
                    "images_per_s": round(eager_ips, 3),
                    "useful_gflops": round(useful * eager_ips, 1),
                    **eager_times[batch],
                },
                "onnxruntime_cpu_fp32": {
                    "images_per_s": round(ort_ips, 3),
                    "useful_gflops": round(useful * ort_ips, 1),
                    "executed_gflops": round(executed * ort_ips, 1),
                    **ort_time,
                },
                "speedup_vs_eager": round(ort_ips / eager_ips, 2),
                "useful_fraction_of_sgemm": round(useful * ort_ips / machine_sgemm, 3),
                "max_abs_diff_levels_vs_eager": parity,
            }
        result["results"][resolution] = {
            "gflop_per_image_useful": round(useful, 2),
            "gflop_per_image_executed": round(executed, 2),
            "gflop_per_image_reference_128ch_last_conv": round(
                generator_gflop(model.config, rgb_channels=model.config.channel_width), 2
            ),
            "providers": generator.providers,
            "batches": rows,
        }
        if not args.skip_variants and resolution == args.resolutions[0]:
            result["session_variants"] = _variants(
                ort, generator, onnx_path, folder, threads, max(args.batches), args.seed, args.truncation, args.repeats
            )
        model = generator = None  # free them before the next resolution
    # Other processes on the machine distort every figure: recorded so a reader can tell.
    result["settings"]["load_average_1min_before_after"] = [load_before, load_average()]
    write_results("generator", result, _markdown(result), args.out)
    return 0


def _latents(seed: int, batch: int, truncation: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, batch])
    z = (truncated_normal(rng, (batch, Z_DIM)) * truncation).astype(np.float32)
    classes = np.eye(NUM_CLASSES, dtype=np.float32)[rng.choice(NUM_CLASSES, batch, replace=False)]
    return z, classes


def _variants(
    ort: Any,
    generator: Any,
    path: Path,
    folder: Path,
    threads: int,
    batch: int,
    seed: int,
    truncation: float,
    repeats: int,
) -> dict[str, Any]:
    """Session settings against the engine's (ORT_ENABLE_ALL, denormals flushed), images/s at `batch`."""
    z, classes = _latents(seed, batch, truncation)
    feeds = generator.prepare(z, classes, truncation)
    level = ort.GraphOptimizationLevel
    optimized = folder / "fp32.optimized.onnx"
    variants: dict[str, Any] = {"batch": batch}
    for name, kwargs in (
        ("all_no_denormal_flush", {"level": level.ORT_ENABLE_ALL, "denormal_as_zero": False}),
        ("extended_denormal_flush", {"level": level.ORT_ENABLE_EXTENDED, "denormal_as_zero": True}),
        ("basic_denormal_flush", {"level": level.ORT_ENABLE_BASIC, "denormal_as_zero": True}),
        ("no_spinning", {"level": level.ORT_ENABLE_ALL, "denormal_as_zero": True, "spinning": False}),
        (
            "save_optimized_model",
            {"level": level.ORT_ENABLE_ALL, "denormal_as_zero": True, "save_optimized": optimized},
        ),
        ("load_optimized_model", {"level": level.ORT_DISABLE_ALL, "denormal_as_zero": True}),
    ):
        session, created = _ort_session(ort, optimized if name == "load_optimized_model" else path, threads, **kwargs)
        timing = measure(lambda s=session: s.run(["frames"], feeds), repeats)
        variants[name] = {
            "session_create_s": round(created, 2),
            "images_per_s": round(batch / timing["seconds_best"], 3),
        }
        del session
    engine = measure(lambda: generator(z, classes, truncation), repeats)
    variants["engine_default"] = {"session_create_s": None, "images_per_s": round(batch / engine["seconds_best"], 3)}
    optimized.unlink(missing_ok=True)
    return variants


def _markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    sgemm = max(result["sgemm_gflops"].values())
    lines = [
        f"BigGAN-deep generator ({s['weights']}), {s['threads']} threads; ONNX Runtime fp32 (the engine's "
        f"Generator) against eager pytorch-pretrained-biggan, same weights and "
        f"latents, one run (eager first, then ORT); machine sgemm "
        f"{sgemm:.0f} GFLOP/s ({', '.join(f'{k} {v:.0f}' for k, v in result['sgemm_gflops'].items())})",
        "",
        "| model | batch | eager images/s | ONNX Runtime images/s | speed-up | useful GFLOP/s (ORT) "
        "| % of sgemm | max diff (levels) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for resolution, entry in result["results"].items():
        for batch, row in entry["batches"].items():
            e, o = row["eager_pytorch"], row["onnxruntime_cpu_fp32"]
            lines.append(
                f"| {resolution} | {batch} | {e['images_per_s']:.2f} | {o['images_per_s']:.2f} | "
                f"{row['speedup_vs_eager']:.2f}x | {o['useful_gflops']:.0f} | "
                f"{100 * row['useful_fraction_of_sgemm']:.0f}% | {row['max_abs_diff_levels_vs_eager']:.1f} |"
            )
    lines.append("")
    lines.append(
        "Useful work per image (3-channel last conv) / executed by the graph (sub-pixel upsample + conv): "
        + "; ".join(
            f"{res}: {e['gflop_per_image_useful']} / {e['gflop_per_image_executed']} GFLOP"
            for res, e in result["results"].items()
        )
    )
    variants = result["session_variants"]
    if variants:
        lines += [
            "",
            f"| ONNX Runtime session variant (batch {variants['batch']}) | images/s | session creation s |",
            "| --- | ---: | ---: |",
        ]
        for name, row in variants.items():
            if name != "batch":
                created = "" if row["session_create_s"] is None else f"{row['session_create_s']:.2f}"
                lines.append(f"| {name} | {row['images_per_s']:.2f} | {created} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
