"""Finished segments kept beside the output, so a stopped render can resume where it was.

A segmented render (several workers, or `--resume` / `--segment-seconds` in one process)
stores each finished segment in one hidden folder named after the output,
`.NAME.segments/`, with the job's fingerprint and the facts it hashes (`job.json`). The
folder goes once the video is joined. `--resume` reuses the segments of the same job and
refuses another job with what changed; a new render without it removes old segments first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganterp_fast.engine.errors import InputError, RenderError

if TYPE_CHECKING:
    from ganterp_fast.engine.backends.choice import FrameGenerator
    from ganterp_fast.engine.job import Progress, RenderJob, RenderResult

log = logging.getLogger(__name__)

JOB_FILE = "job.json"


def segments_folder(output: str | os.PathLike[str]) -> Path:
    """The hidden folder beside `output` that holds its finished segments."""
    output = Path(output)
    return output.with_name(f".{output.name}.segments")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def describe_changes(old: dict[str, Any], new: dict[str, Any], *, limit: int = 4) -> str:
    """'options.path.seed: 0 -> 1, ...': the facts that differ between two jobs."""
    a, b = _flatten(old), _flatten(new)
    changed = [key for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    parts = [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in changed[:limit]]
    if len(changed) > limit:
        parts.append(f"and {len(changed) - limit} more")
    return ", ".join(parts) or "the fingerprint"


# Containers whose AAC packets go into the output as they are (mp4 and QuickTime files).
_AAC_CONTAINERS = (".mp4", ".m4a", ".m4v", ".mov")


def copyable_soundtrack(job: RenderJob) -> Path | None:
    """The input itself where its soundtrack can be copied instead of re-encoded: AAC in an
    mp4/mov, the whole of it (no excerpt), no other bit rate asked for; None otherwise."""
    source, info = job.source, job.source.info
    if info.codec != "aac" or info.path.suffix.lower() not in _AAC_CONTAINERS or not info.exact:
        return None
    if source.start or source.duration is not None or job.analysis.num_samples < info.num_samples:
        return None
    return None if job.options.encode.audio_bitrate else info.path


class SegmentStore:
    """The hidden folder of one output's finished segments: `open` it, `add` segments, `clear` it."""

    def __init__(self, job: RenderJob, ranges: list[tuple[int, int]]) -> None:
        self.job = job
        self.ranges = ranges
        self.folder = segments_folder(job.output)
        self.facts = json.loads(json.dumps(job.fingerprint_facts(), default=str))
        self.fingerprint = job.fingerprint()

    def path(self, start: int, stop: int) -> Path:
        return self.folder / f"{start:09d}-{stop:09d}.mp4"

    @property
    def soundtrack(self) -> Path:
        """The soundtrack encoded ahead of the join (`segments.encode_soundtrack`), where one was."""
        return self.folder / "soundtrack.m4a"

    def open(self, *, resume: bool) -> dict[tuple[int, int], Path]:
        """Prepare the folder; the finished segments of this job kept from before (`resume` only).

        InputError when `resume` finds another job's segments (naming what changed).
        """
        kept: dict[tuple[int, int], Path] = {}
        if self.folder.is_dir():
            if not resume:
                log.info("removing the segments of an earlier render in %s", self.folder)
                self.clear()
            else:
                stored = self._read_job()
                if stored.get("fingerprint") != self.fingerprint:
                    raise InputError(
                        f"--resume: the segments in {self.folder} belong to another render "
                        f"({describe_changes(stored.get('facts', {}), self.facts)}); "
                        "run with the same options, or without --resume to start again"
                    )
                wanted = set(self.ranges)
                for path in sorted(self.folder.glob("*.mp4")):
                    try:
                        start, stop = (int(part) for part in path.stem.split("-"))
                    except ValueError:
                        continue
                    if (start, stop) in wanted and path.stat().st_size > 0:
                        kept[(start, stop)] = path
                log.info("resuming: %d of %d segments are done", len(kept), len(self.ranges))
        try:
            self.folder.mkdir(exist_ok=True)
            if not (self.folder / JOB_FILE).is_file():
                self._write_bytes(self.folder / JOB_FILE, self._job_json())
        except OSError as exc:
            raise InputError(f"cannot keep segments in {self.folder}: {exc.strerror or exc}") from exc
        return kept

    def _job_json(self) -> bytes:
        record = {"fingerprint": self.fingerprint, "output": os.fspath(self.job.output), "facts": self.facts}
        return json.dumps(record, indent=1, sort_keys=True).encode()

    def _read_job(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / JOB_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def add(self, start: int, stop: int, data: bytes) -> Path:
        """Store a finished segment's bytes (written beside, renamed into place)."""
        target = self.path(start, stop)
        self._write_bytes(target, data)
        return target

    def adopt(self, start: int, stop: int, file: Path) -> Path:
        """Move a segment file rendered elsewhere on this machine into the folder."""
        target = self.path(start, stop)
        os.replace(file, target)
        return target

    @staticmethod
    def _write_bytes(target: Path, data: bytes) -> None:
        temporary = target.with_name(f".{target.name}.partial")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    def finished(self) -> bool:
        return any(self.folder.glob("*.mp4"))

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def close_failed(self) -> None:
        """After a failure: keep the folder only where some segment is finished (for --resume)."""
        for partial in self.folder.glob(".*.partial*"):
            with contextlib.suppress(OSError):
                partial.unlink()
        if not self.finished():
            self.clear()

    def join(self) -> Path:
        """Join every segment into the job's output, then remove the folder."""
        from ganterp_fast.engine.scale.segments import join

        missing = [r for r in self.ranges if not self.path(*r).is_file()]
        if missing:
            raise RenderError(f"segments {missing[0][0]}..{missing[0][1]} missing from {self.folder}")
        encoded = self.soundtrack if self.soundtrack.is_file() else copyable_soundtrack(self.job)
        output = join(self.job, [(a, b, self.path(a, b)) for a, b in self.ranges], soundtrack=encoded)
        self.clear()
        return output


def render_segmented(
    job: RenderJob,
    *,
    segment_seconds: float | None = None,
    resume: bool = False,
    generator: FrameGenerator | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RenderResult:
    """One process as one worker: render the missing segments in order, keep each, join them."""
    from ganterp_fast.engine.job import SEGMENT_SECONDS, Progress

    wall = time.perf_counter()
    ranges = job.segments(segment_seconds or SEGMENT_SECONDS)
    store = SegmentStore(job, ranges)
    kept = store.open(resume=resume)
    done = sum(b - a for a, b in kept)
    try:
        if progress is not None:
            progress(Progress(0, 0, "model"))
        if generator is None:
            generator = job.open_generator()
        if progress is not None:
            progress(Progress(done, job.num_frames))
        for start, stop in ranges:
            if (start, stop) in kept:
                continue
            base = done

            def report(update: Progress, base: int = base) -> None:
                if progress is not None and update.stage == "render":
                    progress(Progress(base + update.frames_done, job.num_frames))

            partial = store.folder / f".{start:09d}-{stop:09d}.partial.mp4"
            job.render_segment(start, stop, partial, generator=generator, progress=report)
            store.adopt(start, stop, partial)
            done += stop - start
        began = time.perf_counter()
        output = store.join()
        job.times.encode += time.perf_counter() - began
    except BaseException:
        store.close_failed()
        raise
    job.times.wall += time.perf_counter() - wall
    return result_of(
        job,
        output,
        device=generator.device,
        providers=list(generator.providers),
        model_path=Path(getattr(generator, "model_path", job.options.model.model)),
    )


def result_of(job: RenderJob, output: Path, *, device: str, providers: list[str], model_path: Path) -> RenderResult:
    """The `RenderResult` of a segmented render of `job` into `output`."""
    from ganterp_fast.engine.job import RenderResult

    return RenderResult(
        output=output,
        frames=job.num_frames,
        fps=job.fps,
        resolution=job.model.resolution,
        batch_size=job.model.batch_size,
        device=device,
        providers=providers,
        model_path=model_path,
        classes=job.path.schedule(),
        unused_classes=job.path.unused_classes,
        analysis=job.analysis,
        times=job.times,
        width=job.width,
        height=job.height,
    )
