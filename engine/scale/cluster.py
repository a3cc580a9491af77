"""Renders on a Ray cluster: one song over many workers, many songs over one pool.

One Ray actor per device (`num_gpus=1` on GPU nodes, an explicit `num_cpus` share on CPU
nodes) builds its generator once and renders segments of any prepared job it is given,
returning the encoded segment's bytes (never raw frames). The model file travels once per
node: the driver puts its bytes in Ray's object store and each actor keeps a copy in its
node's cache, keyed by the file's sha256. The driver keeps a bounded number of segments in
flight per worker (a `ray.wait` loop), stores each finished one in the output's hidden
segments folder (`resume.SegmentStore`) and joins a song as soon as all of its segments
are in.

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
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganterp_fast.engine.errors import GanterpError, InputError, MissingExtraError, RenderError
from ganterp_fast.engine.scale.worker import MAX_RESTARTS, Fault, ModelShipment, SegmentWorker

if TYPE_CHECKING:
    from ganterp_fast.engine.job import Progress, RenderJob, RenderResult

log = logging.getLogger(__name__)

# Segments queued on each worker: one rendering, one waiting, so a worker never idles while
# the driver stores what it returned.
IN_FLIGHT_PER_WORKER = 2
# A segment that killed or failed on this many workers stops the render.
SEGMENT_ATTEMPTS = 3
# CPU workers: threads each (ONNX Runtime's pool and x264 share them); a CPU node of C cores
# gets C // CPU_WORKER_THREADS workers by default.
CPU_WORKER_THREADS = 4
# How long workers may take to start before the render gives up.
START_TIMEOUT_S = 120.0
# Environment variables the workers need from the driver (Ray does not pass the environment on).
FORWARDED_ENV = ("GANTERP_CACHE_DIR", "GANTERP_CPUINFO", "PYTORCH_PRETRAINED_BIGGAN_CACHE")


def import_ray():  # -> module
    try:
        import ray
    except ImportError:
        raise MissingExtraError("--ray (rendering on a Ray cluster)", "ray") from None
    return ray


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


@dataclass
class ClusterOutcome:
    """The result of one job: its output, or the error that stopped it."""

    job: RenderJob
    output: Path | None = None
    error: GanterpError | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Pending:
    job_index: int
    start: int
    stop: int
    attempts: int = 0
    reasons: list[str] = field(default_factory=list)


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
        if workers is not None and (int(workers) != workers or workers < 1):
            raise InputError(f"--workers must be an integer of at least 1, got {workers}")
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
        ray = import_ray()
        _quiet_ray_environment()
        if ray.is_initialized():
            return cls(workers=workers, **kwargs)
        started = time.perf_counter()
        with _keeping_sigterm():
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=_runtime_env(), configure_logging=False)
        log.info("started a local Ray instance in %.1f s: %s", time.perf_counter() - started, _resources(ray))
        return cls(workers=workers, owns_ray=True, **kwargs)

    @classmethod
    def connect(cls, address: str = "auto", workers: int | None = None, **kwargs: Any) -> Cluster:
        """Join a running cluster: "auto" (RAY_ADDRESS or a local `ray start`), or HOST:PORT."""
        ray = import_ray()
        _quiet_ray_environment()
        if ray.is_initialized():
            return cls(workers=workers, **kwargs)
        try:
            with _keeping_sigterm():
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env=_runtime_env(),
                    configure_logging=False,
                )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise InputError(
                f"--ray {address}: no Ray cluster answers there ({reason}); start one with 'ray start --head', "
                "or use --ray local"
            ) from None
        log.info("joined the Ray cluster at %s: %s", address, _resources(ray))
        return cls(workers=workers, owns_ray=True, **kwargs)

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
                f"(the cluster has {_resources(ray)}): ask for fewer --workers"
            )
        self.reports = [WorkerReport(**{k: v for k, v in ray.get(ref).items() if k != "pid"}) for ref in refs]
        for report in self.reports:
            log.info("%s", report.describe().split(":")[0] + " started")
        return self.reports

    # ---------------------------------------------------------------- rendering

    def render(
        self,
        jobs: Sequence[RenderJob],
        *,
        segment_seconds: float | None = None,
        resume: bool = False,
        progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[ClusterOutcome], None] | None = None,
    ) -> list[ClusterOutcome]:
        """Render every job on the pool, segments of all of them interleaved; each output is
        joined (and written atomically) as soon as its song is complete.

        A job that fails (a bad segment, a join error) is reported in its outcome and the others
        go on; a failure of the pool itself (no worker left, a segment failing on
        SEGMENT_ATTEMPTS workers) raises RenderError. Ctrl-C cancels the work and leaves no output.
        """
        from ganterp_fast.engine.job import SEGMENT_SECONDS, Progress
        from ganterp_fast.engine.scale.resume import SegmentStore, copyable_soundtrack
        from ganterp_fast.engine.scale.segments import encode_soundtrack

        ray = import_ray()
        wall = time.perf_counter()
        outcomes = [ClusterOutcome(job) for job in jobs]
        stores: list[SegmentStore] = []
        remaining: list[set[tuple[int, int]]] = []
        queue: deque[_Pending] = deque()
        per_job: list[list[_Pending]] = []
        done_frames = 0
        total_frames = sum(job.num_frames for job in jobs)
        for index, job in enumerate(jobs):
            ranges = job.segments(segment_seconds or SEGMENT_SECONDS)
            store = SegmentStore(job, ranges)
            stores.append(store)
            try:
                kept = store.open(resume=resume)
            except GanterpError as exc:  # e.g. --resume with another job's segments: this song alone
                if len(jobs) == 1:
                    raise
                outcomes[index].error = exc
                remaining.append(set())
                per_job.append([])
                continue
            remaining.append({r for r in ranges if r not in kept})
            done_frames += sum(b - a for a, b in kept)
            per_job.append([_Pending(index, a, b) for a, b in ranges if (a, b) not in kept])
        # Interleave: the first segment of every song, then the second of every song, ...
        for position in range(max((len(p) for p in per_job), default=0)):
            queue.extend(items[position] for items in per_job if position < len(items))

        def report() -> None:
            if progress is not None:
                progress(Progress(done_frames, total_frames))

        # Joins run on one thread beside the loop (PyAV releases the GIL), so workers are fed meanwhile.
        joiner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganterp-join")
        joining: dict[Future, int] = {}
        # Each song's soundtrack is encoded while its segments render; the join copies its packets.
        encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganterp-soundtrack")
        soundtracks: dict[int, Future] = {}
        stop = threading.Event()

        def join(index: int) -> Path:
            began = time.perf_counter()
            try:
                if index in soundtracks:
                    soundtracks[index].result()
                return stores[index].join()
            finally:
                self.driver_times["join"] += time.perf_counter() - began

        def finish(index: int) -> None:
            joining[joiner.submit(join, index)] = index

        def collect(block: bool) -> None:
            """Hand over the finished joins (all of them where `block`)."""
            for future in [f for f in joining if block or f.done()]:
                index = joining.pop(future)
                outcome = outcomes[index]
                try:
                    outcome.output = future.result()
                except GanterpError as exc:
                    outcome.error = exc
                except Exception as exc:  # a disk or system fault while joining
                    outcome.error = RenderError(f"joining {jobs[index].output} failed: {exc}")
                if outcome.error is not None:
                    stores[index].close_failed()
                outcome.wall_s = time.perf_counter() - wall
                if on_done is not None:
                    on_done(outcome)

        def fail(index: int, error: GanterpError) -> None:
            outcomes[index].error = error
            outcomes[index].wall_s = time.perf_counter() - wall
            remaining[index].clear()
            for item in [item for item in queue if item.job_index == index]:
                queue.remove(item)
            stores[index].close_failed()
            if on_done is not None:
                on_done(outcomes[index])

        in_flight: dict[Any, tuple[int, _Pending]] = {}
        signals = _SignalWatch()
        try:
            report()
            for index in range(len(jobs)):
                if outcomes[index].error is not None:
                    if on_done is not None:
                        on_done(outcomes[index])
                elif not remaining[index]:
                    finish(index)
            if not queue:
                collect(block=True)
                return outcomes
            for index in sorted({item.job_index for item in queue}):
                if not stores[index].soundtrack.is_file() and copyable_soundtrack(jobs[index]) is None:
                    soundtracks[index] = encoder.submit(
                        encode_soundtrack, jobs[index], stores[index].soundtrack, stop=stop
                    )
            self.start()
            shipments = self._ship_models(ray, jobs, {item.job_index for item in queue})
            job_refs = {index: ray.put(jobs[index]) for index in {item.job_index for item in queue}}
            alive = set(range(len(self._actors)))
            load = dict.fromkeys(alive, 0)
            last_check = time.monotonic()
            while queue or in_flight:
                # Round-robin, one level at a time: every worker gets its first segment before any its second.
                for level, worker in [(lv, w) for lv in range(1, IN_FLIGHT_PER_WORKER + 1) for w in sorted(alive)]:
                    if queue and load[worker] < level:
                        item = queue.popleft()
                        job = jobs[item.job_index]
                        ref = self._actors[worker].render.remote(
                            job_refs[item.job_index], item.start, item.stop, shipments[job.model]
                        )
                        in_flight[ref] = (worker, item)
                        load[worker] += 1
                        log.debug("worker %d: segment %d..%d of %s", worker, item.start, item.stop, job.output.name)
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                collect(block=False)
                for ref in ready:
                    worker, item = in_flight.pop(ref)
                    load[worker] -= 1
                    try:
                        data, seconds = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        self._lose(worker, alive, f"{type(exc).__name__}")
                        self._retry(item, queue, f"worker {worker} died")
                        continue
                    except ray.exceptions.TaskCancelledError:
                        self._retry(item, queue, "cancelled")
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
                        if isinstance(cause, GanterpError):  # the job's own fault: retrying gives the same
                            fail(item.job_index, cause)
                            continue
                        reason = " ".join(str(cause or exc).split())[-300:]
                        self._retry(item, queue, reason)
                        continue
                    if not remaining[item.job_index]:
                        continue  # the job failed meanwhile
                    began = time.perf_counter()
                    stores[item.job_index].add(item.start, item.stop, data)
                    self.driver_times["store"] += time.perf_counter() - began
                    remaining[item.job_index].discard((item.start, item.stop))
                    worker_report = self.reports[worker]
                    worker_report.segments += 1
                    worker_report.frames += item.stop - item.start
                    worker_report.busy_s += seconds
                    done_frames += item.stop - item.start
                    log.info(
                        "worker %d: frames %d..%d of %s in %.1f s",
                        worker,
                        item.start,
                        item.stop,
                        jobs[item.job_index].output.name,
                        seconds,
                    )
                    report()
                    if not remaining[item.job_index]:
                        finish(item.job_index)
                if time.monotonic() - last_check > 2.0:
                    last_check = time.monotonic()
                    for worker in self._workers_on_dead_nodes(ray, alive):
                        self._lose(worker, alive, "its node left the cluster")
                        for ref, (owner, _item) in list(in_flight.items()):
                            if owner == worker:
                                ray.cancel(ref)
                if not alive:
                    raise RenderError(
                        "no worker is left (every worker died and its restarts are spent)" + _kept_note(stores)
                    )
        except BaseException as exc:
            stop.set()
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            for index, store in enumerate(stores):
                if outcomes[index].output is None:
                    store.close_failed()
            if isinstance(exc, _SegmentFailed):
                raise RenderError(str(exc) + _kept_note(stores)) from None
            signals.reraise(exc)
            raise
        finally:
            signals.restore()
            for future in soundtracks.values():
                future.cancel()
            encoder.shutdown(wait=True)
            joiner.shutdown(wait=True)
        collect(block=True)
        return outcomes

    def render_one(
        self,
        job: RenderJob,
        *,
        segment_seconds: float | None = None,
        resume: bool = False,
        progress: Callable[[Progress], None] | None = None,
    ) -> RenderResult:
        """Render one job on the pool (`render`); its error raised, its result as `job.run`'s."""
        from ganterp_fast.engine.scale.resume import result_of

        wall = time.perf_counter()
        outcome = self.render([job], segment_seconds=segment_seconds, resume=resume, progress=progress)[0]
        if outcome.error is not None:
            raise outcome.error
        job.times.wall += time.perf_counter() - wall
        busy = [r for r in self.reports if r.segments]
        return result_of(
            job,
            outcome.output,
            device=f"{len(busy)} Ray workers" if len(busy) != 1 else "1 Ray worker",
            providers=[],
            model_path=Path(job.options.model.model),
        )

    def _retry(self, item: _Pending, queue: deque[_Pending], reason: str) -> None:
        item.attempts += 1
        item.reasons.append(reason)
        if item.attempts >= SEGMENT_ATTEMPTS:
            raise _SegmentFailed(f"segment {item.start}..{item.stop} failed {item.attempts} times (last: {reason})")
        log.info("segment %d..%d: %s; retrying on another worker", item.start, item.stop, reason)
        queue.appendleft(item)

    def _lose(self, worker: int, alive: set[int], reason: str) -> None:
        if worker not in alive:
            return
        alive.discard(worker)
        self.reports[worker].alive = False
        log.info("worker %d lost (%s); %d left", worker, reason, len(alive))
        ray = import_ray()
        with contextlib.suppress(Exception):
            ray.kill(self._actors[worker], no_restart=True)

    def _workers_on_dead_nodes(self, ray, alive: set[int]) -> list[int]:
        try:
            live = {node["NodeID"] for node in ray.nodes() if node.get("Alive")}
        except Exception:  # the state API is best effort here
            return []
        return [worker for worker in alive if self.reports[worker].node not in live]

    def _ship_models(self, ray, jobs: Sequence[RenderJob], indices: set[int]) -> dict[Any, ModelShipment]:
        """Each distinct model file once into the object store (resolved, exported if need be, here)."""
        shipments: dict[Any, ModelShipment] = {}
        by_path: dict[Path, ModelShipment] = {}
        for index in sorted(indices):
            plan = jobs[index].model
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


