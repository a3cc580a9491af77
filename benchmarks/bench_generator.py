"""Full BigGAN-deep generator: ONNX Runtime (CPU, fp32) against eager pytorch-pretrained-biggan.

Same well-conditioned random weights on both sides (badly scaled weights make denormals that
slow everything several-fold), the same batch, measured in one run next to the machine's
sgemm rate. Prints a Markdown table and a JSON record (machine, versions, settings beside
the numbers); `--out DIR` also saves both as generator.md / generator.json.

    python -m benchmarks.bench_generator            # BigGAN-deep-128, batch 8
    python -m benchmarks.bench_generator --resolution 256 --repeats 5 --out results/
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results


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
        best = min(_timed(run) for _ in range(repeats))
        results[name] = flop / best / 1e9
    return results


def _torch_matmul(torch: Any, a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], Any]:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.set_num_threads(threads)
    return lambda: torch.matmul(ta, tb)


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _measure(run: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Best and median of `repeats` timed runs after a warm-up (allocations, kernel choice).

    Rates use the best run: on a shared machine it is the one least disturbed by other work.
    """
    run()
    times = [_timed(run) for _ in range(repeats)]
    return {"seconds_best": min(times), "seconds_median": statistics.median(times), "runs": repeats}


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _ort_session(ort: Any, path: Path, threads: int, *, level: Any, denormal_as_zero: bool,
                 save_optimized: Path | None = None) -> tuple[Any, float]:
    options = ort.SessionOptions()
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
    parser.add_argument("--resolution", type=int, default=128, choices=(128, 256, 512))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (best reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the checkpoint and models here")
    parser.add_argument("--out", type=Path, default=None, help="also save generator.json and generator.md here")
    parser.add_argument("--skip-variants", action="store_true", help="only the engine's default session")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from ganterp_fast.engine.generator import Generator, physical_cores
    from ganterp_fast.export import export_model, make_random_biggan
    from ganterp_fast.export.checkpoint import CONFIG_NAME, WEIGHTS_NAME

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    scratch = tempfile.TemporaryDirectory(prefix="bench-generator-") if args.workdir is None else None
    workdir = Path(scratch.name) if scratch else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = _load_average()
    result: dict[str, Any] = {
        "settings": {"model": f"biggan-deep-{args.resolution}", "weights": f"random seed {args.seed}",
                     "batch": args.batch, "truncation": args.truncation, "repeats": args.repeats,
                     "threads": threads, "physical_cores": physical_cores(), "logical_cpus": os.cpu_count(),
                     "onnxruntime_providers": ort.get_available_providers()},
    }
    try:
        started = time.perf_counter()
        model = make_random_biggan(args.resolution, seed=args.seed)
        checkpoint = workdir / "checkpoint"
        checkpoint.mkdir(exist_ok=True)
        (checkpoint / CONFIG_NAME).write_text(model.config.to_json_string())
        torch.save(model.state_dict(), checkpoint / WEIGHTS_NAME)
        seconds_weights = time.perf_counter() - started
        started = time.perf_counter()
        report = export_model(checkpoint, workdir / "model.onnx", precision="fp32")
        result["preparation"] = {
            "random_weights_s": round(seconds_weights, 2),
            "export_and_check_s": round(time.perf_counter() - started, 2),
            "onnx_mb": round(report.size_bytes / 1e6, 1),
            "export_parity_max_levels": report.max_abs_diff, "export_parity_psnr_db": report.psnr_db,
        }

        rng = np.random.default_rng(args.seed)
        noise = np.clip(rng.standard_normal((args.batch, 128)), -2, 2)
        z = (noise * args.truncation).astype(np.float32)
        classes = np.eye(1000, dtype=np.float32)[rng.choice(1000, args.batch, replace=False)]

        tz, tc = torch.from_numpy(z), torch.from_numpy(classes)

        def eager() -> Any:
            with torch.inference_mode():
                return model(tz, tc, args.truncation)

        eager_time = _measure(eager, args.repeats)
        eager_frames = torch.clamp((eager() + 1) / 2 * 256, 0, 255).permute(0, 2, 3, 1).numpy()

        generator = Generator(report.path, device="cpu", threads=threads)
        ort_time = _measure(lambda: generator(z, classes, args.truncation), args.repeats)
        frames = generator(z, classes, args.truncation)
        parity = float(np.abs(frames.astype(np.float64) - eager_frames).max())

        variants: dict[str, Any] = {}
        if not args.skip_variants:
            feeds = Generator.prepare(z, classes, args.truncation)
            level = ort.GraphOptimizationLevel
            optimized = workdir / "model.optimized.onnx"
            for name, kwargs in (
                ("all_no_denormal_flush", {"level": level.ORT_ENABLE_ALL, "denormal_as_zero": False}),
                ("extended_denormal_flush", {"level": level.ORT_ENABLE_EXTENDED, "denormal_as_zero": True}),
                ("basic_denormal_flush", {"level": level.ORT_ENABLE_BASIC, "denormal_as_zero": True}),
                ("save_optimized_model", {"level": level.ORT_ENABLE_ALL, "denormal_as_zero": True,
                                          "save_optimized": optimized}),
                ("load_optimized_model", {"level": level.ORT_DISABLE_ALL, "denormal_as_zero": True}),
            ):
                path = optimized if name == "load_optimized_model" else report.path
                session, created = _ort_session(ort, path, threads, **kwargs)
                timing = _measure(lambda s=session: s.run(["frames"], feeds), args.repeats)
                variants[name] = {"session_create_s": round(created, 2),
                                  "images_per_s": round(args.batch / timing["seconds_best"], 3)}
                del session

        gflop_useful = generator_gflop(model.config, rgb_channels=3)
        gflop_executed = generator_gflop(model.config, rgb_channels=3, subpixel=True)
        sgemm = sgemm_gflops(threads)
        machine_sgemm = max(sgemm.values())
        eager_ips = args.batch / eager_time["seconds_best"]
        ort_ips = args.batch / ort_time["seconds_best"]
        result["results"] = {
            "eager_pytorch": {"images_per_s": round(eager_ips, 3), "s_per_image": round(1 / eager_ips, 4),
                              "useful_gflops": round(gflop_useful * eager_ips, 1), **eager_time},
            "onnxruntime_cpu_fp32": {"images_per_s": round(ort_ips, 3), "s_per_image": round(1 / ort_ips, 4),
                                     "useful_gflops": round(gflop_useful * ort_ips, 1),
                                     "executed_gflops": round(gflop_executed * ort_ips, 1),
                                     "providers": generator.providers, **ort_time},
            "speedup_vs_eager": round(ort_ips / eager_ips, 2),
            "gflop_per_image_useful": round(gflop_useful, 2),
            "gflop_per_image_executed": round(gflop_executed, 2),
            "gflop_per_image_reference_128ch_last_conv": round(generator_gflop(model.config, rgb_channels=model.config.channel_width), 2),
            "sgemm_gflops": {k: round(v, 1) for k, v in sgemm.items()},
            "useful_fraction_of_sgemm": round(gflop_useful * ort_ips / machine_sgemm, 3),
            "max_abs_diff_levels_vs_eager": parity,
            "session_variants": variants,
        }
        # Other processes on the machine distort every figure: recorded so a reader can tell.
        result["settings"]["load_average_1min_before_after"] = [load_before, _load_average()]
    finally:
        if scratch:
            scratch.cleanup()

    write_results("generator", result, _markdown(result), args.out)
    return 0


def _markdown(result: dict[str, Any]) -> str:
    r = result["results"]
    s = result["settings"]
    sgemm = max(r["sgemm_gflops"].values())
    lines = [
        f"BigGAN-deep generator, {s['model']} ({s['weights']}), batch {s['batch']}, {s['threads']} threads",
        "",
        "| runtime | images/s | s/image | useful GFLOP/s | % of sgemm |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, key in (("eager PyTorch (pytorch-pretrained-biggan)", "eager_pytorch"),
                       ("ONNX Runtime CPU fp32 (ganterp-fast)", "onnxruntime_cpu_fp32")):
        row = r[key]
        lines.append(f"| {label} | {row['images_per_s']:.2f} | {row['s_per_image']:.3f} | "
                     f"{row['useful_gflops']:.0f} | {100 * row['useful_gflops'] / sgemm:.0f}% |")
    lines += [
        "",
        f"Speed-up {r['speedup_vs_eager']:.2f}x; useful work {r['gflop_per_image_useful']} GFLOP/image "
        f"(3-channel last conv; the graph executes {r['gflop_per_image_executed']}); machine sgemm "
        f"{sgemm:.0f} GFLOP/s ({', '.join(f'{k} {v:.0f}' for k, v in r['sgemm_gflops'].items())}); "
        f"max difference to eager {r['max_abs_diff_levels_vs_eager']:.2f} uint8 levels.",
    ]
    if r["session_variants"]:
        lines += ["", "| ONNX Runtime session variant | images/s | session creation s |", "| --- | ---: | ---: |"]
        for name, row in r["session_variants"].items():
            lines.append(f"| {name} | {row['images_per_s']:.2f} | {row['session_create_s']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
