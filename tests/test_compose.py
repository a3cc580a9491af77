"""Output sizes, fits, layouts with the source video, and previews: real renders, decoded and compared."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from media import render_options

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.backends.choice import open_generator
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.options import OutputOptions
from ganterp_fast.engine.video.compose import SIZE_PRESETS, parse_size

BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)
RATE = 22050


# ---------------------------------------------------------------- helpers


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def decode_timed(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def on_screen(frames: list[tuple[float, np.ndarray]], t: float) -> np.ndarray:
    """The source frame shown at time t: the last with a timestamp at or before it."""
    shown = [image for time, image in frames if time <= t + 1e-6]
    return shown[-1] if shown else frames[0][1]


def roughness(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels (low for a blurred picture)."""
    return float(np.abs(np.diff(image.astype(float), axis=1)).mean())


def scaled(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A direct upscale (lanczos; area down), then through the writer's yuv420p and back as a decoder does."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    up = width * height >= image.shape[0] * image.shape[1]
    interpolation = Interpolation.LANCZOS if up else Interpolation.AREA
    frame = frame.reformat(width=width, height=height, interpolation=interpolation)
    return as_decoded(frame.to_ndarray())


def as_decoded(image: np.ndarray) -> np.ndarray:
    """An RGB image after the writer's yuv420p (BT.709, limited range) and a decoder's conversion back."""
    if image.shape[0] % 2 or image.shape[1] % 2:
        return image
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    yuv = frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
    return yuv.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG).to_ndarray()


def options(tiny_onnx: Path, **output):
    crf = output.pop("crf", 0)  # lossless: what is left is yuv420p's chroma, which `scaled` applies too
    fps = output.pop("fps", "30")
    return render_options(
        model=str(tiny_onnx), precision="fp32", analysis=BUSY, crf=crf, fps=fps, output=OutputOptions(**output)
    )


def write_vfr_video(path: Path, samples: np.ndarray, times: list[float], size: tuple[int, int]) -> Path:
    """A video whose frames sit at the given irregular times (ms time base) with `samples` as audio."""
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, 1000)
        video.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=RATE, layout="mono")
        frames = media.frames_rgb(0, len(times), width, height)
        for index, t in enumerate(times):
            image = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
            image.pts = round(t * 1000)
            image.time_base = Fraction(1, 1000)
            container.mux(video.encode(image))
        container.mux(video.encode(None))
        chunk = 1024
        for first in range(0, len(samples), chunk):
            block = samples[first : first + chunk, :1].T.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, first
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compose-media")
    song = media.music(RATE, 2.0)
    rng = np.random.default_rng(5)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.015, 0.09, 60))])
    times = [float(t) for t in times if t < 2.0]
    return {
        "25fps": media.write_video(folder / "clip25.mp4", song, RATE, fps=25, size=(160, 90)),
        "vfr": write_vfr_video(folder / "vfr.mp4", song, times, (96, 96)),
        "wav": media.write_soundfile(folder / "song.wav", song, RATE),
    }


@pytest.fixture(scope="module")
def generator(tiny_onnx):
    return open_generator(tiny_onnx, device="cpu", precision="fp32")


def gan_frames(job, generator) -> np.ndarray:
    """The generator's own frames for a job's path (the compositor left out)."""
    plain = replace(job, composition=None)
    frames = plain.frames(generator)
    try:
        return np.concatenate(list(frames))
    finally:
        frames.close()


def render(source, output, opts, generator, **excerpt):
    job = prepare(source, output, opts, **excerpt)
    result = job.run(generator=generator)
    return job, result


# ---------------------------------------------------------------- sizes and fits


def test_sizes_and_presets_parse_and_odd_sizes_name_the_nearest_even():
    assert parse_size("1080p") == (1920, 1080) and parse_size("vertical") == (1080, 1920)
    assert parse_size("square") == (1080, 1080) and parse_size("640x360") == (640, 360)
    for name, (w, h) in SIZE_PRESETS.items():
        assert parse_size(name) == (w, h) and w % 2 == 0 and h % 2 == 0
    with pytest.raises(InputError, match="use 256x144"):
        OutputOptions(size="255x144")
    with pytest.raises(InputError, match="preset"):
        OutputOptions(size="huge")
    with pytest.raises(InputError, match="fit must be"):
        OutputOptions(fit="stretch")


