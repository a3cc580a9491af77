"""The analysis gives exactly the seed's inflection points and alphas.

The reference here is deliberately plain: matplotlib's specgram, Python loops, and the
seed's `get_inflection_points` as published (with the list starting at index 0).
"""

from __future__ import annotations

import warnings

import media
import numpy as np
import pytest
from matplotlib import mlab

from ganterp_fast.engine.analysis.analyze import (
    AnalysisOptions,
    analyze_samples,
    inflection_points,
    segment_alphas,
    smooth,
)
from ganterp_fast.engine.analysis.spectrogram import spectrogram
from ganterp_fast.engine.errors import InputError

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
    if smoothing == 0:  # no smoothing: one value per column, tv[j] at column j, the last repeated
        smoothed = np.concatenate([tv, [tv[-1]]])
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
    alphas.extend([1.0] * (len(signal) - points[-1]))  # the last point's column and any after it
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
    x = (media.parity_music if kind == "music" else media.parity_speech)(sr, seconds)
    # The thresholds of the published example, and a lower one that finds more points.
    for threshold in (1e-2, 2e-3):
        options = AnalysisOptions(threshold=threshold, inflection_type=inflection_type, smoothing=smoothing)
        result = analyze_samples(x, sr, options)
        spec, tv, signal = reference_signal(x, sr, smoothing)

        assert result.num_columns == spec.shape[1] == len(result.signal) == len(result.alphas)
        np.testing.assert_allclose(result.tv, tv, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.signal, signal, rtol=1e-9, atol=1e-12)
        # Smoothing 0 is the seed document's algorithm: the loop runs on the TV distances themselves.
        expected = seed_points(tv if smoothing == 0 else signal, options)
        np.testing.assert_array_equal(result.inflection_points, expected)
        # The engine's own signal through the seed's loop: identical indices, bit for bit.
        searched = result.tv if smoothing == 0 else result.signal
        np.testing.assert_array_equal(result.inflection_points, seed_points(searched, options))
        np.testing.assert_allclose(result.alphas, reference_alphas(signal, expected), rtol=1e-9, atol=1e-12)


def test_the_real_audio_cases_find_interior_points():
    """The parity above is only meaningful if the loop actually fires on this audio."""
    found = {}
    for kind, sr, seconds in CASES:
        x = (media.parity_music if kind == "music" else media.parity_speech)(sr, seconds)
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
    x = media.parity_music(22050, 3.0)
    np.testing.assert_allclose(spectrogram(x, 22050), mlab.specgram(x, Fs=22050)[0], rtol=1e-9, atol=1e-18)


def test_streaming_blocks_give_the_same_result_as_one_array():
    x = media.parity_music(16000, 20.0, seed=5)
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
    # No smoothing: column j holds tv[j] (columns j and j + 1 compared), the last column repeats it.
    np.testing.assert_array_equal(smooth(tv, 0), np.append(tv, tv[-1]))


@pytest.mark.parametrize("kind,sr,seconds", [("music", 22050, 20.0), ("speech", 16000, 30.0), ("music", 8000, 45.0)])
@pytest.mark.parametrize("inflection_type", ["min", "both"])
def test_smoothing_0_is_the_seed_documents_algorithm(kind, sr, seconds, inflection_type):
    """analyze(..., smoothing=0) gives the seed's get_inflection_points(tv), and its points map to columns."""
    x = (media.parity_music if kind == "music" else media.parity_speech)(sr, seconds)
    for threshold in (1e-2, 2e-3):
        options = AnalysisOptions(threshold=threshold, inflection_type=inflection_type, smoothing=0)
        result = analyze_samples(x, sr, options)
        _, tv, _ = reference_signal(x, sr, 0)
        np.testing.assert_array_equal(result.inflection_points, seed_points(tv, options))
        assert len(result.tv) == result.num_columns - 1 == len(result.signal) - 1
        # Point i is column i (tv[i]: the change to column i + 1), at column i's time in the video.
        assert result.inflection_points[-1] == len(tv) - 1
        np.testing.assert_array_equal(result.signal[result.inflection_points], result.tv[result.inflection_points])
        np.testing.assert_allclose(
            result.inflection_times, (result.inflection_points * 128 + 128) / sr, rtol=0, atol=1e-12
        )
        assert len(result.alphas) == result.num_columns and result.alphas[-1] == 1.0
    # The cases find interior points, so the equality above says something.
    assert len(analyze_samples(x, sr, AnalysisOptions(threshold=2e-3, smoothing=0)).inflection_points) > 2


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
    from ganterp_fast.engine.audio.source import open_source

    song = media.write_soundfile(tmp_path / "song.wav", media.music(8000, 2.0), 8000)
    with pytest.raises(InputError) as info:
        open_source(song, **excerpt)
    assert f"{next(iter(excerpt.values())):g}" in str(info.value) and "2.00 s long" in str(info.value)
