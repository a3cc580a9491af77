"""The Ray driver's loop: a pool's actors fed from the segment scheduler.

`PoolDriver` sends segments to the pool's workers (`cluster.Cluster`), a bounded number in
flight per worker, waits for any of them (`ray.wait`), hands each finished segment to the
scheduler (which stores it, reports progress and joins the song once complete), retries a
segment whose worker died on another one, fails a job whose segment raised its own error,
and moves the work of workers whose node left the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ganterp_fast.engine.errors import GanterpError, RenderError
from ganterp_fast.engine.scale.scheduler import Segment, SegmentScheduler

if TYPE_CHECKING:
    from ganterp_fast.engine.scale.cluster import Cluster

log = logging.getLogger(__name__)

# Segments queued on each worker while enough wait for every worker: one rendering, one
# waiting, so a worker never idles while the driver stores what it returned. The last ones
# go only to idle workers, so none waits behind a busy worker while another idles.
IN_FLIGHT_PER_WORKER = 2


class PoolDriver:
    """The Ray side of one `Cluster.render`: feeds the pool's actors from the scheduler, takes
    their segments back, and moves the work of lost workers to the others."""

    def __init__(self, pool: Cluster, ray, schedule: SegmentScheduler) -> None:
        self.pool, self.ray, self.schedule = pool, ray, schedule
        indices = sorted(schedule.pending_jobs())
        self.shipments = pool.ship_models(ray, [schedule.jobs[i] for i in indices])
        self.job_refs = {index: ray.put(schedule.jobs[index]) for index in indices}
        self.alive = set(range(len(pool.reports)))
        self.load = dict.fromkeys(self.alive, 0)
        self.in_flight: dict[Any, tuple[int, Segment]] = {}

    def run(self) -> None:
        """Until every segment is in: dispatch, wait for one, take it back; cancels the rest on any exit."""
        last_check = time.monotonic()
        try:
            while self.schedule.pending or self.in_flight:
                self.dispatch()
                if not self.in_flight:
                    break
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=0.5)
                self.schedule.collect()
                for ref in ready:
                    self.receive(ref)
                if time.monotonic() - last_check > 2.0:
                    last_check = time.monotonic()
                    self.check_nodes()
                if not self.alive:
                    raise RenderError(
                        "no worker is left (every worker died and its restarts are spent)" + self.schedule.kept_note()
                    )
        except BaseException:
            for ref in self.in_flight:
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref)
            raise

    def dispatch(self) -> None:
        """Round-robin, one level at a time: every worker gets its first segment before any its
        second, and a second only while enough segments wait for every worker to get one more."""
        schedule = self.schedule
        for level in range(1, IN_FLIGHT_PER_WORKER + 1):
            for worker in sorted(self.alive):
                if not schedule.pending or (level > 1 and len(schedule.queue) < len(self.alive)):
                    return
                if self.load[worker] < level:
                    self.send(worker, schedule.take())

    def send(self, worker: int, item: Segment) -> None:
        job = self.schedule.jobs[item.job_index]
        ref = self.pool.actor(worker).render.remote(
            self.job_refs[item.job_index], item.start, item.stop, self.shipments[job.model]
        )
        self.in_flight[ref] = (worker, item)
        self.load[worker] += 1
        log.debug("worker %d: segment %d..%d of %s", worker, item.start, item.stop, job.output.name)

    def receive(self, ref: Any) -> None:
        """A finished call: its segment kept, or retried elsewhere, or its job failed."""
        ray, schedule = self.ray, self.schedule
        worker, item = self.in_flight.pop(ref)
        self.load[worker] -= 1
        try:
            data, seconds = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self.pool.lose(worker, self.alive, type(exc).__name__)
            schedule.retry(item, f"worker {worker} died")
            return
        except ray.exceptions.TaskCancelledError:
            schedule.retry(item, "cancelled")
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
            if isinstance(cause, GanterpError):  # the job's own fault: retrying gives the same
                schedule.fail(item.job_index, cause)
            else:
                schedule.retry(item, " ".join(str(cause or exc).split())[-300:])
            return
        if not schedule.finished(item, data):
            return  # the job failed meanwhile
        report = self.pool.reports[worker]
        report.segments += 1
        report.frames += item.frames
        report.busy_s += seconds
        name = schedule.jobs[item.job_index].output.name
        log.info("worker %d: frames %d..%d of %s in %.1f s", worker, item.start, item.stop, name, seconds)

    def check_nodes(self) -> None:
        """Workers whose node left the cluster are lost; their calls are cancelled (and retried)."""
        for worker in self.pool.workers_on_dead_nodes(self.ray, self.alive):
            self.pool.lose(worker, self.alive, "its node left the cluster")
            for ref, (owner, _item) in list(self.in_flight.items()):
                if owner == worker:
                    self.ray.cancel(ref)
