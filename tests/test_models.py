"""What --model means, and the exported-model cache (hit, miss, corrupt entry, lock)."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from ganterp_fast.engine.backends import models
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
from ganterp_fast.engine.errors import InputError, MissingExtraError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv(models.CACHE_ENV, str(root))
    return root


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "here"))
    assert models.cache_dir() == tmp_path / "here"
    monkeypatch.delenv(models.CACHE_ENV)
    assert "ganterp-fast" in str(models.cache_dir())


def test_onnx_path_is_used_as_is(tiny_onnx: Path, tmp_path: Path) -> None:
    assert models.resolve_model(tiny_onnx) == tiny_onnx
    assert models.resolve_model(str(tiny_onnx)) == tiny_onnx
    with pytest.raises(InputError, match="does not exist"):
        models.resolve_model(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="ready model"):
        models.resolve_model(tiny_onnx, weights="random")


def test_unknown_model_lists_what_is_accepted(cache: Path) -> None:
    with pytest.raises(InputError) as info:
        models.resolve_model("stylegan2-ffhq")
    message = str(info.value)
    assert "biggan-deep-128" in message and "checkpoint directory" in message and ".onnx" in message
    with pytest.raises(InputError, match="precision"):
        models.resolve_model("biggan-deep-128", precision="int4")


def test_checkpoint_dir_without_weights(cache: Path, tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="pytorch_model.bin"):
        models.resolve_model(tmp_path / "ckpt")


def test_cache_key_fields(tiny_checkpoint: Path) -> None:
    key = models.cache_key(str(tiny_checkpoint), precision="fp32", weights=None, seed=0)
    assert key["source"]["weights"] == models.file_sha256(tiny_checkpoint / "pytorch_model.bin")
    assert key["exporter"] and key["precision"] == "fp32" and key["format"]
    fp16 = models.cache_key(str(tiny_checkpoint), precision="fp16", weights=None, seed=0)
    random0 = models.cache_key(str(tiny_checkpoint), precision="fp32", weights="random", seed=0)
    random1 = models.cache_key(str(tiny_checkpoint), precision="fp32", weights="random", seed=1)
    assert len({repr(k) for k in (key, fp16, random0, random1)}) == 4
    # The drawing's version is in the key: a model cached with other random values is never reused.
    assert random0["source"]["weights"] == f"random-v{models.RANDOM_WEIGHTS_VERSION}-seed0"
    named = models.cache_key("biggan-deep-256", precision="fp16", weights=None, seed=0)
    assert named["source"] == {"kind": "pretrained", "name": "biggan-deep-256", "weights": "biggan-deep-256"}


def _fake_export(source_onnx: Path, calls: list[str], delay: float = 0.0):
    """Stands in for ganterp_fast.export: copies a ready model (the cache is under test here)."""

    class FakeExport:
        @staticmethod
        def export_model(source, output, **kwargs):
            calls.append(str(source))
            time.sleep(delay)
            partial = Path(output).with_name(Path(output).name + ".partial")
            shutil.copy(source_onnx, partial)
            partial.replace(output)

    return FakeExport


def test_miss_hit_and_corrupt_rebuild(
    cache: Path,
    tiny_checkpoint: Path,
    tiny_onnx: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="ganterp_fast.engine.backends.models")
    entry = models.resolve_model(tiny_checkpoint)
    assert entry.parent == cache / "models" and entry.suffix == ".onnx"
    sidecar = entry.with_name(entry.name + ".json")
    assert sidecar.is_file() and "cache miss" in caplog.text
    assert Generator(entry, device="cpu").resolution == 128

    caplog.clear()
    stamp = entry.stat().st_mtime_ns
    assert models.resolve_model(tiny_checkpoint) == entry
    assert "cache hit" in caplog.text and entry.stat().st_mtime_ns == stamp

    calls: list[str] = []  # the rebuild copies a ready export: one real export per test run is enough
    monkeypatch.setattr(models, "_import_export", lambda: _fake_export(tiny_onnx, calls))
    data = bytearray(entry.read_bytes())  # same size, one flipped byte in the weights
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    caplog.clear()
    assert models.resolve_model(tiny_checkpoint) == entry
    assert "corrupt or incomplete" in caplog.text and "cache miss" in caplog.text and len(calls) == 1
    assert models._entry_valid(entry, models.cache_key(str(tiny_checkpoint), precision="fp32", weights=None, seed=0))
    assert sorted(p.name for p in entry.parent.iterdir() if not p.name.endswith(".lock")) == [entry.name, sidecar.name]


def test_half_written_entry_is_rebuilt(
    cache: Path, tiny_checkpoint: Path, tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(models, "_import_export", lambda: _fake_export(tiny_onnx, calls))
    entry = models.resolve_model(tiny_checkpoint)
    entry.with_name(entry.name + ".json").unlink()  # as if killed between the model and its sidecar
    assert models.resolve_model(tiny_checkpoint) == entry
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated
    models.resolve_model(tiny_checkpoint)
    assert len(calls) == 3 and entry.stat().st_size == tiny_onnx.stat().st_size


def test_concurrent_resolves_export_once(
    cache: Path, tiny_checkpoint: Path, tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(models, "_import_export", lambda: _fake_export(tiny_onnx, calls, delay=0.5))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(models.resolve_model(tiny_checkpoint))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 3


def test_missing_export_extra(cache: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ganterp_fast.export", None)
    with pytest.raises(MissingExtraError, match=r"\[export\].*\.onnx"):
        models.resolve_model(tiny_checkpoint)
    assert not list((cache / "models").glob("*.onnx"))
