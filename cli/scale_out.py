"""`render` over several inputs, on a Ray cluster (`--ray`), or in kept segments (`--resume`).

Every input is prepared here first (input errors never reach a worker); the jobs then render
on one pool (`engine.scale.cluster.Cluster`, segments of all songs interleaved) or one after
another in this process. Each output is written as soon as its song is complete; a failing
input is reported and the others finish, and the command exits 1 at the end naming the
failures.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ganterp_fast.engine.errors import GanterpError, InputError, RenderError
from ganterp_fast.engine.scale.plan import SEGMENT_SECONDS

# A fault the workers inject into themselves (tests of fault tolerance): see worker.Fault.parse.
FAULT_ENV = "GANTERP_WORKER_FAULT"


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out and resume")
    group.add_argument(
        "--ray",
        metavar="local|auto|HOST:PORT",
        help="render on Ray: local starts Ray here (a worker per GPU, else CPU workers sharing the cores); auto "
        "joins RAY_ADDRESS or a running 'ray start'; HOST:PORT joins that cluster (needs the [ray] extra)",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="--ray: workers to start (default: one per GPU of the cluster, else one per 4 CPUs)",
    )
    group.add_argument(
        "--segment-seconds",
        type=float,
        metavar="S",
        help="render in segments of about S seconds of video (S > 0), each kept until the video is joined (default "
        "with --ray or --resume: 10)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped render from the segments it finished (kept in .OUTPUT.segments/ beside the output)",
    )


def wants_scale_out(args: argparse.Namespace) -> bool:
    """Whether this command renders through here (several inputs, or --ray), not `render` alone.

    Checks --workers and --segment-seconds first: no value is replaced by another."""
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be a whole number of at least 1, got {args.workers}")
    if args.workers is not None and not args.ray:
        raise InputError("--workers applies to --ray: add --ray local (or auto, or HOST:PORT)")
    seconds = args.segment_seconds
    if seconds is not None and not 0 < seconds < math.inf:
        raise InputError(
            f"--segment-seconds must be a positive number of seconds (default {SEGMENT_SECONDS:g}), got {seconds:g}"
        )
    return len(args.input or []) > 1 or bool(args.ray)


def _outputs(args: argparse.Namespace, inputs: list[str]) -> list[Path]:
    from ganterp_fast.cli.options import default_output

    if len(inputs) == 1:
        return [Path(args.output) if args.output else default_output(inputs[0], args.example)]
    if args.output:
        folder = Path(args.output)
        if not folder.is_dir():
            raise InputError(
                f"-o {args.output}: with {len(inputs)} inputs, -o names an existing folder for the videos (OUTDIR/)"
            )
        outputs = [folder / f"{Path(name).stem}.mp4" for name in inputs]
    else:
        outputs = [default_output(name, False) for name in inputs]
    seen: dict[Path, str] = {}
    for name, output in zip(inputs, outputs):
        key = Path(os.path.abspath(output))
        if key in seen:
            raise InputError(f"{seen[key]} and {name} would both be written to {output}: give them different names")
        seen[key] = name
    return outputs


def run(args: argparse.Namespace, options, section=None) -> int:  # options: RenderOptions, section: Section
    from ganterp_fast.cli.options import resolve_input
    from ganterp_fast.engine.job import prepare

    if args.ray:
        from ganterp_fast.engine.scale.connect import import_ray

        import_ray()  # the [ray] extra, before any work
    raw = list(args.input or [])
    if len(raw) <= 1:
        args.input = raw[0] if raw else None
        inputs = [resolve_input(args)]
    else:
        if args.example:
            raise InputError(f"give either INPUT ({raw[0]}, ...) or --example, not both")
        inputs = raw
    outputs = _outputs(args, inputs)
    single = len(inputs) == 1
    failures: list[tuple[str, GanterpError]] = []

    def failed(name: str, error: GanterpError) -> None:
        if single:
            raise error
        failures.append((name, error))
        if not args.quiet:
            print(f"{name}: failed: {error}", file=sys.stderr, flush=True)

    jobs = []
    names = {}
    for name, output in zip(inputs, outputs):
        if not args.quiet:
            print(f"analysing {name}", file=sys.stderr, flush=True)
        try:
            job = prepare(name, output, options, start=args.start, duration=args.duration, section=section)
        except GanterpError as exc:
            failed(name, exc)
            continue
        jobs.append(job)
        names[id(job)] = name

    written: list[Path] = []

    def done(outcome) -> None:  # type: ignore[no-untyped-def]
        if outcome.error is not None:
            failed(names[id(outcome.job)], outcome.error)
        else:
            written.append(outcome.output)
            if not args.quiet:
                _write(f"{outcome.output}: {outcome.job.num_frames} frames, done after {outcome.wall_s:.1f} s")

    bar = _Bar(args.quiet)
    try:
        if args.ray and jobs:
            _render_on_ray(args, jobs, bar, done)
        else:
            for job in jobs:
                _render_here(args, job, bar, done)
    finally:
        bar.close()
    if failures:
        listing = "; ".join(f"{name} ({error})" for name, error in failures)
        raise RenderError(f"{len(failures)} of {len(inputs)} inputs failed: {listing}")
    return 0


def _render_on_ray(args: argparse.Namespace, jobs: list, bar: _Bar, done) -> None:  # type: ignore[no-untyped-def]
    from ganterp_fast.engine.scale.cluster import Cluster
    from ganterp_fast.engine.scale.worker import Fault

    fault = Fault.parse(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else None
    if not args.quiet:
        print(f"starting Ray workers ({args.ray})", file=sys.stderr, flush=True)
    if args.ray == "local":
        cluster = Cluster.local(workers=args.workers, fault=fault)
    else:
        cluster = Cluster.connect(args.ray, workers=args.workers, fault=fault)
    with cluster:
        cluster.render(
            jobs, segment_seconds=args.segment_seconds, resume=args.resume, progress=bar.update, on_done=done
        )
        if not args.quiet:
            for report in cluster.reports:
                _write(report.describe())


def _render_here(args: argparse.Namespace, job, bar: _Bar, done) -> None:  # type: ignore[no-untyped-def]
    import time

    from ganterp_fast.engine.scale.scheduler import RenderOutcome, render_segmented

    began = time.perf_counter()
    outcome = RenderOutcome(job)
    try:
        if args.segment_seconds is not None or args.resume:
            result = render_segmented(job, segment_seconds=args.segment_seconds, resume=args.resume, progress=bar.job)
        else:
            result = job.run(progress=bar.job)
        outcome.output = result.output
    except GanterpError as exc:
        outcome.error = exc
    bar.next_job()
    outcome.wall_s = time.perf_counter() - began
    done(outcome)


def _write(line: str) -> None:
    print(line, flush=True)


class _Bar:
    """One tqdm bar: frames done over all jobs (a pool), or per job (one after another)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.base = 0

    def update(self, progress) -> None:  # type: ignore[no-untyped-def]
        if self.quiet or progress.stage != "render" or not progress.frames_total:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=progress.frames_total, unit="frame", dynamic_ncols=True, desc="render", file=sys.stderr
            )
        self.bar.update(progress.frames_done - self.bar.n)

    def job(self, progress) -> None:  # type: ignore[no-untyped-def]
        self.update(progress)

    def next_job(self) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
