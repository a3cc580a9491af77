"""Shared fixtures: an isolated cache, the test song, and a tiny BigGAN-deep checkpoint with its ONNX exports.

The tiny model is the real BigGAN-deep-128 architecture at channel_width 16 with seeded,
well-conditioned random weights: quick to build and export on a CPU, no network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import media
import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """GANTERP_CACHE_DIR (and pytorch-pretrained-biggan's and the Hugging Face Hub's download caches) in a temporary
    folder."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANTERP_CACHE_DIR", str(root / "ganterp"))
        patch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(root / "biggan"))
        patch.setenv("HF_HUB_CACHE", str(root / "huggingface"))
        yield root / "ganterp"


@pytest.fixture(scope="module")
def song(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's song as a .wav: its `SONG` (a `media.Song`) if it declares one, else `media.Song()`,
    three seconds of music at 8 kHz mono."""
    return getattr(request.module, "SONG", media.Song()).write(tmp_path_factory.mktemp("song"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint directory: BigGAN-deep-128 architecture, channel_width 16, seed 0."""
    pytest.importorskip("torch")
    from ganterp_fast.export import write_random_checkpoint

    return write_random_checkpoint(
        tmp_path_factory.mktemp("tiny") / "biggan-tiny", resolution=128, channel_width=16, seed=0
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path):  # -> pytorch_pretrained_biggan.BigGAN
    """The tiny checkpoint loaded as the PyTorch reference (eval mode)."""
    from ganterp_fast.export import load_biggan

    return load_biggan(tiny_checkpoint)


def _export(checkpoint: Path, directory: Path, precision: str) -> Path:
    from ganterp_fast.export import export_model

    return export_model(checkpoint, directory / f"tiny-{precision}.onnx", precision=precision).path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 export of the tiny checkpoint (parity-checked by the exporter)."""
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("onnx32"), "fp32")


@pytest.fixture(scope="session")
def tiny_onnx_fp16(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp16 export of the tiny checkpoint."""
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("onnx16"), "fp16")


def cuda_available() -> bool:
    """True when ONNX Runtime offers the CUDA provider (onnxruntime-gpu; a GPU is still needed)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `@pytest.mark.gpu` tests where ONNX Runtime has no CUDA provider."""
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and onnxruntime-gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
