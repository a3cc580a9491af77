"""Output sizes: frames per second of the compositor (scale + fit, a layout) and of x264 at each size.

The generator's square frames (random textures, as BigGAN-deep's are busy) go through the
same `compose.Compositor` and `encode.VideoWriter` a render uses, each stage timed on its own
in one run, so their rates say which stage bounds a render at each output size next to the
generator's images/s (`ganterp-fast bench`). Each stage is timed `--rounds` times, the
sizes alternating, and the best round kept (this VM's timings swing).

    python -m benchmarks.bench_output --frames 60 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from benchmarks.common import markdown_table, write_results

SIZES = ("native", "720p", "1080p", "vertical", "square", "1440p", "2160p")
PRESETS = ("ultrafast", "veryfast", "medium")


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags)


def gan_like(count: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Busy uint8 frames that change from frame to frame (smoothed noise, like BigGAN textures)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (count, resolution // 4, resolution // 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(base.repeat(4, axis=1).repeat(4, axis=2))


def time_compose(frames: np.ndarray, size: tuple[int, int], fit: str) -> float:
    from ganterp_fast.engine.video.compose import Compositor, plan_composition

    plan = plan_composition(resolution=frames.shape[1], size=size, fit=fit)
    compositor = Compositor(plan, Fraction(30))
    compositor(frames[:4])  # scaler contexts and the blur graph set up
    began = time.perf_counter()
    for first in range(0, len(frames), 4):
        compositor(frames[first : first + 4])
    return len(frames) / (time.perf_counter() - began)


def time_x264(gan: np.ndarray, size: tuple[int, int], preset: str, threads: int, folder: Path) -> float:
    """x264's rate at `size` (the RGB -> yuv420p conversion included): frames composited on the fly, untimed."""
    from ganterp_fast.engine.video.compose import Compositor, plan_composition
    from ganterp_fast.engine.video.encode import EncodeOptions, VideoWriter

    width, height = size
    compositor = Compositor(plan_composition(resolution=gan.shape[1], size=size, fit="blur"), Fraction(30))
    options = EncodeOptions(preset=preset, threads=threads)
    seconds = 0.0
    with VideoWriter(
        folder / f"x264-{width}x{height}.mp4",
        width=width,
        height=height,
        fps=30,
        audio=None,
        options=options,
        overwrite=True,
    ) as writer:
        for first in range(0, len(gan), 4):
            batch = gan[first : first + 4]
            batch = batch if size == batch.shape[1:3] else compositor(batch)
            began = time.perf_counter()
            writer.write(batch)
            seconds += time.perf_counter() - began
        began = time.perf_counter()
    seconds += time.perf_counter() - began  # the encoder's flush
    return len(gan) / seconds


def main(argv: list[str] | None = None) -> None:
    from ganterp_fast.engine.video.compose import parse_size

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames per measurement")
    parser.add_argument("--resolution", type=int, default=128, help="the generator's frame size")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--threads", default="0,1", help="x264 --encoder-threads values")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", help="folder for the JSON and Markdown results")
    args = parser.parse_args(argv)

    gan = gan_like(args.frames, args.resolution)
    sizes = args.sizes.split(",")
    presets = args.presets.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    best: dict[tuple, float] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name in sizes:
                size = (args.resolution, args.resolution) if name == "native" else parse_size(name)
                for fit in ("pad", "blur"):
                    if name != "native":
                        key = ("compose", name, fit)
                        best[key] = max(best.get(key, 0.0), time_compose(gan, size, fit))
                for preset in presets:
                    for count in threads:
                        key = ("x264", name, preset, count)
                        best[key] = max(best.get(key, 0.0), time_x264(gan, size, preset, count, Path(folder)))
                measured = {" ".join(map(str, k[2:])): round(v, 1) for k, v in best.items() if k[1] == name}
                print(f"{name}: {measured}", flush=True)
    rows = []
    for name in sizes:
        size = (args.resolution, args.resolution) if name == "native" else parse_size(name)
        row = [name, f"{size[0]}x{size[1]}"]
        row += [f"{best[('compose', name, fit)]:.0f}" if name != "native" else "-" for fit in ("pad", "blur")]
        row += [f"{best[('x264', name, p, t)]:.1f}" for p in presets for t in threads]
        rows.append(row)
    header = ["size", "pixels", "compose pad fps", "compose blur fps"]
    header += [f"x264 {p} t={t or 'auto'} fps" for p in presets for t in threads]
    table = markdown_table(header, rows)
    note = (
        f"\n{args.frames} frames of {args.resolution} px per measurement, best of {args.rounds} rounds; "
        f"load average {load:.1f} at the start; CPU flags: {cpu_flags() or 'none of avx512/bf16/amx'}"
    )
    results = {
        "settings": vars(args),
        "load_average": load,
        "cpu_flags": cpu_flags(),
        "fps": {" ".join(map(str, key)): value for key, value in best.items()},
    }
    write_results("output", results, table + note, args.out)


if __name__ == "__main__":
    main()
