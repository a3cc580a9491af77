"""`render` end to end: real media in, a real mp4 out, decoded and checked frame by frame."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest
from media import render_options
from reliability_helpers import default_sigint

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.api import render
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.path import PathOptions, frame_count

# Analysis settings that find several inflection points in a few seconds of audio.
BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


def decode(path: Path) -> tuple[list[np.ndarray], av.container.InputContainer]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "rate": video.average_rate,
            "audio": [
                (s.codec_context.name, s.codec_context.sample_rate, s.codec_context.channels)
                for s in container.streams.audio
            ],
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, info


def decode_audio(path: Path) -> tuple[np.ndarray, int, float]:
    """Channel 0, the rate, and the stream's duration in seconds (its edit list trims the
    encoder's padding, which decoding alone does not)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        duration = float(stream.duration * stream.time_base)
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
    data = np.concatenate(chunks, axis=1)
    return data[0].astype(np.float64), rate, duration


def envelope(x: np.ndarray, rate: int, window_s: float = 0.01) -> np.ndarray:
    step = max(1, int(rate * window_s))
    usable = len(x) // step * step
    return np.sqrt((x[:usable].reshape(-1, step) ** 2).mean(axis=1))


def render_tiny(source, output, tiny_onnx, **changes):
    start, duration = changes.pop("start", 0.0), changes.pop("duration", None)
    options = render_options(model=str(tiny_onnx), analysis=changes.pop("analysis", BUSY), **changes)
    return render(source, output, options, start=start, duration=duration)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("render-media")
    return {
        "mp4": media.write_video(folder / "clip.mp4", media.music(22050, 6.0, channels=2), 22050),
        "mp3": media.write_pyav_audio(
            folder / "song.mp3", media.music(44100, 5.0, channels=2, seed=3), 44100, codec="libmp3lame", bitrate=192000
        ),
        "wav8k": media.write_soundfile(folder / "mono 8k é.wav", media.speech_like(8000, 6.0), 8000),
    }


