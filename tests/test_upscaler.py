"""A learned upscaler between the generator and the compositor: tiny super-resolution graphs built
with torch and exported, real renders decoded and compared with the graph run directly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from media import psnr, render_options

from ganterp_fast.cli.main import main
from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.backends.choice import open_generator
from ganterp_fast.engine.backends.upscaler import Upscaler, open_upscaler, tile_windows
from ganterp_fast.engine.backends.upscaler_graph import describe_upscaler, read_upscaler
from ganterp_fast.engine.errors import OptionError
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.options import OutputOptions

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


class ShuffleSR(torch.nn.Module):
    """Convolutions and a PixelShuffle: x`factor`, receptive field 2 px of the input each way."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(8, 3 * factor * factor, 3, padding=1),
            torch.nn.PixelShuffle(factor),
        )
        self.factor = factor

    def forward(self, x):  # type: ignore[no-untyped-def]
        near = torch.nn.functional.interpolate(x, scale_factor=self.factor, mode="nearest")
        return torch.clamp(near + 0.3 * torch.tanh(self.body(x)), 0, 1)


class ResizeSR(torch.nn.Module):
    """A convolution, a bilinear Resize x`factor` and a convolution at the output's size."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.head, self.tail, self.factor = (
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.Conv2d(8, 3, 3, padding=1),
            factor,
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        up = torch.nn.functional.interpolate(torch.relu(self.head(x)), scale_factor=self.factor, mode="bilinear")
        return torch.sigmoid(self.tail(up))


def export(module: torch.nn.Module, path: Path, *, side: int = 32, dynamic: bool = True, channels: int = 3) -> Path:
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    axes = {"image": {0: "n", 2: "h", 3: "w"}, "upscaled": {0: "n", 2: "h2", 3: "w2"}} if dynamic else None
    torch.onnx.export(
        module.eval(),
        (torch.rand(1, channels, side, side),),
        str(path),
        input_names=["image"],
        output_names=["upscaled"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    return path


@pytest.fixture(scope="module")
def sr(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sr")
    return {
        "x2": export(ShuffleSR(2), folder / "shuffle-x2.onnx"),
        "x4": export(ResizeSR(4), folder / "resize-x4.onnx"),
        "x2-fixed": export(ShuffleSR(2), folder / "shuffle-x2-64.onnx", side=64, dynamic=False),
        "x1.5": export(ResizeSR(1.5), folder / "resize-x1.5.onnx"),
        "gray": export(
            torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2)),
            folder / "gray.onnx",
            channels=1,
        ),
    }


@pytest.fixture(scope="module")
def generator(tiny_onnx):
    return open_generator(tiny_onnx, device="cpu", precision="fp32")


def direct(path: Path, frames: np.ndarray) -> np.ndarray:
    """The SR graph run by ONNX Runtime on uint8 NHWC frames, rounded back to uint8 NHWC."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": frames.transpose(0, 3, 1, 2).astype(np.float32) / 255})[0]
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def as_decoded(image: np.ndarray) -> np.ndarray:
    """An RGB image through the writer's yuv420p and back, as a decoder gives it."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    yuv = frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
    return yuv.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG).to_ndarray()


def lanczos(image: np.ndarray, side: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=side, height=side, interpolation=Interpolation.LANCZOS).to_ndarray()


def options(tiny_onnx: Path, upscaler: Path | None, *, upscaler_tile: int = 512, **output):
    return render_options(
        model=str(tiny_onnx),
        precision="fp32",
        upscaler=None if upscaler is None else str(upscaler),
        upscaler_tile=upscaler_tile,
        analysis=BUSY,
        crf=0,
        fps="10",
        output=OutputOptions(**output),
    )


def plain_frames(job, generator) -> np.ndarray:
    """The generator's own frames for the job's path (no upscaler, no compositor)."""
    frames = replace(job, upscaler=None, composition=None).frames(generator)
    try:
        return np.concatenate(list(frames))
    finally:
        frames.close()


# ---------------------------------------------------------------- the graph


def test_the_factor_and_signature_are_read_from_the_graph(sr):
    assert read_upscaler(sr["x2"]).factor == 2 and read_upscaler(sr["x4"]).factor == 4
    fixed = read_upscaler(sr["x2-fixed"])
    assert fixed.factor == 2 and fixed.window == (64, 64) and fixed.batch == 1
    info = describe_upscaler(sr["x4"], size=128)
    assert info["factor"] == 4 and info["upscaled"] == [512, 512] and info["name"] == "resize-x4.onnx"
    # head 3->8 at 128 px, tail 8->3 at 512 px, 3x3 kernels: 2 x (128^2 x 8 x 27 + 512^2 x 3 x 72)
    assert info["gflop_per_frame"] == pytest.approx(2 * (128**2 * 8 * 27 + 512**2 * 3 * 72) / 1e9, rel=1e-3)


def test_inspect_describes_an_upscaler(sr, tmp_path, capsys):
    """`inspect SR.onnx`: the factor, input and output and FLOPs, as text and as JSON."""
    assert main(["inspect", str(sr["x4"])]) == 0
    shown = capsys.readouterr().out
    assert "upscaler (--upscaler), x4" in shown and "128 x 128 -> 512 x 512" in shown, shown
    report = tmp_path / "sr.json"
    assert main(["inspect", str(sr["x2-fixed"]), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["kind"] == "upscaler" and data["factor"] == 2 and data["fixed_input"] == [64, 64]
    capsys.readouterr()
    assert main(["inspect", str(sr["gray"])]) == 2  # neither a generator nor an upscaler: the generator's error
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "a generator needs" in error[0], error


def test_tile_windows_cover_each_axis_with_context():
    for size, tile, overlap in ((128, 48, 8), (100, 32, 4), (64, 64, 8), (130, 40, 16)):
        spans = tile_windows(size, tile, overlap)
        window = min(size, tile + 2 * overlap) if size > tile else size
        covered = np.zeros(size, int)
        for start, first, stop in spans:
            assert 0 <= start <= first < stop <= start + window <= size
            assert start == 0 or first - start >= overlap  # context left, or the window reaches the frame's edge
            assert start + window == size or start + window - stop >= overlap
            covered[first:stop] += 1
        assert covered.min() >= 1


def test_tiled_equals_untiled(sr):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    frames = np.ascontiguousarray(np.repeat(np.repeat(frames[:, ::4, ::4], 4, 1), 4, 2))  # some structure
    for name in ("x2", "x4"):
        whole = Upscaler(read_upscaler(sr[name], tile=0))(frames)
        tiled = Upscaler(read_upscaler(sr[name], tile=40, overlap=6))(frames)
        assert whole.shape == tiled.shape == (3, 128 * (2 if name == "x2" else 4), whole.shape[2], 3)
        difference = np.abs(whole.astype(int) - tiled.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, name
        assert np.array_equal(whole, direct(sr[name], frames))
    fixed = Upscaler(read_upscaler(sr["x2-fixed"], overlap=8))(frames)  # 64 px windows of a fixed graph
    assert np.abs(fixed.astype(int) - direct(sr["x2"], frames).astype(int)).max() <= 1


# ---------------------------------------------------------------- renders


def test_a_render_shows_the_upscaled_frames(song, sr, tiny_onnx, generator, tmp_path):
    out = tmp_path / "up.mp4"
    job = prepare(song, out, options(tiny_onnx, sr["x2"]), duration=1.0)
    result = job.run(generator=generator)
    decoded = decode(out)
    plain = plain_frames(job, generator)
    expected = direct(sr["x2"], plain)
    assert (result.width, result.height) == (256, 256) and decoded[0].shape == (256, 256, 3)
    assert len(decoded) == len(plain) == 10 and result.upscaler == "shuffle-x2.onnx x2"
    assert result.times.upscale > 0
    for got, want, frame in zip(decoded, expected, plain):
        match = psnr(got, as_decoded(want))
        assert match > 40 and match > psnr(got, as_decoded(lanczos(frame, 256))) + 5


def test_the_upscaled_frames_go_through_size_and_fit(song, sr, tiny_onnx, generator, tmp_path):
    out = tmp_path / "fit.mp4"
    job = prepare(song, out, options(tiny_onnx, sr["x4"], size="768x512", fit="pad"), duration=0.5)
    job.run(generator=generator)
    decoded = decode(out)
    expected = direct(sr["x4"], plain_frames(job, generator))
    assert decoded[0].shape == (512, 768, 3) and len(decoded) == len(expected) == 5
    for got, want in zip(decoded, expected):
        assert psnr(got[:, 128:640], as_decoded(want)) > 35  # the 512 px frame as it is, between black bars
        assert got[:, :120].max() <= 20 and got[:, 648:].max() <= 20


def test_segments_with_an_upscaler_equal_one_pass(song, sr, tiny_onnx, generator, tmp_path):
    job = prepare(song, tmp_path / "x.mp4", options(tiny_onnx, sr["x2"], upscaler_tile=48), duration=1.0)
    whole = np.concatenate(list(job.frames(generator)))
    parts = [np.concatenate(list(job.frames(generator, a, b))) for a, b in ((0, 3), (3, 10))]
    assert np.array_equal(whole, np.concatenate(parts))
    assert open_upscaler(job.upscaler, device="cpu") is open_upscaler(job.upscaler, device="cpu")


# ---------------------------------------------------------------- bad upscalers


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "no such file"),
        ("text", "is not an ONNX model"),
        ("gray", "takes 'image' float [?, 1, ?, ?]"),
        ("x1.5", "not by one whole factor"),
    ],
)
def test_a_bad_upscaler_is_one_line_and_exit_2(song, sr, tiny_onnx, tmp_path, capsys, kind, words):
    path = {"missing": tmp_path / "nothing.onnx", "text": tmp_path / "notes.onnx"}.get(kind) or sr[kind]
    if kind == "text":
        path.write_text("not a model")
    out = tmp_path / "out.mp4"
    code = main(["render", str(song), "-o", str(out), "--model", str(tiny_onnx), "--upscaler", str(path), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--upscaler" in err and words in err and "Real-ESRGAN" in err
    assert not out.exists() and list(tmp_path.glob("out*")) == []
    with pytest.raises(OptionError, match="ModelOptions.upscaler"):
        prepare(song, out, options(tiny_onnx, path))


# ---------------------------------------------------------------- bf16 behind the gate


class Cancelling(torch.nn.Module):
    """x2 nearest through a 1x1 convolution that adds 1000 and one that takes it away: exact in fp32,
    noise in bf16 (8 bits of mantissa keep steps of 4 at 1000), so it fails the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return torch.nn.functional.interpolate(self.down(self.up(x)), scale_factor=2.0, mode="nearest")


