"""Beats, onsets and the harmonic/percussive split (librosa) on generated click tracks, drum
patterns and mixes whose every event time is known."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import media
import numpy as np
import pytest

from ganterp_fast.cli.main import main
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze_samples
from ganterp_fast.engine.analysis.beats import beat_times, hpss_blocks, onset_envelope
from ganterp_fast.engine.latent.path import LatentPath, PathOptions

SR = 22050
HOP_S = 128 / SR  # one spectrogram column
BUSY = dict(threshold=0.002, rolling_length=60, smoothing=128, inflection_type="both")


def clicks(seconds: float, bpm: float, *, offset: float = 0.25, level: float = 0.8) -> np.ndarray:
    """Noise clicks (5 ms decay) every beat of `bpm` from `offset` on."""
    n = int(seconds * SR)
    out = np.zeros(n)
    rng = np.random.default_rng(0)
    t = offset
    while t < seconds:
        i = int(t * SR)
        m = min(n, i + int(0.03 * SR))
        out[i:m] += level * rng.normal(0, 1, m - i) * np.exp(-np.arange(m - i) / (0.005 * SR))
        t += 60 / bpm
    return out


def tones(seconds: float, changes: list[float]) -> np.ndarray:
    """Sustained two-note chords that change pitch and level at the given times."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    freqs = (220, 330, 262, 392, 294, 440, 349)
    edges = [0.0, *changes, seconds]
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        lo, hi = int(a * SR), int(b * SR)
        f = freqs[k % len(freqs)]
        out[lo:hi] = (0.15 + 0.25 * (k % 2)) * (
            np.sin(2 * np.pi * f * t[lo:hi]) + 0.5 * np.sin(3 * np.pi * f * t[lo:hi])
        )
    return out


def drums(seconds: float, hits: list[float]) -> np.ndarray:
    """Kick-like hits (a falling 60-120 Hz sine with a noise attack) at the given times, over a faint hum."""
    n = int(seconds * SR)
    out = 0.002 * np.sin(2 * np.pi * 100 * np.arange(n) / SR)
    rng = np.random.default_rng(1)
    for hit in hits:
        i = int(hit * SR)
        m = min(n, i + int(0.25 * SR))
        local = np.arange(m - i) / SR
        out[i:m] += 0.8 * np.sin(2 * np.pi * (60 + 60 * np.exp(-local * 30)) * local) * np.exp(-local * 12)
        out[i : i + int(0.01 * SR)] += 0.3 * rng.normal(0, 1, min(m, i + int(0.01 * SR)) - i)
    return out


@pytest.fixture(scope="module")
def click_track() -> np.ndarray:
    """Clicks at 120 bpm under chords that change off the beat: points to snap."""
    return (clicks(8.0, 120) + tones(8.0, [1.13, 2.71, 4.37, 5.9, 6.8])).astype(np.float32)


def test_snapped_points_sit_on_librosa_beats_of_a_click_track(click_track):
    plain = analyze_samples(click_track, SR, AnalysisOptions(**BUSY))
    snapped = analyze_samples(click_track, SR, AnalysisOptions(**BUSY, snap_to_beats=True))
    beats = snapped.beat_times
    # librosa's beat tracker on our streamed onset envelope: a beat every 0.5 s, on the clicks.
    np.testing.assert_allclose(beats, beat_times(onset_envelope(click_track, SR), SR))
    assert len(beats) >= 12
    np.testing.assert_allclose(np.diff(beats), 0.5, atol=0.035)
    assert np.all(np.abs((beats - 0.25) / 0.5 - np.round((beats - 0.25) / 0.5)) * 0.5 < 0.04)
    np.testing.assert_array_equal(snapped.unsnapped_points, plain.inflection_points)
    points = snapped.inflection_points
    assert points[0] == plain.inflection_points[0] and points[-1] == plain.inflection_points[-1]
    assert len(np.unique(points)) == len(points) and np.all(np.diff(points) > 0)
    interior = points[1:-1] * HOP_S
    assert len(interior) >= 4
    nearest = np.abs(interior[:, None] - beats[None, :]).min(axis=1)
    assert nearest.max() <= HOP_S + 1e-9  # within one hop of a beat
    # never two points on one beat
    on_beat = np.abs(interior[:, None] - beats[None, :]).argmin(axis=1)
    assert len(np.unique(on_beat)) == len(on_beat)
    assert not np.array_equal(points, plain.inflection_points)
    # the path follows the snapped points: each class change is on a beat
    path = LatentPath(snapped, PathOptions(), Fraction(30))
    for t, _ in path.schedule()[1:-1]:
        assert np.abs(beats - t).min() <= HOP_S + 1e-9


