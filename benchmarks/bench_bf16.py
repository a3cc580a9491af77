"""bf16 on the CPU through OpenVINO: the generator against this machine's bf16 GEMM rate, thread
placement beside x264, and the end-to-end render against eager PyTorch (fp32 and bf16 autocast).

Three parts, each in one run on one machine (BigGAN-deep-128, seeded random weights):

- `generator`: images/s of ONNX Runtime fp32, OpenVINO f32 and OpenVINO bf16 (and, with
  `--int8`, the int8 QDQ export through ONNX Runtime and OpenVINO), the frames' PSNR against
  ONNX Runtime fp32, and the machine's GEMM rates measured in the same run (an OpenVINO
  MatMul [M, K] x [K, N] in bf16 and f32). Useful work is 17.9 GFLOP per 128 px image.
- `placement`: the bf16 render with OpenVINO's threads, pinning and performance hint, and
  x264's threads and preset, varied one at a time (300 frames each).
- `render`: alternating rounds of the engine's bf16 render, its fp32 render, the eager
  PyTorch pipeline in fp32 and eager PyTorch with bf16 autocast (the fastest a PyTorch
  user gets on this CPU), same job; the bf16 frames against the fp32 render's.

    python -m benchmarks.bench_bf16 --out benchmarks/results
    python -m benchmarks.bench_bf16 --parts generator --batches 1 4 8 --int8
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, measure, write_results
from benchmarks.prepare import (
    DEFAULT_WORK,
    cpu_accounting,
    load_average,
    model_folder,
    prepare_checkpoint,
    prepare_export,
    prepare_int8,
    write_music,
)
from ganterp_fast.engine.backends.bench import GFLOP_PER_IMAGE
from ganterp_fast.engine.backends.contract import frames_psnr as psnr

RESOLUTION = 128
USEFUL_GFLOP_PER_IMAGE = GFLOP_PER_IMAGE[RESOLUTION]  # multiply-adds x 2 of the reference graph
PARTS = ("generator", "placement", "render")


def cpu_description() -> dict[str, Any]:
    from ganterp_fast.engine.backends.capability import bf16_capability

    capability = bf16_capability()
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "model": capability.cpu_model,
        "bf16_flags": [f for f in ("avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_vnni") if f in flags],
        "native_bf16": capability.native,
        "openvino": capability.openvino_version,
        "openvino_capabilities": list(capability.openvino_capabilities),
    }


# ----------------------------------------------------------------------------------------
# GEMM rate


def gemm_rate(precision: str, threads: int, *, m: int = 256, k: int = 4096, n: int = 4096, repeats: int = 8) -> float:
    """GFLOP/s of an OpenVINO MatMul [m, k] x [k, n] in `precision` ("bf16" or "f32"), best of `repeats`."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([m, k], ov.Type.f32, name="a")
    b = ops.constant(rng.standard_normal((k, n)).astype(np.float32) / 64)
    model = ov.Model([ops.matmul(a, b, False, False)], [a], "gemm")
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    x = rng.standard_normal((m, k)).astype(np.float32)

    def run() -> None:
        for _ in range(4):
            request.infer({"a": x})

    seconds = measure(run, repeats)["seconds_best"] / 4
    return 2 * m * k * n / seconds / 1e9


# ----------------------------------------------------------------------------------------
# Generator


