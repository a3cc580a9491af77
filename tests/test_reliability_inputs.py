"""Reliability of inputs and options: every bad input file or option past its bounds is one
line and exit 2 with nothing written; every shape of good input renders in sync; the edges
of every option and any path (unicode, spaces) work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import media
import numpy as np
import pytest
from reliability_helpers import (
    FAST,
    SONG_SECONDS,
    assert_error,
    cli,
    decoded_summary,
    listing,
    partials,
    run_all,
)

from ganterp_fast.engine.audio.decode import read_channel0
from ganterp_fast.engine.latent.path import frame_count

# ---------------------------------------------------------------- inputs


BAD_INPUTS = {
    "missing": "does not exist",
    "directory": "is a directory",
    "empty": "is empty",
    "random-bytes": "not an audio or video file",
    "random-bytes-mp3": "not an audio or video file",
    "text-mp3": "not an audio or video file",
    "truncated-mp4": "not an audio or video file",
    "no-audio-track": "no audio track",
    "header-only-wav": "no audio samples",
}


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory, tiny_onnx):
    folder = tmp_path_factory.mktemp("bad inputs")
    inputs = media.write_bad_inputs(folder / "in")
    before = listing(folder / "in")
    commands = {}
    for kind in BAD_INPUTS:
        (folder / kind).mkdir()
        commands[kind] = ["render", inputs[kind], "-o", folder / kind / "video.mp4", "--model", tiny_onnx, *FAST]
    return folder, inputs, before, run_all(commands)


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_exit_2_and_writes_nothing(bad_input_results, kind):
    folder, inputs, before, results = bad_input_results
    assert_error(results[kind], 2, BAD_INPUTS[kind], inputs[kind].name)
    assert listing(folder / kind) == []
    assert listing(folder / "in") == before  # nothing beside the input either


GOOD_INPUTS: dict[str, Callable[[Path], Path]] = {
    "8k-mono-wav": lambda d: media.write_soundfile(d / "a.wav", media.music(8000, 1.5), 8000),
    "11k-stereo-flac": lambda d: media.write_soundfile(d / "a.flac", media.music(11025, 1.5, channels=2), 11025),
    "44k-stereo-mp3": lambda d: media.write_pyav_audio(
        d / "a.mp3", media.music(44100, 1.5, channels=2), 44100, codec="libmp3lame", bitrate=128000
    ),
    "48k-5.1-m4a": lambda d: media.write_pyav_audio(
        d / "a.m4a", media.music(48000, 1.5, channels=6), 48000, codec="aac", container_format="ipod"
    ),
    "96k-5.1-wav": lambda d: media.write_soundfile(d / "a.wav", media.music(96000, 1.5, channels=6), 96000),
    "22k-stereo-mkv-video": lambda d: media.write_video(
        d / "a.mkv", media.music(22050, 1.5, channels=2), 22050, audio_codec="libmp3lame"
    ),
    "silence": lambda d: media.write_soundfile(d / "a.wav", np.zeros((22050 * 2, 1), np.float32), 22050),
    "shorter-than-the-windows-0.05s": lambda d: media.write_soundfile(d / "a.wav", media.music(22050, 0.05), 22050),
    "truncated-mkv-video": lambda d: media.truncate(
        media.write_video(d / "whole.mkv", media.music(22050, 3.0, channels=2), 22050, audio_codec="aac"),
        d / "a.mkv",
        keep=0.5,
    ),
}
# Channels the AAC soundtrack keeps: mono and stereo as they are, 5.1 as 5.1.
GOOD_CHANNELS = {
    "8k-mono-wav": 1,
    "11k-stereo-flac": 2,
    "44k-stereo-mp3": 2,
    "48k-5.1-m4a": 6,
    "96k-5.1-wav": 6,
    "22k-stereo-mkv-video": 2,
    "silence": 1,
    "shorter-than-the-windows-0.05s": 1,
    "truncated-mkv-video": 2,
}
GOOD_FPS = 10


@pytest.fixture(scope="module")
def good_input_results(tmp_path_factory, tiny_onnx):
    root = tmp_path_factory.mktemp("good inputs")
    commands, paths = {}, {}
    for kind, write in GOOD_INPUTS.items():
        folder = root / kind
        folder.mkdir()
        paths[kind] = write(folder)
        commands[kind] = [
            "render",
            paths[kind],
            "-o",
            folder / "video.mp4",
            "--model",
            tiny_onnx,
            "--fps",
            GOOD_FPS,
            *FAST,
        ]
    return paths, run_all(commands, workers=2)


@pytest.mark.parametrize("kind", list(GOOD_INPUTS))
def test_every_rate_channel_count_and_length_renders_in_sync(good_input_results, kind):
    paths, results = good_input_results
    result = results[kind]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    source = paths[kind]
    got = decoded_summary(source.parent / "video.mp4")
    samples, rate = read_channel0(source)
    seconds = len(samples) / rate
    assert got["codec"] == "h264" and got["fps"] == GOOD_FPS
    assert got["audio_rate"] == rate and got["audio_channels"] == GOOD_CHANNELS[kind]
    assert got["frames"] == frame_count(seconds, Fraction(GOOD_FPS))
    frame = 1 / GOOD_FPS
    assert abs(got["audio_seconds"] - seconds) < frame  # the whole soundtrack, and no more
    assert abs(got["frames"] * frame - got["audio_seconds"]) <= frame  # video and audio end together
    if kind == "truncated-mkv-video":
        assert "may be truncated" in result.stderr and 0.5 < seconds < 2.5
    else:
        assert result.stderr == ""
    assert partials(source.parent) == []


def test_unicode_and_spaces_in_every_path(tiny_onnx, tmp_path):
    folder = tmp_path / "música con espacios ♪"
    folder.mkdir()
    source = media.write_soundfile(folder / "canción été 曲.wav", media.music(8000, 1.0), 8000)
    beside = cli("render", source, "--model", tiny_onnx, "--fps", 10, *FAST)  # default output: beside the input
    assert beside.returncode == 0, beside.stderr
    out_folder = tmp_path / "vidéos — finales"
    out_folder.mkdir()
    named = cli("render", source, "-o", out_folder / "ü ñ 🎵.mp4", "--model", tiny_onnx, "--fps", 10, *FAST)
    assert named.returncode == 0, named.stderr
    for video in (folder / "canción été 曲.mp4", out_folder / "ü ñ 🎵.mp4"):
        assert decoded_summary(video)["frames"] == 10
    missing = cli("render", folder / "ñoño ♪.wav", "-o", out_folder / "x.mp4", "--model", tiny_onnx, *FAST)
    assert_error(missing, 2, "ñoño ♪.wav", "does not exist")
    assert partials(folder, out_folder) == []


# ---------------------------------------------------------------- options


RENDER_CASES = [
    "fps-0",
    "fps-negative",
    "fps-below-1",
    "fps-absurd",
    "fps-just-past-1000",
    "fps-word",
    "fps-nan",
    "fps-divide-by-0",
    "truncation-0",
    "truncation-above-1",
    "truncation-negative",
    "truncation-nan",
    "batch-size-0",
    "batch-size-negative",
    "batch-size-word",
    "start-past-the-end",
    "start-at-the-end",
    "start-negative",
    "duration-0",
    "duration-negative",
    "duration-inf",
    "crf-negative",
    "crf-52",
    "crf-fraction",
    "encoder-threads-negative",
    "preset-unknown",
    "threshold-negative",
    "threshold-inf",
    "absolute-threshold-nan",
    "rolling-length-0",
    "rolling-length-negative",
    "smoothing-negative",
    "inflection-type-unknown",
    "threads-0",
    "threads-absurd",
    "seed-negative",
    "class-index-1000",
    "class-index-negative",
    "class-unknown-name",
    "class-ambiguous-name",
    "class-fraction",
    "model-unknown-name",
    "model-missing-onnx",
    "model-text-named-onnx",
    "model-half-an-onnx",
    "model-onnx-not-biggan",
    "model-an-audio-file",
    "model-empty-directory",
    "precision-not-the-models",
    "weights-random-with-an-onnx",
    "device-unknown",
    "example-and-input",
    "device-cuda-without-a-gpu",
    "codec-unknown",
    "codec-nvenc-without-one",
    "tensorrt-without-it",
    "tensorrt-on-the-cpu",
]


def _option_cases(song: Path, tiny_onnx: Path, folder: Path) -> dict[str, tuple[list[object], list[str], bool]]:
    """name -> (extra arguments, fragments of the message, argparse's usage first)."""
    (folder / "notes.onnx").write_text("not a model\n")
    (folder / "empty dir").mkdir()
    data = tiny_onnx.read_bytes()
    (folder / "half.onnx").write_bytes(data[: len(data) // 2])
    identity = _identity_onnx(folder / "identity.onnx")
    cases: dict[str, tuple[list[object], list[str], bool]] = {
        "fps-0": (["--fps", "0"], ["--fps must", "'0'", "1 to 1000"], False),
        "fps-negative": (["--fps", "-5"], ["'-5'", "1 to 1000"], False),
        "fps-below-1": (["--fps", "0.5"], ["'0.5'", "1 to 1000"], False),
        "fps-absurd": (["--fps", "1e9"], ["'1e9'", "1 to 1000"], False),
        "fps-just-past-1000": (["--fps", "1000.5"], ["'1000.5'", "1 to 1000"], False),
        "fps-word": (["--fps", "fast"], ["'fast'", "30000/1001", "native"], False),
        "fps-nan": (["--fps", "nan"], ["'nan'", "30000/1001"], False),
        "fps-divide-by-0": (["--fps", "30/0"], ["'30/0'", "30000/1001"], False),
        "truncation-0": (["--truncation", "0"], ["--truncation must", "0.0", "(0, 1]"], False),
        "truncation-above-1": (["--truncation", "1.01"], ["1.01", "(0, 1]"], False),
        "truncation-negative": (["--truncation", "-0.4"], ["-0.4", "(0, 1]"], False),
        "truncation-nan": (["--truncation", "nan"], ["nan", "(0, 1]"], False),
        "batch-size-0": (["--batch-size", "0"], ["--batch-size must", "got 0", ">= 1"], False),
        "batch-size-negative": (["--batch-size", "-4"], ["--batch-size must", "-4", ">= 1"], False),
        "batch-size-word": (["--batch-size", "four"], ["--batch-size", "'four'"], True),
        "start-past-the-end": (["--start", "100"], ["100", "3.00 s long"], False),
        "start-at-the-end": (["--start", "3"], ["--start 3 s", "3.00 s long"], False),
        "start-negative": (["--start", "-1"], ["--start must", "-1", ">= 0"], False),
        "duration-0": (["--duration", "0"], ["--duration must", "0.0", "positive number of seconds"], False),
        "duration-negative": (["--duration", "-2"], ["-2", "positive number of seconds"], False),
        "duration-inf": (["--duration", "inf"], ["inf", "positive number of seconds"], False),
        "crf-negative": (["--crf", "-1"], ["-1", "0..51"], False),
        "crf-52": (["--crf", "52"], ["--crf must", "52", "0..51"], False),
        "crf-fraction": (["--crf", "18.5"], ["--crf", "'18.5'"], True),
        "encoder-threads-negative": (["--encoder-threads", "-1"], ["-1", ">= 0"], False),
        "preset-unknown": (["--preset", "warp"], ["'warp'", "ultrafast"], True),
        "threshold-negative": (["--threshold", "-0.1"], ["-0.1", ">= 0"], False),
        "threshold-inf": (["--threshold", "inf"], ["inf", "finite"], False),
        "absolute-threshold-nan": (["--absolute-threshold", "nan"], ["nan", "finite"], False),
        "rolling-length-0": (["--rolling-length", "0"], ["got 0", ">= 1"], False),
        "rolling-length-negative": (["--rolling-length", "-5"], ["-5", ">= 1"], False),
        "smoothing-negative": (["--smoothing", "-1"], ["--smoothing must", "-1", ">= 0"], False),
        "inflection-type-unknown": (["--inflection-type", "middle"], ["'middle'", "min"], True),
        "threads-0": (["--threads", "0"], ["--threads must", "got 0", ">= 1"], False),
        "threads-absurd": (["--threads", "100000"], ["--threads 100000: use 1 to"], False),
        "seed-negative": (["--seed", "-1"], ["--seed must", "-1", ">= 0"], False),
        "class-index-1000": (["--classes", "1000"], ["--classes: class index 1000", "0 to 999"], False),
        "class-index-negative": (["--classes", "5,-1"], ["-1", "0 to 999"], False),
        "class-unknown-name": (
            ["--classes", "jellyfish, not a class"],
            ["'not a class'", "ganterp-fast classes"],
            False,
        ),
        "class-ambiguous-name": (["--classes", "crane"], ["'crane'", "index"], False),
        "class-fraction": (["--classes", "1.5"], ["'1.5'", "ganterp-fast classes"], False),
        "model-unknown-name": (["--model", "biggan-deep-1024"], ["biggan-deep-1024", "biggan-deep-128"], False),
        "model-missing-onnx": (["--model", folder / "missing.onnx"], ["missing.onnx", "does not exist"], False),
        "model-text-named-onnx": (["--model", folder / "notes.onnx"], ["notes.onnx", "ganterp-fast export"], False),
        "model-half-an-onnx": (["--model", folder / "half.onnx"], ["half.onnx", "only part of one"], False),
        "model-onnx-not-biggan": (
            ["--model", identity],
            ["identity.onnx", "a generator needs", "ganterp-fast export"],
            False,
        ),
        "model-an-audio-file": (["--model", song], [song.name, "pretrained name"], False),
        "model-empty-directory": (["--model", folder / "empty dir"], ["empty dir", "config.json"], False),
        "precision-not-the-models": (["--precision", "fp16"], ["fp16", "ready fp32 model"], False),
        "weights-random-with-an-onnx": (["--weights", "random"], ["--weights random", "ready model"], False),
        "device-unknown": (["--device", "tpu"], ["--device 'tpu'", "cuda"], False),
        "example-and-input": (["--example"], ["--example", "not both"], False),
    }
    if not _cuda_offered():
        cases["device-cuda-without-a-gpu"] = (["--device", "cuda"], ["'cuda'", "device 'cpu'"], False)
    cases["codec-unknown"] = (["--codec", "h265"], ["'h265'", "libx264"], True)
    cases["tensorrt-on-the-cpu"] = (["--tensorrt", "--device", "cpu"], ["TensorRT", "device 'cuda'"], False)
    if "h264_nvenc" not in _working_encoders():
        cases["codec-nvenc-without-one"] = (["--codec", "h264_nvenc"], ["h264_nvenc", "libx264 or auto"], False)
    if not _tensorrt_offered():
        cases["tensorrt-without-it"] = (["--tensorrt"], ["TensorRT", "drop the TensorRT option"], False)
    return cases


def _working_encoders() -> tuple[str, ...]:
    from ganterp_fast.engine.video.encode import probe_h264_encoders

    return probe_h264_encoders()


def _tensorrt_offered() -> bool:
    import onnxruntime

    return "TensorrtExecutionProvider" in onnxruntime.get_available_providers()


def _cuda_offered() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _identity_onnx(path: Path) -> Path:
    """A valid ONNX model that is not a BigGAN export."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), os.fspath(path))
    return path


@pytest.fixture(scope="module")
def render_option_results(song, tiny_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("options")
    cases = _option_cases(song, tiny_onnx, folder)
    assert set(cases) <= set(RENDER_CASES)
    commands = {}
    for name, (extra, _, _) in cases.items():
        (folder / name).mkdir()
        commands[name] = ["render", song, "-o", folder / name / "v.mp4", "--model", tiny_onnx, *FAST, *extra]
    return folder, cases, run_all(commands)


@pytest.mark.parametrize("name", RENDER_CASES)
def test_render_option_past_its_bounds_is_one_line_exit_2(render_option_results, song, name):
    folder, cases, results = render_option_results
    if name not in cases:
        pytest.skip("this machine has what the case lacks (CUDA, NVENC or TensorRT)")
    _, fragments, usage = cases[name]
    assert_error(results[name], 2, *fragments, usage=usage)
    assert listing(folder / name) == []
    assert partials(song.parent) == []


def test_render_options_at_their_bounds_work(song, tiny_onnx, tmp_path):
    """The edges themselves are allowed: 1 and 1000 fps, truncation 1, crf 0 and 51, batch 1,
    threshold 0, rolling length 1, smoothing 0, classes 0 and 999, a start just before the end."""
    runs = {
        "fps-1000": ["--fps", "1000", "--duration", "0.01"],
        "fps-1": ["--fps", "1", "--truncation", "1", "--crf", "51", "--batch-size", "1"],
        "analysis-edges": [
            "--fps",
            "2",
            "--threshold",
            "0",
            "--rolling-length",
            "1",
            "--smoothing",
            "0",
            "--classes",
            "0, 999",
            "--crf",
            "0",
        ],
        "last-second": ["--fps", "5", "--start", str(SONG_SECONDS - 0.5)],
    }
    results = run_all(
        {
            key: ["render", song, "-o", tmp_path / f"{key}.mp4", "--model", tiny_onnx, *FAST, *extra]
            for key, extra in runs.items()
        },
        workers=2,
    )
    for key, result in results.items():
        assert result.returncode == 0, (key, result.stderr)
    assert decoded_summary(tmp_path / "fps-1000.mp4")["frames"] == 10
    assert decoded_summary(tmp_path / "fps-1.mp4")["frames"] == 3
    assert decoded_summary(tmp_path / "last-second.mp4")["frames"] == frame_count(0.5, Fraction(5))


@pytest.fixture(scope="module")
def analyze_option_results(song, tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze options")
    (folder / "a file").write_text("x")
    cases = {
        "threshold-nan": (["--threshold", "nan"], ["nan", "finite"], False),
        "threshold-inf": (["--threshold", "inf"], ["inf", "finite"], False),
        "absolute-threshold-inf": (["--absolute-threshold", "inf"], ["inf", "finite"], False),
        "rolling-length-negative": (["--rolling-length", "-5"], ["-5", ">= 1"], False),
        "rolling-length-float": (["--rolling-length", "1e3"], ["--rolling-length", "'1e3'"], True),
        "smoothing-fraction": (["--smoothing", "2.5"], ["--smoothing", "'2.5'"], True),
        "start-nan": (["--start", "nan"], ["nan", ">= 0"], False),
        "start-at-the-end": (["--start", "3"], ["start 3 s", "3.00 s long"], False),
        "duration-negative": (["--duration", "-1"], ["-1", "positive number of seconds"], False),
        "duration-inf": (["--duration", "inf"], ["inf", "positive number of seconds"], False),
        "inflection-type-unknown": (["--inflection-type", "all"], ["'all'", "both"], True),
        "plot-not-an-image": (["--plot", folder / "plot.txt"], ["plot.txt", ".png"], False),
        "json-is-the-input": (["--json", song, "-y"], [song.name, "is the input file"], False),
        "json-and-plot-the-same": (
            ["--json", folder / "a.png", "--plot", folder / "a.png"],
            ["a.png", "different names"],
            False,
        ),
        "json-under-a-file": (["--json", folder / "a file" / "a.json"], ["a file", "not a folder"], False),
        "json-in-a-missing-folder": (["--json", folder / "nope" / "a.json"], ["nope", "does not exist"], False),
        "example-and-input": (["--example"], ["--example", "not both"], False),
    }
    before = listing(folder)
    results = run_all({name: ["analyze", song, "-q", *extra] for name, (extra, _, _) in cases.items()})
    return folder, before, cases, results


ANALYZE_CASES = [
    "threshold-nan",
    "threshold-inf",
    "absolute-threshold-inf",
    "rolling-length-negative",
    "rolling-length-float",
    "smoothing-fraction",
    "start-nan",
    "start-at-the-end",
    "duration-negative",
    "duration-inf",
    "inflection-type-unknown",
    "plot-not-an-image",
    "json-is-the-input",
    "json-and-plot-the-same",
    "json-under-a-file",
    "json-in-a-missing-folder",
    "example-and-input",
]


@pytest.mark.parametrize("name", ANALYZE_CASES)
def test_analyze_option_past_its_bounds_is_one_line_exit_2(analyze_option_results, song, name):
    folder, before, cases, results = analyze_option_results
    _, fragments, usage = cases[name]
    assert_error(results[name], 2, *fragments, command="analyze", usage=usage)
    assert listing(folder) == before
    assert song.read_bytes()[:4] == b"RIFF"  # the input is never overwritten


def test_a_bare_command_prints_help_and_exits_2():
    result = cli()
    assert result.returncode == 2 and "COMMAND" in result.stderr and "Traceback" not in result.stderr
