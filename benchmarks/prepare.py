"""What the benchmarks share: cached random-weight checkpoints and exports, music, CPU accounting.

Checkpoints, exports and music are kept under a work folder (`DEFAULT_WORK`, or `--work`),
so only a benchmark's first run pays for them. The load average and the CPU time other
processes took are recorded beside figures measured on a shared machine.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_WORK = Path(tempfile.gettempdir()) / "ganterp-fast-bench"


def load_average() -> float | None:
    """1-minute load average: other work on a shared machine distorts every figure."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_seconds() -> tuple[float, float | None]:
    """(this process's CPU seconds, the whole machine's busy CPU seconds from /proc/stat or None).

    Their differences over a run tell how much other processes took from it."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = usage.ru_utime + usage.ru_stime
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        machine = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already in user
    except (OSError, ValueError, IndexError):
        machine = None
    return own, machine


@contextlib.contextmanager
def cpu_accounting(record: dict[str, Any]) -> Iterator[None]:
    """Fill `record` with wall, own CPU and other processes' CPU seconds over the block."""
    own0, machine0 = cpu_seconds()
    began = time.perf_counter()
    yield
    wall = time.perf_counter() - began
    own1, machine1 = cpu_seconds()
    record["wall_s"] = round(wall, 2)
    record["own_cpu_s"] = round(own1 - own0, 2)
    if machine0 is not None and machine1 is not None:
        # Child threads count in ru_*time; the machine total includes them and everyone else.
        record["other_processes_cpu_s"] = round(max(0.0, (machine1 - machine0) - (own1 - own0)), 2)
        record["other_processes_cores"] = round(record["other_processes_cpu_s"] / wall, 2) if wall > 0 else None


def model_folder(work: Path, resolution: int, seed: int, channel_width: int | None = None) -> Path:
    width = "" if channel_width is None else f"-cw{channel_width}"
    return work / f"biggan-deep-{resolution}{width}-random-seed{seed}"


def prepare_checkpoint(
    folder: Path, *, resolution: int, seed: int, channel_width: int | None = None
) -> tuple[Path, float | None]:
    """A checkpoint directory with seeded random weights under `folder`, made once."""
    from ganterp_fast.export import write_random_checkpoint
    from ganterp_fast.export.checkpoint import CONFIG_NAME, WEIGHTS_NAME

    checkpoint = folder / "checkpoint"
    if (checkpoint / WEIGHTS_NAME).is_file() and (checkpoint / CONFIG_NAME).is_file():
        return checkpoint, None
    started = time.perf_counter()
    write_random_checkpoint(checkpoint, resolution=resolution, channel_width=channel_width, seed=seed)
    return checkpoint, round(time.perf_counter() - started, 1)


def prepare_export(checkpoint: Path, path: Path, precision: str) -> tuple[Path, float | None]:
    """The ONNX export of `checkpoint` at `path` (parity-checked by the exporter), made once."""
    from ganterp_fast.engine.backends.contract import META_PREFIX, check_metadata, read_metadata
    from ganterp_fast.engine.errors import ModelError
    from ganterp_fast.export import export_model

    try:
        metadata = read_metadata(path)
        check_metadata(metadata, path)
        if metadata.get(META_PREFIX + "precision") == precision:
            return path, None
    except ModelError:
        pass
    started = time.perf_counter()
    export_model(checkpoint, path, precision=precision)
    return path, round(time.perf_counter() - started, 1)


def prepare_int8(fp32: Path, path: Path, seed: int) -> tuple[Path, dict[str, Any]]:
    """The gated int8 quantisation of `fp32` at `path`, made once; its figures from the metadata."""
    from ganterp_fast.engine.backends.contract import META_PREFIX, read_metadata
    from ganterp_fast.engine.errors import ModelError
    from ganterp_fast.export.quantize import quantize_int8

    made: dict[str, Any] = {}
    try:
        metadata = read_metadata(path) if path.is_file() else {}
    except ModelError:
        metadata = {}
    if META_PREFIX + "int8_psnr_db" not in metadata:
        report = quantize_int8(fp32, path, seed=seed)
        made = {"quantize_s": round(report.seconds, 1)}
        metadata = report.metadata
    figures = {
        key[len(META_PREFIX) :]: value for key, value in metadata.items() if key.startswith(META_PREFIX + "int8_")
    }
    return path, {**figures, **made}


def write_music(path: Path, seconds: float) -> Path:
    """`seconds` of the built-in example music (22.05 kHz stereo, sections every 2 s) as a WAV."""
    from ganterp_fast.engine.audio.example import write_example

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_example(path, seconds=seconds)
