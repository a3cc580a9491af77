"""Foreign ONNX generators: roles read from the graph, the wrapper, renders, inspect and the errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from foreign_models import rank3_latent, run_float, stylegan_like
from media import render_options
from test_compose import as_decoded

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
from ganterp_fast.engine.errors import ModelError, OptionError
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.latent.keyframes import slerp
from ganterp_fast.engine.latent.path import PathOptions

pytest.importorskip("torch")

BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("foreign")
    return {
        "stylegan": stylegan_like(folder / "stylegan.onnx"),
        "conditional": stylegan_like(folder / "conditional.onnx", classes=10, psi=True, seed=1),
        "uint8": stylegan_like(folder / "uint8.onnx", output="nhwc-uint8", seed=2),
        "wide": stylegan_like(folder / "wide.onnx", size=(64, 96), output="nchw01", seed=3),
        "same-widths": stylegan_like(folder / "same.onnx", classes=16, names=("a", "b"), seed=4),
        "no-image": stylegan_like(folder / "no-image.onnx", output="none"),
        "rank-3": rank3_latent(folder / "rank3.onnx"),
    }


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganterp_fast", *args], capture_output=True, text=True, timeout=300)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_generators_equal_the_bare_graph_within_one_level(models):
    z = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    g = Generator(models["stylegan"], device="cpu")
    assert (g.z_dim, g.num_classes, g.resolution, g.size) == (16, 0, 32, (32, 32))
    assert np.abs(g(z).astype(int) - run_float(models["stylegan"], {"z": z})).max() <= 1
    c = np.eye(10, dtype=np.float32)[[1, 4, 9]]
    g = Generator(models["conditional"], device="cpu")
    assert (g.num_classes, g.roles.class_input, g.roles.truncation) == (10, "c", "truncation_psi")
    bare = run_float(models["conditional"], {"z": z, "c": c, "truncation_psi": np.full(3, 0.7, np.float32)})
    assert np.abs(g(z, c, truncation=0.7).astype(int) - bare).max() <= 1
    g = Generator(models["uint8"], device="cpu")
    assert np.array_equal(g(z), run_float(models["uint8"], {"z": z}))
    g = Generator(models["wide"], device="cpu", value_range="0,1")
    assert g.size == (64, 96) and g(z).shape == (3, 64, 96, 3)
    assert np.abs(g(z).astype(int) - run_float(models["wide"], {"z": z}, "0,1")).max() <= 1


@pytest.mark.parametrize("name", ["stylegan", "wide"])
def test_a_render_is_the_graph_on_the_paths_latents(models, song, tmp_path, name):
    model_range = "0,1" if name == "wide" else "-1,1"
    options = render_options(
        model=str(models[name]), precision="fp32", analysis=BUSY, crf=0, fps="10", model_range=model_range
    )
    job = prepare(song, tmp_path / "out.mp4", options)
    job.run()
    z, classes = job.path.frames(0, job.path.num_frames)
    assert classes.shape == (job.path.num_frames, 0) and job.path.num_points > 1
    expected = np.stack([as_decoded(frame) for frame in run_float(models[name], {"z": z}, model_range)])
    frames = decode(tmp_path / "out.mp4")
    assert frames.shape == expected.shape
    assert np.abs(frames.astype(int) - expected).max() <= 2  # one level, then yuv420p's rounding


def test_conditional_models_take_their_class_indices(models, song, tmp_path):
    options = render_options(
        model=str(models["conditional"]), precision="fp32", analysis=BUSY, fps="10", path=PathOptions(classes=(3, 7))
    )
    job = prepare(song, tmp_path / "out.mp4", options)
    assert job.path.class_ids[:2] == [3, 7]
    z, classes = job.path.frames(0, 4)
    assert classes.shape == (4, 10) and z.shape == (4, 16)
    result = cli("render", str(song), "-o", str(tmp_path / "x.mp4"), "--model", str(models["conditional"]))
    assert result.returncode == 0, result.stderr
    assert "classes: 0.0s " in result.stdout and "(tench" not in result.stdout  # indices, no ImageNet names
    result = cli(
        "render", str(song), "-o", str(tmp_path / "y.mp4"), "--model", str(models["conditional"]), "--classes", "3,12"
    )
    assert result.returncode == 2 and "--classes must be class indices 0 to 9" in result.stderr
    assert not (tmp_path / "y.mp4").exists()


def test_classes_on_an_unconditional_model_is_an_error(models, song, tmp_path):
    result = cli(
        "render", str(song), "-o", str(tmp_path / "x.mp4"), "--model", str(models["stylegan"]), "--classes", "3"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--classes must be left out: the model is unconditional" in result.stderr
    result = cli("render", str(song), "-o", str(tmp_path / "plain.mp4"), "--model", str(models["stylegan"]))
    assert result.returncode == 0 and "inflection points, keyframes at 0.0s" in result.stdout, result.stderr
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(OptionError, match="PathOptions.classes"):
        prepare(song, tmp_path / "x.mp4", render_options(model=str(models["stylegan"]), path=PathOptions(classes=(3,))))


@pytest.mark.parametrize(
    "name, found",
    [
        (
            "no-image",
            "no image output [N, 3, H, W] or [N, H, W, 3] (inputs z float [N, 16], outputs image float [N, 3])",
        ),
        ("rank-3", "a rank-3 input w where a latent [N, D] is needed"),
        ("same-widths", "cannot tell the latent from the class input among a, b"),
    ],
)
def test_unusable_graphs_are_one_line_errors(models, song, tmp_path, name, found):
    for args in (
        ["inspect", str(models[name])],
        ["render", str(song), "-o", str(tmp_path / "x.mp4"), "--model", str(models[name])],
    ):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        assert found in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(ModelError, match="a generator needs|--model-inputs"):
        Generator(models[name], device="cpu")


def test_model_inputs_name_the_roles(models, song, tmp_path):
    g = Generator(models["same-widths"], device="cpu", inputs={"latent": "b", "class": "a"})
    assert (g.roles.latent, g.roles.class_input, g.num_classes) == ("b", "a", 16)
    result = cli("inspect", str(models["same-widths"]), "--model-inputs", "latent=a,class=b", "--json", "-")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["roles"] == {"latent": "a", "class": "b", "truncation": None}
    result = cli("inspect", str(models["same-widths"]), "--model-inputs", "latent=nothing")
    assert result.returncode == 2 and "names latent=nothing" in result.stderr


def test_custom_operators_are_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Dream", ["z"], ["image"], domain="my.ops")],
        "custom",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    result = cli("inspect", str(tmp_path / "custom.onnx"))
    assert result.returncode == 2 and "needs custom operators (my.ops.Dream)" in result.stderr


def test_inspect_reports_what_the_engine_sees(models, tiny_onnx, tmp_path):
    result = cli("inspect", str(models["conditional"]), "--json", str(tmp_path / "c.json"))
    assert result.returncode == 0, result.stderr
    assert "classes:     10" in result.stdout and "32 x 32" in result.stdout
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["kind"] == "foreign" and report["z_dim"] == 16 and report["num_classes"] == 10
    assert report["roles"] == {"latent": "z", "class": "c", "truncation": "truncation_psi"}
    assert (report["height"], report["width"], report["value_range"], report["precision"]) == (32, 32, "-1,1", "fp32")
    # Mapping 26x32 + 32x32, two style affines 32x8, conv 8x8x8 x 8x9, conv 3x32x32 x 8x9: MACs x 2.
    assert report["flops_per_image"] == 2 * (26 * 32 + 32 * 32 + 2 * 32 * 8 + 512 * 72 + 3072 * 72)
    assert {"backend": "onnxruntime", "device": "cpu", "precision": "fp32"} in report["runs_here"]
    wide = json.loads(cli("inspect", str(models["wide"]), "--json", "-").stdout)
    assert wide["resolution"] == "64x96" and wide["num_classes"] == 0
    assert json.loads(cli("inspect", str(models["uint8"]), "--json", "-").stdout)["value_range"] == "0,255"
    ours = json.loads(cli("inspect", str(tiny_onnx), "--json", "-").stdout)
    assert (ours["kind"], ours["z_dim"], ours["num_classes"], ours["resolution"]) == (
        "ganterp-fast export",
        128,
        1000,
        "128x128",
    )
    assert ours["flops_per_image"] > 0 and ours["uncounted_nodes"] == 0


def test_slerp_keeps_gaussian_norms_and_lerp_stays_the_default():
    a, b = np.random.default_rng(1).standard_normal((2, 1, 512))
    middle = slerp(a, b, np.array([0.5]))
    assert abs(np.linalg.norm(middle) - np.linalg.norm(a)) < 0.1 * np.linalg.norm(a)
    assert np.linalg.norm((a + b) / 2) < 0.8 * np.linalg.norm(a)
    assert np.allclose(slerp(a, b, np.array([0.0])), a, atol=1e-5) and np.allclose(
        slerp(a, b, np.array([1.0])), b, atol=1e-5
    )
    assert PathOptions().interpolation == "lerp"


def test_cue_sheets_name_classes_of_the_model(models, song, tmp_path):
    from ganterp_fast.engine.errors import InputError
    from ganterp_fast.engine.latent.cue_sheet import parse_classes_at

    sheet = parse_classes_at("0:00 2, 0:01 12")
    options = render_options(model=str(models["conditional"]), analysis=BUSY, path=PathOptions.from_sheet(sheet))
    with pytest.raises(InputError, match="class 12 is past this model's classes 0 to 9"):
        prepare(song, tmp_path / "x.mp4", options)
    plain = render_options(model=str(models["stylegan"]), analysis=BUSY, path=PathOptions.from_sheet(sheet))
    job = prepare(song, tmp_path / "y.mp4", plain)  # unconditional: the cues' times and z alone
    assert job.path.num_points == 2 and job.path.frames(0, 2)[1].shape == (2, 0)


def test_segments_sizes_and_previews_with_a_foreign_model(models, song, tmp_path):
    common = ["--model", str(models["wide"]), "--model-range", "0,1", "--fps", "10", "--crf", "0", "-q"]
    one = cli("render", str(song), "-o", str(tmp_path / "one.mp4"), *common)
    cut = cli("render", str(song), "-o", str(tmp_path / "cut.mp4"), "--segment-seconds", "1", *common)
    assert one.returncode == 0 and cut.returncode == 0, one.stderr + cut.stderr
    assert np.array_equal(decode(tmp_path / "one.mp4"), decode(tmp_path / "cut.mp4"))  # same frames, in segments
    sized = cli("render", str(song), "-o", str(tmp_path / "sized.mp4"), "--size", "128x128", "--fit", "pad", *common)
    assert sized.returncode == 0, sized.stderr
    frames = decode(tmp_path / "sized.mp4")
    assert frames.shape[1:] == (128, 128, 3) and frames[:, :10].max() <= 20  # 96x64 fitted: bars above and below
    preview = cli("render", str(song), "-o", str(tmp_path / "preview.mp4"), "--preview", "--model", str(models["wide"]))
    assert preview.returncode == 0 and decode(tmp_path / "preview.mp4").shape[1:] == (64, 96, 3), preview.stderr


def test_openvino_bf16_runs_a_foreign_model(models):
    pytest.importorskip("openvino")
    from ganterp_fast.engine.backends.capability import bf16_capability
    from ganterp_fast.engine.backends.choice import open_generator

    if not bf16_capability().native:
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    generator = open_generator(models["conditional"], device="cpu", precision="bf16")
    assert generator.precision == "bf16" and generator.num_classes == 10
    z = np.random.default_rng(2).standard_normal((5, 16)).astype(np.float32)
    c = np.eye(10, dtype=np.float32)[[0, 1, 2, 3, 9]]
    exact = Generator(models["conditional"], device="cpu")(z, c, truncation=0.8).astype(float)
    frames = generator(z, c, truncation=0.8).astype(float)  # batch 5: its own compiled size
    assert frames.shape == exact.shape and 10 * np.log10(255**2 / max(np.mean((frames - exact) ** 2), 1e-9)) > 30


def test_an_upscaler_keeps_the_aspect_of_frames_that_are_not_square(models, song, tmp_path):
    import torch

    class Nearest2(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")

    sr = tmp_path / "x2.onnx"
    torch.onnx.export(
        Nearest2(),
        (torch.rand(1, 3, 32, 32),),
        str(sr),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}},
        dynamo=False,
    )
    out = tmp_path / "up.mp4"
    result = cli("render", str(song), "-o", str(out), "--model", str(models["wide"]), "--upscaler", str(sr), "-q")
    assert result.returncode == 0, result.stderr
    assert decode(out).shape[1:] == (128, 192, 3)


def test_a_render_reads_and_hashes_a_foreign_graph_once(models, tmp_path):
    """Planning wraps the graph; resolving it for the generator finds that wrapping without reading
    the file again. A source written again, or a wrapped file removed from the cache, is wrapped again."""
    import shutil

    from ganterp_fast.engine.backends import foreign
    from ganterp_fast.engine.backends.plan import plan_model
    from ganterp_fast.engine.options import ModelOptions

    source = shutil.copy(models["stylegan"], tmp_path / "mine.onnx")
    foreign._wrapped_memo.cache_clear()
    plan = plan_model(ModelOptions(model=str(source), precision="fp32"))
    path = plan.resolve()
    assert plan.foreign and path.is_file() and foreign._wrapped_memo.cache_info()[:2] == (1, 1)  # hits, misses
    path.unlink()
    assert plan.resolve() == path and path.is_file()
    shutil.copy(models["uint8"], source)  # another graph under the same name
    again = plan_model(ModelOptions(model=str(source), precision="fp32"))
    assert again.resolve() != path and Generator(again.resolve(), device="cpu").roles.output_dtype == "uint8"
