"""Scale-out on Ray: its overhead on one machine, how it scales, and what bounds the driver.

1. Overhead: the same job (BigGAN-deep-128, random weights, fp32) in one process
   (`RenderJob.run`) and on a local Ray pool of one worker with the same cores, alternating
   rounds after a warm-up (pool started, model shipped); the ratio of the render times
   (median and best).
2. Scaling: a stand-in generator with a fixed cost per frame (it sleeps, so the figure
   measures the distribution, not this machine's cores) on 1, 2, 4 and 8 workers of a local
   Ray instance with 8 logical CPUs, segments of `--segment-seconds` planned for the pool
   (`scale.plan`); throughput against N x one worker (median of `--scaling-rounds`), and the
   driver's time storing segments and joining.
3. Soundtrack: encoding a long song's audio to AAC (what the join does) against copying its
   AAC packets as they are (what a copy would cost instead).

    python -m benchmarks.bench_cluster [--seconds 20] [--scaling-seconds 20] [--cost-ms 40] [--out DIR]
    python -m benchmarks.bench_cluster --skip overhead,soundtrack      # scaling alone (about 2 minutes)
    python -m benchmarks.bench_cluster --skip scaling,soundtrack       # one worker against one process
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average, write_music


class StandIn:
    """A generator that sleeps `cost_s` per frame and returns flat grey frames."""

    def __init__(self, resolution: int, cost_s: float) -> None:
        self.resolution, self.cost_s = resolution, cost_s
        self.device, self.providers = "cpu", ["stand-in"]

    def __call__(self, z: np.ndarray, classes: np.ndarray, *, truncation: float) -> np.ndarray:
        time.sleep(self.cost_s * len(z))
        return np.full((len(z), self.resolution, self.resolution, 3), 128, np.uint8)


class StandInFactory:
    """Picklable by value (this module runs as __main__): builds the stand-in on each worker."""

    def __init__(self, cost_s: float) -> None:
        self.cost_s = cost_s

    def __call__(self, plan: Any) -> StandIn:
        return StandIn(plan.resolution, self.cost_s)


def _options(model: str = "biggan-deep-128", **encode: Any):
    from ganterp_fast.engine.options import ModelOptions, RenderOptions
    from ganterp_fast.engine.video.encode import EncodeOptions

    weights = None if model.lower().endswith(".onnx") else "random"
    return RenderOptions(
        model=ModelOptions(model=model, weights=weights, precision="fp32", device="cpu"),
        fps="15",
        encode=EncodeOptions(preset="veryfast", **encode),
        overwrite=True,
    )


def overhead(song: Path, folder: Path, rounds: int, model: str) -> dict[str, Any]:
    import ray

    from ganterp_fast.engine.job import prepare
    from ganterp_fast.engine.scale.cluster import Cluster

    options = _options(model)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        began = time.perf_counter()
        pool = Cluster.local(workers=1)
        pool.start()
        start_s = time.perf_counter() - began
        job = prepare(song, folder / "warm.mp4", options)
        generator = job.open_generator()
        began = time.perf_counter()
        pool.render([job])  # ships the model, opens the worker's generator
        warm_s = time.perf_counter() - began
        single, pooled = [], []
        for _ in range(rounds):
            job = prepare(song, folder / "one.mp4", options)
            began = time.perf_counter()
            job.run(generator=generator)
            single.append(time.perf_counter() - began)
            job = prepare(song, folder / "ray.mp4", options)
            began = time.perf_counter()
            pool.render([job])
            pooled.append(time.perf_counter() - began)
        pool.shutdown()
    finally:
        ray.shutdown()
    return {
        "frames": job.num_frames,
        "model": model,
        "pool_start_s": round(start_s, 2),
        "first_render_s": round(warm_s, 2),
        "single_s": [round(t, 2) for t in single],
        "ray_s": [round(t, 2) for t in pooled],
        "single_median_s": round(statistics.median(single), 2),
        "ray_median_s": round(statistics.median(pooled), 2),
        "ratio_median": round(statistics.median(pooled) / statistics.median(single), 3),
        "ratio_best": round(min(pooled) / min(single), 3),
        "ratios": [round(b / a, 3) for a, b in zip(single, pooled)],
    }


def scaling(song: Path, folder: Path, cost_s: float, workers: list[int], seconds: float, rounds: int) -> dict[str, Any]:
    import ray

    from ganterp_fast.engine.job import prepare
    from ganterp_fast.engine.scale.cluster import Cluster

    options = _options(threads=1)
    rows = []
    ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    try:
        for count in workers:
            with Cluster.local(workers=count, generator_factory=StandInFactory(cost_s)) as pool:
                pool.start()
                warm = prepare(song, folder / "warm.mp4", options)
                pool.render([warm], segment_seconds=warm.num_frames / float(warm.fps) / count)
                walls, busy, store, join = [], [], [], []
                for _ in range(rounds):
                    pool.driver_times = {"store": 0.0, "join": 0.0}
                    for report in pool.reports:
                        report.segments, report.frames, report.busy_s = 0, 0, 0.0
                    job = prepare(song, folder / f"scale-{count}.mp4", options)
                    began = time.perf_counter()
                    [outcome] = pool.render([job], segment_seconds=seconds)
                    walls.append(time.perf_counter() - began)
                    assert outcome.error is None, outcome.error
                    busy.append([round(r.busy_s, 2) for r in pool.reports])
                    store.append(pool.driver_times["store"])
                    join.append(pool.driver_times["join"])
                wall = statistics.median(walls)
                rows.append(
                    {
                        "workers": count,
                        "frames": job.num_frames,
                        "segments": len(job.segments(seconds, workers=count)),
                        "wall_s": round(wall, 2),
                        "walls_s": [round(w, 2) for w in walls],
                        "frames_per_s": round(job.num_frames / wall, 2),
                        "store_s": round(statistics.median(store), 3),
                        "join_s": round(statistics.median(join), 3),
                        "busy_s": busy[walls.index(sorted(walls)[len(walls) // 2])],
                    }
                )
                print(rows[-1], flush=True)
    finally:
        ray.shutdown()
    base = rows[0]["frames_per_s"]
    for row in rows:
        row["vs_ideal"] = round(row["frames_per_s"] / (base * row["workers"]), 3)
    return {
        "cost_ms_per_frame": cost_s * 1000,
        "segment_seconds": seconds,
        "ideal_fps_one_worker": round(1 / cost_s, 2),
        "rows": rows,
    }


def soundtrack(folder: Path, seconds: float) -> dict[str, Any]:
    """AAC encoding of `seconds` of 44.1 kHz stereo (the join's soundtrack) against a packet copy."""
    import av

    from ganterp_fast.engine.audio.soundtrack import Soundtrack
    from ganterp_fast.engine.audio.source import open_source

    wav = write_music(folder / "long.wav", seconds)
    source = open_source(wav)
    began = time.perf_counter()
    with av.open(os.fspath(folder / "aac.m4a"), "w", format="mp4") as out:
        track = Soundtrack(out, source.info, duration=source.duration_s)
        track.mux_until(None)
        track.close()
    encode_s = time.perf_counter() - began
    began = time.perf_counter()
    with av.open(os.fspath(folder / "aac.m4a")) as src, av.open(os.fspath(folder / "copy.m4a"), "w") as out:
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    copy_s = time.perf_counter() - began
    return {"seconds_of_audio": seconds, "aac_encode_s": round(encode_s, 2), "packet_copy_s": round(copy_s, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="song length of the overhead job (15 fps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--model", default="biggan-deep-128", help="the overhead job's model: a name (random weights) or an .onnx"
    )
    parser.add_argument("--scaling-seconds", type=float, default=20.0, help="song length of the scaling job (15 fps)")
    parser.add_argument("--segment-seconds", type=float, default=1.0, help="the scaling job's segments")
    parser.add_argument("--scaling-rounds", type=int, default=3, help="renders per worker count (median)")
    parser.add_argument("--cost-ms", type=float, default=40.0, help="the stand-in's cost per frame")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--audio-seconds", type=float, default=600.0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: overhead, scaling, soundtrack")
    parser.add_argument("--out", default=None, help="folder for cluster.json and cluster.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    skip = set(filter(None, args.skip.split(",")))
    work = DEFAULT_WORK / "cluster"
    results: dict[str, Any] = {"load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        folder = Path(scratch)
        if "overhead" not in skip:
            song = write_music(work / f"song-{args.seconds:g}.wav", args.seconds)
            results["overhead"] = overhead(song, folder, args.rounds, args.model)
            print(results["overhead"], flush=True)
        if "scaling" not in skip:
            song = write_music(work / f"song-{args.scaling_seconds:g}.wav", args.scaling_seconds)
            workers = [int(w) for w in args.workers.split(",")]
            results["scaling"] = scaling(
                song, folder, args.cost_ms / 1000, workers, args.segment_seconds, args.scaling_rounds
            )
        if "soundtrack" not in skip:
            results["soundtrack"] = soundtrack(folder, args.audio_seconds)
            print(results["soundtrack"], flush=True)
    results["load_after"] = load_average()
    tables = []
    if "overhead" in results:
        o = results["overhead"]
        tables.append(
            markdown_table(
                ["frames", "one process s (rounds)", "--ray local, 1 worker s (rounds)"]
                + ["ratio (median)", "ratio (best)"],
                [
                    [o["frames"], ", ".join(map(str, o["single_s"])), ", ".join(map(str, o["ray_s"]))]
                    + [o["ratio_median"], o["ratio_best"]]
                ],
            )
        )
    if "scaling" in results:
        s = results["scaling"]
        tables.append(
            markdown_table(
                ["workers", "frames", "segments", "wall s", "frames/s", "vs N x one worker", "store s", "join s"],
                [
                    [r["workers"], r["frames"], r["segments"], r["wall_s"], r["frames_per_s"], r["vs_ideal"]]
                    + [r["store_s"], r["join_s"]]
                    for r in s["rows"]
                ],
            )
        )
    if "soundtrack" in results:
        a = results["soundtrack"]
        tables.append(
            markdown_table(
                ["audio s", "AAC encode s", "packet copy s"],
                [[a["seconds_of_audio"], a["aac_encode_s"], a["packet_copy_s"]]],
            )
        )
    write_results("cluster", results, "\n\n".join(tables), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