@pytest.mark.parametrize(
    "kind,fps",
    [("mp4", Fraction(30)), ("mp3", Fraction(30000, 1001)), ("wav8k", Fraction(24))],
)
def test_render_writes_a_synced_h264_video_of_the_audio(media_dir, tiny_onnx, tmp_path, kind, fps):
    source = media_dir[kind]
    out = tmp_path / f"{kind}.mp4"
    result = render_tiny(source, out, tiny_onnx, fps=str(fps))

    frames, info = decode(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["size"] == (128, 128) and Fraction(info["rate"]) == fps
    expected = frame_count(result.analysis.duration_s, fps)
    assert len(frames) == result.frames == expected

    # The soundtrack: the input's audio, as long as it is (within a frame), in sync.
    audio, rate, audio_seconds = decode_audio(out)
    source_audio, source_rate = _read_channel0(source)
    assert rate == source_rate and info["audio"][0][0] == "aac"
    assert abs(audio_seconds - result.analysis.duration_s) < 1 / float(fps)
    assert abs(len(frames) / float(fps) - audio_seconds) <= 1 / float(fps)
    a, b = envelope(audio, rate), envelope(source_audio, source_rate)
    n = min(len(a), len(b))
    lags = {
        lag: np.corrcoef(a[max(0, lag) : n + min(0, lag)], b[max(0, -lag) : n - max(0, lag)])[0, 1]
        for lag in range(-5, 6)
    }
    best = max(lags, key=lags.get)
    assert abs(best) <= 1 and lags[best] > 0.95, lags  # within 10 ms, far inside one frame

    # The images: not flat, and moving smoothly (neighbours closer than frames a second apart).
    stack = np.stack(frames).astype(np.float32)
    assert stack.std(axis=(1, 2, 3)).min() > 5
    step = int(float(fps))
    near = np.abs(stack[1:] - stack[:-1]).mean()
    far = np.abs(stack[step:] - stack[:-step]).mean()
    assert near < far
    assert len(result.classes) > 2  # the path went somewhere
    assert not list(tmp_path.glob(".*partial*"))


def _read_channel0(path):
    from ganterp_fast.engine.audio.decode import read_channel0

    samples, rate = read_channel0(path)
    return samples.astype(np.float64), rate


def test_same_seed_same_frames_whatever_the_batch_size(media_dir, tiny_onnx, tmp_path):
    source = media_dir["wav8k"]
    one = render_tiny(source, tmp_path / "a.mp4", tiny_onnx, batch_size=1, path=PathOptions(seed=5))
    five = render_tiny(source, tmp_path / "b.mp4", tiny_onnx, batch_size=5, path=PathOptions(seed=5))
    other = render_tiny(source, tmp_path / "c.mp4", tiny_onnx, batch_size=5, path=PathOptions(seed=6))
    a, _ = decode(one.output)
    b, _ = decode(five.output)
    c, _ = decode(other.output)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.abs(np.stack(a).astype(int) - np.stack(c)).mean() > 3


def test_classes_by_name_and_index_and_fixed_z(media_dir, tiny_onnx, tmp_path):
    source = media_dir["mp4"]
    named = render_tiny(
        source, tmp_path / "n.mp4", tiny_onnx, path=PathOptions(classes=("jellyfish", "7", "Mountain Bike"))
    )
    assert [c for _, c in named.classes[:3]] == [107, 7, 671]
    assert named.classes[0][0] == 0.0
    fixed = render_tiny(
        source,
        tmp_path / "f.mp4",
        tiny_onnx,
        path=PathOptions(classes=("jellyfish", "7", "Mountain Bike"), z_mode="fixed"),
    )
    a, _ = decode(named.output)
    b, _ = decode(fixed.output)
    assert np.abs(np.stack(a).astype(int) - np.stack(b)).mean() > 1
    with pytest.raises(InputError, match="jellyfish"):
        render_tiny(source, tmp_path / "u.mp4", tiny_onnx, path=PathOptions(classes=("jelyfish",)))
    assert not (tmp_path / "u.mp4").exists()


def test_native_fps_one_frame_per_column(media_dir, tiny_onnx, tmp_path):
    result = render_tiny(
        media_dir["wav8k"], tmp_path / "native.mp4", tiny_onnx, fps="native", analysis=AnalysisOptions()
    )
    assert result.fps == Fraction(8000, 128)
    frames, info = decode(result.output)
    assert len(frames) == frame_count(result.analysis.duration_s, result.fps)


def cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)], capture_output=True, text=True, timeout=300, **kwargs
    )