def generator_part(fp32: Path, int8: Path | None, batches: Sequence[int], threads: int, repeats: int) -> dict:
    from ganterp_fast.engine.backends.gate import gate_latents, quality_gate
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator
    from ganterp_fast.engine.backends.openvino_generator import OpenVinoGenerator

    gemm = {
        "bf16_gflops": round(max(gemm_rate("bf16", threads) for _ in range(2)), 1),
        "f32_gflops": round(max(gemm_rate("f32", threads) for _ in range(2)), 1),
        "shape": "[256, 4096] x [4096, 4096]",
    }
    runtimes: dict[str, Callable[[], Any]] = {
        "onnxruntime fp32": lambda: Generator(fp32, device="cpu", threads=threads),
        "openvino f32": lambda: OpenVinoGenerator(fp32, precision="fp32", threads=threads),
        "openvino bf16": lambda: OpenVinoGenerator(fp32, precision="bf16", threads=threads),
    }
    if int8 is not None:
        runtimes["onnxruntime int8 (QDQ)"] = lambda: Generator(int8, device="cpu", threads=threads)
        runtimes["openvino int8 (QDQ, f32 elsewhere)"] = lambda: _openvino_int8(int8, "f32", threads)
        runtimes["openvino int8 (QDQ, bf16 elsewhere)"] = lambda: _openvino_int8(int8, "bf16", threads)
    opened = {name: make() for name, make in runtimes.items()}
    rows: dict[str, Any] = {}
    for batch in batches:
        z, classes, _ = gate_latents(batch)
        reference = opened["onnxruntime fp32"](z, classes, 0.4)
        row: dict[str, Any] = {}
        for _ in range(2):  # two alternating passes; the best of each runtime is kept
            for name, generator in opened.items():
                rate = batch / measure(lambda g=generator: g(z, classes, 0.4), repeats)["seconds_best"]
                if name not in row or rate > row[name]["images_per_s"]:
                    frames = generator(z, classes, 0.4)
                    row[name] = {
                        "images_per_s": round(rate, 2),
                        "useful_gflops": round(rate * USEFUL_GFLOP_PER_IMAGE, 1),
                        "psnr_vs_onnxruntime_fp32_db": round(psnr(frames, reference), 2),
                        "max_abs_diff_levels": int(np.abs(frames.astype(np.int16) - reference).max()),
                    }
        rows[str(batch)] = row
    gate = quality_gate(fp32, opened["openvino bf16"], threads=threads)
    return {"gemm": gemm, "rows": rows, "gate": gate.__dict__}


class _Int8OpenVino:
    """The int8 QDQ export through OpenVINO (its QDQ pairs become int8 kernels, the rest `hint`)."""

    def __init__(self, path: Path, hint: str, threads: int) -> None:
        import openvino as ov

        self.path, self.core, self.hint, self.threads, self.requests = path, ov.Core(), hint, threads, {}

    def __call__(self, z: np.ndarray, classes: np.ndarray, truncation: float) -> np.ndarray:
        from ganterp_fast.engine.backends.onnxruntime_generator import Generator

        feeds = Generator.prepare(z, classes, truncation)
        batch = len(z)
        if batch not in self.requests:
            model = self.core.read_model(os.fspath(self.path))
            model.reshape({name: list(array.shape) for name, array in feeds.items()})
            config = {"INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": self.threads}
            self.requests[batch] = self.core.compile_model(model, "CPU", config).create_infer_request()
        return np.array(self.requests[batch].infer(feeds)["frames"], copy=True)


def _openvino_int8(path: Path, hint: str, threads: int) -> _Int8OpenVino:
    return _Int8OpenVino(path, hint, threads)


# ----------------------------------------------------------------------------------------
# Renders


class Recording:
    """A generator that keeps a copy of every frame it makes (the bf16 vs fp32 check)."""

    def __init__(self, generator: Any) -> None:
        self.generator, self.frames = generator, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def __call__(self, z: np.ndarray, classes: np.ndarray, truncation: Any = 0.4) -> np.ndarray:
        frames = self.generator(z, classes, truncation=truncation)
        self.frames.append(frames.copy())
        return frames


