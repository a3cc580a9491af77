"""The online analysis: the offline points when the level is the same, any block size, bounded
memory, a continuous u, the detection delay, and `analyze --live` as a user runs it."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import media
import numpy as np
import pytest
import soundfile

from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze_samples
from ganterp_fast.engine.analysis.online import GLIDE_S, OnlineAnalysis, analyze_live
from ganterp_fast.engine.analysis.spectrogram import HOP_LENGTH
from ganterp_fast.engine.errors import InputError

RATE = 8000


def loud_first() -> np.ndarray:
    """A burst of noise louder than anything after it, then 20 s of music: the running peak is
    the song's maximum from the first test on, so live and offline normalise alike."""
    burst = np.random.default_rng(5).normal(0, 0.9, RATE // 10)
    return np.concatenate([burst, media.parity_music(RATE, 20.0) * 0.5])[:, None].astype(np.float32)


SONG = media.Song(rate=RATE, name="loud first.wav", samples=loud_first)
OPTIONS = (
    AnalysisOptions(threshold=1e-3, inflection_type="both", rolling_length=30, smoothing=16),
    AnalysisOptions(threshold=1e-3, inflection_type="both", rolling_length=40, smoothing=0),
    AnalysisOptions(threshold=5e-4, inflection_type="max", rolling_length=25, smoothing=16),
)


def samples(song) -> np.ndarray:
    return soundfile.read(song, dtype="float32")[0]


def play(x: np.ndarray, options: AnalysisOptions, block: int, **kwargs) -> OnlineAnalysis:
    online = OnlineAnalysis(RATE, options, **kwargs)
    for begin in range(0, len(x), block):
        online.feed(x[begin : begin + block])
    return online


def searchable(offline, options: AnalysisOptions) -> list[int]:
    """The offline interior points whose look-ahead window is full (live cannot test the last R)."""
    length = offline.num_columns - (1 if options.smoothing == 0 else 0)
    return [int(p) for p in offline.inflection_points[:-1] if p + options.rolling_length < length]


@pytest.mark.parametrize("options", OPTIONS, ids=["both", "no-smoothing", "max"])
def test_points_equal_the_offline_ones_with_the_same_level(song, options):
    x = samples(song)
    offline = analyze_samples(x, RATE, options)
    online = play(x, options, 512)
    assert len(offline.inflection_points) > 6
    assert [p.column for p in online.points] == searchable(offline, options)
    times = offline.column_times()
    assert [p.time_s for p in online.points[1:]] == pytest.approx(times[[p.column for p in online.points[1:]]])
    assert online.points[0].time_s == 0 and online.points[0].detected_at_s == 0


def test_block_size_does_not_change_the_points(song):
    x = samples(song)
    options = OPTIONS[0]
    runs = {block: play(x, options, block).points for block in (1, 512, 4096)}
    one = runs[1]
    for block, points in runs.items():
        assert [(p.index, p.column, p.time_s) for p in points] == [(p.index, p.column, p.time_s) for p in one]
        for p, q in zip(points, one):  # known at the end of the block that completed the look-ahead
            assert q.detected_at_s <= p.detected_at_s < q.detected_at_s + block / RATE


def test_detected_after_its_time_by_the_documented_delay(song):
    x = samples(song)
    for options in OPTIONS:
        online = play(x, options, 256)
        ahead = options.rolling_length + (1 if options.smoothing == 0 else 0)
        assert online.delay_s == pytest.approx((ahead * HOP_LENGTH + 128) / RATE)
        for p in online.points[1:]:
            assert online.delay_s - 1e-9 <= p.detected_at_s - p.time_s <= online.delay_s + 256 / RATE + 1e-9


def test_events_name_each_point_once(song):
    online = OnlineAnalysis(RATE, OPTIONS[0])
    x = samples(song)
    events = [e for begin in range(0, len(x), 1000) for e in online.feed(x[begin : begin + 1000])]
    inflections = [e for e in events if e.kind == "inflection"]
    assert [(e.index, e.time_s) for e in inflections] == [(p.index, p.time_s) for p in online.points[1:]]


def test_memory_stays_bounded_over_ten_minutes():
    rng = np.random.default_rng(0)
    online = OnlineAnalysis(RATE, AnalysisOptions(rolling_length=50, smoothing=32), onsets=True)
    sizes = []
    for minute in range(10):
        for _ in range(60 * RATE // 8000):
            online.feed(rng.normal(0, 0.1, 8000) * (1 + np.sin(minute)))
        sizes.append(online.buffer_sizes())
    assert online.time_s == pytest.approx(600.0)
    varying = {"pending_samples": 256, "onset_pending": 2048 + 8000, "events": 100, "segments": 8}
    for later in sizes[1:]:
        for key, value in later.items():
            if key in varying:  # less than a window and a block, or a fixed count
                assert value <= varying[key], (key, value)
            else:  # every rolling buffer at its fixed size after the first minute
                assert value == sizes[1][key], (key, value)
    assert max(sizes[-1].values()) < 10 * RATE  # none holds more than a few seconds of anything


def test_u_is_continuous_monotone_and_finite_in_silence(song):
    x = samples(song)
    quiet = np.zeros(3 * RATE, np.float32)
    stream = np.concatenate([quiet, x, quiet, x[: 5 * RATE]])
    online = OnlineAnalysis(RATE, OPTIONS[0], onsets=True)
    u = []
    for begin in range(0, len(stream), HOP_LENGTH):  # one column a feed
        online.feed(stream[begin : begin + HOP_LENGTH])
        u.append(online.position())
        assert math.isfinite(online.pulse()) and 0 <= online.pulse() <= 1
    u = np.array(u)
    assert np.all(np.isfinite(u)) and u[: 2 * RATE // HOP_LENGTH].max() == 0  # silence first: u stays at 0
    steps = np.diff(u)
    assert steps.min() >= 0
    assert steps.max() <= HOP_LENGTH / RATE / GLIDE_S + 1e-12  # bounded change per column: no jump
    assert len(online.points) > 6
    assert np.floor(u[-1]) in (len(online.points) - 1, len(online.points) - 2)  # at or gliding to the last point
    assert u[-1] < len(online.points)  # the next point is not known yet: u stays short of it
    # position(t) reads the history: a second ago, u as read then (62.5 columns a second).
    t = online.time_s - 1.0
    assert u[-70] - 1e-9 <= online.position(t) <= u[-55] + 1e-9


def test_offline_only_options_and_bad_levels_are_refused():
    for options, fragment in (
        (AnalysisOptions(analysis_source="harmonic"), "offline only"),
        (AnalysisOptions(snap_to_beats=True), "offline only"),
    ):
        with pytest.raises(InputError, match=fragment):
            OnlineAnalysis(RATE, options)
    with pytest.raises(InputError, match="level"):
        OnlineAnalysis(RATE, level="loudest")
    with pytest.raises(InputError, match="1-D"):
        OnlineAnalysis(RATE).feed(np.zeros((4, 2)))


def test_analyze_live_reports_the_agreement(song):
    result = analyze_live(song, OPTIONS[0], block_size=1024)
    a = result.agreement()
    assert a["precision"] == 1.0 and a["median_abs_difference_s"] == 0.0
    assert a["matched"] == len(result.points) - 1 >= 5


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_cli_live_json_and_plot(song, tmp_path):
    out, plot = tmp_path / "live.json", tmp_path / "live.png"
    flags = ["--threshold", "0.001", "--inflection-type", "both", "--rolling-length", "30", "--smoothing", "16"]
    result = cli("analyze", song, "--live", *flags, "--json", out, "--plot", plot)
    assert result.returncode == 0, result.stderr
    assert "detected at" in result.stdout and "agreement within 0.25 s" in result.stdout
    data = json.loads(out.read_text())
    points = data["inflection_points"]
    assert len(points) > 5 and data["detected_at_s"] == [p["detected_at_s"] for p in points]
    for p in points:
        assert set(p) == {"index", "column", "time_s", "detected_at_s", "delay_s"}
        assert p["delay_s"] == pytest.approx(p["detected_at_s"] - p["time_s"]) and p["delay_s"] >= 0
    assert data["offline"]["inflection_points"][: len(points)] == [p["column"] for p in points]
    assert len(data["offline"]["inflection_times_s"]) == len(data["offline"]["inflection_points"])
    for key in ("precision", "recall", "median_abs_difference_s", "p95_abs_difference_s", "median_delay_s"):
        assert key in data["agreement"]
    assert data["level"] == "peak" and data["sample_rate"] == RATE and data["delay_s"] > 0
    assert data["parameters"]["rolling_length"] == 30 and data["duration_s"] == pytest.approx(20.1)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--level", "hold"], "--live"),
        (["--live", "--level", "loud"], "loud"),
        (["--live", "--snap-to-beats"], "offline only"),
        (["--live", "--analysis-source", "percussive"], "offline only"),
        (["--live", "--cues", "{tmp}/cues.csv"], "--cues"),
    ],
    ids=["level-without-live", "bad-level", "snap", "hpss", "cues"],
)
def test_cli_bad_flags_exit_2_with_one_line(song, tmp_path, args, fragment):
    out = tmp_path / "out.json"
    result = cli("analyze", song, *[a.format(tmp=tmp_path) for a in args], "--json", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert fragment in lines[-1] and "Traceback" not in result.stderr, result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_bad_input_exit_2(tmp_path):
    path = tmp_path / "text.mp3"
    path.write_text("not audio\n" * 50)
    out = tmp_path / "out.json"
    result = cli("analyze", path, "--live", "--json", out)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "text.mp3" in lines[0], result.stderr
    assert not out.exists()
