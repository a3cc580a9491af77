"""Renders on a Ray cluster: one song over many workers, many songs over one pool.

One Ray actor per device (`num_gpus=1` on GPU nodes, an explicit `num_cpus` share on CPU
nodes) builds its generator once and renders segments of any prepared job it is given,
returning the encoded segment's bytes (never raw frames). The model file travels once per
node: the driver puts its bytes in Ray's object store and each actor keeps a copy in its
node's cache, keyed by the file's sha256. The segments come from the same scheduler as a
render in one process (`scheduler.SegmentScheduler`: plan, kept segments, progress,
soundtracks, joins), planned in whole rounds of the pool's workers; `driver.PoolDriver`
keeps a bounded number of them in flight per worker (a `ray.wait` loop). Joining a cluster
(probed first, within a deadline, Ctrl-C and SIGTERM heard) is `connect`'s.

Faults: a worker process that dies is restarted by Ray and its segment retried there
(`max_restarts`, `max_task_retries`); a worker that is gone for good (its node removed, or
its restarts spent) has its segments moved to the others; with no worker left, or a
segment failing on `SEGMENT_ATTEMPTS` workers, the render stops with a `RenderError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.scale.connect import SignalWatch, describe_resources, import_ray, join_cluster, start_local
from ganterp_fast.engine.scale.driver import PoolDriver
from ganterp_fast.engine.scale.scheduler import RenderOutcome, SegmentScheduler
from ganterp_fast.engine.scale.worker import MAX_RESTARTS, Fault, ModelShipment, SegmentWorker

if TYPE_CHECKING:
    from ganterp_fast.engine.job import Progress, RenderJob, RenderResult

log = logging.getLogger(__name__)

# CPU workers: threads each (ONNX Runtime's pool and x264 share them); a CPU node of C cores
# gets C // CPU_WORKER_THREADS workers by default.
CPU_WORKER_THREADS = 4
# How long workers may take to start before the render gives up.
START_TIMEOUT_S = 120.0


@dataclass
class WorkerReport:
    """One worker of a render: where it ran, how many segments and frames, and its busy time."""

    index: int
    node: str = ""
    ip: str = ""
    gpus: list[str] = field(default_factory=list)
    segments: int = 0
    frames: int = 0
    busy_s: float = 0.0
    alive: bool = True

    def describe(self) -> str:
        gpu = f" GPU {','.join(self.gpus)}" if self.gpus else ""
        state = "" if self.alive else ", lost"
        return (
            f"worker {self.index} on {self.ip} (node {self.node[:8]}{gpu}): {self.segments} segments, "
            f"{self.frames} frames, {self.busy_s:.1f} s{state}"
        )


class Cluster:
    """A pool of segment workers on a Ray cluster.

    ``Cluster.local(workers=2)`` starts Ray on this machine; ``Cluster.connect("auto")`` or
    ``Cluster.connect("HOST:PORT")`` joins a running cluster. ``cluster.render([job, ...])``
    renders prepared jobs (`job.prepare`) on the pool; use it as a context manager, or call
    ``shutdown()``, to stop the workers (and the local Ray instance).
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        fault: Fault | None = None,
        generator_factory: Callable[[Any], Any] | None = None,
        owns_ray: bool = False,
    ) -> None:
        if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
            raise InputError(f"--workers must be a whole number of at least 1, got {workers}")
        self.requested = workers
        self.fault = fault
        self.generator_factory = generator_factory
        self.max_restarts = fault.restarts if fault is not None else MAX_RESTARTS
        self.owns_ray = owns_ray
        self._actors: list[Any] = []
        self._shipped: dict[tuple, ModelShipment] = {}
        self.reports: list[WorkerReport] = []
        # Seconds the driver spent storing segments and joining songs (what bounds it at scale).
        self.driver_times = {"store": 0.0, "join": 0.0}

    # ----------------------------------------------------------------- starting

    @classmethod
    def local(cls, workers: int | None = None, **kwargs: Any) -> Cluster:
        """Start a Ray instance on this machine (its CPUs and GPUs) for this pool."""
        pool = cls(workers=workers, **kwargs)
        ray = import_ray()
        if not ray.is_initialized():
            started = time.perf_counter()
            start_local(ray)
            pool.owns_ray = True
            seconds = time.perf_counter() - started
            log.info("started a local Ray instance in %.1f s: %s", seconds, describe_resources(ray))
        return pool

    @classmethod
    def connect(cls, address: str = "auto", workers: int | None = None, **kwargs: Any) -> Cluster:
        """Join a running cluster: "auto" (RAY_ADDRESS or a local `ray start`), or HOST:PORT;
        InputError within `connect.CONNECT_TIMEOUT_S` seconds where no cluster answers."""
        pool = cls(workers=workers, **kwargs)
        ray = import_ray()
        if not ray.is_initialized():
            join_cluster(ray, address)
            pool.owns_ray = True
            log.info("joined the Ray cluster at %s: %s", address, describe_resources(ray))
        return pool

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the workers, and the Ray connection this pool opened."""
        ray = import_ray()
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self._actors = []
        self._shipped = {}
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()

    def _plan_workers(self, ray) -> list[dict[str, Any]]:
        """Actor options per worker: one per GPU where the cluster has GPUs, else CPU shares."""
        total = ray.cluster_resources()
        gpus = int(total.get("GPU", 0))
        cpus = int(total.get("CPU", 1))
        if gpus:
            count = self.requested or gpus
            if count > gpus:
                raise InputError(f"--workers {count}: the cluster has {gpus} GPUs, one worker each; use at most {gpus}")
            per_cpu = max(1, cpus // gpus) if cpus >= gpus else 0
            options = {"num_gpus": 1, "num_cpus": min(1, per_cpu)}
            return [dict(options, threads=None, encoder_threads=max(1, per_cpu)) for _ in range(count)]
        count = self.requested or max(1, cpus // CPU_WORKER_THREADS)
        share = max(1, cpus // count)
        if count > cpus:
            raise InputError(f"--workers {count}: the cluster has {cpus} CPUs, at least one each; use at most {cpus}")
        return [
            {"num_cpus": share, "scheduling_strategy": "SPREAD", "threads": share, "encoder_threads": share}
            for _ in range(count)
        ]

    def start(self) -> list[WorkerReport]:
        """Start the workers (once) and report where each landed."""
        if self._actors:
            return self.reports
        ray = import_ray()
        remote = ray.remote(SegmentWorker)
        plans = self._plan_workers(ray)
        actors = []
        for index, plan in enumerate(plans):
            threads, encoder_threads = plan.pop("threads"), plan.pop("encoder_threads")
            actor = remote.options(
                max_restarts=self.max_restarts, max_task_retries=self.max_restarts, max_concurrency=1, **plan
            ).remote(
                index,
                threads=threads,
                encoder_threads=encoder_threads,
                fault=self.fault,
                generator_factory=self.generator_factory,
            )
            actors.append(actor)
        self._actors = actors
        refs = [actor.where.remote() for actor in actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if len(ready) < len(refs):
            self.shutdown()
            raise RenderError(
                f"{len(refs) - len(ready)} of {len(refs)} workers did not start within {START_TIMEOUT_S:.0f} s "
                f"(the cluster has {describe_resources(ray)}): ask for fewer --workers"
            )
        self.reports = [WorkerReport(**{k: v for k, v in ray.get(ref).items() if k != "pid"}) for ref in refs]
        for report in self.reports:
            log.info("%s", report.describe().split(":")[0] + " started")
        return self.reports

    def worker_count(self) -> int:
        """The workers this pool has, or will start (what segment plans are balanced for)."""
        return len(self._actors) or len(self._plan_workers(import_ray()))

    # ---------------------------------------------------------------- rendering

    def render(
        self,
        jobs: Sequence[RenderJob],
        *,
        segment_seconds: float | None = None,
        resume: bool = False,
        progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[RenderOutcome], None] | None = None,
    ) -> list[RenderOutcome]:
        """Render every job on the pool, segments of all of them interleaved; each output is
        joined (and written atomically) as soon as its song is complete.

        A job that fails (a bad segment, a join error) is reported in its outcome and the others
        go on; a failure of the pool itself (no worker left, a segment failing on
        SEGMENT_ATTEMPTS workers) raises RenderError. Ctrl-C cancels the work and leaves no output.
        """
        ray = import_ray()
        schedule = SegmentScheduler(
            jobs,
            segment_seconds=segment_seconds,
            resume=resume,
            workers=self.worker_count(),
            progress=progress,
            on_done=on_done,
        )
        signals = SignalWatch()
        try:
            with schedule:
                schedule.start()
                if schedule.pending:
                    self.start()
                    PoolDriver(self, ray, schedule).run()
                return schedule.finish()
        except BaseException as exc:
            signals.reraise(exc)
            raise
        finally:
            signals.restore()
            for key, seconds in schedule.times.items():
                self.driver_times[key] = self.driver_times.get(key, 0.0) + seconds

    def render_one(
        self,
        job: RenderJob,
        *,
        segment_seconds: float | None = None,
        resume: bool = False,
        progress: Callable[[Progress], None] | None = None,
    ) -> RenderResult:
        """Render one job on the pool (`render`); its error raised, its result as `job.run`'s."""
        wall = time.perf_counter()
        outcome = self.render([job], segment_seconds=segment_seconds, resume=resume, progress=progress)[0]
        if outcome.error is not None:
            raise outcome.error
        job.times.wall += time.perf_counter() - wall
        busy = [r for r in self.reports if r.segments]
        return job.result(outcome.output, device=f"{len(busy)} Ray worker{'s' if len(busy) != 1 else ''}")

    def lose(self, worker: int, alive: set[int], reason: str) -> None:
        """Worker `worker` is gone for good: out of `alive`, its actor killed."""
        if worker not in alive:
            return
        alive.discard(worker)
        self.reports[worker].alive = False
        log.info("worker %d lost (%s); %d left", worker, reason, len(alive))
        ray = import_ray()
        with contextlib.suppress(Exception):
            ray.kill(self._actors[worker], no_restart=True)

    def workers_on_dead_nodes(self, ray, alive: set[int]) -> list[int]:
        try:
            live = {node["NodeID"] for node in ray.nodes() if node.get("Alive")}
        except Exception:  # the state API is best effort here
            return []
        return [worker for worker in alive if self.reports[worker].node not in live]

    def ship_models(self, ray, jobs: Sequence[RenderJob]) -> dict[Any, ModelShipment]:
        """Each distinct model file once into the object store (resolved, exported if need be, here);
        nothing for a stand-in generator (`generator_factory`), which opens no model file."""
        if self.generator_factory is not None:
            return {job.model: ModelShipment("stand-in", job.model.options.model, ()) for job in jobs}
        shipments: dict[Any, ModelShipment] = {}
        by_path: dict[Path, ModelShipment] = {}
        for job in jobs:
            plan = job.model
            if plan in shipments:
                continue
            path = plan.resolve()
            if path not in by_path:
                stat = path.stat()
                key = (os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns)
                if key not in self._shipped:  # once per pool, whatever the number of renders
                    data = path.read_bytes()
                    digest = hashlib.sha256(data).hexdigest()
                    self._shipped[key] = ModelShipment(digest, path.name, (ray.put(data),))
                    log.info("model %s (%.1f MB, sha256 %s) shipped to the workers", path, len(data) / 1e6, digest[:12])
                by_path[path] = self._shipped[key]
            shipments[plan] = by_path[path]
        return shipments

    def actor(self, worker: int) -> Any:
        return self._actors[worker]
