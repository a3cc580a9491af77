"""Finished segments kept beside the output, so a stopped render can resume where it was.

A segmented render (several workers, or `--resume` / `--segment-seconds` in one process)
stores each finished segment in one hidden folder named after the output,
`.NAME.segments/`, with the job's fingerprint, the facts it hashes and the segment plan it
started with (`job.json`). The folder goes once the video is joined. `--resume` reuses the
segments of the same job, in its first plan whatever the workers now, and refuses another
job with what changed; a new render without it removes old segments first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.scale.plan import Ranges, covers

if TYPE_CHECKING:
    from ganterp_fast.engine.job import RenderJob

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
    mp4/mov, the whole of it (no excerpt or section), no other bit rate asked for; None otherwise."""
    source, info = job.source, job.source.info
    if info.codec != "aac" or info.path.suffix.lower() not in _AAC_CONTAINERS or not info.exact:
        return None
    if source.start or source.duration is not None or job.section is not None:
        return None
    if job.analysis.num_samples < info.num_samples:
        return None
    return None if job.options.encode.audio_bitrate else info.path


def _ranges(value: Any) -> Ranges:
    """The segment plan a job.json holds (empty where it holds none, or not a list of ranges)."""
    if not isinstance(value, list):
        return []
    ranges = [(r[0], r[1]) for r in value if isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r)]
    return ranges if len(ranges) == len(value) else []


class SegmentStore:
    """The hidden folder of one output's finished segments: `open` it, `add` segments, `clear` it."""

    def __init__(self, job: RenderJob, ranges: Ranges) -> None:
        self.job = job
        self.ranges = ranges  # the plan; `open(resume=True)` takes the stored one
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
        """Prepare the folder; the finished segments of this job kept from before (`resume` only),
        in the plan they were made for (which becomes `ranges`).

        InputError when `resume` finds another job's segments (naming what changed).
        """
        kept: dict[tuple[int, int], Path] = {}
        planned: Ranges = []
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
                planned = _ranges(stored.get("segments"))
                if not covers(planned, self.job.num_frames):
                    planned = []
                self.ranges = planned or self.ranges
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
            if not planned:  # a new render, or one whose job.json kept no plan: this plan from now on
                self._write_bytes(self.folder / JOB_FILE, self._job_json())
        except OSError as exc:
            raise InputError(f"cannot keep segments in {self.folder}: {exc.strerror or exc}") from exc
        return kept

    def _job_json(self) -> bytes:
        record = {
            "fingerprint": self.fingerprint,
            "output": os.fspath(self.job.output),
            "facts": self.facts,
            "segments": [list(r) for r in self.ranges],
        }
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
