"""The latent path: classes in order from t = 0, seeded, batch-size independent, any fps."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze_samples
from ganterp_fast.engine.audio.example import EXAMPLE_RATE, example_music
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.classes import class_index, find_classes, parse_classes
from ganterp_fast.engine.latent.path import LatentPath, PathOptions, frame_count, parse_fps


@pytest.fixture(scope="module")
def analysis():
    result = analyze_samples(
        example_music()[0], EXAMPLE_RATE, AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=100)
    )
    assert len(result.inflection_points) >= 4
    return result


def test_classes_by_name_synonym_index_and_wnid():
    assert parse_classes("jellyfish, Mountain Bike, boa constrictor, 7, n01440764") == [107, 671, 61, 7, 0]
    assert class_index("all-terrain bike") == 671  # a synonym
    assert find_classes("jellyfish")[0].index == 107


@pytest.mark.parametrize(
    "query,fragment", [("jelyfish", "jellyfish"), ("crane", "ambiguous"), ("1000", "0 to 999"), ("-1", "out of range")]
)
def test_bad_classes_say_what_would_work(query, fragment):
    with pytest.raises(InputError) as info:
        class_index(query)
    assert fragment in str(info.value)


def test_path_starts_on_the_first_class_and_moves_in_order(analysis):
    requested = ("jellyfish", "mountain bike", "boa constrictor")
    path = LatentPath(analysis, PathOptions(classes=requested), Fraction(30))
    assert path.class_ids[:3] == [107, 671, 61]
    z, vectors = path.frames(0, path.num_frames)
    assert np.argmax(vectors[0]) == 107 and vectors[0, 107] > 0.9
    assert np.allclose(vectors.sum(axis=1), 1.0, atol=1e-6)
    # The dominant class only ever moves forward along the list of points.
    u = path.positions(np.arange(path.num_frames))
    assert np.all(np.diff(u) >= -1e-12)
    assert u[-1] == pytest.approx(path.num_points - 1, abs=0.05)
    # Each inflection point's class dominates at its time: no flash-backs, no lag.
    for time, cls in path.schedule()[1:]:
        frame = min(round(time * 30), path.num_frames - 1)
        assert np.argmax(vectors[frame]) == cls or vectors[frame, cls] > 0.45


def test_same_seed_same_path_whatever_the_batch_size(analysis):
    options = PathOptions(seed=11)
    a = LatentPath(analysis, options, Fraction(25))
    b = LatentPath(analysis, options, Fraction(25))
    whole = a.frames(0, a.num_frames)
    for size in (1, 7, 64):
        parts = list(b.batches(size))
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[0])
        np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), whole[1])
    other = LatentPath(analysis, PathOptions(seed=12), Fraction(25))
    assert other.class_ids != a.class_ids or not np.array_equal(other.z_points, a.z_points)


def test_given_classes_do_not_change_z_and_extra_ones_are_reported(analysis):
    plain = LatentPath(analysis, PathOptions(seed=3), Fraction(30))
    many = tuple(range(plain.num_points + 3))
    named = LatentPath(analysis, PathOptions(seed=3, classes=many), Fraction(30))
    np.testing.assert_array_equal(plain.z_points, named.z_points)
    assert named.unused_classes == list(many[plain.num_points :])


def test_fixed_z_mode_uses_one_z(analysis):
    path = LatentPath(analysis, PathOptions(z_mode="fixed", truncation=0.2), Fraction(30))
    z, _ = path.frames(0, path.num_frames)
    assert np.all(z == z[0])
    assert np.abs(z).max() <= 0.2 * 2 + 1e-6  # truncnorm(-2, 2) x truncation


def test_native_fps_samples_one_frame_per_column(analysis):
    fps = parse_fps("native", sample_rate=analysis.sample_rate)
    assert fps == Fraction(analysis.sample_rate, 128)
    path = LatentPath(analysis, PathOptions(), fps)
    u = path.positions(np.arange(min(path.num_frames, analysis.num_columns)))
    np.testing.assert_allclose(u[1:50], analysis.alphas[1:50])


@pytest.mark.parametrize(
    "text,expected",
    [("30", Fraction(30)), ("30000/1001", Fraction(30000, 1001)), ("29.97", Fraction(2997, 100)), (24, Fraction(24))],
)
def test_fps_forms(text, expected):
    assert parse_fps(text) == expected


@pytest.mark.parametrize("text", ["0", "-5", "abc", "1/0", "5000"])
def test_bad_fps(text):
    with pytest.raises(InputError):
        parse_fps(text)


def test_frame_count_matches_audio_length():
    assert frame_count(10.0, Fraction(30)) == 300
    assert frame_count(10.0, Fraction(30000, 1001)) == 300  # 299.7 rounds to 300
    assert frame_count(0.001, Fraction(30)) == 1


@pytest.mark.parametrize("kwargs", [{"truncation": 0}, {"truncation": 1.5}, {"z_mode": "walk"}, {"seed": -1}])
def test_bad_path_options(kwargs):
    with pytest.raises(InputError):
        PathOptions(**kwargs)


def test_native_fps_past_the_limit_asks_for_a_number():
    assert parse_fps("native", sample_rate=96000) == 750
    with pytest.raises(InputError, match="192000 Hz"):
        parse_fps("native", sample_rate=192000)
