"""Models from the Hugging Face Hub (`hf:...`), against a local folder laid out as the Hub's cache: no network."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import av
import media
import numpy as np
import pytest
from media import render_options

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.api import render
from ganterp_fast.engine.backends import hub
from ganterp_fast.engine.backends.contract import is_ready_model
from ganterp_fast.engine.backends.hub import ready_model
from ganterp_fast.engine.cache import file_sha256
from ganterp_fast.engine.errors import InputError, ModelError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


def lay_out(cache: Path, repo_id: str, files: dict[str, Path | bytes], *, commit: str = COMMIT) -> Path:
    """`repo_id` at `commit` (refs/main) in the Hub's cache layout: blobs named by their etag, snapshot links."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        if name.endswith(".json"):  # a small file in git: its etag is the git blob id
            etag = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        else:  # an LFS file: its etag is its sha256
            etag = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / etag).write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / etag, link.parent))
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, tiny_checkpoint, tiny_onnx):
    cache = tmp_path_factory.mktemp("hf-cache")
    checkpoint = {name: tiny_checkpoint / name for name in ("config.json", "pytorch_model.bin")}
    lay_out(cache, "owner/tiny", checkpoint)
    lay_out(cache, "osanseviero/BigGAN-deep-128", checkpoint)
    lay_out(cache, "owner/graphs", {"onnx/model.onnx": tiny_onnx})
    return cache


@pytest.fixture
def offline(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def render_frames(song: Path, output: Path, model: str) -> list[np.ndarray]:
    options = render_options(model=model, analysis=BUSY, fps="5", crf=0)
    return frames_of(render(song, output, options, duration=1.0).output)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return media.write_soundfile(tmp_path_factory.mktemp("hub-song") / "song.wav", media.music(8000, 2.0), 8000)


def test_specs_parse_and_malformed_ones_are_input_errors():
    assert hub.parse_spec("hf:owner/repo") == hub.HubSpec("owner/repo")
    spec = hub.parse_spec("hf:owner/repo/onnx/g.onnx@v1.0")
    assert spec == hub.HubSpec("owner/repo", "onnx/g.onnx", "v1.0") and spec.onnx and str(spec) == spec_text(spec)
    assert hub.parse_spec(f"hf:o/r@{COMMIT}").revision == COMMIT
    assert is_ready_model("hf:o/r/g.onnx@main") and not is_ready_model("hf:o/r@main")
    bad_specs = (
        "hf:",
        "hf:owner",
        "hf:owner/",
        "hf:/repo",
        "hf:owner/repo/",
        "hf:o/r/../x.onnx",
        "hf:o/r@",
        "hf:o/r x",
    )
    for bad in bad_specs:
        with pytest.raises(InputError, match="hf:OWNER/REPO"):
            hub.parse_spec(bad)


def spec_text(spec: hub.HubSpec) -> str:
    return f"hf:{spec.repo_id}/{spec.file}@{spec.revision}"


def test_a_hub_checkpoint_renders_the_frames_of_its_local_directory(offline, wav, tiny_checkpoint, tmp_path):
    local = render_frames(wav, tmp_path / "local.mp4", str(tiny_checkpoint))
    remote = render_frames(wav, tmp_path / "hub.mp4", "hf:owner/tiny")
    assert len(remote) == len(local) > 0
    assert all(np.array_equal(a, b) for a, b in zip(remote, local))
    pinned = render_frames(wav, tmp_path / "pinned.mp4", f"hf:owner/tiny@{COMMIT}")
    assert all(np.array_equal(a, b) for a, b in zip(pinned, local))


def test_a_hub_onnx_is_used_like_the_local_file(offline, wav, tiny_onnx, tmp_path):
    path = ready_model("hf:owner/graphs/onnx/model.onnx")
    assert path is not None and file_sha256(path) == file_sha256(tiny_onnx)
    assert f"snapshots/{COMMIT}/onnx/model.onnx" in path.as_posix()
    local = render_frames(wav, tmp_path / "local.mp4", str(tiny_onnx))
    remote = render_frames(wav, tmp_path / "hub.mp4", "hf:owner/graphs/onnx/model.onnx@main")
    assert len(remote) == len(local) > 0
    assert all(np.array_equal(a, b) for a, b in zip(remote, local))


def test_the_pretrained_name_falls_back_to_the_hub_copy(offline, tiny_checkpoint):
    from ganterp_fast.export.checkpoint import load_source

    loaded = load_source("biggan-deep-128")  # offline: no legacy copy cached, the Hub's copy is
    assert loaded.weights_sha256 == file_sha256(tiny_checkpoint / "pytorch_model.bin")
    assert hub.PRETRAINED_HUB["biggan-deep-128"].repo_id == "osanseviero/BigGAN-deep-128"
    with pytest.raises(ModelError, match="biggan-deep-256.*Offline, pass a local checkpoint directory"):
        load_source("biggan-deep-256")  # no copy on the Hub: the legacy address alone


def cli(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_offline_without_a_cached_copy_says_how_to_get_the_files(hub_cache, wav, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    cases = {
        "hf:nobody/missing": ("hf download nobody/missing --local-dir DIR", "--model DIR"),
        "hf:nobody/missing/g.onnx@v1": (
            "hf download nobody/missing g.onnx --revision v1 --local-dir DIR",
            "--model DIR/g.onnx",
        ),
    }
    for model, (command, local) in cases.items():
        result = cli("render", wav, "-o", out / "x.mp4", "--model", model, env=env)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "nobody/missing" in lines[0] and command in lines[0] and "huggingface-cli download" in lines[0]
        assert f"pass {local}" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    result = cli("render", wav, "-o", out / "x.mp4", "--model", "hf:owner", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "hf:OWNER/REPO" in result.stderr
    assert not list(out.iterdir())


def test_a_checkpoint_that_is_not_plain_tensors_is_refused(offline, tiny_checkpoint, tmp_path):
    torch = pytest.importorskip("torch")
    from ganterp_fast.engine.backends.models import resolve_model

    marker = tmp_path / "ran"
    state = torch.load(tiny_checkpoint / "pytorch_model.bin", weights_only=True)
    state["payload"] = Payload(str(marker))
    evil = tmp_path / "pytorch_model.bin"
    torch.save(state, evil)
    lay_out(offline, "owner/evil", {"config.json": tiny_checkpoint / "config.json", "pytorch_model.bin": evil})
    with pytest.raises(ModelError, match="cannot read the weights"):
        resolve_model("hf:owner/evil")
    assert not marker.exists()  # the pickle's code never ran


class Payload:
    """A pickled object that would create a file when unpickled as code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return os.mkdir, (self.path,)


def test_a_damaged_download_is_refused(offline, tiny_onnx, tmp_path):
    snapshot = lay_out(offline, "owner/damaged", {"g.onnx": tiny_onnx})
    blob = (snapshot / "g.onnx").resolve()
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelError, match="does not match its checksum on the Hub"):
        ready_model("hf:owner/damaged/g.onnx")
