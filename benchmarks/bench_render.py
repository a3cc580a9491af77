"""End-to-end render: ganterp-fast's `render` against the eager-PyTorch pipeline, same job.

The same input, analysis, latent path (engine.path.LatentPath: the same per-frame z and
class vectors), the same full BigGAN-deep-128 with seeded, well-conditioned random weights
and the same encoder settings, timed in one run:

- ganterp-fast: `render()` on the fp32 ONNX export of that checkpoint (ONNX Runtime, uint8
  frames out of the graph, generator and encoder overlapped through a bounded queue);
- the seed and its peers: eager pytorch-pretrained-biggan on the same checkpoint, every frame
  generated first and held in a list (deep-music-visualizer's way; `--baseline-frames png`
  writes one PNG per frame as the original code and lucid-sonic-dreams do), then encoded
  with PyAV (libx264 + the AAC soundtrack, the engine's VideoWriter with the same settings).

Frames are checked twice: every frame `render` hands its encoder against every eager frame
(uint8), and both decoded videos against the eager frames. With
`--variants`, the render is repeated with other thread placements and batch sizes (and
int8 with `--int8`). Prints a Markdown table and a JSON record; `--out DIR` saves both.

    python -m benchmarks.bench_render --seconds 10 --fps 30 --out benchmarks/results
    python -m benchmarks.bench_render --variants --int8 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
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
from ganterp_fast.engine.backends.contract import frames_psnr as psnr
from ganterp_fast.engine.result import StageTimes

RESOLUTION = 128


# ----------------------------------------------------------------------------------------
# The eager pipeline (the seed's and peers' way)


# The eager pipeline's stages are the engine's stages.
BaselineTimes = StageTimes


def eager_uint8(
    model: Any, z: np.ndarray, classes: np.ndarray, truncation: float, *, autocast: bool = False
) -> np.ndarray:
    """pytorch-pretrained-biggan's frames as uint8 NHWC: clip((x + 1) / 2 * 256, 0, 255), truncated.

    `autocast`: under `torch.autocast("cpu", torch.bfloat16)`, a PyTorch user's bf16 on the CPU."""
    import torch

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        image = model(torch.from_numpy(z), torch.from_numpy(classes), float(truncation)).float()
        return torch.clamp((image + 1.0) * 128.0, 0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def render_eager(
    input_path: Path,
    output: Path,
    checkpoint: Path,
    *,
    fps: Fraction,
    batch_size: int,
    threads: int,
    frames_on: str,
    scratch: Path,
    path_options: Any,
    analysis_options: Any,
    crf: int,
    preset: str,
    autocast: bool = False,
) -> tuple[BaselineTimes, np.ndarray]:
    """Generate every frame with eager PyTorch, then encode them all (write-then-encode).

    Returns the stage times and, for the frame check, every frame (read back from the PNGs,
    after the timing, in PNG mode)."""
    import torch

    from ganterp_fast.engine.analysis.analyze import analyze
    from ganterp_fast.engine.latent.path import LatentPath
    from ganterp_fast.engine.video.encode import AudioClip, EncodeOptions, VideoWriter
    from ganterp_fast.export import load_biggan

    times = BaselineTimes()
    wall = time.perf_counter()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = load_biggan(checkpoint)
    times.model = time.perf_counter() - started

    started = time.perf_counter()
    analysis = analyze(input_path, analysis_options)
    times.analysis = time.perf_counter() - started

    started = time.perf_counter()
    path = LatentPath(analysis, path_options, fps)
    z, classes = path.frames(0, path.num_frames)
    times.path = time.perf_counter() - started

    frames: list[np.ndarray] = []
    pngs: list[Path] = []
    started = time.perf_counter()
    for first in range(0, path.num_frames, batch_size):
        batch = eager_uint8(
            model,
            z[first : first + batch_size],
            classes[first : first + batch_size],
            path_options.truncation,
            autocast=autocast,
        )
        if frames_on == "png":
            from PIL import Image

            for offset, image in enumerate(batch):
                pngs.append(scratch / f"frame_{first + offset:06d}.png")
                Image.fromarray(image).save(pngs[-1])
        else:
            frames.extend(batch)
    times.inference = time.perf_counter() - started

    started = time.perf_counter()
    clip = AudioClip(input_path, start=getattr(analysis_options, "start", 0.0), duration=analysis.duration_s)
    with VideoWriter(
        output,
        width=RESOLUTION,
        height=RESOLUTION,
        fps=fps,
        audio=clip,
        options=EncodeOptions(crf=crf, preset=preset),
        overwrite=True,
    ) as writer:
        if frames_on == "png":
            from PIL import Image

            for png in pngs:
                writer.write(np.asarray(Image.open(png).convert("RGB")))
        else:
            for image in frames:
                writer.write(image)
    times.encode = time.perf_counter() - started
    times.wall = time.perf_counter() - wall
    if frames_on == "png":
        from PIL import Image

        frames = [np.asarray(Image.open(png).convert("RGB")) for png in pngs]
    return times, np.stack(frames)


# ----------------------------------------------------------------------------------------
# Checks


def decode_video(path: Path) -> tuple[np.ndarray, float | None]:
    """All video frames as uint8 RGB [N, H, W, 3] (BT.709 limited range, as written) and the
    audio stream's duration in seconds."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    with av.open(os.fspath(path)) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = float(audio.duration * audio.time_base) if audio is not None and audio.duration else None
        frames = [
            frame.reformat(
                format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG
            ).to_ndarray()
            for frame in container.decode(video=0)
        ]
    return np.stack(frames), duration


def yuv420_roundtrip(frames: np.ndarray) -> np.ndarray:
    """Frames through the video's pixel format and back (BT.709, limited range, 4:2:0), no codec:
    the loss the format alone imposes (large on random-weight textures, whose chroma changes
    from pixel to pixel)."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    out = []
    for image in frames:
        yuv = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
        )
        out.append(
            yuv.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG).to_ndarray()
        )
    return np.stack(out)


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {
        "frames": int(len(a)),
        "max_abs_diff": int(diff.max()),
        "mean_abs_diff": round(float(diff.mean()), 4),
        "share_of_values_differing": round(float((diff > 0).mean()), 5),
        "psnr_db": round(psnr(a, b), 2),
    }


