"""Segments of a render job, joined by stream copy, equal the single-pass render."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from fractions import Fraction

import av
import media
import numpy as np
import pytest
from media import render_options
from reliability_helpers import assert_error, run_all

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.api import render
from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.scale.cluster import Cluster
from ganterp_fast.engine.scale.plan import plan_segments
from ganterp_fast.engine.scale.resume import segments_folder
from ganterp_fast.engine.scale.scheduler import SegmentScheduler, render_segmented
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


def test_plans_for_several_workers_end_in_whole_rounds():
    """N workers: the one-worker count of segments rounded up to whole rounds of N (so none
    idles at the end), all of one size to a frame, none under a second; the same every time."""
    one = plan_segments(300, 15, 1.0)
    assert len(one) == 20 and {b - a for a, b in one} == {15}  # 20 segments: 2.5 rounds of 8
    cases = [  # frames, fps, seconds, workers: segments
        (300, 15, 1.0, 8, 16),  # 24 would be under a second each: 2 rounds
        (300, 15, 1.0, 4, 20),
        (600, 15, 1.0, 8, 40),
        (5400, 30, 10.0, 8, 24),  # 3 minutes: 18 segments of 10 s become 3 rounds of 7.5 s
        (50, 15, 1.0, 8, 3),  # fewer frames than a second per worker
    ]
    for frames, fps, seconds, workers, count in cases:
        plan = plan_segments(frames, Fraction(fps), seconds, workers=workers)
        assert plan == plan_segments(frames, Fraction(fps), seconds, workers=workers)
        assert len(plan) == count, (frames, workers, plan)
        assert plan[0][0] == 0 and plan[-1][1] == frames and all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
        sizes = {b - a for a, b in plan}
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= fps
    assert plan_segments(83, FPS, 2.0, workers=1) == plan_segments(83, FPS, 2.0)


def test_a_resumed_render_keeps_the_plan_it_started_with(single, tmp_path):
    """A render stopped after two segments of a 3-worker plan resumes in one process (whose own
    plan differs) from those two segments, and gives the frames of the single-pass render."""
    job, generator, (frames, *_), _ = single
    job = replace(job, output=tmp_path / "resumed.mp4")
    assert job.segments(2.0, workers=3) != job.segments(2.0)
    with pytest.raises(KeyboardInterrupt):
        with SegmentScheduler([job], segment_seconds=2.0, workers=3) as schedule:
            schedule.start()
            for _ in range(2):
                item = schedule.take()
                job.render_segment(item.start, item.stop, schedule.partial(item), generator=generator)
                schedule.finished(item, schedule.partial(item))
            kept = sum(b - a for a, b in job.segments(2.0, workers=3)[:2])
            raise KeyboardInterrupt
    assert len(list(segments_folder(job.output).glob("*.mp4"))) == 2 and not job.output.exists()
    seen = []
    result = render_segmented(job, segment_seconds=2.0, resume=True, generator=generator, progress=seen.append)
    assert [p.frames_done for p in seen if p.stage == "render"][0] == kept  # the two segments were not rendered again
    assert result.frames == job.num_frames and not segments_folder(job.output).exists()
    assert all(np.array_equal(a, b) for a, b in zip(decoded(result.output)[0], frames))


def test_segment_seconds_and_workers_must_be_positive(song, tiny_onnx, tmp_path):
    """--segment-seconds 0 or below (or nan) and --workers 0 or below: one line naming the
    flag, exit 2, nothing written; the Python API names its parameter."""
    out = tmp_path / "out"
    out.mkdir()
    base = ["render", song, "-o", out / "x.mp4", "--model", tiny_onnx, "-q"]
    results = run_all(
        {
            "zero": [*base, "--segment-seconds", "0"],
            "negative": [*base, "--segment-seconds", "-5"],
            "nan": [*base, "--segment-seconds", "nan", "--resume"],
            "no workers": [*base, "--ray", "local", "--workers", "0"],
            "negative workers": [*base, "--ray", "local", "--workers", "-2"],
        }
    )
    for key in ("zero", "negative", "nan"):
        assert_error(results[key], 2, "--segment-seconds must be a positive number of seconds")
    for key in ("no workers", "negative workers"):
        assert_error(results[key], 2, "--workers must be a whole number of at least 1")
    assert os.listdir(out) == []
    with pytest.raises(InputError, match="segment_seconds must be a positive number"):
        render(song, out / "x.mp4", segment_seconds=0)
    with pytest.raises(InputError, match="--workers must be a whole number"):
        Cluster(workers=0)
    assert os.listdir(out) == []


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
