"""Reliability under faults: the generator or the OS failing mid-render, the device running
out of memory (the batch halves, the frames stay the same), two processes exporting into the
model cache at once, an export killed half-way, a damaged or unusable cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import media
import numpy as np
import pytest
from media import render_options
from reliability_helpers import (
    FAST,
    assert_error,
    cli,
    cli_patched,
    listing,
    partials,
)

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.api import render
from ganterp_fast.engine.backends import models
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
from ganterp_fast.engine.errors import RenderError
from ganterp_fast.engine.pipeline import is_out_of_memory

# Analysis settings that find several inflection points in a few seconds.
BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


# ---------------------------------------------------------------- the generator and the OS


FLAKY_GENERATOR = """
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
real_call = Generator.__call__
calls = []

def flaky(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > {after}:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700:\\n an "
                           "illegal memory access was encountered")
    return real_call(self, *args, **kwargs)

Generator.__call__ = flaky
"""


def test_the_generator_failing_mid_render_is_exit_1_and_leaves_nothing(song, tiny_onnx, tmp_path):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    result = cli_patched(
        FLAKY_GENERATOR.format(after=3),
        "render",
        song,
        "-o",
        out,
        "-y",
        "--model",
        tiny_onnx,
        "--batch-size",
        4,
        "--precision",
        "fp32",  # ONNX Runtime's generator, the one the fault is injected into
        *FAST,
    )
    line = assert_error(result, 1, "generator failed after", "illegal memory access")
    assert int(re.search(r"after (\d+) frames", line).group(1)) <= 12
    assert out.read_bytes() == b"the previous video"
    assert listing(tmp_path) == ["video.mp4"]


def test_an_unexpected_os_error_is_one_line_exit_1_and_debug_shows_it(song, tiny_onnx, tmp_path):
    """An OSError no layer expected (here: reading the model) is still one line naming the file."""
    prelude = """
        import errno
        from ganterp_fast.engine.backends import contract as generator
        def broken(path):
            raise OSError(errno.EIO, "Input/output error", str(path))
        generator.read_metadata = broken
    """
    out = tmp_path / "video.mp4"
    result = cli_patched(prelude, "render", song, "-o", out, "--model", tiny_onnx, *FAST)
    assert_error(result, 1, "Input/output error", tiny_onnx.name)
    debug = cli_patched(prelude, "render", song, "-o", out, "--model", tiny_onnx, "--debug", *FAST)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "OSError" in debug.stderr
    assert listing(tmp_path) == []


# ---------------------------------------------------------------- GPU memory


def _ort_out_of_memory() -> Exception:
    """The exception ONNX Runtime raises when its arena cannot grow (its own type and text)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    return RuntimeException(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
        "Name:'/generator/layers.3/conv_1/Conv' Status Message: /onnxruntime_src/onnxruntime/core/framework/"
        "bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, "
        "bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 805306368\n"
    )


class SmallDevice:
    """The real generator behind a device that holds `limit` frames: larger batches run out of memory."""

    def __init__(self, model: Path, limit: int) -> None:
        self._real = Generator(model, device="cpu")
        self.limit = limit
        self.sizes: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def __call__(self, z, class_vectors, truncation=0.4):
        self.sizes.append(len(z))
        if len(z) > self.limit:
            raise _ort_out_of_memory()
        return self._real(z, class_vectors, truncation=truncation)