def compare_any(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    return compare(a, b) if a.shape == b.shape else {"shapes": [list(a.shape), list(b.shape)]}


# ----------------------------------------------------------------------------------------
# ganterp-fast's render, optionally with a given x264 thread count


@contextlib.contextmanager
def captured_frames(store: list[np.ndarray] | None) -> Iterator[None]:
    """Benchmark-only: keep a copy of every frame `render` hands to the encoder (a few ms)."""
    if store is None:
        yield
        return
    from ganterp_fast.engine.video.encode import VideoWriter

    original = VideoWriter.write

    def write(self: Any, frames: np.ndarray) -> None:
        store.append(np.array(frames, copy=True).reshape(-1, self.height, self.width, 3))
        original(self, frames)

    VideoWriter.write = write  # type: ignore[method-assign]
    try:
        yield
    finally:
        VideoWriter.write = original  # type: ignore[method-assign]


def run_render(
    input_path: Path,
    output: Path,
    model: Path,
    *,
    fps: Fraction,
    batch_size: int,
    threads: int,
    encoder_threads: int | None,
    path_options: Any,
    analysis_options: Any,
    crf: int,
    preset: str,
    capture: list[np.ndarray] | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    from ganterp_fast.engine.api import render
    from ganterp_fast.engine.options import ModelOptions, RenderOptions
    from ganterp_fast.engine.video.encode import EncodeOptions

    options = RenderOptions(
        model=ModelOptions(model=str(model), precision=precision, batch_size=batch_size, threads=threads),
        fps=fps,
        encode=EncodeOptions(crf=crf, preset=preset, threads=encoder_threads or 0),
        overwrite=True,
        path=path_options,
        analysis=analysis_options,
    )
    cpu: dict[str, Any] = {}
    with captured_frames(capture), cpu_accounting(cpu):
        result = render(input_path, output, options)
    t = result.times
    job = t.wall - t.model
    return {
        "model": model.name,
        "batch_size": result.batch_size,
        "ort_threads": threads,
        "x264_threads": "auto" if encoder_threads is None else encoder_threads,
        "frames": result.frames,
        "providers": result.providers,
        "times_s": {
            "model_load": round(t.model, 3),
            "decode_and_analysis": round(t.analysis, 3),
            "latent_path": round(t.path, 3),
            "inference": round(t.inference, 3),
            "encode_and_mux": round(t.encode, 3),
            "wall": round(t.wall, 3),
            "job": round(job, 3),
        },
        "fps_job": round(result.frames / job, 3),
        "bound": t.bound(),
        "inference_share_of_render_phase": round(t.inference / max(job - t.analysis, 1e-9), 3),
        "cpu": cpu,
    }


# ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated music")
    parser.add_argument("--fps", default="30")
    parser.add_argument("--batch-size", type=int, default=4, help="ganterp-fast's frames per generator call")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times the two pipelines alternate; each side's best run is reported (default: %(default)s)",
    )
    parser.add_argument("--baseline-batch", type=int, default=8, help="eager batch (the original code's sub-batch)")
    parser.add_argument(
        "--baseline-frames",
        choices=("list", "png"),
        default="list",
        help="eager frames held in a list (deep-music-visualizer) or written as PNGs (original)",
    )
    parser.add_argument("--threads", type=int, default=None, help="ORT and torch threads (default: physical cores)")
    parser.add_argument("--seed", type=int, default=0, help="random weights and latent path")
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="medium")
    parser.add_argument(
        "--variants", action="store_true", help="also render with 1 ORT thread, with 1 x264 thread, with batch 1 and 8"
    )
    parser.add_argument("--int8", action="store_true", help="also render with the gated int8 quantisation")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also render in bf16 (OpenVINO, CPUs with native bf16); bench_bf16 adds eager bf16 autocast",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="checkpoint, exports and input are kept here (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also save render.json and render.md here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    import onnxruntime as ort
    import torch

    from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
    from ganterp_fast.engine.backends.machine import physical_cores
    from ganterp_fast.engine.latent.path import PathOptions, parse_fps

    threads = args.threads or physical_cores()
    fps = parse_fps(args.fps)
    folder = model_folder(args.work, RESOLUTION, args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    checkpoint, checkpoint_s = prepare_checkpoint(folder, resolution=RESOLUTION, seed=args.seed)
    fp32, export_s = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
    preparation: dict[str, Any] = {"random_weights_s": checkpoint_s, "fp32_export_and_parity_s": export_s}
    int8: Path | None = None
    if args.int8:
        int8, preparation["int8"] = prepare_int8(fp32, folder / "int8.onnx", args.seed)

    music = write_music(args.work / f"music-{args.seconds:g}s.wav", args.seconds)
    path_options = PathOptions(seed=args.seed, truncation=args.truncation)
    analysis_options = AnalysisOptions()
    common = {
        "fps": fps,
        "path_options": path_options,
        "analysis_options": analysis_options,
        "crf": args.crf,
        "preset": args.preset,
    }
    out_dir = Path(tempfile.mkdtemp(prefix="bench-render-", dir=args.work))

    # The two pipelines alternate for --rounds rounds; each side's best job time is reported
    # (the run least disturbed by the machine's other work), every round's ratio beside it.
    ours_frames: list[np.ndarray] = []
    rounds: list[dict[str, Any]] = []
    ours = base_times = eager_frames = eager_cpu = None
    for number in range(args.rounds):
        mine = run_render(
            music,
            out_dir / "ganterp-fast.mp4",
            fp32,
            batch_size=args.batch_size,
            threads=threads,
            encoder_threads=None,
            capture=ours_frames if number == 0 else None,
            **common,
        )
        cpu: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="pngs-", dir=args.work) as pngs, cpu_accounting(cpu):
            times, frames = render_eager(
                music,
                out_dir / "eager.mp4",
                checkpoint,
                batch_size=args.baseline_batch,
                threads=threads,
                frames_on=args.baseline_frames,
                scratch=Path(pngs),
                **common,
            )
        eager_job = times.wall - times.model
        rounds.append(
            {
                "ganterp_fast_job_s": mine["times_s"]["job"],
                "eager_job_s": round(eager_job, 3),
                "speedup": round(eager_job / mine["times_s"]["job"], 3),
            }
        )
        if ours is None or mine["times_s"]["job"] < ours["times_s"]["job"]:
            ours = mine
        if base_times is None or eager_job < base_times.wall - base_times.model:
            base_times, eager_cpu = times, cpu
        if eager_frames is None:
            eager_frames = frames
    load_after_main = load_average()
    num_frames = len(eager_frames)

    # Frames: every frame render() gave its encoder against every eager frame, then the videos.
    analysis = analyze(music, analysis_options)
    ours_video, ours_audio = decode_video(out_dir / "ganterp-fast.mp4")
    eager_video, eager_audio = decode_video(out_dir / "eager.mp4")
    frames_check: dict[str, Any] = {
        "generator_frames_ort_vs_eager": compare_any(np.concatenate(ours_frames), eager_frames),
        "ganterp_fast_video_vs_eager_frames": compare_any(ours_video, eager_frames),
        "eager_video_vs_eager_frames": compare_any(eager_video, eager_frames),
        "yuv420p_roundtrip_vs_eager_frames": compare_any(yuv420_roundtrip(eager_frames), eager_frames),
        "ganterp_fast_video_vs_eager_video": compare_any(ours_video, eager_video),
        "audio_s": {"ganterp_fast": ours_audio, "eager": eager_audio},
    }

    variants: dict[str, Any] = {}
    plans: list[tuple[str, Path, int, int, int | None]] = []
    if args.variants:
        plans += [
            ("ORT 1 thread, x264 auto", fp32, args.batch_size, 1, None),
            (f"ORT {threads} threads, x264 1 thread", fp32, args.batch_size, threads, 1),
            ("batch 1", fp32, 1, threads, None),
            ("batch 8", fp32, 8, threads, None),
        ]
    if int8 is not None:
        plans.append(("int8 (gated)", int8, args.batch_size, threads, None))
    if args.bf16:
        plans.append(("bf16 (OpenVINO)", fp32, args.batch_size, threads, None))
    for label, model_path, batch, ort_threads, x264 in plans:
        output = out_dir / f"variant-{len(variants)}.mp4"
        precision = "bf16" if label.startswith("bf16") else "fp32" if model_path == fp32 else "auto"
        frames: list[np.ndarray] | None = [] if precision != "fp32" else None
        variants[label] = run_render(
            music,
            output,
            model_path,
            batch_size=batch,
            threads=ort_threads,
            encoder_threads=x264,
            capture=frames,
            precision=precision,
            **common,
        )
        if frames is not None:  # another precision: how far from the eager frames
            variants[label]["generator_frames_vs_eager"] = compare_any(np.concatenate(frames), eager_frames)
            variants[label]["video_vs_eager_frames"] = compare_any(decode_video(output)[0], eager_frames)
        output.unlink(missing_ok=True)

    base_job = base_times.wall - base_times.model
    record = {
        "settings": {
            "model": f"biggan-deep-{RESOLUTION}",
            "weights": f"random seed {args.seed} (full architecture)",
            "precision": "fp32",
            "input": f"{args.seconds:g} s of generated music, 22.05 kHz stereo WAV",
            "fps": str(fps),
            "frames": num_frames,
            "batch_size": args.batch_size,
            "baseline_batch": args.baseline_batch,
            "baseline_frames": args.baseline_frames,
            "rounds": args.rounds,
            "threads": threads,
            "physical_cores": physical_cores(),
            "logical_cpus": os.cpu_count(),
            "crf": args.crf,
            "preset": args.preset,
            "truncation": args.truncation,
            "inflection_points": int(len(analysis.inflection_points)),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "load_average_1min": {"before": load_before, "after_main_runs": load_after_main, "end": load_average()},
            "work": str(folder),
        },
        "preparation": preparation,
        "ganterp_fast": ours,
        "eager_pipeline": {
            "times_s": {
                "model_load": round(base_times.model, 3),
                "decode_and_analysis": round(base_times.analysis, 3),
                "latent_path": round(base_times.path, 3),
                "inference": round(base_times.inference, 3),
                "encode_and_mux": round(base_times.encode, 3),
                "wall": round(base_times.wall, 3),
                "job": round(base_job, 3),
            },
            "fps_job": round(num_frames / base_job, 3),
            "bound": "inference" if base_times.inference >= base_times.encode else "encode",
            "cpu": eager_cpu,
        },
        "rounds": rounds,
        "speedup": {
            "job": round(base_job / ours["times_s"]["job"], 2),
            "job_per_round_median": round(float(np.median([r["speedup"] for r in rounds])), 2),
            "wall_with_model_load": round(base_times.wall / ours["times_s"]["wall"], 2),
            "inference_stage": round(base_times.inference / ours["times_s"]["inference"], 2),
        },
        "frames_check": frames_check,
        "variants": variants,
    }
    for leftover in out_dir.iterdir():
        leftover.unlink()
    out_dir.rmdir()
    write_results("render", record, _markdown(record), args.out)
    return 0


def _markdown(record: dict[str, Any]) -> str:
    s, ours, eager = record["settings"], record["ganterp_fast"], record["eager_pipeline"]
    stages = ("decode_and_analysis", "latent_path", "inference", "encode_and_mux")
    header = [
        "pipeline",
        "wall s (job)",
        "fps",
        "model load s",
        "decode + analysis s",
        "latent path s",
        "inference s",
        "encode + mux s",
        "bound by",
        "other processes (cores)",
    ]

    def row(label: str, r: dict[str, Any]) -> list[Any]:
        t = r["times_s"]
        return [
            label,
            f"{t['job']:.1f}",
            f"{r['fps_job']:.2f}",
            f"{t['model_load']:.1f}",
            *(f"{t[k]:.2f}" for k in stages),
            r["bound"],
            r["cpu"].get("other_processes_cores", "?"),
        ]

    lines = [
        f"BigGAN-deep-{RESOLUTION} ({s['weights']}), {s['input']}, {s['fps']} fps = {s['frames']} frames, "
        f"{s['threads']} threads, x264 crf {s['crf']} {s['preset']}; load average {s['load_average_1min']}; "
        "'other processes' is the CPU other programs used during each run (0 = a quiet machine)",
        "",
        markdown_table(
            header,
            [
                row(f"ganterp-fast render (ONNX Runtime fp32, batch {s['batch_size']}, overlapped)", ours),
                row(
                    f"eager pytorch-pretrained-biggan (batch {s['baseline_batch']}), "
                    + ("frames in a list" if s["baseline_frames"] == "list" else "frames written as PNGs")
                    + ", then encode",
                    eager,
                ),
            ],
        ),
        "",
        f"Speed-up: {record['speedup']['job']:.2f}x on the job (model loading excluded; best of {s['rounds']} "
        f"alternating rounds each), {record['speedup']['wall_with_model_load']:.2f}x with it; inference stage "
        f"{record['speedup']['inference_stage']:.2f}x. Per round: "
        + ", ".join(
            f"{r['ganterp_fast_job_s']:.1f} s vs {r['eager_job_s']:.1f} s = {r['speedup']:.2f}x"
            for r in record["rounds"]
        )
        + ". ganterp-fast's stage times overlap (inference on a worker "
        "thread, encoding on the caller's), so they add up to more than its wall time.",
    ]
    check = record["frames_check"]

    def figures(key: str) -> str:
        c = check[key]
        if "frames" not in c:
            return f"shapes differ {c['shapes']}"
        return (
            f"max {c['max_abs_diff']}, mean {c['mean_abs_diff']:.3f}, {100 * c['share_of_values_differing']:.2f}% "
            f"of values differ, PSNR {c['psnr_db']} dB"
        )

    lines += [
        "",
        f"Same frames: all {s['frames']} frames render() gave its encoder against the eager frames (uint8 levels): "
        f"{figures('generator_frames_ort_vs_eager')}. Decoded videos against the eager frames: ganterp-fast "
        f"{figures('ganterp_fast_video_vs_eager_frames')}; eager pipeline {figures('eager_video_vs_eager_frames')} "
        f"(yuv420p alone, no codec: {figures('yuv420p_roundtrip_vs_eager_frames')}); the two videos against "
        f"each other: {figures('ganterp_fast_video_vs_eager_video')}; soundtracks "
        f"{check['audio_s']['ganterp_fast']} s and {check['audio_s']['eager']} s.",
    ]
    if record["variants"]:
        rows = []
        for label, r in {"default (as above)": ours, **record["variants"]}.items():
            t = r["times_s"]
            quality = r.get("generator_frames_vs_eager")
            rows.append(
                [
                    label,
                    r["batch_size"],
                    r["ort_threads"],
                    r["x264_threads"],
                    f"{t['job']:.1f}",
                    f"{r['fps_job']:.2f}",
                    f"{t['inference']:.1f}",
                    f"{t['encode_and_mux']:.2f}",
                    "-" if not quality else f"{quality['psnr_db']}",
                    r["cpu"].get("other_processes_cores", "?"),
                ]
            )
        lines += [
            "",
            "ganterp-fast render variants (same clip, one run each):",
            "",
            markdown_table(
                [
                    "variant",
                    "batch",
                    "ORT threads",
                    "x264 threads",
                    "job s",
                    "fps",
                    "inference s",
                    "encode s",
                    "frames PSNR vs eager (dB)",
                    "other processes (cores)",
                ],
                rows,
            ),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