def test_the_onset_envelope_streams_and_matches_librosa():
    librosa = pytest.importorskip("librosa")
    y = (drums(6.0, [0.5, 1.0, 1.5, 2.0]) + 1e-2 * np.random.default_rng(2).normal(0, 1, 6 * SR)).astype(np.float32)
    whole = librosa.onset.onset_strength(y=y, sr=SR)
    blocks = onset_envelope([y[i : i + 3001] for i in range(0, len(y), 3001)], SR)
    assert len(blocks) == len(whole)
    np.testing.assert_allclose(blocks, whole, rtol=1e-5, atol=1e-5)  # a noise floor within 80 dB: the same
    np.testing.assert_allclose(blocks, onset_envelope(y, SR), rtol=1e-5, atol=1e-5)  # any block size


DRUM_HITS = [0.3, 0.8, 1.3, 1.8, 2.3]  # then quiet from 2.6 s to the end at 6 s


@pytest.fixture(scope="module")
def drum_analysis():
    y = drums(6.0, DRUM_HITS).astype(np.float32)
    return analyze_samples(y, SR, AnalysisOptions(onsets=True))


def test_pulse_zero_is_no_pulse(drum_analysis):
    plain_analysis = analyze_samples(drums(6.0, DRUM_HITS).astype(np.float32), SR, AnalysisOptions())
    plain = LatentPath(plain_analysis, PathOptions(seed=4), Fraction(24))
    zero = LatentPath(drum_analysis, PathOptions(seed=4, pulse=0.0), Fraction(24))
    for a, b in zip(plain.frames(0, plain.num_frames), zero.frames(0, zero.num_frames)):
        np.testing.assert_array_equal(a, b)


def test_pulse_moves_z_on_the_onsets_and_leaves_quiet_passages_on_the_path(drum_analysis):
    fps = 24
    plain = LatentPath(drum_analysis, PathOptions(seed=4), Fraction(fps))
    pulsed = LatentPath(drum_analysis, PathOptions(seed=4, pulse=1.0), Fraction(fps))
    z_plain, classes_plain = plain.frames(0, plain.num_frames)
    z_pulsed, classes_pulsed = pulsed.frames(0, pulsed.num_frames)
    np.testing.assert_array_equal(classes_plain, classes_pulsed)  # on top of the path, not instead of it
    moved = np.linalg.norm(z_pulsed - z_plain, axis=1) / np.linalg.norm(z_plain, axis=1)
    for hit in DRUM_HITS:
        frame = int(np.ceil(hit * fps))
        assert moved[frame : frame + 3].max() > 0.3, hit  # a jump on each onset ...
    quiet = slice(int(3.2 * fps), int(5.8 * fps))
    assert moved[quiet].max() < 0.02  # ... that has relaxed in the quiet passage
    # between two hits it relaxes: the frame before the next hit moved less than the hit's own
    assert moved[int(1.25 * fps)] < 0.5 * moved[int(np.ceil(0.8 * fps)) : int(np.ceil(0.8 * fps)) + 3].max()
    # any frame range on its own equals the same frames of one pass
    part = pulsed.frames(37, 61)[0]
    np.testing.assert_array_equal(part, z_pulsed[37:61])


def test_pulse_changes_the_decoded_frames_at_onsets(tiny_onnx, tmp_path):
    song = media.write_soundfile(tmp_path / "drums.wav", drums(6.0, DRUM_HITS)[:, None].astype(np.float32), SR)
    videos = {}
    for name, flags in (("plain", []), ("pulse", ["--pulse", "1"]), ("truncation", ["--pulse-truncation", "1"])):
        out = tmp_path / f"{name}.mp4"
        code = main(["render", str(song), "-o", str(out), "--model", str(tiny_onnx), "--fps", "6", "-q", "--crf", "0"]
                    + flags)  # fmt: skip
        assert code == 0
        with av.open(os.fspath(out)) as container:
            videos[name] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(float)
    # The truncation reaches the batch norms, which move the image more for the same small
    # residue of the pulse in the quiet passage than z does.
    for name, factor in (("pulse", 5), ("truncation", 3)):
        difference = np.abs(videos[name] - videos["plain"]).mean(axis=(1, 2, 3))
        at_hits = [difference[int(np.ceil(h * 6)) : int(np.ceil(h * 6)) + 2].max() for h in DRUM_HITS]
        quiet = difference[20:35]
        assert min(at_hits) > factor * max(quiet.max(), 0.1), (name, at_hits, quiet.max())