class _SegmentFailed(Exception):
    """A segment failed on SEGMENT_ATTEMPTS workers (raised as RenderError once the work is cancelled)."""


def _kept_note(stores: list) -> str:
    kept = any(store.folder.is_dir() and store.finished() for store in stores)
    return "; the finished segments are kept: run again with --resume" if kept else ""


def _resources(ray) -> str:
    total = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return f"{nodes} nodes, {int(total.get('CPU', 0))} CPUs, {int(total.get('GPU', 0))} GPUs"


class _SignalWatch:
    """Notes a SIGTERM during a render: Ray's waits turn any signal's exception into a plain
    KeyboardInterrupt, so the caller's SIGTERM handler is called again afterwards, outside Ray."""

    def __init__(self) -> None:
        self.seen = False
        self.previous: Any = None
        if threading.current_thread() is not threading.main_thread():
            return
        self.previous = signal.getsignal(signal.SIGTERM)
        if callable(self.previous):
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        self.previous(signum, frame)

    def restore(self) -> None:
        if callable(self.previous):
            signal.signal(signal.SIGTERM, self.previous)

    def reraise(self, exc: BaseException) -> None:
        if self.seen and type(exc) is KeyboardInterrupt:
            self.restore()
            self.previous(signal.SIGTERM, None)


@contextlib.contextmanager
def _keeping_sigterm() -> Iterator[None]:
    """Ray's core installs its own SIGTERM handler (a stack dump and exit 1); keep the caller's,
    so SIGTERM unwinds the render like Ctrl-C (the CLI: no output, exit 143)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _quiet_ray_environment() -> None:
    """Local use without token files or usage reports; Ray's files under RAY_TMPDIR if set."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def _runtime_env() -> dict[str, Any]:
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    return {"env_vars": env} if env else {}