@pytest.mark.parametrize("fit", ["pad", "crop", "blur"])
def test_fit_in_a_wide_frame(clips, tiny_onnx, generator, tmp_path, fit):
    out = tmp_path / f"{fit}.mp4"
    job, result = render(clips["wav"], out, options(tiny_onnx, size="256x144", fit=fit), generator, duration=0.5)
    decoded = decode(out)
    gan = gan_frames(job, generator)
    assert len(decoded) == result.frames == len(gan) == 15
    assert decoded[0].shape == (144, 256, 3) and (result.width, result.height) == (256, 144)
    for got, frame in zip(decoded, gan):
        if fit == "crop":  # the centre of the frame at 16:9, filling the whole picture
            cover = scaled(frame, 256, 256)[56:200]
            assert media.psnr(got, cover) > 30
            continue
        centre = got[:, 56:200]
        assert media.psnr(centre, scaled(frame, 144, 144)) > 30
        sides = np.concatenate([got[:, :50], got[:, 206:]], axis=1)
        if fit == "pad":
            assert sides.max() <= 20  # black bars (within x264's ringing)
        else:  # blurred: smooth (little energy between neighbours), yet coloured like the frame
            cover = scaled(frame, 256, 256)[56:200]
            blurred = roughness(got[:, :50]) + roughness(got[:, 206:])
            assert blurred < (roughness(cover[:, :50]) + roughness(cover[:, 206:])) / 3
            unblurred = np.concatenate([cover[:, :50], cover[:, 206:]], axis=1)
            assert abs(sides.mean() - unblurred.mean()) < 12


@pytest.mark.parametrize("preset", ["720p", "vertical", "square"])
def test_presets_keep_their_aspect(clips, tiny_onnx, generator, tmp_path, preset):
    """Each preset's aspect, at its full size (720p) or as a preview (at most 512 px)."""
    out = tmp_path / f"{preset}.mp4"
    full = preset == "720p"
    opts = options(tiny_onnx, size=preset, fps="10", preview=not full)
    job, result = render(clips["wav"], out, opts, generator, duration=0.5)
    decoded = decode(out)
    w, h = SIZE_PRESETS[preset]
    height, width = decoded[0].shape[:2]
    assert abs(width / height - w / h) < 0.01 and (width, height) == (result.width, result.height)
    assert (width, height) == ((w, h) if full else (round(512 * w / max(w, h)), round(512 * h / max(w, h))))
    gan = gan_frames(job, generator)
    side = min(width, height)
    x, y = (width - side) // 2, (height - side) // 2
    assert media.psnr(decoded[-1][y : y + side, x : x + side], scaled(gan[-1], side, side)) > 30


# ---------------------------------------------------------------- layouts


def test_side_by_side_follows_the_25fps_source_frame_by_frame(clips, tiny_onnx, generator, tmp_path):
    out = tmp_path / "sbs.mp4"
    opts = options(tiny_onnx, size="512x144", layout="side-by-side")
    job, result = render(clips["25fps"], out, opts, generator, start=0.3, duration=1.2)
    decoded = decode(out)
    source = decode_timed(clips["25fps"])
    gan = gan_frames(job, generator)
    assert len(decoded) == result.frames == 36 and decoded[0].shape == (144, 512, 3)
    for index, (got, frame) in enumerate(zip(decoded, gan)):
        t = 0.3 + index / 30
        right = scaled(frame, 144, 144)
        assert media.psnr(got[:, 256 + 56 : 256 + 200], right) > 30
        expected = scaled(on_screen(source, t), 256, 144)
        match = media.psnr(got[:, :256], expected)
        assert match > 30, (index, match)
        for other in (t - 0.04, t + 0.04):  # the neighbouring source frames do not match as well
            assert match > media.psnr(got[:, :256], scaled(on_screen(source, other), 256, 144)) + 3


