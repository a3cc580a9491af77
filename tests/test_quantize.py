"""int8 static quantisation: a valid QDQ model the engine runs, the quality gate, metadata, atomicity."""

from __future__ import annotations

import math
from pathlib import Path

import media
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from ganterp_fast.engine.backends.contract import META_PREFIX, check_metadata, read_metadata  # noqa: E402
from ganterp_fast.engine.backends.onnxruntime_generator import Generator  # noqa: E402
from ganterp_fast.engine.errors import InputError, ModelError  # noqa: E402
from ganterp_fast.export.quantize import Int8Settings, QuantizeReport, quantize_int8  # noqa: E402

# Measured on the tiny model (channel_width 16, seed 0): every convolution in int8 gives
# ~28.5 dB against fp32 on the held-out latents; the full-width model ~28 dB.
ALL_INT8_MIN_PSNR = 25.0
ALL_INT8 = Int8Settings(float_convs=0)
# The tiny graph: 43 convolutions, the last (RGB) always fp32.
QUANTISABLE_CONVS = 42


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.fixture(scope="module")
def all_int8(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> QuantizeReport:
    """Every convolution but the RGB one in int8, gated at a threshold it reaches."""
    return quantize_int8(
        tiny_onnx, tmp_path_factory.mktemp("int8") / "tiny-int8.onnx", min_psnr=ALL_INT8_MIN_PSNR, settings=ALL_INT8
    )


@pytest.fixture(scope="module")
def searched(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> QuantizeReport:
    """Default settings and the 40 dB gate: leading convolutions kept fp32 as needed."""
    return quantize_int8(tiny_onnx, tmp_path_factory.mktemp("int8-gated") / "tiny-int8.onnx")


# -- the model --------------------------------------------------------------------------------


def test_quantised_model_is_valid_qdq(all_int8: QuantizeReport) -> None:
    model = onnx.load(str(all_int8.path))
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") >= QUANTISABLE_CONVS
    int8_weights = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8}
    dequantized = {node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    assert len(int8_weights & dequantized) == QUANTISABLE_CONVS  # one per-channel weight per conv
    # The frames stay a float -> uint8 conversion at the end; the RGB conv stays float.
    assert [node.op_type for node in model.graph.node][-5:] == ["Add", "Mul", "Clip", "Cast", "Transpose"]
    producers = {out: node for node in model.graph.node for out in node.output}
    tanh = next(node for node in model.graph.node if node.op_type == "Tanh")
    assert producers[tanh.input[0]].op_type == "Conv"
    assert all_int8.int8_convs == QUANTISABLE_CONVS and all_int8.float_convs == 0
    assert all_int8.int8_mac_share is not None and 0.9 < all_int8.int8_mac_share < 1.0
    assert all_int8.size_bytes < Path(all_int8.source).stat().st_size  # int8 conv weights


def test_engine_runs_int8_close_to_fp32(all_int8: QuantizeReport, tiny_onnx: Path) -> None:
    int8 = Generator(all_int8.path, device="cpu")
    fp32 = Generator(tiny_onnx, device="cpu")
    assert int8.precision == "int8" and fp32.precision == "fp32"
    for truncation, seed in ((0.4, 11), (1.0, 12)):
        z, classes = media.latents(4, truncation, seed)
        frames, reference = int8(z, classes, truncation), fp32(z, classes, truncation)
        assert frames.dtype == np.uint8 and frames.shape == (4, 128, 128, 3)
        assert frames.std() > 20 and len(np.unique(frames)) > 200, "flat or saturated output"
        assert media.psnr(frames, reference) >= ALL_INT8_MIN_PSNR - 1.0  # other latents than the gate's
    assert all_int8.psnr_db >= ALL_INT8_MIN_PSNR


def test_metadata_copied_and_extended(all_int8: QuantizeReport, tiny_onnx: Path) -> None:
    meta, fp32 = metadata(all_int8.path), metadata(tiny_onnx)
    check_metadata(meta, all_int8.path)
    assert read_metadata(all_int8.path) == meta
    assert meta[META_PREFIX + "precision"] == "int8"
    assert {k: v for k, v in meta.items() if k in fp32 and k != META_PREFIX + "precision"} == {
        k: v for k, v in fp32.items() if k != META_PREFIX + "precision"
    }
    assert float(meta[META_PREFIX + "int8_psnr_db"]) == pytest.approx(all_int8.psnr_db, abs=0.01)
    assert meta[META_PREFIX + "int8_min_psnr_db"] == "25"
    assert meta[META_PREFIX + "int8_convs"] == f"{QUANTISABLE_CONVS}/{QUANTISABLE_CONVS + 1}"
    assert "activation_type=uint8" in meta[META_PREFIX + "int8_settings"]
    assert all_int8.metadata == meta
    assert not any(key.startswith("onnx.quant") for key in meta)


# -- the gate ----------------------------------------------------------------------------------


def test_gate_raises_with_the_figure_and_writes_nothing(
    tiny_onnx: Path, all_int8: QuantizeReport, tmp_path: Path
) -> None:
    output = tmp_path / "int8.onnx"
    output.write_bytes(b"previous model")
    with pytest.raises(ModelError, match=r"misses the quality gate: PSNR against fp32 \d+\.\d dB.*needs 99 dB"):
        quantize_int8(tiny_onnx, output, min_psnr=99.0, settings=ALL_INT8)
    assert output.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]


def test_search_keeps_leading_convs_fp32_to_pass(searched: QuantizeReport, all_int8: QuantizeReport) -> None:
    assert searched.psnr_db >= 40.0 and searched.min_psnr_db == 40.0
    assert 0 < searched.float_convs < QUANTISABLE_CONVS
    assert searched.int8_convs == QUANTISABLE_CONVS - searched.float_convs
    tried = dict(searched.attempts)
    assert tried[0] == pytest.approx(all_int8.psnr_db) and tried[0] < 40.0
    assert tried[searched.float_convs] == searched.psnr_db
    assert all(psnr_db < 40.0 for k, psnr_db in tried.items() if k < searched.float_convs)
    assert metadata(searched.path)[META_PREFIX + "int8_float_convs"] == str(searched.float_convs)
    assert Generator(searched.path, device="cpu").precision == "int8"


def test_deterministic_for_a_seed(tiny_onnx: Path, all_int8: QuantizeReport, tmp_path: Path) -> None:
    again = quantize_int8(tiny_onnx, tmp_path / "again.onnx", min_psnr=ALL_INT8_MIN_PSNR, settings=ALL_INT8)
    assert again.path.read_bytes() == all_int8.path.read_bytes()
    other = quantize_int8(tiny_onnx, tmp_path / "seed1.onnx", seed=1, min_psnr=0.0, settings=ALL_INT8)
    assert other.path.read_bytes() != all_int8.path.read_bytes()


# -- inputs ------------------------------------------------------------------------------------


def test_rejects_bad_inputs(tiny_onnx: Path, all_int8: QuantizeReport, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    with pytest.raises(InputError, match="does not exist"):
        quantize_int8(tmp_path / "missing.onnx", out)
    with pytest.raises(InputError, match="starts from the fp32 export"):
        quantize_int8(all_int8.path, out)
    with pytest.raises(InputError, match="is the fp32 input"):
        quantize_int8(tiny_onnx, tiny_onnx)
    for kwargs, message in (
        ({"calibration_batches": 0}, "calibration_batches"),
        ({"seed": -1}, "seed"),
        ({"min_psnr": math.nan}, "min_psnr"),
        ({"settings": Int8Settings(activation_type="int4")}, "activation_type"),
        ({"settings": Int8Settings(calibration_method="entropy")}, "calibration_method"),
        ({"settings": Int8Settings(float_convs=-1)}, "float_convs"),
        ({"settings": Int8Settings(float_convs=QUANTISABLE_CONVS)}, "float_convs"),
    ):
        with pytest.raises(InputError, match=message):
            quantize_int8(tiny_onnx, out, **kwargs)
    assert not out.exists()


def test_rejects_a_model_that_is_not_an_export(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(ModelError, match="not a ganterp-fast BigGAN export"):
        quantize_int8(path, tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.onnx"]
