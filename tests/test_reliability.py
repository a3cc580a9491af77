"""Reliability as a user meets it: every bad input, option and fault gets one clear line and
the documented exit code, nothing is written, no temporary file is left, and an existing
output survives anything short of a finished render with --overwrite.

Most cases run the real command (`python -m ganterp_fast`) in a subprocess; the ones that
need a fault injected patch the library in that subprocess (or in-process) at the layer the
fault comes from: the output file's writes, the generator session, the disk's size limit.
Independent commands run a few at a time, so the whole file stays quick on two cores.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest

from ganterp_fast.cli import main as cli_main
from ganterp_fast.engine import errors, models
from ganterp_fast.engine.analysis import AnalysisOptions
from ganterp_fast.engine.audio import read_channel0
from ganterp_fast.engine.errors import RenderError
from ganterp_fast.engine.path import frame_count
from ganterp_fast.engine.render import RenderOptions, _is_out_of_memory, render

README = Path(__file__).resolve().parents[1] / "README.md"
SONG_SECONDS = 3.0
FAST = ["-q", "--preset", "ultrafast"]
# Analysis settings that find several inflection points in a few seconds.
BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


# ---------------------------------------------------------------- helpers


def cli(*args: object, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganterp_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def cli_patched(prelude: str, *args: object, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The command line after `prelude` (Python that injects a fault) ran in the same process."""
    code = textwrap.dedent(prelude) + "\nimport sys\nfrom ganterp_fast.cli.main import main\nraise SystemExit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_all(commands: dict[str, list[object]], *, workers: int = 4) -> dict[str, subprocess.CompletedProcess]:
    """Run independent commands a few at a time (most of each is Python starting up)."""
    with ThreadPoolExecutor(workers) as pool:
        futures = {key: pool.submit(cli, *args) for key, args in commands.items()}
        return {key: future.result() for key, future in futures.items()}