def test_pulse_on_the_truncation_only_moves_the_truncation(drum_analysis):
    fps = 24
    plain = LatentPath(drum_analysis, PathOptions(seed=4, truncation=0.5), Fraction(fps))
    pulsed = LatentPath(drum_analysis, PathOptions(seed=4, truncation=0.5, pulse_truncation=1.0), Fraction(fps))
    assert plain.truncations(0, plain.num_frames) is None
    for a, b in zip(plain.frames(0, plain.num_frames), pulsed.frames(0, pulsed.num_frames)):
        np.testing.assert_array_equal(a, b)
    truncations = pulsed.truncations(0, pulsed.num_frames)
    assert truncations.min() >= 0.5 and truncations.max() <= 1.0
    for hit in DRUM_HITS:
        frame = int(np.ceil(hit * fps))
        assert truncations[frame : frame + 3].max() > 0.6, hit
    assert truncations[int(3.2 * fps) : int(5.8 * fps)].max() < 0.505
    np.testing.assert_array_equal(pulsed.truncations(30, 50), truncations[30:50])


def _nearest_distance(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance (columns) from each interior reference point to the nearest of `points`."""
    inner = reference[1:-1]
    return float(np.abs(inner[:, None] - points[None, :]).min(axis=1).mean())


def test_harmonic_and_percussive_sources_follow_their_part_of_a_mix():
    chord_changes = [1.13, 2.71, 4.37, 5.9, 6.8]
    harmonic = tones(8.0, chord_changes)
    percussive = np.concatenate([clicks(4.0, 120), clicks(4.0, 240, offset=0.1)])  # the drums double up at 4 s
    mix = (harmonic + percussive).astype(np.float32)
    options = AnalysisOptions(**BUSY)
    alone = {
        "harmonic": analyze_samples(harmonic.astype(np.float32), SR, options),
        "percussive": analyze_samples(percussive.astype(np.float32), SR, options),
    }
    result = {
        source: analyze_samples(mix, SR, AnalysisOptions(**BUSY, analysis_source=source))
        for source in ("mix", "harmonic", "percussive")
    }

    def corr(a: str, b: str) -> float:
        return float(np.corrcoef(result[a].signal, alone[b].signal)[0, 1])

    # The drums dominate the mix's signal; the harmonic source follows the chords instead.
    assert corr("harmonic", "harmonic") > corr("mix", "harmonic") + 0.3
    assert corr("percussive", "percussive") > corr("harmonic", "percussive") + 0.3
    assert corr("percussive", "percussive") >= corr("mix", "percussive")
    h_ref, p_ref = alone["harmonic"].inflection_points, alone["percussive"].inflection_points
    assert _nearest_distance(result["harmonic"].inflection_points, h_ref) < _nearest_distance(
        result["mix"].inflection_points, h_ref
    )
    assert _nearest_distance(result["percussive"].inflection_points, p_ref) < _nearest_distance(
        result["harmonic"].inflection_points, p_ref
    )


def test_hpss_in_blocks_equals_librosa_on_the_whole_song():
    librosa = pytest.importorskip("librosa")
    rate = 4000
    y = media.music(rate, 62.0, seed=5)[:, 0]  # three 30 s blocks
    whole = librosa.effects.hpss(y)[1]
    blocks = np.concatenate(list(hpss_blocks([y[i : i + 4000] for i in range(0, len(y), 4000)], rate, "percussive")))
    assert len(blocks) == len(y)
    np.testing.assert_allclose(blocks, whole, atol=1e-4 * np.abs(whole).max())


def test_analyze_plot_shows_beats_and_onsets_when_used(click_track, tmp_path):
    pytest.importorskip("matplotlib")
    song = media.write_soundfile(tmp_path / "clicks.wav", click_track[:, None], SR)
    busy = ["--threshold", "0.002", "--rolling-length", "60", "--smoothing", "128", "--inflection-type", "both"]
    plain, directed = tmp_path / "plain.png", tmp_path / "directed.png"
    assert main(["analyze", str(song), *busy, "--plot", str(plain), "-q"]) == 0
    assert main(["analyze", str(song), *busy, "--snap-to-beats", "--pulse", "1", "--plot", str(directed), "-q"]) == 0
    with av.open(os.fspath(plain)) as a, av.open(os.fspath(directed)) as b:
        plain_height = next(a.decode(video=0)).height
        directed_height = next(b.decode(video=0)).height
    assert directed_height > plain_height  # a fourth panel: the onset envelope
