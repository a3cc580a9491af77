"""A foreign generator on the scale-out paths: segments stopped and resumed, and a local Ray pool,
give the frames of the plain render (crf 0).

The non-square foreign generator (64x96, float [0, 1] out) runs everywhere here: its frames
are wrapped, shipped to Ray workers as the wrapped file and fitted by the compositor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import media
import numpy as np
import pytest
from foreign_models import stylegan_like
from media import render_options

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.scale.resume import segments_folder
from ganterp_fast.engine.scale.scheduler import SegmentScheduler, render_segmented

pytest.importorskip("torch")

BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)
FPS = "10"
SEGMENT = 1.0
FLAGS = ["--fps", FPS, "--model-range", "0,1", "--crf", "0", "--preset", "ultrafast", "--precision", "fp32", "-q"]
FLAGS += ["--threshold", "2e-3", "--inflection-type", "both", "--rolling-length", "60", "--smoothing", "64"]  # BUSY
SONG = media.Song(seconds=4.3)


def decode(path: Path) -> np.ndarray:
    with av.open(os.fspath(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ganterp_fast", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stylegan_like(tmp_path_factory.mktemp("foreign") / "wide.onnx", size=(64, 96), output="nchw01", seed=3)


@pytest.fixture(scope="module")
def plain(song: Path, wide: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The frames of the plain single-process render through the CLI."""
    output = tmp_path_factory.mktemp("plain") / "plain.mp4"
    result = cli("render", song, "-o", output, "--model", wide, *FLAGS)
    assert result.returncode == 0, result.stderr
    frames = decode(output)
    assert frames.shape == (43, 64, 96, 3) and len({frame.tobytes() for frame in frames}) > 20  # frames that move
    return frames


def test_a_stopped_render_resumes_to_the_plain_frames(song, wide, plain, tmp_path):
    """Stopped after two 1 s segments (KeyboardInterrupt, as Ctrl-C does), resumed with a new
    generator: the two kept segments are not rendered again, and the video has the plain frames."""
    options = render_options(
        model=str(wide), model_range="0,1", fps=FPS, crf=0, preset="ultrafast", precision="fp32", analysis=BUSY
    )
    job = prepare(song, tmp_path / "resumed.mp4", options)
    assert job.model.foreign and (job.model.resolution, job.model.width) == (64, 96)
    generator = job.open_generator()
    with pytest.raises(KeyboardInterrupt):
        with SegmentScheduler([job], segment_seconds=SEGMENT) as schedule:
            schedule.start()
            for _ in range(2):
                item = schedule.take()
                job.render_segment(item.start, item.stop, schedule.partial(item), generator=generator)
                schedule.finished(item, schedule.partial(item))
            raise KeyboardInterrupt
    assert len(list(segments_folder(job.output).glob("*.mp4"))) == 2 and not job.output.exists()
    kept = sum(b - a for a, b in job.segments(SEGMENT)[:2])
    seen = []
    result = render_segmented(job, segment_seconds=SEGMENT, resume=True, progress=seen.append)
    assert [p.frames_done for p in seen if p.stage == "render"][0] == kept  # the kept two were not rendered again
    assert result.frames == job.num_frames and not segments_folder(job.output).exists()
    assert np.array_equal(decode(result.output), plain)


def test_cli_segments_with_resume_give_the_plain_frames(song, wide, plain, tmp_path):
    """--segment-seconds with --resume through the CLI (nothing kept yet: every segment rendered, kept, joined)."""
    output = tmp_path / "cut.mp4"
    result = cli("render", song, "-o", output, "--model", wide, *FLAGS, "--segment-seconds", SEGMENT, "--resume")
    assert result.returncode == 0, result.stderr
    assert np.array_equal(decode(output), plain) and not segments_folder(output).exists()


def test_a_local_ray_pool_renders_the_plain_frames(song, wide, plain, tmp_path):
    """--ray local --workers 2: the wrapped graph shipped to two workers, segments joined on the driver."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed: pip install 'ganterp-fast[ray]'")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": tempfile.mkdtemp(prefix="gf-ray-", dir="/tmp"),  # short: unix socket paths
    }
    output = tmp_path / "ray.mp4"
    loud = [flag for flag in FLAGS if flag != "-q"]  # the workers' report
    common = ["--model", wide, *loud, "--segment-seconds", SEGMENT]
    result = cli("render", song, "-o", output, *common, "--ray", "local", "--workers", "2", env=env)
    assert result.returncode == 0, result.stderr
    reports = [line for line in result.stdout.splitlines() if line.startswith("worker ")]
    assert len(reports) == 2, result.stdout  # both workers started (either may have taken every segment)
    assert np.array_equal(decode(output), plain)
    assert not segments_folder(output).exists()