def assert_error(result: subprocess.CompletedProcess, code: int, *fragments: str, command: str = "render",
                 usage: bool = False) -> str:
    """Exit `code`, no traceback, and one error line (after argparse's usage where `usage`)
    naming every fragment. Returns the line."""
    stderr = result.stderr
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines, "no message at all"
    line = lines[-1]
    assert line.startswith(f"ganterp-fast {command}: error: "), stderr
    assert sum("error:" in item for item in lines) == 1, stderr
    if usage:
        assert lines[0].startswith("usage: "), stderr
    else:
        assert len(lines) == 1, stderr  # -q: the error is all there is
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def partials(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders for p in folder.iterdir() if "partial" in p.name)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def decoded_summary(path: Path) -> dict:
    """Frame count (from packets: no decoding), rate, and the audio stream's rate, channels and duration."""
    with av.open(os.fspath(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        summary = {
            "codec": video.codec_context.name,
            "fps": Fraction(video.average_rate),
            "audio_rate": audio.codec_context.sample_rate,
            "audio_channels": audio.codec_context.layout.nb_channels,
            "audio_seconds": float(audio.duration * audio.time_base),
        }
        summary["frames"] = sum(1 for packet in container.demux(video) if packet.size)
    return summary


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """Three seconds of music, 8 kHz mono: quick to analyse and to render."""
    return media.write_soundfile(tmp_path_factory.mktemp("song") / "song.wav", media.music(8000, SONG_SECONDS), 8000)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("ganterp_fast")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


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
    "44k-stereo-mp3": lambda d: media.write_pyav_audio(d / "a.mp3", media.music(44100, 1.5, channels=2), 44100,
                                                       codec="libmp3lame", bitrate=128000),
    "48k-5.1-m4a": lambda d: media.write_pyav_audio(d / "a.m4a", media.music(48000, 1.5, channels=6), 48000,
                                                    codec="aac", container_format="ipod"),
    "96k-5.1-wav": lambda d: media.write_soundfile(d / "a.wav", media.music(96000, 1.5, channels=6), 96000),
    "22k-stereo-mkv-video": lambda d: media.write_video(d / "a.mkv", media.music(22050, 1.5, channels=2), 22050,
                                                        audio_codec="libmp3lame"),
    "silence": lambda d: media.write_soundfile(d / "a.wav", np.zeros((22050 * 2, 1), np.float32), 22050),
    "shorter-than-the-windows-0.05s": lambda d: media.write_soundfile(d / "a.wav", media.music(22050, 0.05), 22050),
    "truncated-mkv-video": lambda d: media.truncate(
        media.write_video(d / "whole.mkv", media.music(22050, 3.0, channels=2), 22050, audio_codec="aac"),
        d / "a.mkv", keep=0.5),
}
# Channels the AAC soundtrack keeps: mono and stereo as they are, 5.1 as 5.1.
GOOD_CHANNELS = {"8k-mono-wav": 1, "11k-stereo-flac": 2, "44k-stereo-mp3": 2, "48k-5.1-m4a": 6, "96k-5.1-wav": 6,
                 "22k-stereo-mkv-video": 2, "silence": 1, "shorter-than-the-windows-0.05s": 1, "truncated-mkv-video": 2}
GOOD_FPS = 10


@pytest.fixture(scope="module")
def good_input_results(tmp_path_factory, tiny_onnx):
    root = tmp_path_factory.mktemp("good inputs")
    commands, paths = {}, {}
    for kind, write in GOOD_INPUTS.items():
        folder = root / kind
        folder.mkdir()
        paths[kind] = write(folder)
        commands[kind] = ["render", paths[kind], "-o", folder / "video.mp4", "--model", tiny_onnx, "--fps", GOOD_FPS, *FAST]
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


@pytest.fixture
def unwritable_folder(tmp_path) -> Iterator[Path]:
    """A folder this process cannot write into: permissions, or for root an immutable folder."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable (tmpfs?): no way to make a folder unwritable")
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("an immutable folder still counts as writable here")
        yield folder
    finally:
        subprocess.run([chattr, "-i", folder], capture_output=True)


def test_output_folder_problems_are_found_before_any_work(song, tmp_path, unwritable_folder):
    """Every output problem is exit 2 at once: a pretrained model name that would need an
    export (and the network) shows the model was never touched."""
    (tmp_path / "a file").write_text("not a folder")
    video_in = media.write_video(tmp_path / "clip.mp4", media.music(8000, 1.0), 8000)
    cases = {
        "missing-folder": (tmp_path / "no such folder" / "v.mp4", ["no such folder", "does not exist"]),
        "under-a-file": (tmp_path / "a file" / "v.mp4", ["a file", "not a folder"]),
        "deep-under-a-file": (tmp_path / "a file" / "x" / "v.mp4", ["a file", "not a folder"]),
        "unwritable": (unwritable_folder / "v.mp4", [unwritable_folder.name, "not writable"]),
        "a-directory": (tmp_path, [tmp_path.name, "is a directory"]),
        "not-a-video-suffix": (tmp_path / "v.avi", ["v.avi", ".mp4"]),
        "no-suffix": (tmp_path / "video", ["video", ".mkv"]),
    }
    commands = {key: ["render", song, "-o", out, "--model", "biggan-deep-512", *FAST] for key, (out, _) in cases.items()}
    commands["the-input-itself"] = ["render", video_in, "-o", video_in, "-y", "--model", "biggan-deep-512", *FAST]
    before = listing(tmp_path)
    results = run_all(commands)
    for key, (_, fragments) in cases.items():
        assert_error(results[key], 2, *fragments)
    assert_error(results["the-input-itself"], 2, "clip.mp4", "is the input file")
    assert listing(tmp_path) == before and listing(unwritable_folder) == []
    assert not list((Path(os.environ[models.CACHE_ENV]) / "models").glob("biggan-deep-512*"))
    assert video_in.read_bytes()[4:8] == b"ftyp"


# ---------------------------------------------------------------- options


RENDER_CASES = [
    "fps-0", "fps-negative", "fps-below-1", "fps-absurd", "fps-just-past-1000", "fps-word", "fps-nan", "fps-divide-by-0",
    "truncation-0", "truncation-above-1", "truncation-negative", "truncation-nan",
    "batch-size-0", "batch-size-negative", "batch-size-word", "start-past-the-end", "start-at-the-end",
    "start-negative", "duration-0", "duration-negative", "duration-inf", "crf-negative", "crf-52", "crf-fraction", "encoder-threads-negative",
    "preset-unknown", "threshold-negative", "threshold-inf", "absolute-threshold-nan", "rolling-length-0",
    "rolling-length-negative", "smoothing-negative", "inflection-type-unknown", "threads-0", "threads-absurd",
    "seed-negative", "class-index-1000", "class-index-negative", "class-unknown-name", "class-ambiguous-name",
    "class-fraction", "model-unknown-name", "model-missing-onnx", "model-text-named-onnx", "model-half-an-onnx",
    "model-onnx-not-biggan", "model-an-audio-file", "model-empty-directory", "precision-not-the-models",
    "weights-random-with-an-onnx", "device-unknown", "example-and-input", "device-cuda-without-a-gpu",
]


def _option_cases(song: Path, tiny_onnx: Path, folder: Path) -> dict[str, tuple[list[object], list[str], bool]]:
    """name -> (extra arguments, fragments of the message, argparse's usage first)."""
    (folder / "notes.onnx").write_text("not a model\n")
    (folder / "empty dir").mkdir()
    data = tiny_onnx.read_bytes()
    (folder / "half.onnx").write_bytes(data[: len(data) // 2])
    identity = _identity_onnx(folder / "identity.onnx")
    cases: dict[str, tuple[list[object], list[str], bool]] = {
        "fps-0": (["--fps", "0"], ["'0'", "1 to 1000"], False),
        "fps-negative": (["--fps", "-5"], ["'-5'", "1 to 1000"], False),
        "fps-below-1": (["--fps", "0.5"], ["'0.5'", "1 to 1000"], False),
        "fps-absurd": (["--fps", "1e9"], ["'1e9'", "1 to 1000"], False),
        "fps-just-past-1000": (["--fps", "1000.5"], ["'1000.5'", "1 to 1000"], False),
        "fps-word": (["--fps", "fast"], ["'fast'", "30000/1001", "native"], False),
        "fps-nan": (["--fps", "nan"], ["'nan'", "30000/1001"], False),
        "fps-divide-by-0": (["--fps", "30/0"], ["'30/0'", "30000/1001"], False),
        "truncation-0": (["--truncation", "0"], ["0.0", "(0, 1]"], False),
        "truncation-above-1": (["--truncation", "1.01"], ["1.01", "(0, 1]"], False),
        "truncation-negative": (["--truncation", "-0.4"], ["-0.4", "(0, 1]"], False),
        "truncation-nan": (["--truncation", "nan"], ["nan", "(0, 1]"], False),
        "batch-size-0": (["--batch-size", "0"], ["got 0", "at least 1"], False),
        "batch-size-negative": (["--batch-size", "-4"], ["-4", "at least 1"], False),
        "batch-size-word": (["--batch-size", "four"], ["--batch-size", "'four'"], True),
        "start-past-the-end": (["--start", "100"], ["100", "3.00 s long"], False),
        "start-at-the-end": (["--start", "3"], ["start 3 s", "3.00 s long"], False),
        "start-negative": (["--start", "-1"], ["-1", ">= 0"], False),
        "duration-0": (["--duration", "0"], ["0.0", "> 0"], False),
        "duration-negative": (["--duration", "-2"], ["-2", "> 0"], False),
        "duration-inf": (["--duration", "inf"], ["inf", "> 0"], False),
        "crf-negative": (["--crf", "-1"], ["-1", "0..51"], False),
        "crf-52": (["--crf", "52"], ["52", "0..51"], False),
        "crf-fraction": (["--crf", "18.5"], ["--crf", "'18.5'"], True),
        "encoder-threads-negative": (["--encoder-threads", "-1"], ["-1", ">= 0"], False),
        "preset-unknown": (["--preset", "warp"], ["'warp'", "ultrafast"], True),
        "threshold-negative": (["--threshold", "-0.1"], ["-0.1", ">= 0"], False),
        "threshold-inf": (["--threshold", "inf"], ["inf", "finite"], False),
        "absolute-threshold-nan": (["--absolute-threshold", "nan"], ["nan", "finite"], False),
        "rolling-length-0": (["--rolling-length", "0"], ["got 0", ">= 1"], False),
        "rolling-length-negative": (["--rolling-length", "-5"], ["-5", ">= 1"], False),
        "smoothing-negative": (["--smoothing", "-1"], ["-1", ">= 0"], False),
        "inflection-type-unknown": (["--inflection-type", "middle"], ["'middle'", "min"], True),
        "threads-0": (["--threads", "0"], ["got 0", "at least 1"], False),
        "threads-absurd": (["--threads", "100000"], ["100000", "1 to"], False),
        "seed-negative": (["--seed", "-1"], ["-1", ">= 0"], False),
        "class-index-1000": (["--classes", "1000"], ["1000", "0 to 999"], False),
        "class-index-negative": (["--classes", "5,-1"], ["-1", "0 to 999"], False),
        "class-unknown-name": (["--classes", "jellyfish, not a class"], ["'not a class'", "ganterp-fast classes"], False),
        "class-ambiguous-name": (["--classes", "crane"], ["'crane'", "index"], False),
        "class-fraction": (["--classes", "1.5"], ["'1.5'", "ganterp-fast classes"], False),
        "model-unknown-name": (["--model", "biggan-deep-1024"], ["biggan-deep-1024", "biggan-deep-128"], False),
        "model-missing-onnx": (["--model", folder / "missing.onnx"], ["missing.onnx", "does not exist"], False),
        "model-text-named-onnx": (["--model", folder / "notes.onnx"], ["notes.onnx", "ganterp-fast export"], False),
        "model-half-an-onnx": (["--model", folder / "half.onnx"], ["half.onnx", "only part of one"], False),
        "model-onnx-not-biggan": (["--model", identity], ["identity.onnx", "not a ganterp-fast BigGAN export", "ganterp-fast export"], False),
        "model-an-audio-file": (["--model", song], [song.name, "pretrained name"], False),
        "model-empty-directory": (["--model", folder / "empty dir"], ["empty dir", "config.json"], False),
        "precision-not-the-models": (["--precision", "fp16"], ["fp16", "ready fp32 model"], False),
        "weights-random-with-an-onnx": (["--weights", "random"], ["--weights random", "ready model"], False),
        "device-unknown": (["--device", "tpu"], ["'tpu'", "cuda"], True),
        "example-and-input": (["--example"], ["--example", "not both"], False),
    }
    if not _cuda_offered():
        cases["device-cuda-without-a-gpu"] = (["--device", "cuda"], ["'cuda'", "device 'cpu'"], False)
    return cases


def _cuda_offered() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _identity_onnx(path: Path) -> Path:
    """A valid ONNX model that is not a BigGAN export."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
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
        pytest.skip("ONNX Runtime offers CUDA here")
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
        "analysis-edges": ["--fps", "2", "--threshold", "0", "--rolling-length", "1", "--smoothing", "0",
                           "--classes", "0, 999", "--crf", "0"],
        "last-second": ["--fps", "5", "--start", str(SONG_SECONDS - 0.5)],
    }
    results = run_all({key: ["render", song, "-o", tmp_path / f"{key}.mp4", "--model", tiny_onnx, *FAST, *extra]
                       for key, extra in runs.items()}, workers=2)
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
        "duration-negative": (["--duration", "-1"], ["-1", "> 0"], False),
        "duration-inf": (["--duration", "inf"], ["inf", "> 0"], False),
        "inflection-type-unknown": (["--inflection-type", "all"], ["'all'", "both"], True),
        "plot-not-an-image": (["--plot", folder / "plot.txt"], ["plot.txt", ".png"], False),
        "json-is-the-input": (["--json", song, "-y"], [song.name, "is the input file"], False),
        "json-and-plot-the-same": (["--json", folder / "a.png", "--plot", folder / "a.png"], ["a.png", "different names"], False),
        "json-under-a-file": (["--json", folder / "a file" / "a.json"], ["a file", "not a folder"], False),
        "json-in-a-missing-folder": (["--json", folder / "nope" / "a.json"], ["nope", "does not exist"], False),
        "example-and-input": (["--example"], ["--example", "not both"], False),
    }
    before = listing(folder)
    results = run_all({name: ["analyze", song, "-q", *extra] for name, (extra, _, _) in cases.items()})
    return folder, before, cases, results


ANALYZE_CASES = ["threshold-nan", "threshold-inf", "absolute-threshold-inf", "rolling-length-negative",
                 "rolling-length-float", "smoothing-fraction", "start-nan", "start-at-the-end", "duration-negative",
                 "duration-inf", "inflection-type-unknown", "plot-not-an-image", "json-is-the-input",
                 "json-and-plot-the-same", "json-under-a-file", "json-in-a-missing-folder", "example-and-input"]


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


# ---------------------------------------------------------------- faults


FULL_DISK = """
import errno, av
real_open = av.open

class FullDisk:
    '''The output file: its writes fail with ENOSPC once {after} packets are in.'''

    def __init__(self, inner, name):
        self.inner, self.name, self.packets = inner, name, 0

    def mux(self, packets):
        self.packets += len(packets) if isinstance(packets, list) else 1
        if self.packets > {after}:
            raise OSError(errno.ENOSPC, "No space left on device", self.name)
        return self.inner.mux(packets)

    def __getattr__(self, name):
        return getattr(self.inner, name)

def open_output(file, mode="r", **kwargs):
    container = real_open(file, mode, **kwargs)
    return FullDisk(container, file) if mode == "w" else container

av.open = open_output
"""


def test_the_disk_filling_up_mid_render_is_exit_1_and_the_old_video_survives(song, tiny_onnx, tmp_path):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    result = cli_patched(FULL_DISK.format(after=40), "render", song, "-o", out, "-y", "--model", tiny_onnx, *FAST)
    assert_error(result, 1, "video.mp4", "No space left on device", "after")
    assert out.read_bytes() == b"the previous video"
    assert listing(tmp_path) == ["video.mp4"]


def test_a_file_size_limit_mid_render_is_exit_1_and_leaves_nothing(song, tiny_onnx, tmp_path):
    """RLIMIT_FSIZE makes the real writes fail (EFBIG), as a full disk does, through the real CLI."""

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    result = cli("render", song, "-o", out, "-y", "--model", tiny_onnx, "--crf", "0", *FAST, preexec_fn=small_disk)
    assert_error(result, 1, "video.mp4", "File too large")
    assert out.read_bytes() == b"the previous video"
    assert listing(tmp_path) == ["video.mp4"]


FLAKY_GENERATOR = """
from ganterp_fast.engine.generator import Generator
real_call = Generator.__call__
calls = []

def flaky(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > {after}:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700:\\n an illegal memory access was encountered")
    return real_call(self, *args, **kwargs)

Generator.__call__ = flaky
"""


def test_the_generator_failing_mid_render_is_exit_1_and_leaves_nothing(song, tiny_onnx, tmp_path):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    result = cli_patched(FLAKY_GENERATOR.format(after=3), "render", song, "-o", out, "-y", "--model", tiny_onnx,
                         "--batch-size", 4, *FAST)
    line = assert_error(result, 1, "generator failed after", "illegal memory access")
    assert int(re.search(r"after (\d+) frames", line).group(1)) <= 12
    assert out.read_bytes() == b"the previous video"
    assert listing(tmp_path) == ["video.mp4"]


def test_an_unexpected_os_error_is_one_line_exit_1_and_debug_shows_it(song, tiny_onnx, tmp_path):
    """An OSError no layer expected (here: reading the model) is still one line naming the file."""
    prelude = """
        import errno
        from ganterp_fast.engine import generator
        def broken(path):
            raise OSError(errno.EIO, "Input/output error", str(path))
        generator.read_metadata = broken
    """
    out = tmp_path / "video.mp4"
    result = cli_patched(prelude, "render", song, "-o", out, "--model", tiny_onnx, *FAST)
    assert_error(result, 1, "Input/output error", tiny_onnx.name)
    debug = cli_patched(prelude, "render", song, "-o", out, "--model", tiny_onnx, "--debug", *FAST)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "OSError" in debug.stderr
    assert listing(tmp_path) == []


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_overwrite_leaves_the_old_video_untouched(tiny_onnx, tmp_path, sig, code, word):
    source = media.write_soundfile(tmp_path / "long.wav", media.music(8000, 60.0), 8000)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "video.mp4"
    out.write_bytes(b"the previous video")
    process = subprocess.Popen(
        [sys.executable, "-m", "ganterp_fast", "render", str(source), "-o", str(out), "-y", "--model", str(tiny_onnx),
         "--fps", "60", "--batch-size", "2", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not partials(folder):
        time.sleep(0.02)
    assert partials(folder), "the render never started writing"
    time.sleep(0.3)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [f"ganterp-fast render: {word}; nothing was written"]
    assert out.read_bytes() == b"the previous video"
    assert listing(folder) == ["video.mp4"]


# ---------------------------------------------------------------- GPU memory


def _ort_out_of_memory() -> Exception:
    """The exception ONNX Runtime raises when its arena cannot grow (its own type and text)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    return RuntimeException(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
        "Name:'/generator/layers.3/conv_1/Conv' Status Message: /onnxruntime_src/onnxruntime/core/framework/"
        "bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, "
        "bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 805306368\n"
    )


def _generator_with_memory_for(limit: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the engine's Generator with the real one behind a device that holds `limit` frames."""
    from ganterp_fast.engine import generator as module

    real_class = module.Generator
    sizes: list[int] = []

    class SmallDevice:
        def __init__(self, *args, **kwargs) -> None:
            self._real = real_class(*args, **kwargs)

        def __getattr__(self, name: str):
            return getattr(self._real, name)

        def __call__(self, z, class_vectors, truncation=0.4):
            sizes.append(len(z))
            if len(z) > limit:
                raise _ort_out_of_memory()
            return self._real(z, class_vectors, truncation=truncation)

    monkeypatch.setattr(module, "Generator", SmallDevice)
    return sizes


def test_out_of_memory_halves_the_batch_and_the_frames_are_the_same(tiny_onnx, tmp_path, monkeypatch, caplog):
    source = media.write_soundfile(tmp_path / "song.wav", media.music(8000, 2.0), 8000)
    options = dict(model=str(tiny_onnx), fps="10", preset="ultrafast", analysis=BUSY)
    normal = render(source, tmp_path / "normal.mp4", RenderOptions(batch_size=8, **options))
    sizes = _generator_with_memory_for(2, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.render"):
        squeezed = render(source, tmp_path / "squeezed.mp4", RenderOptions(batch_size=8, **options))
    assert normal.batch_size == 8 and squeezed.batch_size == 2
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) <= 2  # halved twice, then kept small
    assert "out of memory at batch size 8: going on with 4" in caplog.text
    assert squeezed.frames == normal.frames == 20
    a, b = _frames(normal.output), _frames(squeezed.output)
    assert len(a) == len(b) == 20 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_out_of_memory_at_batch_size_1_is_a_render_error_and_leaves_nothing(tiny_onnx, tmp_path, monkeypatch):
    source = media.write_soundfile(tmp_path / "song.wav", media.music(8000, 1.0), 8000)
    _generator_with_memory_for(0, monkeypatch)
    out = tmp_path / "video.mp4"
    with pytest.raises(RenderError) as caught:
        render(source, out, RenderOptions(model=str(tiny_onnx), fps="10", batch_size=4, preset="ultrafast"))
    message = str(caught.value)
    assert "after 0 frames" in message and "Failed to allocate memory" in message and "\n" not in message
    assert caught.value.exit_code == 1
    assert listing(tmp_path) == ["song.wav"]


@pytest.mark.parametrize("text,expected", [
    ("Failed to allocate memory for requested buffer of size 805306368", True),  # ORT's arena
    ("CUDA failure 2: out of memory ; GPU=0 ; hostname=x ; expr=cudaMalloc(&p, size);", True),
    ("CUDA error cudaErrorMemoryAllocation:out of memory", True),
    ("CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0", True),
    ("CUDNN failure 2: CUDNN_STATUS_ALLOC_FAILED ; GPU=0", True),
    ("std::bad_alloc", True),
    ("TensorRT EP failed to create engine: out of memory", True),
    ("Got invalid dimensions for input: z for the following indices", False),
    ("CUDA failure 700: an illegal memory access was encountered", False),
])
def test_which_errors_count_as_out_of_memory(text, expected):
    assert _is_out_of_memory(RuntimeError(text)) is expected
    assert _is_out_of_memory(MemoryError())


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(os.fspath(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# ---------------------------------------------------------------- the model cache


SLOW_EXPORT = """
import os, sys, time
from pathlib import Path
from ganterp_fast.engine import models

source_onnx, checkpoint, log, go, pause = sys.argv[1:6]

class SlowExport:
    '''Writes a ready model straight into the cache entry, in pieces: two exporters working
    at once without the cache's lock would interleave them.'''

    @staticmethod
    def export_model(source, output, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        data = Path(source_onnx).read_bytes()
        step = len(data) // 8 + 1
        with open(output, "wb") as handle:
            for start in range(0, len(data), step):
                handle.write(data[start:start + step])
                handle.flush()
                time.sleep(float(pause))

models._import_export = lambda: SlowExport
Path(go + f".ready-{os.getpid()}").touch()
while not os.path.exists(go):
    time.sleep(0.005)
print(models.resolve_model(checkpoint))
"""


def _start_exporters(count: int, cache: Path, tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path,
                     pause: float) -> list[subprocess.Popen]:
    env = {**os.environ, models.CACHE_ENV: str(cache)}
    go = tmp_path / "go"
    processes = [
        subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(tiny_onnx), str(tiny_checkpoint), str(tmp_path / "exports.log"),
                          str(go), str(pause)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(count)
    ]
    deadline = time.time() + 60
    while len(list(tmp_path.glob("go.ready-*"))) < count and time.time() < deadline:
        time.sleep(0.01)
    go.touch()  # all of them call resolve_model at once
    return processes


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock"))


def test_two_processes_exporting_the_same_model_export_once_and_agree(tiny_checkpoint, tiny_onnx, tmp_path):
    cache = tmp_path / "cache"
    processes = _start_exporters(2, cache, tiny_checkpoint, tiny_onnx, tmp_path, pause=0.05)
    outputs = [process.communicate(timeout=60) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    entries = {stdout.strip() for stdout, _ in outputs}
    assert len(entries) == 1
    entry = Path(entries.pop())
    assert len((tmp_path / "exports.log").read_text().split()) == 1  # the second found the first's entry
    assert entry.read_bytes() == tiny_onnx.read_bytes()
    key = models.cache_key(str(tiny_checkpoint), precision="fp32", weights=None, seed=0)
    assert models._entry_valid(entry, key)
    assert _cache_files(cache) == [entry.name, entry.name + ".json"]


def test_an_export_killed_half_way_is_rebuilt_never_used(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    (process,) = _start_exporters(1, cache, tiny_checkpoint, tiny_onnx, tmp_path, pause=2.0)
    deadline = time.time() + 60
    entries: list[Path] = []
    while time.time() < deadline and not any(p.stat().st_size for p in entries):
        entries = list((cache / "models").glob("*.onnx")) if (cache / "models").is_dir() else []
        time.sleep(0.02)
    process.kill()  # SIGKILL, holding the lock, with part of the model written
    process.communicate(timeout=30)
    (entry,) = entries
    assert 0 < entry.stat().st_size < tiny_onnx.stat().st_size

    calls: list[str] = []
    monkeypatch.setenv(models.CACHE_ENV, str(cache))
    monkeypatch.setattr(models, "_import_export", lambda: _CopyExport(tiny_onnx, calls))
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.models"):
        assert models.resolve_model(tiny_checkpoint) == entry  # the lock died with its holder
    assert "corrupt or incomplete" in caplog.text and len(calls) == 1
    assert entry.read_bytes() == tiny_onnx.read_bytes()


class _CopyExport:
    """Stands in for ganterp_fast.export: copies a ready model (the cache is under test)."""

    def __init__(self, source: Path, calls: list[str]) -> None:
        self.source, self.calls = source, calls

    def export_model(self, source, output, **kwargs) -> None:
        self.calls.append(str(source))
        shutil.copy(self.source, output)


@pytest.mark.parametrize("damage", ["sidecar-not-json", "sidecar-a-list", "entry-gone", "sidecar-of-another-model"])
def test_a_damaged_cache_entry_is_rebuilt(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch, damage):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    calls: list[str] = []
    monkeypatch.setattr(models, "_import_export", lambda: _CopyExport(tiny_onnx, calls))
    entry = models.resolve_model(tiny_checkpoint)
    sidecar = entry.with_name(entry.name + ".json")
    if damage == "sidecar-not-json":
        sidecar.write_text('{"key": ')
    elif damage == "sidecar-a-list":
        sidecar.write_text("[1, 2, 3]")
    elif damage == "entry-gone":
        entry.unlink()
    else:  # a record that is whole and matches the file, but was made for another model
        record = json.loads(sidecar.read_text())
        record["key"]["source"]["weights"] = "0" * 64
        sidecar.write_text(json.dumps(record))
    assert models.resolve_model(tiny_checkpoint) == entry
    assert len(calls) == 2
    key = models.cache_key(str(tiny_checkpoint), precision="fp32", weights=None, seed=0)
    assert models._entry_valid(entry, key)


def test_a_killed_exports_temporary_file_is_cleaned_up(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_import_export", lambda: _CopyExport(tiny_onnx, []))
    entry = models.resolve_model(tiny_checkpoint)
    entry.unlink()
    stale = entry.with_name(f".{entry.name}.99999.partial")  # as exporter.py names it; pid 99999 was killed
    stale.write_bytes(b"half a model")
    models.resolve_model(tiny_checkpoint)
    assert partials(entry.parent) == []


def test_an_unusable_cache_folder_is_exit_2_naming_the_setting(song, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "pytorch_model.bin").write_bytes(b"weights")
    (tmp_path / "a file").write_text("not a folder")
    env = {**os.environ, models.CACHE_ENV: str(tmp_path / "a file" / "cache")}
    result = cli("render", song, "-o", tmp_path / "v.mp4", "--model", checkpoint, *FAST, env=env)
    assert_error(result, 2, "a file", models.CACHE_ENV)


# ---------------------------------------------------------------- exit codes


def test_readme_exit_codes_match_the_code():
    text = README.read_text(encoding="utf-8")
    table = text.split("### Exit codes", 1)[1].split("\n\n")[1]
    rows = dict(re.findall(r"^\| ([\d /]+?) \| (.+?) \|$", table, re.M))
    assert set(rows) == {"0", "1", "2", "130 / 143"}, rows
    assert (cli_main.EXIT_INTERRUPTED, cli_main.EXIT_TERMINATED) == (130, 143)
    assert {cls.__name__: cls.exit_code for cls in (errors.GanterpError, errors.RenderError)} == {"GanterpError": 1, "RenderError": 1}
    for cls in (errors.InputError, errors.ModelError, errors.ProviderError, errors.MissingExtraError):
        assert cls.exit_code == 2, cls
    assert "bad input or options" in rows["2"] and "nothing was written" in rows["1"]


# ---------------------------------------------------------------- a long song


LONG_RENDER = """
import json, os, resource, sys
import numpy as np
from ganterp_fast.engine import generator

class CheapGenerator:
    '''Frames from the latents in a few operations, so the rest of the pipeline (audio,
    analysis, path, queue, encoder, soundtrack) is what runs for the whole song.'''

    def __init__(self, model_path, *, device="auto", threads=None, tensorrt=False, cuda_graph=False):
        self.resolution, self.device, self.providers, self.precision = 128, "cpu", ["cheap"], "fp32"

    def __call__(self, z, class_vectors, truncation=0.4):
        colour = (np.abs(z[:, :3]) * 300 + class_vectors.argmax(1)[:, None]).astype(np.uint8)
        frames = np.broadcast_to(colour[:, None, None, :], (len(z), 128, 128, 3)).copy()
        frames[:, ::16, :, :] = 255 - frames[:, ::16, :, :]
        return frames

generator.Generator = CheapGenerator
from ganterp_fast.engine.render import RenderOptions, render

source, output, model = sys.argv[1:4]
page = os.sysconf("SC_PAGE_SIZE")
samples = []

def progress(update):
    if update.stage == "render" and update.frames_total:
        with open("/proc/self/statm") as statm:
            samples.append((update.frames_done / update.frames_total, int(statm.read().split()[1]) * page))

result = render(source, output, RenderOptions(model=model, fps="30", batch_size=16), progress=progress)
print(json.dumps({"frames": result.frames, "seconds": result.analysis.duration_s, "samples": samples,
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _render_long(minutes: int, folder: Path, model: Path) -> tuple[dict, Path, np.ndarray]:
    rate = 8000
    minute = media.bursts(rate, 60.0)
    import soundfile

    source = folder / f"{minutes} minutes.wav"
    with soundfile.SoundFile(source, "w", rate, 1, subtype="PCM_16") as handle:
        for _ in range(minutes):
            handle.write(minute)
    output = folder / f"{minutes} minutes.mp4"
    result = subprocess.run([sys.executable, "-c", LONG_RENDER, str(source), str(output), str(model)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), output, minute[:, 0]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from /proc")
def test_a_30_minute_song_renders_with_flat_memory_and_stays_in_sync(tmp_path):
    """54,000 frames at 30 fps (about 30 s here): memory does not grow with the song, and at the
    end the soundtrack is where the source's is, the video as long as the audio within a frame."""
    model = tmp_path / "stand-in.onnx"  # the cheap generator never opens it
    model.write_bytes(b"")
    short, _, _ = _render_long(3, tmp_path, model)
    long, output, minute = _render_long(30, tmp_path, model)

    # Memory: ten times the song costs no more than the mp4 index grows (~100 bytes a packet).
    assert long["peak"] < short["peak"] + 32 * 2**20, (short["peak"] / 2**20, long["peak"] / 2**20)
    settled = [rss for done, rss in long["samples"] if done >= 0.05]
    assert max(settled) - settled[0] < 24 * 2**20, (settled[0] / 2**20, max(settled) / 2**20)

    # Length: every frame, and the soundtrack to the sample.
    fps = 30
    summary = decoded_summary(output)
    assert long["frames"] == summary["frames"] == 30 * 60 * fps
    assert summary["audio_seconds"] == pytest.approx(1800.0, abs=1 / fps)
    with av.open(os.fspath(output)) as container:
        video = container.streams.video[0]
        last = max(packet.pts for packet in container.demux(video) if packet.size)
        video_end = float((last + 1) * video.time_base)
    assert abs(video_end - summary["audio_seconds"]) <= 1 / fps

    # Sync at the end: the last ten seconds of the soundtrack line up with the source's to 1 ms.
    rate = 8000
    heard, first = _decode_audio_from(output, 1800 - 12)
    begin = 1790
    heard = heard[round((begin - first) * rate):]
    source_tail = np.tile(minute, 30)[begin * rate:]
    assert abs(_lag_ms(_envelope_ms(heard, rate), _envelope_ms(source_tail, rate))) <= 1


def _decode_audio_from(path: Path, seconds: float) -> tuple[np.ndarray, float]:
    """Channel 0 from (about) `seconds` to the end, and the time of its first sample."""
    with av.open(os.fspath(path)) as container:
        stream = container.streams.audio[0]
        container.seek(int(seconds / stream.time_base), stream=stream)
        frames = list(container.decode(stream))
    return np.concatenate([f.to_ndarray()[0] for f in frames]), float(frames[0].pts * frames[0].time_base)


def _envelope_ms(samples: np.ndarray, rate: int) -> np.ndarray:
    step = rate // 1000
    usable = len(samples) // step * step
    return np.abs(samples[:usable]).reshape(-1, step).max(axis=1)


def _lag_ms(heard: np.ndarray, sent: np.ndarray, search: int = 300) -> int:
    n = min(len(heard), len(sent))
    a, b = heard[:n] - heard[:n].mean(), sent[:n] - sent[:n].mean()
    lags = range(-search, search + 1)
    scores = [np.dot(a[max(0, k): n + min(0, k)], b[max(0, -k): n - max(0, k)]) for k in lags]
    return lags[int(np.argmax(scores))]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GANTERP_LONG_TESTS") != "1", reason=(
    "the tiny model runs ~40 frames/s on 2 CPU cores: 54,000 frames take ~25 min; "
    "set GANTERP_LONG_TESTS=1 to run (the cheap-generator test above covers memory and sync in the suite)"))
def test_a_30_minute_song_with_the_tiny_model(tiny_onnx, tmp_path):
    rate = 8000
    import soundfile

    source = tmp_path / "30 minutes.wav"
    with soundfile.SoundFile(source, "w", rate, 1, subtype="PCM_16") as handle:
        for _ in range(30):
            handle.write(media.bursts(rate, 60.0))
    output = tmp_path / "30 minutes.mp4"
    result = cli("render", source, "-o", output, "--model", tiny_onnx, "--batch-size", 8, *FAST, timeout=7200)
    assert result.returncode == 0, result.stderr
    summary = decoded_summary(output)
    assert summary["frames"] == 54_000 and summary["audio_seconds"] == pytest.approx(1800.0, abs=1 / 30)