def test_stack_follows_a_variable_frame_rate_source(clips, tiny_onnx, generator, tmp_path):
    out = tmp_path / "stack.mp4"
    job, result = render(clips["vfr"], out, options(tiny_onnx, layout="stack"), generator, start=0.5, duration=1.0)
    decoded = decode(out)
    source = decode_timed(clips["vfr"])
    gan = gan_frames(job, generator)
    assert decoded[0].shape == (256, 128, 3) and len(decoded) == 30  # 128 x 128 source above, 128 x 128 GAN
    matched = 0
    for index, (got, frame) in enumerate(zip(decoded, gan)):
        assert media.psnr(got[128:], as_decoded(frame)) > 30
        expected = scaled(on_screen(source, 0.5 + index / 30), 128, 128)
        assert media.psnr(got[:128], expected) > 30, index
        matched += 1
    assert matched == 30


@pytest.mark.parametrize("corner", ["bottom-right", "top-left"])
def test_pip_sits_in_its_corner(clips, tiny_onnx, generator, tmp_path, corner):
    out = tmp_path / f"pip-{corner}.mp4"
    opts = options(tiny_onnx, size="256x144", layout="pip", pip_corner=corner, pip_size=0.25)
    job, _ = render(clips["25fps"], out, opts, generator, duration=0.5)
    decoded = decode(out)
    source = decode_timed(clips["25fps"])
    margin, w, h = round(0.03 * 144), 64, 36  # a quarter of the width at the source's 16:9
    x = 256 - margin - w if corner == "bottom-right" else margin
    y = 144 - margin - h if corner == "bottom-right" else margin
    for index, got in enumerate(decoded):
        inset = got[y : y + h, x : x + w]
        assert media.psnr(inset, scaled(on_screen(source, index / 30), w, h)) > 28
    gan = gan_frames(job, generator)
    assert media.psnr(decoded[0][:, 56:200][20:110, 20:120], scaled(gan[0], 144, 144)[20:110, 20:120]) > 30


def test_layout_segments_equal_a_single_pass(clips, tiny_onnx, generator, tmp_path):
    """Segments seek the source video to their own first frame: lossless segments equal one pass."""
    opts = options(tiny_onnx, size="256x72", layout="side-by-side", crf=0)
    job, _ = render(clips["25fps"], tmp_path / "whole.mp4", opts, generator, duration=1.5)
    shipped = pickle.loads(pickle.dumps(job))  # as a scale-out worker gets it
    parts = [
        shipped.render_segment(a, b, tmp_path / f"part{a}.mp4", generator=generator) for a, b in ((17, 45), (0, 17))
    ][::-1]
    whole = decode(tmp_path / "whole.mp4")
    pieces = decode(parts[0]) + decode(parts[1])
    assert len(whole) == len(pieces) == 45
    for index, (a, b) in enumerate(zip(whole, pieces)):
        assert np.array_equal(a, b), index


def test_sync_and_frame_count_with_a_layout(clips, tiny_onnx, generator, tmp_path):
    out = tmp_path / "synced.mp4"
    _, result = render(clips["25fps"], out, options(tiny_onnx, layout="side-by-side"), generator, duration=1.5)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        audio_s = float(audio.duration * audio.time_base)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == result.frames == 45
    assert abs(audio_s - frames / 30) < 1 / 30


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_layout_of_an_audio_only_input_is_refused(clips, tiny_onnx, tmp_path):
    out = tmp_path / "never.mp4"
    result = cli("render", clips["wav"], "-o", out, "--model", tiny_onnx, "--layout", "side-by-side", "-q")
    assert result.returncode == 2, result.stderr
    assert "no video stream" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())
    result = cli("render", clips["wav"], "-o", out, "--model", tiny_onnx, "--size", "721x405", "-q")
    assert result.returncode == 2 and "722x406" in result.stderr and not out.exists()


# ---------------------------------------------------------------- preview


def test_preview_frames_equal_the_full_renders_at_the_same_times(clips, tiny_onnx, tmp_path):
    full, preview = tmp_path / "full.mp4", tmp_path / "preview.mp4"
    common = ("--model", tiny_onnx, "--precision", "fp32", "--crf", "0", "--size", "256x144", "--duration", "2")
    common += ("--layout", "pip", "--threshold", "2e-3", "--inflection-type", "both")
    done = cli("render", clips["25fps"], "-o", full, *common)
    assert done.returncode == 0, done.stderr
    done = cli("render", clips["25fps"], "-o", preview, "--preview", *common)
    assert done.returncode == 0, done.stderr
    assert "full render (60 frames at 30 fps) would take about" in done.stdout
    whole, quick = decode_timed(full), decode_timed(preview)
    assert len(whole) == 60 and len(quick) == 12
    with av.open(str(preview)) as container:
        assert container.streams.video[0].average_rate == 6
    for k, (t, image) in enumerate(quick):
        assert abs(t - k / 6) < 1e-3 and abs(whole[5 * k][0] - t) < 1e-3
        assert np.array_equal(image, whole[5 * k][1]), k