def native_bf16() -> None:
    pytest.importorskip("openvino")
    from ganterp_fast.engine.backends.capability import bf16_capability

    if not bf16_capability().native:
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")


@pytest.fixture(scope="module")
def cancelling(tmp_path_factory):
    path = export(Cancelling(), tmp_path_factory.mktemp("cancel") / "cancelling.onnx")
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))  # export() drew random weights: set the identity and the +-1000 biases
    for item in model.graph.initializer:
        value = numpy_helper.to_array(item)
        if value.ndim == 4:
            value = np.eye(3, dtype=np.float32)[:, :, None, None]
        else:
            value = np.full(3, 1000.0 if "up" in item.name else -1000.0, np.float32)
        item.CopyFrom(numpy_helper.from_array(value, item.name))
    onnx.save(model, str(path))
    return path


def test_the_upscaler_follows_the_renders_precision(sr, tiny_onnx):
    from ganterp_fast.engine.backends.upscaler_graph import plan_upscaler
    from ganterp_fast.engine.options import ModelOptions

    for precision, planned in (("fp32", "fp32"), ("auto", "auto-bf16"), ("fp16", "fp32"), ("bf16", "bf16")):
        model = ModelOptions(model=str(tiny_onnx), precision=precision, upscaler=str(sr["x2"]))
        assert plan_upscaler(model, 128).precision == planned
    up = open_upscaler(read_upscaler(sr["x2"]), device="cpu")  # a plan made without options: fp32
    assert up.precision == "fp32" and up.providers == ["CPUExecutionProvider"]


