"""The analysis gives exactly the seed's inflection points and alphas.

The reference here is deliberately plain: matplotlib's specgram, Python loops, and the
seed's `get_inflection_points` as published (with the list starting at index 0).
"""

from __future__ import annotations

import warnings

import media
import numpy as np
import pytest
from ganterp_fast.engine.analysis import (
    AnalysisOptions,
    analyze_samples,
    inflection_points,
    segment_alphas,
    smooth,
    spectrogram,
)
from ganterp_fast.engine.errors import InputError
from matplotlib import mlab

# ---------------------------------------------------------------- the reference, as published


def seed_get_inflection_points(arr, threshold, absolute_threshold=8e-2, type="both", rolling_length=200):
    inflection_points = [0]
    i = 0
    while i < len(arr) - rolling_length - 1:
        prev_mean = np.mean(arr[i : i + rolling_length])
        curr_pos = i + rolling_length + 1
        next_mean = np.mean(arr[curr_pos + 1 : curr_pos + rolling_length + 1])
        is_peak = np.sign(arr[curr_pos] - prev_mean) == np.sign(arr[curr_pos] - next_mean) and np.sign(
            arr[curr_pos] - arr[curr_pos - 1]
        ) == np.sign(arr[curr_pos] - arr[curr_pos + 1])
        if is_peak and np.abs(arr[curr_pos] - prev_mean) > threshold and np.abs(arr[curr_pos] - next_mean) > threshold:
            if (type == "min" and (arr[curr_pos] > arr[curr_pos - 1] or arr[curr_pos] > absolute_threshold)) or (
                type == "max" and arr[curr_pos] < arr[curr_pos - 1]
            ):
                i += rolling_length
                continue
            inflection_points.append(curr_pos)
            i += rolling_length
        else:
            i += 1
    inflection_points.append(len(arr) - 1)
    return np.array(inflection_points)


def reference_signal(x, sr, smoothing):
    spec = mlab.specgram(x, Fs=sr)[0]  # plt.specgram's defaults: NFFT 256, noverlap 128
    tv = np.array([np.mean(np.abs(spec[:, i] - spec[:, i + 1])) for i in range(spec.shape[1] - 1)])
    tv = tv / tv.max()
    if smoothing == 0:
        smoothed = np.concatenate([[tv[0]], tv])
    else:
        cumsum = np.cumsum(np.insert(tv, 0, 0))
        valid = (cumsum[smoothing:] - cumsum[:-smoothing]) / float(smoothing)
        smoothed = np.concatenate([[valid[0]] * smoothing, valid])
    return spec, tv, smoothed


def reference_alphas(signal, points):
    alphas = []
    for begin, end in zip(points[:-1], points[1:]):
        segment = signal[begin:end]
        alphas.extend(np.cumsum(segment) / np.sum(segment))
    alphas.append(1.0)
    return np.array(alphas)


def seed_points(signal, options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the loop's mean of an empty slice
        return seed_get_inflection_points(
            signal,
            options.threshold,
            absolute_threshold=options.absolute_threshold,
            type=options.inflection_type,
            rolling_length=options.rolling_length,
        )


# ---------------------------------------------------------------- generated audio


def music(sr, seconds, seed=0):
    """Notes with attacks and decays, chord changes, a loud section and silences."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    out = np.zeros_like(t)
    pos = 0.0
    while pos < seconds:
        length = rng.uniform(0.15, 1.2)
        if rng.random() < 0.15:  # a rest
            pos += length
            continue
        mask = (t >= pos) & (t < pos + length)
        local = t[mask] - pos
        envelope = np.exp(-local * rng.uniform(2, 8)) * np.minimum(1, local * 200)
        for f in rng.choice([110, 146.8, 196, 261.6, 329.6, 392, 523.3, 659.3], size=rng.integers(1, 4)):
            out[mask] += envelope * np.sin(2 * np.pi * f * local) * rng.uniform(0.2, 0.5)
        if rng.random() < 0.3:  # a drum hit
            hit = mask & (t < pos + 0.05)
            out[hit] += rng.normal(0, 0.3, hit.sum())
        pos += length
    return (out / max(1e-9, np.abs(out).max()) * 0.8).astype(np.float32)


def speech_like(sr, seconds, seed=1):
    """Syllable-rate amplitude-modulated noise bursts with formants and pauses."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    noise = rng.normal(0, 1, n)
    t = np.arange(n) / sr
    carrier = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 700 * t) + 0.2 * noise
    syllables = (np.sin(2 * np.pi * 4 * t) > 0).astype(float)
    words = (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.3).astype(float)
    return (0.3 * carrier * syllables * words).astype(np.float32)


CASES = [
    ("music", 44100, 30.0),
    ("music", 22050, 40.0),
    ("speech", 16000, 45.0),
    ("music", 8000, 60.0),
    ("speech", 48000, 20.0),
]


@pytest.mark.parametrize("kind,sr,seconds", CASES)
@pytest.mark.parametrize("inflection_type", ["min", "max", "both"])
@pytest.mark.parametrize("smoothing", [256, 0])
def test_inflection_points_and_alphas_match_the_seed(kind, sr, seconds, inflection_type, smoothing):
    x = (music if kind == "music" else speech_like)(sr, seconds)
    # The thresholds of the published example, and a lower one that finds more points.
    for threshold in (1e-2, 2e-3):
        options = AnalysisOptions(threshold=threshold, inflection_type=inflection_type, smoothing=smoothing)
        result = analyze_samples(x, sr, options)
        spec, tv, signal = reference_signal(x, sr, smoothing)

        assert result.num_columns == spec.shape[1] == len(result.signal) == len(result.alphas)
        np.testing.assert_allclose(result.tv, tv, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.signal, signal, rtol=1e-9, atol=1e-12)
        expected = seed_points(signal, options)
        np.testing.assert_array_equal(result.inflection_points, expected)
        # The engine's own signal through the seed's loop: identical indices, bit for bit.
        np.testing.assert_array_equal(result.inflection_points, seed_points(result.signal, options))
        np.testing.assert_allclose(result.alphas, reference_alphas(signal, expected), rtol=1e-9, atol=1e-12)