def test_out_of_memory_halves_the_batch_and_the_frames_are_the_same(tiny_onnx, tmp_path, caplog):
    source = media.write_soundfile(tmp_path / "song.wav", media.music(8000, 2.0), 8000)
    options = render_options(
        model=str(tiny_onnx), precision="fp32", fps="10", preset="ultrafast", analysis=BUSY, batch_size=8
    )
    normal = render(source, tmp_path / "normal.mp4", options)
    device = SmallDevice(tiny_onnx, 2)
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.job"):
        squeezed = render(source, tmp_path / "squeezed.mp4", options, generator=device)
    assert normal.batch_size == 8 and squeezed.batch_size == 2
    sizes = device.sizes
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) <= 2  # halved twice, then kept small
    assert "out of memory at batch size 8: going on with 4" in caplog.text
    assert squeezed.frames == normal.frames == 20
    a, b = _frames(normal.output), _frames(squeezed.output)
    assert len(a) == len(b) == 20 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_out_of_memory_at_batch_size_1_is_a_render_error_and_leaves_nothing(tiny_onnx, tmp_path):
    source = media.write_soundfile(tmp_path / "song.wav", media.music(8000, 1.0), 8000)
    device = SmallDevice(tiny_onnx, 0)
    out = tmp_path / "video.mp4"
    with pytest.raises(RenderError) as caught:
        options = render_options(model=str(tiny_onnx), fps="10", batch_size=4, preset="ultrafast")
        render(source, out, options, generator=device)
    message = str(caught.value)
    assert "after 0 frames" in message and "Failed to allocate memory" in message and "\n" not in message
    assert caught.value.exit_code == 1
    assert listing(tmp_path) == ["song.wav"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Failed to allocate memory for requested buffer of size 805306368", True),  # ORT's arena
        ("CUDA failure 2: out of memory ; GPU=0 ; hostname=x ; expr=cudaMalloc(&p, size);", True),
        ("CUDA error cudaErrorMemoryAllocation:out of memory", True),
        ("CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0", True),
        ("CUDNN failure 2: CUDNN_STATUS_ALLOC_FAILED ; GPU=0", True),
        ("std::bad_alloc", True),
        ("TensorRT EP failed to create engine: out of memory", True),
        ("Got invalid dimensions for input: z for the following indices", False),
        ("CUDA failure 700: an illegal memory access was encountered", False),
    ],
)
def test_which_errors_count_as_out_of_memory(text, expected):
    assert is_out_of_memory(RuntimeError(text)) is expected
    assert is_out_of_memory(MemoryError())


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(os.fspath(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# ---------------------------------------------------------------- the model cache


SLOW_EXPORT = """
import os, sys, time
from pathlib import Path
from ganterp_fast.engine.backends import models

source_onnx, checkpoint, log, go, pause = sys.argv[1:6]

class SlowExport:
    '''Writes a ready model straight into the cache entry, in pieces: two exporters working
    at once without the cache's lock would interleave them.'''

    @staticmethod
    def export_model(source, output, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        data = Path(source_onnx).read_bytes()
        step = len(data) // 8 + 1
        with open(output, "wb") as handle:
            for start in range(0, len(data), step):
                handle.write(data[start:start + step])
                handle.flush()
                time.sleep(float(pause))

models._import_export = lambda: SlowExport
Path(go + f".ready-{os.getpid()}").touch()
while not os.path.exists(go):
    time.sleep(0.005)
print(models.resolve_model(checkpoint))
"""


def _start_exporters(
    count: int, cache: Path, tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path, pause: float
) -> list[subprocess.Popen]:
    env = {**os.environ, models.CACHE_ENV: str(cache)}
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SLOW_EXPORT,
                str(tiny_onnx),
                str(tiny_checkpoint),
                str(tmp_path / "exports.log"),
                str(go),
                str(pause),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    deadline = time.time() + 60
    while len(list(tmp_path.glob("go.ready-*"))) < count and time.time() < deadline:
        time.sleep(0.01)
    go.touch()  # all of them call resolve_model at once
    return processes


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock"))


def test_two_processes_exporting_the_same_model_export_once_and_agree(tiny_checkpoint, tiny_onnx, tmp_path):
    cache = tmp_path / "cache"
    processes = _start_exporters(2, cache, tiny_checkpoint, tiny_onnx, tmp_path, pause=0.05)
    outputs = [process.communicate(timeout=60) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    entries = {stdout.strip() for stdout, _ in outputs}
    assert len(entries) == 1
    entry = Path(entries.pop())
    assert len((tmp_path / "exports.log").read_text().split()) == 1  # the second found the first's entry
    assert entry.read_bytes() == tiny_onnx.read_bytes()
    key = models.cache_key(str(tiny_checkpoint), precision="fp32", weights=None, seed=0)
    assert models._entry_valid(entry, key)
    assert _cache_files(cache) == [entry.name, entry.name + ".json"]


def test_an_export_killed_half_way_is_rebuilt_never_used(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    (process,) = _start_exporters(1, cache, tiny_checkpoint, tiny_onnx, tmp_path, pause=2.0)
    deadline = time.time() + 60
    entries: list[Path] = []
    while time.time() < deadline and not any(p.stat().st_size for p in entries):
        entries = list((cache / "models").glob("*.onnx")) if (cache / "models").is_dir() else []
        time.sleep(0.02)
    process.kill()  # SIGKILL, holding the lock, with part of the model written
    process.communicate(timeout=30)
    (entry,) = entries
    assert 0 < entry.stat().st_size < tiny_onnx.stat().st_size

    calls: list[str] = []
    monkeypatch.setenv(models.CACHE_ENV, str(cache))
    monkeypatch.setattr(models, "_import_export", lambda: _CopyExport(tiny_onnx, calls))
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.backends.models"):
        assert models.resolve_model(tiny_checkpoint) == entry  # the lock died with its holder
    assert "corrupt or incomplete" in caplog.text and len(calls) == 1
    assert entry.read_bytes() == tiny_onnx.read_bytes()


class _CopyExport:
    """Stands in for ganterp_fast.export: copies a ready model (the cache is under test)."""

    def __init__(self, source: Path, calls: list[str]) -> None:
        self.source, self.calls = source, calls

    def export_model(self, source, output, **kwargs) -> None:
        self.calls.append(str(source))
        shutil.copy(self.source, output)


@pytest.mark.parametrize("damage", ["sidecar-not-json", "sidecar-a-list", "entry-gone", "sidecar-of-another-model"])
def test_a_damaged_cache_entry_is_rebuilt(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch, damage):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    calls: list[str] = []
    monkeypatch.setattr(models, "_import_export", lambda: _CopyExport(tiny_onnx, calls))
    entry = models.resolve_model(tiny_checkpoint)
    sidecar = entry.with_name(entry.name + ".json")
    if damage == "sidecar-not-json":
        sidecar.write_text('{"key": ')
    elif damage == "sidecar-a-list":
        sidecar.write_text("[1, 2, 3]")
    elif damage == "entry-gone":
        entry.unlink()
    else:  # a record that is whole and matches the file, but was made for another model
        record = json.loads(sidecar.read_text())
        record["key"]["source"]["weights"] = "0" * 64
        sidecar.write_text(json.dumps(record))
    assert models.resolve_model(tiny_checkpoint) == entry
    assert len(calls) == 2
    key = models.cache_key(str(tiny_checkpoint), precision="fp32", weights=None, seed=0)
    assert models._entry_valid(entry, key)


def test_a_killed_exports_temporary_file_is_cleaned_up(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_import_export", lambda: _CopyExport(tiny_onnx, []))
    entry = models.resolve_model(tiny_checkpoint)
    entry.unlink()
    stale = entry.with_name(f".{entry.name}.99999.partial")  # as exporter.py names it; pid 99999 was killed
    stale.write_bytes(b"half a model")
    models.resolve_model(tiny_checkpoint)
    assert partials(entry.parent) == []


def test_an_unusable_cache_folder_is_exit_2_naming_the_setting(song, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"output_dim": 128}')
    (checkpoint / "pytorch_model.bin").write_bytes(b"weights")
    (tmp_path / "a file").write_text("not a folder")
    env = {**os.environ, models.CACHE_ENV: str(tmp_path / "a file" / "cache")}
    result = cli("render", song, "-o", tmp_path / "v.mp4", "--model", checkpoint, *FAST, env=env)
    assert_error(result, 2, "a file", models.CACHE_ENV)
