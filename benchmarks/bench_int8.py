"""int8 on the CPU: ONNX Runtime int8 against ONNX Runtime fp32 and eager PyTorch, one run.

The full BigGAN-deep-128 architecture (channel width 128) with seeded, well-conditioned
random weights; the same weights and latents for eager pytorch-pretrained-biggan, the fp32
export and its int8 quantisations. Two int8 models: the one `quantize_int8` ships (gated at
--min-psnr dB against fp32, leading convolutions kept fp32 as needed) and every convolution
in int8 (the speed ceiling, whatever its PSNR). Optionally a sweep of quantisation settings
on the all-int8 model (activation type, reduce_range, pre-processing). Times are the best of
--repeats rounds, the runtimes interleaved within each round so a busy machine hurts all
alike; the load average is recorded.

The checkpoint, the fp32 export and the int8 models are kept under --work, so a rerun only
times (--requantize redoes the int8 models).

    python -m benchmarks.bench_int8 --work ~/.cache/ganterp-bench
    python -m benchmarks.bench_int8 --work /tmp/b --batch 8 --repeats 5 --out results/
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average, model_folder, prepare_checkpoint, prepare_export
from ganterp_fast.engine.backends.contract import frames_psnr as psnr

log = logging.getLogger("benchmarks.bench_int8")

RESOLUTION = 128
# (name, settings changes against the default Int8Settings), all with every convolution in int8.
SWEEP: tuple[tuple[str, dict[str, Any]], ...] = (
    ("int8 activations", {"activation_type": "int8"}),
    ("reduce_range (7-bit weights)", {"reduce_range": True}),
    ("no quant_pre_process", {"preprocess": False}),
    ("attention matmuls int8 too", {"quantize_attention": True}),
)


def _interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Best and median seconds of each run over `repeats` rounds, after one warm-up each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {
        name: {"seconds_best": min(t), "seconds_median": statistics.median(t), "runs": repeats}
        for name, t in times.items()
    }


def _quantized(fp32: Path, path: Path, requantize: bool, **kwargs: Any) -> tuple[Path, dict[str, Any]]:
    """An int8 model at `path`, quantised unless it is already there; its figures from metadata."""
    from ganterp_fast.engine.backends.contract import META_PREFIX, read_metadata
    from ganterp_fast.engine.errors import ModelError
    from ganterp_fast.export.quantize import quantize_int8

    made: dict[str, Any] = {}
    try:
        metadata = read_metadata(path) if path.is_file() and not requantize else {}
    except ModelError:
        metadata = {}
    if META_PREFIX + "int8_psnr_db" not in metadata:
        report = quantize_int8(fp32, path, **kwargs)
        made = {"quantize_s": round(report.seconds, 1), "attempts": [list(a) for a in report.attempts]}
        metadata = report.metadata
    figures = {
        key[len(META_PREFIX) + 5 :]: value for key, value in metadata.items() if key.startswith(META_PREFIX + "int8_")
    }
    return path, {**figures, **made, "size_mb": round(path.stat().st_size / 1e6, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="keep the checkpoint, fp32 export and int8 models here (default: %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (best reported)")
    parser.add_argument("--seed", type=int, default=0, help="random weights, calibration and latents")
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--min-psnr", type=float, default=40.0, help="quality gate of the shipped int8 model (dB)")
    parser.add_argument("--calibration-batches", type=int, default=8, help="x 4 latents")
    parser.add_argument("--requantize", action="store_true", help="quantise again even if the int8 models exist")
    parser.add_argument("--no-sweep", action="store_true", help="skip the quantisation settings sweep")
    parser.add_argument("--out", type=Path, default=None, help="also save int8.json and int8.md here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("ganterp_fast").setLevel(logging.INFO)

    import onnxruntime as ort
    import torch

    from ganterp_fast.engine.backends.machine import physical_cores
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator
    from ganterp_fast.export import load_biggan
    from ganterp_fast.export.quantize import Int8Settings

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    folder = model_folder(args.work, RESOLUTION, args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    checkpoint, weights_s = prepare_checkpoint(folder, resolution=RESOLUTION, seed=args.seed)
    fp32_path, export_s = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
    preparation = {
        key: value
        for key, value in (("random_weights_s", weights_s), ("fp32_export_and_parity_s", export_s))
        if value is not None
    }
    common = {"calibration_batches": args.calibration_batches, "seed": args.seed}
    gated_path, gated = _quantized(
        fp32_path,
        folder / f"int8-gate{args.min_psnr:g}-cb{args.calibration_batches}.onnx",
        args.requantize,
        min_psnr=args.min_psnr,
        **common,
    )
    all_path, all_int8 = _quantized(
        fp32_path,
        folder / f"int8-all-cb{args.calibration_batches}.onnx",
        args.requantize,
        min_psnr=0.0,
        settings=Int8Settings(float_convs=0),
        **common,
    )

    rng = np.random.default_rng(args.seed + 1000)
    noise = rng.standard_normal((args.batch, 128))
    while (outside := np.abs(noise) > 2).any():
        noise[outside] = rng.standard_normal(int(outside.sum()))
    z = (noise * args.truncation).astype(np.float32)
    classes = np.eye(1000, dtype=np.float32)[rng.choice(1000, args.batch, replace=False)]

    model = load_biggan(checkpoint)
    tz, tc = torch.from_numpy(z), torch.from_numpy(classes)

    def eager() -> np.ndarray:
        with torch.inference_mode():
            image = model(tz, tc, args.truncation)
        return torch.clamp((image + 1) / 2 * 256, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    generators = {
        name: Generator(path, device="cpu", threads=threads)
        for name, path in (("fp32", fp32_path), ("int8", gated_path), ("int8_all", all_path))
    }
    runs: dict[str, Callable[[], Any]] = {"eager": eager}
    runs.update({name: (lambda g=g: g(z, classes, args.truncation)) for name, g in generators.items()})
    timing = _interleaved(runs, args.repeats)
    frames = {name: run() for name, run in runs.items()}

    sweep: dict[str, Any] = {}
    if not args.no_sweep:
        base = Int8Settings(float_convs=0)
        for name, changes in SWEEP:
            slug = "-".join(f"{k}={v}" for k, v in changes.items())
            path, figures = _quantized(
                fp32_path,
                folder / f"sweep-{slug}-cb{args.calibration_batches}.onnx",
                args.requantize,
                min_psnr=0.0,
                settings=replace(base, **changes),
                **common,
            )
            generator = Generator(path, device="cpu", threads=threads)
            both = _interleaved(
                {"variant": lambda: generator(z, classes, args.truncation), "int8_all": runs["int8_all"]}, args.repeats
            )
            sweep[name] = {
                "images_per_s": round(args.batch / both["variant"]["seconds_best"], 3),
                "int8_all_default_images_per_s": round(args.batch / both["int8_all"]["seconds_best"], 3),
                "psnr_vs_fp32_db": round(psnr(generator(z, classes, args.truncation), frames["fp32"]), 2),
                "gate_psnr_db": figures.get("psnr_db"),
                "size_mb": figures["size_mb"],
            }
            del generator

    rates = {name: args.batch / t["seconds_best"] for name, t in timing.items()}
    results = {
        name: {
            "images_per_s": round(rates[name], 3),
            "s_per_image": round(1 / rates[name], 4),
            "speedup_vs_eager": round(rates[name] / rates["eager"], 2),
            "speedup_vs_ort_fp32": round(rates[name] / rates["fp32"], 2),
            "psnr_vs_ort_fp32_db": round(psnr(frames[name], frames["fp32"]), 2) if name != "fp32" else None,
            "max_abs_diff_vs_ort_fp32": (
                int(np.abs(frames[name].astype(int) - frames["fp32"]).max()) if name != "fp32" else 0
            ),
            **timing[name],
        }
        for name in runs
    }
    record = {
        "settings": {
            "model": f"biggan-deep-{RESOLUTION}",
            "weights": f"random seed {args.seed}",
            "batch": args.batch,
            "truncation": args.truncation,
            "repeats": args.repeats,
            "threads": threads,
            "physical_cores": physical_cores(),
            "logical_cpus": os.cpu_count(),
            "min_psnr_db": args.min_psnr,
            "calibration_latents": 4 * args.calibration_batches,
            "onnxruntime": ort.__version__,
            "work": str(folder),
            "load_average_1min_before_after": [load_before, load_average()],
        },
        "preparation": preparation,
        "int8_gated": gated,
        "int8_all_convs": all_int8,
        "results": results,
        "sweep_all_convs_int8": sweep,
    }
    write_results("int8", record, _markdown(record), args.out)
    return 0


def _markdown(record: dict[str, Any]) -> str:
    s, r, gated, every = record["settings"], record["results"], record["int8_gated"], record["int8_all_convs"]
    labels = {
        "eager": ("eager PyTorch (pytorch-pretrained-biggan)", "fp32", "-", "-"),
        "fp32": ("ONNX Runtime CPU", "fp32", "-", "-"),
        "int8": (
            f"ONNX Runtime CPU, gated ({s['min_psnr_db']:g} dB)",
            "int8",
            f"{gated['convs']} ({100 * float(gated['mac_share']):.0f}%)",
            f"{float(gated['psnr_db']):.1f}",
        ),
        "int8_all": (
            "ONNX Runtime CPU, every conv int8",
            "int8",
            f"{every['convs']} ({100 * float(every['mac_share']):.0f}%)",
            f"{float(every['psnr_db']):.1f}",
        ),
    }
    rows = []
    for key, (label, precision, convs, gate) in labels.items():
        row = r[key]
        rows.append(
            [
                label,
                precision,
                convs,
                f"{row['images_per_s']:.2f}",
                f"{row['s_per_image']:.3f}",
                f"{row['speedup_vs_eager']:.2f}x",
                f"{row['speedup_vs_ort_fp32']:.2f}x",
                "-" if row["psnr_vs_ort_fp32_db"] is None else f"{row['psnr_vs_ort_fp32_db']:.1f}",
                gate,
            ]
        )
    header = [
        "runtime",
        "precision",
        "int8 convs (MAC share)",
        "images/s",
        "s/image",
        "vs eager",
        "vs ORT fp32",
        "PSNR vs ORT fp32, this batch (dB)",
        "gate PSNR, held-out (dB)",
    ]
    lines = [
        f"BigGAN-deep-{RESOLUTION} ({s['weights']}), batch {s['batch']}, truncation {s['truncation']}, "
        f"{s['threads']} threads, best of {s['repeats']}; load average {s['load_average_1min_before_after']}",
        "",
        markdown_table(header, rows),
    ]
    if record["sweep_all_convs_int8"]:
        rows = [
            [
                name,
                f"{v['images_per_s']:.2f}",
                f"{v['int8_all_default_images_per_s']:.2f}",
                f"{v['psnr_vs_fp32_db']:.1f}",
                f"{v['size_mb']:.0f}",
            ]
            for name, v in record["sweep_all_convs_int8"].items()
        ]
        lines += [
            "",
            "Settings sweep, every conv int8 (against the default: uint8 activations, "
            "quant_pre_process, attention fp32), timed in the same rounds:",
            "",
            markdown_table(["variant", "images/s", "default images/s", "PSNR vs fp32 (dB)", "MB"], rows),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
