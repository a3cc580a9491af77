"""The engine's Generator: parity with pytorch-pretrained-biggan, truncation, providers, validation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import media
import numpy as np
import pytest

from ganterp_fast.engine.backends.contract import INPUT_NAMES, read_metadata, truncation_weights
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
from ganterp_fast.engine.backends.providers import CPU, CUDA, ProviderPlan, plan_providers
from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError, ProviderError

TRUNCATIONS = (0.4, 0.58, 1.0)


def reference(model, z: np.ndarray, classes: np.ndarray, truncation: float) -> np.ndarray:
    from ganterp_fast.export import reference_frames

    return reference_frames(model, z, classes, truncation)


# -- parity with the reference ---------------------------------------------------------------


@pytest.fixture(scope="module")
def generator(tiny_onnx: Path) -> Generator:
    return Generator(tiny_onnx, device="cpu")


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("truncation", TRUNCATIONS)
def test_fp32_matches_pytorch(generator: Generator, tiny_model, batch: int, truncation: float) -> None:
    z, classes = media.latents(batch, truncation, seed=batch)
    frames = generator(z, classes, truncation=truncation)
    assert frames.dtype == np.uint8 and frames.shape == (batch, 128, 128, 3)
    diff = np.abs(frames.astype(np.float64) - reference(tiny_model, z, classes, truncation))
    assert diff.max() <= 2.0, f"max diff {diff.max():.2f} levels"


def test_per_sample_truncation_matches_pytorch(generator: Generator, tiny_model) -> None:
    truncations = np.array([0.4, 0.58, 1.0, 0.05])
    z, classes = media.latents(4, truncations, seed=7)
    frames = generator(z, classes, truncation=truncations)
    for row, t in enumerate(truncations):
        ref = reference(tiny_model, z[row : row + 1], classes[row : row + 1], float(t))
        assert np.abs(frames[row : row + 1].astype(np.float64) - ref).max() <= 2.0


@pytest.mark.parametrize("truncation", TRUNCATIONS)
def test_fp16_psnr(tiny_onnx_fp16: Path, tiny_model, truncation: float) -> None:
    g16 = Generator(tiny_onnx_fp16, device="cpu")
    assert g16.precision == "fp16"
    z, classes = media.latents(5, truncation, seed=11)
    frames = g16(z, classes, truncation=truncation)
    assert media.psnr(frames, reference(tiny_model, z, classes, truncation)) >= 35.0


def test_outputs_vary_with_inputs(generator: Generator) -> None:
    z, classes = media.latents(4, 0.4, seed=3)
    base = generator(z, classes, 0.4).astype(np.float64)
    assert all(frame.std() > 10 for frame in base), "flat images"
    other_z = generator(z[::-1].copy(), classes, 0.4).astype(np.float64)
    other_class = generator(z, classes[::-1].copy(), 0.4).astype(np.float64)
    other_t = generator(z, classes, 0.7).astype(np.float64)
    for changed in (other_z, other_class, other_t):
        assert np.abs(changed - base).mean() > 1.0
    # Nearby truncations differ too (statistics rows differ between anchors).
    assert np.abs(generator(z, classes, 0.42).astype(np.float64) - base).mean() > 0.05


def test_generator_properties(generator: Generator, tiny_onnx: Path) -> None:
    assert generator.resolution == 128
    assert generator.precision == "fp32"
    assert generator.device == "cpu"
    assert generator.providers == [CPU]
    assert generator.threads >= 1
    meta = generator.metadata
    assert meta["ganterp_fast.format_version"] == "1"
    assert meta["ganterp_fast.inputs"] == ",".join(INPUT_NAMES)
    assert float(meta["ganterp_fast.parity_max_abs_diff"]) <= 2.0
    assert read_metadata(tiny_onnx) == meta


def test_empty_batch(generator: Generator) -> None:
    frames = generator(np.zeros((0, 128)), np.zeros((0, 1000)), 0.4)
    assert frames.shape == (0, 128, 128, 3)


# -- truncation weights ----------------------------------------------------------------------


@pytest.mark.parametrize("truncation", [0.4, 0.58, 1.0, 0.01, 0.02, 0.73, 0.999, 0.5])
def test_truncation_weights_match_reference_batch_norm(truncation: float) -> None:
    torch = pytest.importorskip("torch")
    from pytorch_pretrained_biggan.model import BigGANBatchNorm

    norm = BigGANBatchNorm(3, conditional=False, eps=0.0)
    rows = torch.randn(51, 3)
    norm.running_means.copy_(rows)
    norm.running_vars.fill_(1.0)
    norm.weight.data.fill_(1.0)
    norm.bias.data.zero_()
    with torch.no_grad():
        mean = -norm(torch.zeros(1, 3, 1, 1), truncation).reshape(3).double().numpy()
    weights = truncation_weights(truncation)
    assert weights.shape == (51,) and math.isclose(weights.sum(), 1.0)
    assert np.allclose(weights.astype(np.float32).astype(np.float64) @ rows.double().numpy(), mean, atol=1e-6)


def test_truncation_weights_float64_rounding() -> None:
    weights = truncation_weights(0.58)  # 0.58 / 0.02 == 28.999999999999996: rows 28 and 29
    assert set(np.flatnonzero(weights)) == {28, 29} and weights[28] > 0.999
    assert np.flatnonzero(truncation_weights(1.0)).tolist() == [50]
    assert truncation_weights(0.4)[20] == 1.0  # 0.4 / 0.02 == 20.0 exactly
    assert truncation_weights([0.4, 1.0]).shape == (2, 51)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.2, float("nan"), float("inf")])
def test_truncation_outside_range(generator: Generator, bad: float) -> None:
    z, classes = media.latents(1, 0.4)
    with pytest.raises(InputError, match="truncation"):
        generator(z, classes, truncation=bad)


def test_bad_input_shapes(generator: Generator) -> None:
    z, classes = media.latents(2, 0.4)
    with pytest.raises(InputError, match="z has shape"):
        generator(z[:, :100], classes)
    with pytest.raises(InputError, match="class_vectors has shape"):
        generator(z, classes[:, :10])
    with pytest.raises(InputError, match="rows"):
        generator(z, classes[:1])
    with pytest.raises(InputError, match="one per sample"):
        generator(z, classes, truncation=[0.4, 0.5, 0.6])
    z[0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        generator(z, classes)


# -- what is (not) a model -------------------------------------------------------------------


def _identity_onnx(path: Path, metadata: dict[str, str] | None = None) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_an_onnx_that_is_no_generator_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no image output .* a generator needs"):
        Generator(_identity_onnx(tmp_path / "identity.onnx"))


def test_wrong_signature_is_rejected(tmp_path: Path, tiny_onnx: Path) -> None:
    path = _identity_onnx(tmp_path / "fake.onnx", read_metadata(tiny_onnx))
    with pytest.raises(ModelError, match="inputs/outputs"):
        Generator(path)


def test_newer_format_is_rejected(tmp_path: Path, tiny_onnx: Path) -> None:
    metadata = {**read_metadata(tiny_onnx), "ganterp_fast.format_version": "99"}
    with pytest.raises(ModelError, match="format 99"):
        Generator(_identity_onnx(tmp_path / "future.onnx", metadata))


@pytest.mark.parametrize("content", [b"\x00" * 16, b"this is not a model\n" * 4, b"\xff\xff\xff"])
def test_garbage_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        Generator(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        Generator(tmp_path / "nope.onnx")


def test_missing_onnxruntime(monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"\[cpu\].*\[gpu\]"):
        Generator(tiny_onnx)


# -- providers at run time ---------------------------------------------------------------------


def test_cuda_requested_without_provider(tiny_onnx: Path) -> None:
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    with pytest.raises(ProviderError, match="cuda"):
        Generator(tiny_onnx, device="cuda")


def test_silent_cpu_fallback_is_caught(generator: Generator) -> None:
    """onnxruntime-gpu without a usable GPU runs on the CPU: 'cuda' must fail, 'auto' must adapt."""
    cuda_plan = plan_providers([CUDA, CPU], device="auto", precision="fp16", cpu_cores=2)
    probe = object.__new__(Generator)
    probe._providers = [CPU]
    with pytest.raises(ProviderError, match="fell back"):
        probe._confirm_providers(cuda_plan, "cuda", False)
    adapted = probe._confirm_providers(cuda_plan, "auto", False)
    assert isinstance(adapted, ProviderPlan) and adapted.device == "cpu" and not adapted.io_binding


@pytest.mark.gpu
def test_cuda_matches_cpu(tiny_onnx_fp16: Path, tiny_model) -> None:
    gpu = Generator(tiny_onnx_fp16, device="cuda")
    assert gpu.device == "cuda" and CUDA in gpu.providers
    z, classes = media.latents(5, 0.4, seed=5)
    assert media.psnr(gpu(z, classes, 0.4), reference(tiny_model, z, classes, 0.4)) >= 35.0
