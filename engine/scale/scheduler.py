"""The segmented-render loop, one for a single process and for a Ray pool.

`SegmentScheduler` holds what a segmented render of one or more jobs shares wherever its
segments are made: each job's plan and its kept segments (`resume.SegmentStore`), the
queue of segments still to render (songs interleaved: the first segment of every song,
then the second, ...), progress in frames over all the jobs, each song's soundtrack
encoded while its segments render, and each song's join, on a thread beside the loop, as
soon as all of its segments are in.

The workers are the caller's: they `take` a segment, render it, and hand it back
`finished` (its bytes, or its file on this machine) or for another try (`retry`).
`render_segmented` is the loop with this process as its one worker; `cluster.Cluster`
feeds Ray actors from the same scheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ganterp_fast.engine.errors import GanterpError, RenderError
from ganterp_fast.engine.job import Progress
from ganterp_fast.engine.scale.plan import check_segment_seconds, plan_segments
from ganterp_fast.engine.scale.resume import SegmentStore, copyable_soundtrack
from ganterp_fast.engine.scale.segments import encode_soundtrack

if TYPE_CHECKING:
    from ganterp_fast.engine.backends.choice import FrameGenerator
    from ganterp_fast.engine.job import RenderJob, RenderResult

log = logging.getLogger(__name__)

# A segment that killed or failed on this many workers stops the render.
SEGMENT_ATTEMPTS = 3


@dataclass
class Segment:
    """Frames [start, stop) of the scheduler's job `job_index`, and the tries that failed."""

    job_index: int
    start: int
    stop: int
    attempts: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass
