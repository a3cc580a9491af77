"""The segment worker: the body of one Ray actor, and the faults tests inject into it.

A worker holds one device, builds its generator once per model (the model file fetched once
per node from Ray's object store into the node's cache, keyed by its sha256) and renders
segments of any prepared job it is given into encoded H.264 bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganterp_fast.engine.errors import InputError

if TYPE_CHECKING:
    from ganterp_fast.engine.job import Progress, RenderJob

log = logging.getLogger(__name__)

# Ray restarts a dead worker process this many times (and retries its calls there).
MAX_RESTARTS = 3


@dataclass(frozen=True)
class Fault:
    """A fault a worker injects into itself (for tests of fault tolerance): after `after_frames`
    frames of a segment, the worker process exits at once (`os._exit(1)`, as a crash would).

    `marker`: a file path; the first worker to reach the fault creates it and dies, and no
    worker dies once it exists (so a restarted worker carries on). Without it, every segment
    kills its worker."""

    after_frames: int | None = 1
    marker: str | None = None
    sleep_s: float = 0.0  # seconds each batch waits (a slow worker), with or without a crash
    restarts: int = MAX_RESTARTS  # the workers' restarts (fewer: a test reaches "no worker left" sooner)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """ "frames=N,marker=PATH,sleep=S,restarts=R" (any of them; frames=none: no crash)."""
        values: dict[str, Any] = {"after_frames": None}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.partition("=")
            if key == "frames":
                values["after_frames"] = None if value == "none" else int(value)
            elif key == "marker":
                values["marker"] = value
            elif key == "sleep":
                values["sleep_s"] = float(value)
            elif key == "restarts":
                values["restarts"] = int(value)
            else:
                raise InputError(f"worker fault {text!r}: unknown item {key!r}; use frames, marker, sleep, restarts")
        return cls(**values)

    def check(self, frames_done: int) -> None:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.after_frames is None or frames_done < self.after_frames:
            return
        if self.marker is not None:
            try:
                Path(self.marker).touch(exist_ok=False)
            except FileExistsError:
                return
        os._exit(1)


@dataclass(frozen=True)
class ModelShipment:
    """The model file's bytes in the object store (nested, so Ray hands the reference, not the bytes)."""

    sha256: str
    name: str
    refs: tuple  # (ObjectRef,)


class SegmentWorker:
    """A Ray actor's body: one generator per model, kept between segments and songs."""

    def __init__(
        self,
        index: int,
        *,
        threads: int | None,
        encoder_threads: int,
        fault: Fault | None = None,
        generator_factory: Callable[[Any], Any] | None = None,
    ) -> None:
        self.index = index
        self.generator_factory = generator_factory
        self.threads = threads
        self.encoder_threads = encoder_threads
        self.fault = fault
        self._generators: dict[Any, Any] = {}
        self._scratch = Path(tempfile.mkdtemp(prefix="ganterp-segments-"))

    def where(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {
            "index": self.index,
            "node": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "gpus": [str(g) for g in context.get_accelerator_ids().get("GPU", [])],
            "pid": os.getpid(),
        }

    def _model_file(self, shipment: ModelShipment) -> Path:
        """The model on this node: from the node's cache, else from the object store (once)."""
        from ganterp_fast.engine.cache import cache_dir

        folder = cache_dir() / "cluster-models"
        target = folder / f"{shipment.sha256}.onnx"
        if not target.is_file():
            import ray

            data = ray.get(shipment.refs[0])
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{shipment.sha256}.{os.getpid()}.partial"
            temporary.write_bytes(data)
            os.replace(temporary, target)
            log.info("worker %d: model %s stored in %s", self.index, shipment.name, target)
        return target

    def _generator(self, job: RenderJob, shipment: ModelShipment):  # -> FrameGenerator
        plan = job.model
        if self.threads is not None and plan.options.threads is None:
            plan = replace(plan, options=replace(plan.options, threads=self.threads))
        key = (shipment.sha256, plan)
        if key not in self._generators:
            if len(self._generators) >= 2:
                self._generators.pop(next(iter(self._generators)))
            if self.generator_factory is not None:  # a stand-in generator (benchmarks)
                self._generators[key] = self.generator_factory(plan)
            else:
                self._generators[key] = plan.open(self._model_file(shipment))
        return self._generators[key]

    def render(self, job: RenderJob, start: int, stop: int, shipment: ModelShipment) -> tuple[bytes, float]:
        """Frames [start, stop) of `job` as an encoded segment's bytes, and the seconds it took."""
        began = time.perf_counter()
        generator = self._generator(job, shipment)
        if self.encoder_threads and not job.options.encode.threads:
            encode = replace(job.options.encode, threads=self.encoder_threads)
            job = replace(job, options=replace(job.options, encode=encode))
        fault = self.fault

        def progress(update: Progress) -> None:
            if fault is not None and update.stage == "render":
                fault.check(update.frames_done)

        destination = self._scratch / f"{start:09d}-{stop:09d}.mp4"
        try:
            job.render_segment(start, stop, destination, generator=generator, progress=progress)
            data = destination.read_bytes()
        finally:
            with contextlib.suppress(OSError):
                destination.unlink()
        return data, time.perf_counter() - began