def test_the_real_audio_cases_find_interior_points():
    """The parity above is only meaningful if the loop actually fires on this audio."""
    found = {}
    for kind, sr, seconds in CASES:
        x = (music if kind == "music" else speech_like)(sr, seconds)
        found[(kind, sr)] = len(
            analyze_samples(x, sr, AnalysisOptions(threshold=2e-3, inflection_type="both")).inflection_points
        )
    assert all(count > 2 for count in found.values()), found


@pytest.mark.parametrize("inflection_type", ["min", "max", "both"])
@pytest.mark.parametrize("rolling_length", [1, 3, 17, 200])
def test_fast_inflection_points_equal_the_loop_on_awkward_signals(inflection_type, rolling_length):
    rng = np.random.default_rng(rolling_length)
    signals = [
        rng.random(3000),
        np.repeat(rng.random(60), 50),  # plateaus: exact ties and zero differences
        np.round(rng.random(4000), 1),  # many ties
        np.abs(np.sin(np.arange(5000) / 40.0)) + 0.001 * rng.random(5000),
        np.zeros(1000),
        np.full(1000, 0.1),  # constant, not a power of two: np.mean is not exact
        rng.random(rolling_length + 1),
        rng.random(rolling_length + 2),
        rng.random(rolling_length + 3),
        np.cumsum(rng.normal(size=2500)) ** 2,
    ]
    for signal in signals:
        for threshold, absolute in [(1e-2, 8e-2), (0.0, 0.5), (0.3, 1e9), (1e-3, -1.0)]:
            options = AnalysisOptions(
                threshold=threshold,
                inflection_type=inflection_type,
                absolute_threshold=absolute,
                rolling_length=rolling_length,
            )
            got = inflection_points(
                signal, threshold, absolute_threshold=absolute, type=inflection_type, rolling_length=rolling_length
            )
            np.testing.assert_array_equal(got, seed_points(signal, options))


def test_spectrogram_equals_matplotlib():
    x = music(22050, 3.0)
    np.testing.assert_allclose(spectrogram(x, 22050), mlab.specgram(x, Fs=22050)[0], rtol=1e-9, atol=1e-18)


def test_streaming_blocks_give_the_same_result_as_one_array():
    x = music(16000, 20.0, seed=5)
    whole = analyze_samples(x, 16000)
    for block in (1, 127, 1000, 65536):
        streamed = analyze_samples((x[i : i + block] for i in range(0, len(x), block)), 16000)
        np.testing.assert_array_equal(streamed.tv, whole.tv)
        np.testing.assert_array_equal(streamed.inflection_points, whole.inflection_points)


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(44100, np.float32),
        np.full(44100, 0.5, np.float32),
        np.zeros(100, np.float32),
        np.ones(300, np.float32) * 0.1,
    ],
    ids=["silence", "dc", "shorter-than-a-window", "two-columns"],
)
def test_degenerate_audio_gives_a_valid_linear_path(samples):
    result = analyze_samples(samples, 44100)
    assert np.all(np.isfinite(result.signal)) and np.all(np.isfinite(result.alphas))
    assert result.inflection_points[0] == 0 and result.inflection_points[-1] == result.num_columns - 1
    assert len(result.inflection_points) <= 2
    assert result.alphas[-1] == 1.0
    assert np.all(np.diff(result.alphas[:-1]) >= 0)


def test_smoothing_is_a_trailing_mean_with_one_value_per_column():
    tv = np.arange(10, dtype=float)
    smoothed = smooth(tv, 3)
    assert len(smoothed) == 11
    np.testing.assert_allclose(smoothed[3:], [np.mean(tv[j - 3 : j]) for j in range(3, 11)])
    np.testing.assert_allclose(smoothed[:3], np.mean(tv[:3]))
    np.testing.assert_array_equal(smooth(tv, 0), smooth(tv, 1))


def test_alphas_rise_to_one_in_each_segment():
    signal = np.abs(np.sin(np.arange(1000) / 30.0))
    points = np.array([0, 300, 700, 999])
    alphas = segment_alphas(signal, points)
    assert alphas[299] == pytest.approx(1.0) and alphas[699] == pytest.approx(1.0) and alphas[-1] == 1.0
    assert alphas[300] < 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": -1},
        {"inflection_type": "peak"},
        {"rolling_length": 0},
        {"smoothing": -2},
        {"threshold": float("nan")},
    ],
)
def test_bad_options_name_the_value(kwargs):
    with pytest.raises(InputError) as info:
        AnalysisOptions(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(info.value) or "peak" in str(info.value)


@pytest.mark.parametrize("excerpt", [{"start": -1.0}, {"duration": 0.0}, {"start": 99.0}])
def test_a_bad_excerpt_names_the_value_and_the_files_length(excerpt, tmp_path):
    """The excerpt belongs to the input: checked when the file is probed, with its length."""
    from ganterp_fast.engine.source import open_source

    song = media.write_soundfile(tmp_path / "song.wav", media.music(8000, 2.0), 8000)
    with pytest.raises(InputError) as info:
        open_source(song, **excerpt)
    assert f"{next(iter(excerpt.values())):g}" in str(info.value) and "2.00 s long" in str(info.value)