def engine_render(
    music: Path,
    output: Path,
    fp32: Path,
    *,
    precision: str,
    fps: Fraction,
    threads: int,
    encoder_threads: int = 0,
    preset: str = "medium",
    config: dict[str, Any] | None = None,
    performance_hint: str | None = None,
    record: bool = False,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """One engine render of `music` (the generator opened here, so placement options can vary)."""
    from ganterp_fast.engine.api import render
    from ganterp_fast.engine.backends.choice import open_generator
    from ganterp_fast.engine.backends.openvino_generator import PERFORMANCE_HINT, OpenVinoGenerator
    from ganterp_fast.engine.latent.path import PathOptions
    from ganterp_fast.engine.options import ModelOptions, RenderOptions
    from ganterp_fast.engine.video.encode import EncodeOptions

    began = time.perf_counter()
    if precision == "bf16" and (config or performance_hint):
        generator: Any = OpenVinoGenerator(
            fp32, threads=threads, config=config, performance_hint=performance_hint or PERFORMANCE_HINT
        )
    else:
        generator = open_generator(fp32, device="cpu", precision=precision, threads=threads)
    model_s = time.perf_counter() - began
    if record:
        generator = Recording(generator)
    options = RenderOptions(
        model=ModelOptions(model=os.fspath(fp32), precision=precision, device="cpu", batch_size=4, threads=threads),
        fps=fps,
        encode=EncodeOptions(crf=18, preset=preset, threads=encoder_threads),
        path=PathOptions(seed=0, truncation=0.4),
        overwrite=True,
    )
    cpu: dict[str, Any] = {}
    with cpu_accounting(cpu):
        result = render(music, output, options, generator=generator)
    t = result.times
    job = t.wall - t.model
    return (
        {
            "providers": list(result.providers),
            "frames": result.frames,
            "model_open_s": round(model_s, 2),
            "job_s": round(job, 3),
            "fps_job": round(result.frames / job, 2),
            "inference_s": round(t.inference, 3),
            "encode_s": round(t.encode, 3),
            "bound": t.bound(),
            "cpu": cpu,
        },
        generator.frames if record else [],
    )


def eager_render(
    music: Path, output: Path, checkpoint: Path, *, fps: Fraction, threads: int, autocast: bool
) -> tuple[dict[str, Any], np.ndarray]:
    from benchmarks.bench_render import render_eager
    from ganterp_fast.engine.analysis.analyze import AnalysisOptions
    from ganterp_fast.engine.latent.path import PathOptions

    cpu: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch, cpu_accounting(cpu):
        times, frames = render_eager(
            music,
            output,
            checkpoint,
            fps=fps,
            batch_size=8,
            threads=threads,
            frames_on="list",
            scratch=Path(scratch),
            path_options=PathOptions(seed=0, truncation=0.4),
            analysis_options=AnalysisOptions(),
            crf=18,
            preset="medium",
            autocast=autocast,
        )
    job = times.wall - times.model
    return (
        {
            "job_s": round(job, 3),
            "fps_job": round(len(frames) / job, 2),
            "inference_s": round(times.inference, 3),
            "encode_s": round(times.encode, 3),
            "bound": "inference" if times.inference >= times.encode else "encode",
            "cpu": cpu,
        },
        frames,
    )


PLACEMENTS: dict[str, dict[str, Any]] = {
    "OpenVINO 2 threads LATENCY pinned, x264 auto, medium (default)": {},
    "OpenVINO pinning off": {"config": {"ENABLE_CPU_PINNING": False}},
    "OpenVINO THROUGHPUT hint": {"performance_hint": "THROUGHPUT"},
    "OpenVINO 1 thread, x264 auto": {"threads": 1},
    "x264 1 thread": {"encoder_threads": 1},
    "x264 2 threads": {"encoder_threads": 2},
    "x264 preset fast": {"preset": "fast"},
    "x264 preset veryfast": {"preset": "veryfast"},
}


def placement_part(music: Path, fp32: Path, work: Path, fps: Fraction, threads: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, variant in PLACEMENTS.items():
        settings = {"threads": threads, **variant}
        measured, _ = engine_render(music, work / "placement.mp4", fp32, precision="bf16", fps=fps, **settings)
        results[label] = measured
    (work / "placement.mp4").unlink(missing_ok=True)
    return results


def render_part(
    music: Path, fp32: Path, checkpoint: Path, work: Path, fps: Fraction, threads: int, rounds: int
) -> dict[str, Any]:
    best: dict[str, dict[str, Any]] = {}
    per_round: list[dict[str, float]] = []
    frames: dict[str, Any] = {}
    for number in range(rounds):
        this: dict[str, float] = {}
        for name in ("engine bf16", "engine fp32", "eager fp32", "eager bf16 autocast"):
            output = work / f"{name.replace(' ', '-')}.mp4"
            if name.startswith("engine"):
                measured, made = engine_render(
                    music, output, fp32, precision=name.split()[1], fps=fps, threads=threads, record=number == 0
                )
            else:
                measured, made = eager_render(
                    music, output, checkpoint, fps=fps, threads=threads, autocast="autocast" in name
                )
            if number == 0:
                frames[name] = np.concatenate(made) if isinstance(made, list) else made
            this[name] = measured["job_s"]
            if name not in best or measured["job_s"] < best[name]["job_s"]:
                best[name] = measured
            output.unlink(missing_ok=True)
        per_round.append(this)
    reference = frames["engine fp32"]
    quality = {
        name: {
            "psnr_vs_engine_fp32_db": round(psnr(f, reference), 2),
            "max_abs_diff_levels": int(np.abs(f.astype(np.int16) - reference).max()),
        }
        for name, f in frames.items()
        if name != "engine fp32"
    }
    speedups = {
        f"engine bf16 vs {name}": round(best[name]["job_s"] / best["engine bf16"]["job_s"], 2)
        for name in best
        if name != "engine bf16"
    }
    round_speedups = [
        {name: round(r[name] / r["engine bf16"], 2) for name in r if name != "engine bf16"} for r in per_round
    ]
    return {
        "best": best,
        "rounds_job_s": per_round,
        "speedups": speedups,
        "round_speedups": round_speedups,
        "quality": quality,
    }


# ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="music rendered (10 s at 30 fps: 300 frames)")
    parser.add_argument("--fps", default="30")
    parser.add_argument("--rounds", type=int, default=2, help="alternating render rounds (best of each kept)")
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--int8", action="store_true", help="also the int8 QDQ export (quantised once, minutes)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=None, help="also save bf16.json and bf16.md here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("bench_bf16: openvino is not installed (pip install 'ganterp-fast[cpu]'), skipped.")
        return 0
    from ganterp_fast.engine.backends.machine import physical_cores
    from ganterp_fast.engine.latent.path import parse_fps

    cpu = cpu_description()
    if not cpu["native_bf16"]:
        print(f"bench_bf16: this CPU ({cpu['model']}) has no native bf16 (AVX512-BF16 or AMX), skipped.")
        return 0
    threads = args.threads or physical_cores()
    fps = parse_fps(args.fps)
    folder = model_folder(args.work, RESOLUTION, 0)
    checkpoint, _ = prepare_checkpoint(folder, resolution=RESOLUTION, seed=0)
    fp32, _ = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
    int8 = prepare_int8(fp32, folder / "int8.onnx", 0)[0] if args.int8 else None
    music = write_music(args.work / f"music-{args.seconds:g}s.wav", args.seconds)
    work = Path(tempfile.mkdtemp(prefix="bench-bf16-", dir=args.work))
    record: dict[str, Any] = {
        "settings": {
            "model": f"biggan-deep-{RESOLUTION}",
            "weights": "random seed 0 (full architecture)",
            "threads": threads,
            "cpu": cpu,
            "seconds": args.seconds,
            "fps": str(fps),
            "batch_size_render": 4,
            "load_average_1min_before": load_average(),
        }
    }
    if "generator" in args.parts:
        record["generator"] = generator_part(fp32, int8, args.batches, threads, args.repeats)
    if "placement" in args.parts:
        record["placement"] = placement_part(music, fp32, work, fps, threads)
    if "render" in args.parts:
        record["render"] = render_part(music, fp32, checkpoint, work, fps, threads, args.rounds)
    record["settings"]["load_average_1min_after"] = load_average()
    work.rmdir()
    write_results("bf16", record, _markdown(record), args.out)
    return 0


def _markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    cpu = s["cpu"]
    lines = [
        f"BigGAN-deep-{RESOLUTION} ({s['weights']}), {s['threads']} threads, CPU {cpu['model']} "
        f"({', '.join(cpu['bf16_flags'])}), OpenVINO {cpu['openvino']}; load average "
        f"{s['load_average_1min_before']} before, {s['load_average_1min_after']} after",
    ]
    if "generator" in record:
        g = record["generator"]
        gemm = g["gemm"]
        lines += [
            "",
            f"Generator (best of 2 alternating passes x {len(g['rows'])} batch sizes). GEMM {gemm['shape']} in the "
            f"same run: bf16 {gemm['bf16_gflops']} GFLOP/s, f32 {gemm['f32_gflops']} GFLOP/s. Useful work "
            f"{USEFUL_GFLOP_PER_IMAGE} GFLOP per image.",
            "",
        ]
        rows = []
        for batch, row in g["rows"].items():
            base = row["onnxruntime fp32"]["images_per_s"]
            for name, r in row.items():
                share = gemm["bf16_gflops"] if "bf16" in name else gemm["f32_gflops"]
                rows.append(
                    [
                        batch,
                        name,
                        f"{r['images_per_s']:.2f}",
                        f"{r['images_per_s'] / base:.2f}x",
                        f"{r['useful_gflops']:.0f}",
                        f"{100 * r['useful_gflops'] / share:.0f}%",
                        r["psnr_vs_onnxruntime_fp32_db"],
                        r["max_abs_diff_levels"],
                    ]
                )
        lines.append(
            markdown_table(
                [
                    "batch",
                    "runtime",
                    "images/s",
                    "vs ORT fp32",
                    "useful GFLOP/s",
                    "of GEMM rate (same precision)",
                    "PSNR vs ORT fp32 (dB)",
                    "max diff",
                ],
                rows,
            )
        )
        gate = g["gate"]
        lines += [
            "",
            f"Quality gate (held-out latents, {gate['samples']} frames): PSNR {gate['psnr_db']} dB, worst frame "
            f"{gate['worst_frame_psnr_db']} dB, max error {gate['max_abs_error']} levels: "
            + ("passed" if gate["passed"] else "failed"),
        ]
    if "placement" in record:
        rows = [
            [label, f"{r['job_s']:.2f}", f"{r['fps_job']:.1f}", f"{r['inference_s']:.2f}", f"{r['encode_s']:.2f}"]
            + [r["bound"], r["cpu"].get("other_processes_cores", "?")]
            for label, r in record["placement"].items()
        ]
        lines += [
            "",
            f"Placement: the bf16 render ({s['seconds']:g} s at {s['fps']} fps), one setting changed at a time:",
            "",
            markdown_table(
                ["variant", "job s", "frames/s", "inference s", "encode s", "bound by", "other processes (cores)"],
                rows,
            ),
        ]
    if "render" in record:
        r = record["render"]
        rows = [
            [
                name,
                f"{m['job_s']:.2f}",
                f"{m['fps_job']:.1f}",
                f"{m['inference_s']:.2f}",
                f"{m['encode_s']:.2f}",
                m["bound"],
                "-" if name == "engine bf16" else f"{r['speedups'][f'engine bf16 vs {name}']:.2f}x",
                r["quality"].get(name, {}).get("psnr_vs_engine_fp32_db", "-"),
                m["cpu"].get("other_processes_cores", "?"),
            ]
            for name, m in r["best"].items()
        ]
        lines += [
            "",
            f"Render, {s['seconds']:g} s at {s['fps']} fps, best of {len(r['rounds_job_s'])} alternating rounds:",
            "",
            markdown_table(
                [
                    "pipeline",
                    "job s",
                    "frames/s",
                    "inference s",
                    "encode s",
                    "bound by",
                    "engine bf16 is",
                    "frames PSNR vs engine fp32 (dB)",
                    "other processes (cores)",
                ],
                rows,
            ),
            "",
            "Per round, engine bf16 against each: "
            + "; ".join(", ".join(f"{k} {v:.2f}x" for k, v in rs.items()) for rs in r["round_speedups"]),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
