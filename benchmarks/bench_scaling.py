"""Scaling: render time and peak memory for 1, 5 and 10 minutes of audio.

Each render runs in a fresh Python process that reports its own peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so one length's allocations never hide
another's. The model is BigGAN-deep-128's architecture at channel width 16 (the same graph,
tiny: this measures the pipeline, not the generator) with seeded random weights, at a low
frame rate to keep the run short. Time should grow linearly with the length and memory stay
flat: the audio is streamed, the latent path is computed batch by batch and frames go
straight into the encoder.

    python -m benchmarks.bench_scaling --out benchmarks/results
    python -m benchmarks.bench_scaling --minutes 1 5 10 --fps 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
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
)

RESOLUTION = 128
CHANNEL_WIDTH = 16


def write_long_music(path: Path, seconds: float) -> Path:
    """The example music (12 s) repeated to `seconds`, as a 22.05 kHz stereo WAV."""
    import soundfile

    from ganterp_fast.engine.audio.example import EXAMPLE_RATE, example_music

    if not path.is_file():
        base = example_music()
        samples = int(seconds * EXAMPLE_RATE)
        music = np.tile(base, (1, -(-samples // base.shape[1])))[:, :samples]
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial.wav")
        soundfile.write(partial, music.T, EXAMPLE_RATE, subtype="PCM_16")
        os.replace(partial, path)
    return path


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _vm_hwm_mb() -> float | None:
    """Peak resident memory of this process's own address space (Linux /proc), else None.

    Unlike ru_maxrss, which Linux carries over from the parent's resident size at fork,
    VmHWM starts afresh at exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child(args: argparse.Namespace) -> int:
    """One render in this process; prints a JSON line with its times and peak memory."""
    from ganterp_fast.engine.api import render
    from ganterp_fast.engine.options import RenderOptions

    before = _vm_hwm_mb() or _ru_maxrss_mb()  # the interpreter and imports, before any render work
    cpu: dict[str, Any] = {}
    started = time.perf_counter()
    with cpu_accounting(cpu):
        result = render(
            args.input,
            args.output,
            RenderOptions(
                model=str(args.model), fps=args.fps, threads=args.threads, batch_size=args.batch_size, overwrite=True
            ),
        )
    wall = time.perf_counter() - started
    t = result.times
    print(
        json.dumps(
            {
                "frames": result.frames,
                "audio_s": round(result.analysis.duration_s, 3),
                "wall_s": round(wall, 3),
                "times_s": {
                    "model_load": round(t.model, 3),
                    "decode_and_analysis": round(t.analysis, 3),
                    "latent_path": round(t.path, 3),
                    "inference": round(t.inference, 3),
                    "encode_and_mux": round(t.encode, 3),
                },
                "peak_rss_mb": round(_vm_hwm_mb() or _ru_maxrss_mb(), 1),
                "ru_maxrss_mb": round(_ru_maxrss_mb(), 1),
                "rss_before_render_mb": round(before, 1),
                "output_mb": round(Path(args.output).stat().st_size / 1e6, 2),
                "bound": t.bound(),
                "cpu": cpu,
            }
        )
    )
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Checkpoint and export, in their own process (torch stays out of the parent, whose
    resident size Linux would otherwise count in each child's ru_maxrss)."""
    folder = model_folder(args.work, RESOLUTION, args.seed, CHANNEL_WIDTH)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, checkpoint_s = prepare_checkpoint(
        folder, resolution=RESOLUTION, seed=args.seed, channel_width=CHANNEL_WIDTH
    )
    model, export_s = prepare_export(checkpoint, folder / "fp32.onnx", "fp32")
    print(json.dumps({"model": str(model), "random_weights_s": checkpoint_s, "export_s": export_s}))
    return 0


def _python(*arguments: str) -> dict[str, Any]:
    """Run this module in a fresh interpreter; its last stdout line is a JSON record."""
    command = [sys.executable, "-m", "benchmarks.bench_scaling", *arguments]
    finished = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent
    )
    if finished.returncode != 0:
        print(finished.stderr, file=sys.stderr)
        raise SystemExit(f"{' '.join(arguments[:2])} failed (exit {finished.returncode})")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0, 10.0])
    parser.add_argument("--fps", default="3", help="video frame rate (low keeps the run short)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="model and inputs kept here")
    parser.add_argument("--out", type=Path, default=None, help="also save scaling.json and scaling.md here")
    # One render in a fresh process (used by main itself).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.prepare:
        return prepare(args)
    logging.basicConfig(level=logging.WARNING)

    preparation = _python("--prepare", "--work", str(args.work), "--seed", str(args.seed))
    model = preparation.pop("model")
    load_before = load_average()
    runs: list[dict[str, Any]] = []
    for minutes in args.minutes:
        music = write_long_music(args.work / f"music-{minutes:g}min.wav", 60 * minutes)
        output = args.work / f"scaling-{minutes:g}min.mp4"
        command = [
            "--child",
            "--input",
            str(music),
            "--output",
            str(output),
            "--model",
            str(model),
            "--fps",
            str(args.fps),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        started = time.perf_counter()
        run = _python(*command)
        run.update(
            {
                "minutes": minutes,
                "process_wall_s": round(time.perf_counter() - started, 2),
                "load_average_1min_after": load_average(),
            }
        )
        output.unlink(missing_ok=True)
        runs.append(run)

    first = runs[0]
    for run in runs:
        scale = run["minutes"] / first["minutes"]
        run["seconds_per_audio_minute"] = round(run["wall_s"] / run["minutes"], 3)
        run["time_ratio_vs_first_over_length_ratio"] = round(run["wall_s"] / first["wall_s"] / scale, 3)
        run["peak_rss_ratio_vs_first"] = round(run["peak_rss_mb"] / first["peak_rss_mb"], 3)
        # What holding every frame in a list (the peers' way) would need at this length.
        run["frames_in_a_list_mb"] = round(run["frames"] * RESOLUTION * RESOLUTION * 3 / 1e6, 1)
    record = {
        "settings": {
            "model": f"biggan-deep-{RESOLUTION} architecture, channel_width {CHANNEL_WIDTH}",
            "weights": f"random seed {args.seed}",
            "precision": "fp32",
            "fps": args.fps,
            "batch_size": args.batch_size or "render default",
            "threads": args.threads or "render default",
            "input": "the example music repeated, 22.05 kHz stereo 16-bit WAV",
            "load_average_1min_before": load_before,
        },
        "preparation": preparation,
        "runs": runs,
    }
    write_results("scaling", record, _markdown(record), args.out)
    return 0


def _markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    rows = [
        [
            f"{r['minutes']:g}",
            r["frames"],
            f"{r['wall_s']:.1f}",
            f"{r['seconds_per_audio_minute']:.2f}",
            f"{r['time_ratio_vs_first_over_length_ratio']:.2f}",
            f"{r['times_s']['decode_and_analysis']:.1f}",
            f"{r['times_s']['inference']:.1f}",
            f"{r['times_s']['encode_and_mux']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['ru_maxrss_mb']:.0f}",
            f"{r['rss_before_render_mb']:.0f}",
            f"{r['peak_rss_ratio_vs_first']:.2f}",
            f"{r['frames_in_a_list_mb']:.0f}",
            r.get("bound", "?"),
            r.get("cpu", {}).get("other_processes_cores", "?"),
        ]
        for r in record["runs"]
    ]
    header = [
        "audio min",
        "frames",
        "render s",
        "s per audio min",
        "time ratio / length ratio",
        "analysis s",
        "inference s",
        "encode + mux s",
        "peak RSS MB (VmHWM)",
        "ru_maxrss MB",
        "RSS before render MB",
        "peak RSS ratio",
        "frames-in-a-list MB (peers)",
        "bound by",
        "other processes (cores)",
    ]
    return "\n".join(
        [
            f"Scaling: {s['model']} ({s['weights']}), {s['fps']} fps, one fresh process per length; "
            f"load average before {s['load_average_1min_before']}",
            "",
            markdown_table(header, rows),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
