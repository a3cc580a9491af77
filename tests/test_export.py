"""BigGAN-deep export: checkpoints, random weights, the graph, metadata, parity, the CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from ganterp_fast.engine.errors import InputError, ModelError  # noqa: E402
from ganterp_fast.export import (  # noqa: E402
    check_parity,
    export_model,
    load_biggan,
    make_random_biggan,
)
from ganterp_fast.export import exporter as exporter_module  # noqa: E402

META_KEYS = (
    "format_version",
    "model",
    "model_name",
    "resolution",
    "precision",
    "source",
    "weights_sha256",
    "exporter_version",
    "opset",
    "inputs",
    "outputs",
    "parity_max_abs_diff",
    "parity_psnr_db",
)


def _metadata(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


# -- random weights --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed1_model():
    """The tiny architecture with seed 1: another model than the tiny checkpoint (seed 0)."""
    return make_random_biggan(128, channel_width=16, seed=1)


def test_random_weights_are_deterministic_and_seeded(tiny_model, seed1_model) -> None:
    again = make_random_biggan(128, channel_width=16, seed=0).state_dict()
    saved = tiny_model.state_dict()
    assert all(torch.equal(again[k], saved[k]) for k in saved)
    assert not torch.equal(saved["embeddings.weight"], seed1_model.state_dict()["embeddings.weight"])


def test_random_weights_are_well_conditioned(tiny_model) -> None:
    for name, module in tiny_model.named_modules():
        if hasattr(module, "weight_orig"):
            matrix = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
            with torch.no_grad():
                sigma = float(module.weight_u @ matrix @ module.weight_v)
                top = float(torch.linalg.matrix_norm(matrix, 2))
            assert sigma == pytest.approx(top, rel=1e-4), name
    norm = tiny_model.generator.layers[3].bn_2
    assert len({tuple(row.tolist()) for row in norm.running_means}) == 51, "statistics rows must differ"
    assert bool((norm.running_vars > 0).all())
    with torch.no_grad():
        image = tiny_model(torch.randn(2, 128) * 0.4, torch.eye(1000)[:2], 0.4)
    assert bool(torch.isfinite(image).all()) and float(image.std()) > 0.1
    tiny = torch.finfo(torch.float32).tiny
    assert float((image.abs() < tiny).float().mean()) < 1e-3, "denormal outputs"


def test_checkpoint_round_trip(tiny_checkpoint: Path, tiny_model) -> None:
    assert {p.name for p in tiny_checkpoint.iterdir()} == {"config.json", "pytorch_model.bin"}
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["channel_width"] == 16 and config["output_dim"] == 128
    assert not tiny_model.training


# -- loading errors --------------------------------------------------------------------------


def test_offline_pretrained_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pytorch_pretrained_biggan import model as biggan_model

    dead = "http://127.0.0.1:9/biggan-deep-128"  # the discard port: refused at once
    monkeypatch.setitem(biggan_model.PRETRAINED_MODEL_ARCHIVE_MAP, "biggan-deep-128", dead + ".bin")
    monkeypatch.setitem(biggan_model.PRETRAINED_CONFIG_ARCHIVE_MAP, "biggan-deep-128", dead + ".json")
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        load_biggan("biggan-deep-128")
    message = str(info.value)
    assert "could not fetch" in message and "--weights random" in message and "checkpoint directory" in message
    assert 'weights="random"' not in message  # the command line's words, not Python's
    assert time.monotonic() - started < 20


def test_offline_pretrained_name_uses_the_download_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from pytorch_pretrained_biggan import model as biggan_model
    from pytorch_pretrained_biggan.file_utils import url_to_filename

    dead = "http://127.0.0.1:9/biggan-deep-128"
    urls = {"config.json": dead + ".json", "pytorch_model.bin": dead + ".bin"}
    monkeypatch.setitem(biggan_model.PRETRAINED_CONFIG_ARCHIVE_MAP, "biggan-deep-128", urls["config.json"])
    monkeypatch.setitem(biggan_model.PRETRAINED_MODEL_ARCHIVE_MAP, "biggan-deep-128", urls["pytorch_model.bin"])
    for name, url in urls.items():  # laid out as pytorch-pretrained-biggan's cache does
        shutil.copy(tiny_checkpoint / name, tmp_path / url_to_filename(url, etag="x"))
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(tmp_path))
    model = load_biggan("biggan-deep-128")
    assert model.config.channel_width == 16


def _copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_checkpoint(tiny_checkpoint: Path, tmp_path: Path, damage: str) -> None:
    checkpoint = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    weights = checkpoint / "pytorch_model.bin"
    data = weights.read_bytes()
    weights.write_bytes({"garbage": b"\x13\x37" * 500, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(ModelError, match="cannot read the weights"):
        load_biggan(checkpoint)


def test_wrong_keys(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    state = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    state["generator.extra.weight"] = state.pop("generator.gen_z.bias")
    torch.save(state, checkpoint / "pytorch_model.bin")
    with pytest.raises(ModelError) as info:
        load_biggan(checkpoint)
    assert "missing keys (generator.gen_z.bias)" in str(info.value)
    assert "unexpected keys (generator.extra.weight)" in str(info.value)


def test_wrong_shapes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((checkpoint / "config.json").read_text())
    config["channel_width"] = 24
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="wrong shapes"):
        load_biggan(checkpoint)


def test_bad_config_and_sources(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="configuration"):
        load_biggan(checkpoint)
    (checkpoint / "config.json").unlink()
    with pytest.raises(ModelError, match="no config.json"):
        load_biggan(checkpoint)
    with pytest.raises(ModelError, match="neither a pretrained name"):
        load_biggan("biggan-deep-1024")


def test_export_argument_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="precision"):
        export_model(tiny_checkpoint, tmp_path / "x.onnx", precision="int4")
    with pytest.raises(InputError, match="opset"):
        export_model(tiny_checkpoint, tmp_path / "x.onnx", opset=11)
    with pytest.raises(InputError, match="weights"):
        export_model(tiny_checkpoint, tmp_path / "x.onnx", weights="zeros")
    with pytest.raises(InputError, match="contradicts"):
        export_model("biggan-deep-256", tmp_path / "x.onnx", weights="random", resolution=128)
    assert not list(tmp_path.iterdir())


# -- the exported graph ----------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_onnx", "tiny_onnx_fp16"])
def test_graph_signature_and_metadata(request: pytest.FixtureRequest, fixture: str, tiny_checkpoint: Path) -> None:
    path: Path = request.getfixturevalue(fixture)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["z", "class_vector", "truncation_weights"]
    for name, width in (("z", 128), ("class_vector", 1000), ("truncation_weights", 51)):
        dims = inputs[name].shape.dim
        assert inputs[name].elem_type == onnx.TensorProto.FLOAT
        assert dims[0].dim_param and not dims[0].dim_value, "batch axis must be dynamic"
        assert dims[1].dim_value == width
    (output,) = model.graph.output
    assert output.name == "frames" and output.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in output.type.tensor_type.shape.dim[1:]] == [128, 128, 3]

    meta = {p.key: p.value for p in model.metadata_props}
    for key in META_KEYS:
        assert "ganterp_fast." + key in meta, key
    precision = "fp16" if fixture.endswith("fp16") else "fp32"
    assert meta["ganterp_fast.precision"] == precision
    assert meta["ganterp_fast.resolution"] == "128"
    from ganterp_fast.engine.cache import file_sha256

    assert meta["ganterp_fast.weights_sha256"] == file_sha256(tiny_checkpoint / "pytorch_model.bin")
    assert float(meta["ganterp_fast.parity_psnr_db"]) >= 35.0

    initializers = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    last = initializers[convs[-1].input[1]]
    assert last.dims[0] == 3, "last convolution must keep only the 3 RGB channels"
    for node in model.graph.node:  # Resize scales must stay fp32 (fp16 scales are invalid)
        if node.op_type == "Resize" and len(node.input) > 2 and node.input[2] in initializers:
            assert initializers[node.input[2]].data_type == onnx.TensorProto.FLOAT
    if precision == "fp16":
        assert initializers[convs[0].input[1]].data_type == onnx.TensorProto.FLOAT16


def test_parity_failure_is_reported(tiny_onnx: Path, seed1_model) -> None:
    with pytest.raises(ModelError, match=r"differs from PyTorch by up to \d+"):
        check_parity(seed1_model, tiny_onnx, precision="fp32")


@pytest.mark.parametrize("damage", ["a convolution channel negated", "statistics rows 0 and 50 swapped"])
def test_parity_fails_an_export_with_one_wrong_tensor(tiny_onnx: Path, tiny_model, damage: str) -> None:
    """The check's few images still see a single wrong weight or statistics row."""
    from onnx import numpy_helper

    model = onnx.load(str(tiny_onnx))
    assert check_parity(tiny_model, model, precision="fp32")["max_abs_diff"] <= 2.0
    tensors = {t.name: t for t in model.graph.initializer}
    if damage.startswith("a convolution"):
        convs = [node for node in model.graph.node if node.op_type == "Conv"]
        tensor = tensors[convs[len(convs) // 2].input[1]]
        values = numpy_helper.to_array(tensor).copy()
        values[0] = -values[0]
    else:
        tensor = tensors["stat_means"]
        values = numpy_helper.to_array(tensor).copy()
        values[[0, 50]] = values[[50, 0]]
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    with pytest.raises(ModelError, match=r"differs from PyTorch by up to \d+"):
        check_parity(tiny_model, model, precision="fp32")


def test_failed_check_writes_nothing(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args, **kwargs):
        raise ModelError("parity check failed by 9 levels")

    monkeypatch.setattr(exporter_module, "check_parity", failing)
    with pytest.raises(ModelError, match="9 levels"):
        export_model(tiny_checkpoint, tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []


# -- the command line ------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from ganterp_fast.cli import export_cmd

    parser = argparse.ArgumentParser()
    export_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    return args.func(args)


def test_cli_export_random_weights(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "random.onnx"
    assert _cli([str(tiny_checkpoint), "-o", str(out), "--weights", "random", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "PSNR" in printed
    meta = _metadata(out)
    assert meta["ganterp_fast.source"].startswith("random:") and meta["ganterp_fast.model_name"].endswith("seed5")
    with pytest.raises(InputError, match="--overwrite"):
        _cli([str(tiny_checkpoint), "-o", str(out)])
    with pytest.raises(InputError, match=".onnx"):
        _cli([str(tiny_checkpoint), "-o", str(tmp_path / "model.bin")])