def test_existing_output_is_kept_without_overwrite(media_dir, tiny_onnx, tmp_path):
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"precious")
    result = cli("render", media_dir["wav8k"], "-o", out, "--model", tiny_onnx, "-q")
    assert result.returncode == 2 and "--overwrite" in result.stderr and "Traceback" not in result.stderr
    assert out.read_bytes() == b"precious"
    result = cli("render", media_dir["wav8k"], "-o", out, "--model", tiny_onnx, "-q", "-y", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[4:8] == b"ftyp"


def test_codec_choice(media_dir, tiny_onnx, tmp_path):
    """auto falls back to libx264 where NVENC does not open; asking for NVENC there fails before any work."""
    from ganterp_fast.engine.video.encode import probe_h264_encoders

    with pytest.raises(InputError, match="codec must be one of"):
        render_options(codec="h265")
    auto = render_tiny(media_dir["wav8k"], tmp_path / "auto.mp4", tiny_onnx, codec="auto", fps="10", duration=1.0)
    frames, info = decode(auto.output)
    assert info["codec"] == "h264" and len(frames) == auto.frames == 10
    if "h264_nvenc" in probe_h264_encoders():
        pytest.skip("NVENC works here; the refusal below is for machines without it")
    stages = []
    with pytest.raises(InputError, match="h264_nvenc encoder does not work on this machine"):
        render(
            media_dir["wav8k"],
            tmp_path / "nvenc.mp4",
            render_options(model=str(tiny_onnx), codec="h264_nvenc"),
            progress=stages.append,
        )
    assert stages == [] and not (tmp_path / "nvenc.mp4").exists()  # refused before the model and the analysis
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.mp4"]


def test_the_summary_names_the_classes(media_dir, tiny_onnx, tmp_path):
    many = ["jellyfish", "7", "volcano"] + [str(i) for i in range(100, 140)]  # more than the inflection points
    out, classes = tmp_path / "v.mp4", ",".join(many)
    result = cli("render", media_dir["wav8k"], "-o", out, "--model", tiny_onnx, "--fps", "5", "--classes", classes)
    assert result.returncode == 0, result.stderr
    classes = next(line for line in result.stdout.splitlines() if "inflection points, classes:" in line)
    assert "0.0s 107 (jellyfish), " in classes and " 7 (cock)" in classes, classes
    unused = next(line for line in result.stdout.splitlines() if line.startswith("unused classes"))
    assert unused.endswith(", 139 (ruddy turnstone)"), unused


def test_unknown_class_from_the_cli_suggests_names(media_dir, tiny_onnx, tmp_path):
    result = cli("render", media_dir["wav8k"], "-o", tmp_path / "x.mp4", "--model", tiny_onnx, "--classes", "jelyfish")
    assert result.returncode == 2 and "did you mean 'jellyfish'" in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_mid_render_leaves_nothing(tiny_onnx, tmp_path, sig, code):
    source = media.write_soundfile(tmp_path / "long.wav", media.music(8000, 120.0), 8000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "video.mp4"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ganterp_fast",
            "render",
            str(source),
            "-o",
            str(out),
            "--model",
            str(tiny_onnx),
            "--fps",
            "60",
            "--batch-size",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out_dir.glob(".*partial*")):  # wait until it is writing
        time.sleep(0.05)
    assert list(out_dir.glob(".*partial*")), "the render never started writing"
    time.sleep(0.5)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "nothing was written" in stderr and "Traceback" not in stderr
    assert list(out_dir.iterdir()) == []


def _peak_rss_of_render(source: Path, output: Path, tiny_onnx: Path) -> int:
    script = (
        "import resource, sys\n"
        "from ganterp_fast import render, RenderOptions, ModelOptions\n"
        f"options = RenderOptions(model=ModelOptions(model={str(tiny_onnx)!r}, batch_size=4), fps='4')\n"
        f"render({str(source)!r}, {str(output)!r}, options)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1]) * 1024


@pytest.mark.slow
def test_memory_stays_flat_with_the_songs_length(tiny_onnx, tmp_path):
    rate = 44100
    minute = media.music(rate, 60.0, channels=2)
    short = media.write_soundfile(tmp_path / "short.wav", minute, rate)
    long = media.write_soundfile(tmp_path / "long.wav", np.tile(minute, (10, 1)), rate)
    peak_short = _peak_rss_of_render(short, tmp_path / "short.mp4", tiny_onnx)
    peak_long = _peak_rss_of_render(long, tmp_path / "long.mp4", tiny_onnx)
    # Ten times the audio (106 MB more as float32 if it were held) may not cost more than a little.
    assert peak_long < peak_short * 1.15 + 20 * 2**20, (peak_short / 2**20, peak_long / 2**20)


def test_render_without_torch_in_a_runtime_only_environment(tiny_onnx, tmp_path):
    python = os.environ.get("GANTERP_RUNTIME_PYTHON")
    if not python:
        pytest.skip("GANTERP_RUNTIME_PYTHON is not set: scripts/test.sh builds a runtime-only environment and sets it")
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, cwd=tmp_path)
    assert has_torch.returncode != 0, "the runtime environment must not have torch"
    source = media.write_soundfile(tmp_path / "song.wav", media.music(16000, 3.0), 16000)
    out = tmp_path / "song.mp4"
    result = subprocess.run(
        [python, "-m", "ganterp_fast", "render", str(source), "-o", str(out), "--model", str(tiny_onnx), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    frames, info = decode(out)
    assert info["codec"] == "h264" and len(frames) == frame_count(3.0, Fraction(30))