def test_bf16_upscaler_passes_its_gate_and_stays_close_to_fp32(sr, caplog):
    native_bf16()
    from ganterp_fast.engine.backends.gate import stored_gate
    from ganterp_fast.engine.backends.upscaler import gate_samples

    plan = replace(read_upscaler(sr["x4"]), precision="bf16")
    with caplog.at_level("INFO", logger="ganterp_fast.engine.backends.upscaler"):
        up = open_upscaler(plan, device="cpu")
    assert up.precision == "bf16" and up.providers == ["OpenVINO CPU bf16"]
    assert "in bf16: bf16 vs fp32 on 4 sample frames: PSNR" in caplog.text
    gate = stored_gate(plan.path, "bf16")
    assert gate is not None and gate.passed and gate.psnr_db >= 35 and gate.samples == len(gate_samples(plan))
    rng = np.random.default_rng(4)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (3, 16, 24, 3), dtype=np.uint8), 4, 1), 4, 2)
    exact = Upscaler(read_upscaler(sr["x4"]))(frames)
    assert up(frames).shape == exact.shape == (3, 256, 384, 3) and psnr(up(frames), exact) > 35


def test_bf16_that_fails_its_gate_runs_fp32_and_says_why(song, cancelling, tiny_onnx, tmp_path, caplog, capsys):
    native_bf16()
    plan = replace(read_upscaler(cancelling), precision="bf16")
    with caplog.at_level("WARNING", logger="ganterp_fast.engine.backends.upscaler"):
        up = open_upscaler(plan, device="cpu")
    assert up.precision == "fp32" and "fails the bf16 quality gate" in caplog.text and "PSNR" in caplog.text
    frames = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(up(frames), np.repeat(np.repeat(frames, 2, 1), 2, 2))  # fp32: exact
    out = tmp_path / "out.mp4"
    args = ["render", str(song), "-o", str(out), "--model", str(tiny_onnx), "--precision", "bf16", "--fps", "5"]
    capsys.readouterr()
    code = main([*args, "--upscaler", str(cancelling), "-q"])  # the gate stored: a render reads it
    assert code == 0 and decode(out)[0].shape == (256, 256, 3)
    assert "upscaler cancelling.onnx fails the bf16 quality gate" in capsys.readouterr().err