class RenderOutcome:
    """The result of one job: its output, or the error that stopped it."""

    job: RenderJob
    output: Path | None = None
    error: GanterpError | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class SegmentScheduler:
    """The segments of `jobs` for any number of workers; use it as a context manager.

    Entering plans every job's segments (`plan.plan_segments` for `workers`), opens its
    store (`resume` keeps the finished segments of the same job) and queues the missing
    ones; `start` reports the progress so far, joins the songs that are complete already
    and starts encoding the soundtracks. Leaving it after an exception stops the soundtracks
    and keeps only the stores with finished segments (for `--resume`).
    """

    def __init__(
        self,
        jobs: Sequence[RenderJob],
        *,
        segment_seconds: float | None = None,
        resume: bool = False,
        workers: int = 1,
        progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[RenderOutcome], None] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.seconds = check_segment_seconds(segment_seconds)
        self.resume = resume
        self.workers = workers
        self.progress = progress
        self.on_done = on_done
        self.outcomes = [RenderOutcome(job) for job in self.jobs]
        self.stores: list[SegmentStore] = []
        self.remaining: list[set[tuple[int, int]]] = []
        self.queue: deque[Segment] = deque()
        self.done_frames = 0
        self.total_frames = sum(job.num_frames for job in self.jobs)
        self.times = {"store": 0.0, "join": 0.0}  # the loop's own seconds: storing segments, joining songs
        self._began = time.perf_counter()
        # Joins run on one thread beside the loop (PyAV releases the GIL), so workers are fed meanwhile.
        self._joiner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganterp-join")
        self._joining: dict[Future, int] = {}
        # Each song's soundtrack is encoded while its segments render; the join copies its packets.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganterp-soundtrack")
        self._soundtracks: dict[int, Future] = {}
        self._stop = threading.Event()

    # ------------------------------------------------------------ opening and closing

    def __enter__(self) -> SegmentScheduler:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None:
                self.abort()
        finally:
            self.close()

    def _open(self) -> None:
        per_job: list[list[Segment]] = []
        for index, job in enumerate(self.jobs):
            store = SegmentStore(job, plan_segments(job.num_frames, job.fps, self.seconds, workers=self.workers))
            self.stores.append(store)
            try:
                kept = store.open(resume=self.resume)  # on resume, the store's plan is the stored one
            except GanterpError as exc:  # e.g. --resume with another job's segments: this song alone
                if len(self.jobs) == 1:
                    raise
                self.outcomes[index].error = exc
                self.remaining.append(set())
                per_job.append([])
                continue
            missing = [(a, b) for a, b in store.ranges if (a, b) not in kept]
            self.remaining.append(set(missing))
            self.done_frames += sum(b - a for a, b in kept)
            per_job.append([Segment(index, a, b) for a, b in missing])
        for position in range(max((len(items) for items in per_job), default=0)):
            self.queue.extend(items[position] for items in per_job if position < len(items))

    def start(self) -> None:
        """Report the frames kept from before, join the songs already complete, encode the soundtracks."""
        self.report()
        for index, outcome in enumerate(self.outcomes):
            if outcome.error is not None:
                self._notify(outcome)
            elif not self.remaining[index]:
                self._join(index)
        for index in sorted(self.pending_jobs()):
            store, job = self.stores[index], self.jobs[index]
            if not store.soundtrack.is_file() and copyable_soundtrack(job) is None:
                self._soundtracks[index] = self._encoder.submit(
                    encode_soundtrack, job, store.soundtrack, stop=self._stop
                )

    def abort(self) -> None:
        """After a failure or an interruption: stop the soundtracks; keep only stores with finished segments."""
        self._stop.set()
        for index, store in enumerate(self.stores):
            if self.outcomes[index].output is None:
                store.close_failed()

    def close(self) -> None:
        """Wait for the joins under way; drop the soundtracks not started."""
        for future in self._soundtracks.values():
            future.cancel()
        self._encoder.shutdown(wait=True)
        self._joiner.shutdown(wait=True)

    def finish(self) -> list[RenderOutcome]:
        """Every job's outcome, once the joins under way are done."""
        self.collect(block=True)
        return self.outcomes

    # --------------------------------------------------------------------- segments

    @property
    def pending(self) -> bool:
        """Whether segments wait for a worker."""
        return bool(self.queue)

    def pending_jobs(self) -> set[int]:
        return {item.job_index for item in self.queue}

    def take(self) -> Segment | None:
        """The next segment to render, or None when none waits."""
        return self.queue.popleft() if self.queue else None

    def partial(self, item: Segment) -> Path:
        """Where a worker on this machine renders `item` before handing it back."""
        return self.stores[item.job_index].folder / f".{item.start:09d}-{item.stop:09d}.partial.mp4"

    def rendering(self, item: Segment, update: Progress) -> None:
        """Progress inside a segment rendering on this machine."""
        if self.progress is not None and update.stage == "render":
            self.progress(Progress(self.done_frames + update.frames_done, self.total_frames))

    def finished(self, item: Segment, data: bytes | Path) -> bool:
        """Keep a finished segment (its bytes, or its file on this machine) and join its song once
        complete; False where its job failed meanwhile."""
        remaining = self.remaining[item.job_index]
        if (item.start, item.stop) not in remaining:
            return False
        began = time.perf_counter()
        store = self.stores[item.job_index]
        if isinstance(data, Path):
            store.adopt(item.start, item.stop, data)
        else:
            store.add(item.start, item.stop, data)
        self.times["store"] += time.perf_counter() - began
        remaining.discard((item.start, item.stop))
        self.done_frames += item.frames
        self.report()
        if not remaining:
            self._join(item.job_index)
        return True

    def retry(self, item: Segment, reason: str) -> None:
        """Queue `item` again (first in line), or stop the render once it failed SEGMENT_ATTEMPTS times."""
        item.attempts += 1
        item.reasons.append(reason)
        if item.attempts >= SEGMENT_ATTEMPTS:
            raise RenderError(
                f"segment {item.start}..{item.stop} failed {item.attempts} times (last: {reason})" + self.kept_note()
            )
        log.info("segment %d..%d: %s; retrying on another worker", item.start, item.stop, reason)
        self.queue.appendleft(item)

    def fail(self, index: int, error: GanterpError) -> None:
        """Job `index` failed (its own fault: the others go on); its segments leave the queue."""
        self.outcomes[index].error = error
        self.remaining[index].clear()
        for item in [item for item in self.queue if item.job_index == index]:
            self.queue.remove(item)
        self.stores[index].close_failed()
        self._notify(self.outcomes[index])

    def report(self) -> None:
        if self.progress is not None:
            self.progress(Progress(self.done_frames, self.total_frames))

    def kept_note(self) -> str:
        kept = any(store.folder.is_dir() and store.finished() for store in self.stores)
        return "; the finished segments are kept: run again with --resume" if kept else ""

    # ------------------------------------------------------------------------ joins

    def _join(self, index: int) -> None:
        self._joining[self._joiner.submit(self._joined, index)] = index

    def _joined(self, index: int) -> Path:
        began = time.perf_counter()
        try:
            if index in self._soundtracks:
                self._soundtracks[index].result()
            return self.stores[index].join()
        finally:
            self.times["join"] += time.perf_counter() - began

    def collect(self, *, block: bool = False) -> None:
        """Hand over the finished joins (all of them, waiting, where `block`)."""
        for future in [f for f in self._joining if block or f.done()]:
            index = self._joining.pop(future)
            outcome = self.outcomes[index]
            try:
                outcome.output = future.result()
            except GanterpError as exc:
                outcome.error = exc
            except Exception as exc:  # a disk or system fault while joining
                outcome.error = RenderError(f"joining {self.jobs[index].output} failed: {exc}")
            if outcome.error is not None:
                self.stores[index].close_failed()
            self._notify(outcome)

    def _notify(self, outcome: RenderOutcome) -> None:
        outcome.wall_s = time.perf_counter() - self._began
        if self.on_done is not None:
            self.on_done(outcome)


def render_segmented(
    job: RenderJob,
    *,
    segment_seconds: float | None = None,
    resume: bool = False,
    generator: FrameGenerator | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RenderResult:
    """One process as one worker: render the missing segments in order, keep each, join them."""
    wall = time.perf_counter()
    with SegmentScheduler([job], segment_seconds=segment_seconds, resume=resume, progress=progress) as schedule:
        if progress is not None:
            progress(Progress(0, 0, "model"))
        if generator is None:
            generator = job.open_generator(progress=progress)
        schedule.start()
        while (item := schedule.take()) is not None:
            partial = schedule.partial(item)
            job.render_segment(
                item.start, item.stop, partial, generator=generator, progress=lambda u, i=item: schedule.rendering(i, u)
            )
            schedule.finished(item, partial)
        [outcome] = schedule.finish()
    if outcome.error is not None:
        raise outcome.error
    job.times.encode += schedule.times["join"]
    job.times.wall += time.perf_counter() - wall
    return job.result(outcome.output, generator=generator)
