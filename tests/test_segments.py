"""Segments of a render job, joined by stream copy, equal the single-pass render."""

from __future__ import annotations

import pickle
from dataclasses import replace

import av
import media
import numpy as np
import pytest
from media import render_options

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.job import plan_segments, prepare
from ganterp_fast.engine.scale.segments import join

BUSY = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)
FPS = 10


def decoded(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate = video.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
        stream = container.streams.audio[0]
        audio_seconds = float(stream.duration * stream.time_base)
    return frames, rate, audio, audio_seconds


@pytest.fixture(scope="module")
def single(tiny_onnx, tmp_path_factory):
    """A lossless single-pass render of 8.3 s of music at 10 fps (83 frames), and its job."""
    folder = tmp_path_factory.mktemp("segments")
    song = media.write_soundfile(folder / "song.wav", media.music(8000, 8.3), 8000)
    options = render_options(model=str(tiny_onnx), precision="fp32", fps=str(FPS), crf=0, preset="ultrafast")
    options = replace(options, analysis=BUSY)
    job = prepare(song, folder / "single.mp4", options)
    generator = job.open_generator()
    job.run(generator=generator)
    return job, generator, decoded(folder / "single.mp4"), folder


def test_plan_segments_cover_the_video_and_merge_a_short_tail():
    assert plan_segments(83, FPS, 2.0) == [(0, 20), (20, 40), (40, 60), (60, 83)]  # 3-frame tail merged
    assert plan_segments(95, FPS, 2.0)[-1] == (80, 95)  # a 15-frame tail stands on its own
    assert plan_segments(5, FPS, 10.0) == [(0, 5)]
    with pytest.raises(InputError, match="positive number of seconds"):
        plan_segments(10, FPS, 0)


def test_the_job_pickles_and_runs_the_same_after(single):
    job, *_ = single
    copy = pickle.loads(pickle.dumps(job))
    assert copy.num_frames == job.num_frames == 83 and copy.fingerprint() == job.fingerprint()
    z, classes = job.path.frames(30, 40)
    z2, classes2 = copy.path.frames(30, 40)
    assert np.array_equal(z, z2) and np.array_equal(classes, classes2)


@pytest.mark.parametrize(
    "bounds",
    [
        [0, 83],
        [0, 37, 83],
        [0, 11, 50, 83],
        [0, 10, 24, 31, 45, 58, 70, 83],  # 7 uneven segments, the last 1.3 s
    ],
    ids=["1", "2", "3", "7"],
)
def test_joined_segments_equal_the_single_pass_render(single, bounds, tmp_path):
    job, generator, (frames, rate, audio, audio_seconds), _ = single
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        path = job.render_segment(start, stop, tmp_path / f"part-{start}.mp4", generator=generator)
        with av.open(str(path)) as container:
            assert not container.streams.audio and container.streams.video[0].frames in (0, stop - start)
        pieces.append((start, stop, path))
    out = join(job, pieces, output=tmp_path / "joined.mp4")
    joined, joined_rate, joined_audio, joined_seconds = decoded(out)
    assert len(joined) == len(frames) == job.num_frames and joined_rate == rate == FPS
    assert all(np.array_equal(a, b) for a, b in zip(joined, frames))  # crf 0: byte for byte
    assert joined_seconds == pytest.approx(audio_seconds, abs=1e-3)
    assert len(joined_audio) == len(audio) and np.allclose(joined_audio, audio, atol=1e-6)


def test_join_refuses_gaps_and_mismatched_segments_and_writes_nothing(single, tmp_path):
    job, generator, *_ = single
    a = job.render_segment(0, 40, tmp_path / "a.mp4", generator=generator)
    b = job.render_segment(40, 83, tmp_path / "b.mp4", generator=generator)
    with pytest.raises(RenderError, match="expected one starting at frame 40"):
        join(job, [(0, 40, a), (41, 83, b)], output=tmp_path / "gap.mp4")
    with pytest.raises(RenderError, match="end at frame 40"):
        join(job, [(0, 40, a)], output=tmp_path / "short.mp4")
    other = replace(job.options, encode=replace(job.options.encode, preset="medium", crf=18))
    odd = replace(job, options=other).render_segment(40, 83, tmp_path / "odd.mp4", generator=generator)
    with pytest.raises(RenderError, match="other settings than the first"):
        join(job, [(0, 40, a), (40, 83, odd)], output=tmp_path / "mixed.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "odd.mp4"]


def test_a_segment_outside_the_job_is_an_input_error(single, tmp_path):
    job, generator, *_ = single
    with pytest.raises(InputError, match="not a non-empty range"):
        job.render_segment(80, 90, tmp_path / "x.mp4", generator=generator)