def test_preview_caps_the_size_and_encodes_fast(clips, tiny_onnx, generator, tmp_path):
    opts = options(tiny_onnx, size="1080p", preview=True)
    job = prepare(clips["wav"], tmp_path / "p.mp4", opts, duration=1.0)
    assert (job.width, job.height) == (512, 288) and job.fps == 6 and job.num_frames == 6
    assert job.encode_options().preset == "ultrafast" and job.full_frames == 30
    result = job.run(generator=generator)
    assert result.full_render_seconds > 0 and result.full_frames == 30
    assert os.path.getsize(result.output) > 0


# ---------------------------------------------------------------- a generator whose frames are not square


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A foreign generator of 96 x 64 frames (float [0, 1] out) and its generator."""
    from foreign_models import stylegan_like

    path = stylegan_like(tmp_path_factory.mktemp("wide") / "wide.onnx", size=(64, 96), output="nchw01", seed=3)
    return path, open_generator(path, device="cpu", precision="fp32")


def wide_options(model: Path, **output):
    flat = {"model": str(model), "model_range": "0,1", "precision": "fp32", "crf": 0, "fps": "30"}
    return render_options(**flat, analysis=BUSY, output=OutputOptions(**output))


@pytest.mark.parametrize("layout", ["side-by-side", "stack", "pip"])
def test_layouts_keep_the_aspect_of_frames_that_are_not_square(clips, wide_model, tmp_path, layout):
    """Without --size, the GAN cell is the generator's own 96 x 64 frame, pasted unscaled beside,
    below or under the source picture (which keeps its own aspect)."""
    model, generator = wide_model
    source = clips["vfr" if layout == "stack" else "25fps"]  # 96 x 96 above the GAN, 160 x 90 beside it
    job, _ = render(source, tmp_path / "out.mp4", wide_options(model, layout=layout), generator, duration=0.5)
    decoded, gan = decode(tmp_path / "out.mp4"), gan_frames(job, generator)
    assert gan.shape[1:] == (64, 96, 3) and len(decoded) == len(gan) == 15
    shape, cell = {
        "side-by-side": ((64, 114 + 96, 3), (slice(0, 64), slice(114, 210))),  # 64 px high at 16:9: 114 wide
        "stack": ((96 + 64, 96, 3), (slice(96, 160), slice(0, 96))),
        "pip": ((64, 96, 3), (slice(0, 30), slice(0, 60))),  # the GAN frame's top left, clear of the inset
    }[layout]
    assert decoded[0].shape == shape
    for got, frame in zip(decoded, gan):
        expected = as_decoded(frame)
        if layout == "pip":
            got, expected = got[cell], expected[cell]
        else:
            got = got[cell]
        assert media.psnr(got, expected) > 35


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_a_sized_layout_fits_frames_that_are_not_square(clips, wide_model, tmp_path, fit):
    """--size with a layout: the 3:2 frame fitted into its 256 x 144 half by --fit as for any frame
    (pad: scaled to 216 x 144 between 20 px bars; crop: scaled to 256 x 170, its centre kept)."""
    model, generator = wide_model
    opts = wide_options(model, layout="side-by-side", size="512x144", fit=fit)
    job, _ = render(clips["25fps"], tmp_path / "out.mp4", opts, generator, duration=0.5)
    decoded, gan = decode(tmp_path / "out.mp4"), gan_frames(job, generator)
    for got, frame in zip(decoded, gan):
        half = got[:, 256:]
        if fit == "pad":
            assert half[:, :18].max() <= 20 and half[:, -18:].max() <= 20  # the bars
            assert media.psnr(half[:, 20:236], scaled(frame, 216, 144)) > 30
        else:
            assert media.psnr(half, scaled(frame, 256, 170)[13:157]) > 30
