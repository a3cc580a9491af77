"""Audio decoding on generated media: every format back to the source's left channel, exact
excerpts, both backends in agreement, flat memory, and a clear error for every bad input."""

from __future__ import annotations

import logging
import tracemalloc

import media
import numpy as np
import pytest
import soundfile

from ganterp_fast.engine.audio.decode import (
    excerpt_samples,
    iter_audio_frames,
    iter_channel0,
    probe_audio,
    read_channel0,
)
from ganterp_fast.engine.errors import InputError

RATE = 44100
SECONDS = 2.0
# Formats whose stream carries no priming information: the decoder's 1024 samples of AAC
# start-up come out in front of the sound (FFmpeg's command line does the same).
PRIMED = {"aac-adts": 1024}


def _source(fmt: media.Format) -> tuple[np.ndarray, int]:
    rate = fmt.rate or RATE
    return media.music(rate, SECONDS, channels=2), rate


def _lag(decoded: np.ndarray, reference: np.ndarray, *, max_lag: int = 2048) -> int:
    """Samples by which `decoded` is late against `reference` (cross-correlation)."""
    middle = reference[max_lag : len(reference) - max_lag]
    window = decoded[: len(middle) + 2 * max_lag]
    scores = np.correlate(window, middle, "valid")
    return int(np.argmax(scores)) - max_lag


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def written(folder):
    """Every format written once: name -> (path, source samples [n, 2], rate)."""
    files = {}
    for name, fmt in media.FORMATS.items():
        samples, rate = _source(fmt)
        files[name] = (media.write_format(folder, name, samples, rate), samples, rate)
    return files


@pytest.mark.parametrize("name", list(media.FORMATS))
def test_every_format_decodes_to_the_sources_left_channel(written, name):
    path, source, rate = written[name]
    fmt = media.FORMATS[name]
    info = probe_audio(path)
    assert info.sample_rate == rate and info.channels == 2 and info.duration_s > 0
    left, sr = read_channel0(path)
    assert sr == rate and left.dtype == np.float32 and left.ndim == 1
    n = len(source)
    if fmt.lossless:
        assert len(left) == n
        np.testing.assert_allclose(left, source[:, 0], atol=1.0 / 32768 + 1e-7)
        return
    lag = _lag(left, source[:, 0])
    assert lag == PRIMED.get(name, 0), f"{name}: decoded audio is {lag} samples late"
    assert abs(len(left) - lag - n) <= 1100  # at most a final codec frame of padding
    aligned = left[lag : lag + n]
    n = min(len(aligned), n)
    assert np.corrcoef(aligned[:n], source[:n, 0])[0, 1] > 0.99
    assert abs(np.corrcoef(aligned[:n], source[:n, 1])[0, 1]) < 0.2  # channel 0, not a mix


@pytest.mark.parametrize("name", ["wav", "mp4", "m4a", "ogg-vorbis"])
def test_exact_lengths_where_the_container_knows_them(written, name):
    path, source, _ = written[name]
    info = probe_audio(path)
    assert info.exact and info.num_samples == len(source)
    assert len(read_channel0(path)[0]) == len(source)  # the AAC's end padding is cut off


@pytest.mark.parametrize("name", ["wav", "wav-float", "flac", "ogg-vorbis", "opus"])
def test_soundfile_and_pyav_backends_agree(written, name):
    path, _, _ = written[name]
    by_soundfile = probe_audio(path, backend="soundfile")
    by_pyav = probe_audio(path, backend="pyav")
    assert (by_soundfile.backend, by_pyav.backend) == ("soundfile", "pyav")
    assert by_soundfile.sample_rate == by_pyav.sample_rate and by_soundfile.channels == by_pyav.channels
    a, _ = read_channel0(by_soundfile)
    b, _ = read_channel0(by_pyav)
    assert len(a) == len(b)
    tolerance = 0 if media.FORMATS[name].lossless else 1e-4
    np.testing.assert_allclose(a, b, atol=tolerance)
    frames_a = np.concatenate([f.to_ndarray() for f in iter_audio_frames(by_soundfile, start=0.25, duration=1.0)], 1)
    frames_b = np.concatenate([f.to_ndarray() for f in iter_audio_frames(by_pyav, start=0.25, duration=1.0)], 1)
    np.testing.assert_allclose(frames_a, frames_b, atol=tolerance)


def test_mp3_is_always_decoded_by_pyav(written):
    """libsndfile's mp3 reads in blocks are not sample-exact: mp3 goes to FFmpeg, even when asked."""
    for name in ("mp3", "mp3-soundfile"):
        with pytest.raises(InputError, match="use backend 'pyav'"):
            probe_audio(written[name][0], backend="soundfile")
        info = probe_audio(written[name][0])
        assert info.backend == "pyav" and info.codec == "mp3"


def test_default_backends(written):
    soundfile_formats = {"wav", "wav-float", "flac", "ogg-vorbis", "opus"}
    for name, (path, _, _) in written.items():
        assert probe_audio(path).backend == ("soundfile" if name in soundfile_formats else "pyav"), name
    assert probe_audio(written["mp3"][0]).codec == "mp3"
    assert probe_audio(written["wav"][0]).codec == "pcm_s16le"
    assert probe_audio(written["m4a"][0]).codec == "aac"


@pytest.mark.parametrize("name", ["wav", "flac", "ogg-vorbis", "mp3", "m4a", "mkv", "webm-vp9-opus"])
@pytest.mark.parametrize("start,duration", [(0.0, None), (0.37, 0.81), (1.2, None), (0.0, 0.5)])
def test_excerpts_are_exact(written, name, start, duration):
    path, _, rate = written[name]
    info = probe_audio(path)
    full, _ = read_channel0(info)
    first, count = excerpt_samples(info, start, duration)
    assert first == round(start * rate)
    if duration is not None:
        assert count == round(duration * rate)
    else:
        count = len(full) - first
    part, _ = read_channel0(info, start=start, duration=duration)
    assert len(part) == count
    np.testing.assert_array_equal(part, full[first : first + count])
    # The soundtrack is the same samples, all channels, pts counted from the excerpt's start.
    frames = list(iter_audio_frames(info, start=start, duration=duration))
    planes = np.concatenate([f.to_ndarray() for f in frames], 1)
    assert planes.shape == (2, count)
    np.testing.assert_array_equal(planes[0], part)
    assert [f.pts for f in frames] == list(np.cumsum([0] + [f.samples for f in frames[:-1]]))
    assert all(f.sample_rate == rate and f.format.name == "fltp" for f in frames)


@pytest.mark.parametrize("backend", ["soundfile", "pyav"])
def test_blocks_are_streamed_at_the_requested_size(written, backend):
    path, source, _ = written["wav"]
    info = probe_audio(path, backend=backend)
    blocks = list(iter_channel0(info, start=0.1, duration=1.5, block_size=10_000))
    sizes = [len(b) for b in blocks]
    assert sizes[:-1] == [10_000] * (len(sizes) - 1) and 0 < sizes[-1] <= 10_000
    assert sum(sizes) == round(1.5 * RATE)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)


@pytest.mark.parametrize(
    "rate,channels",
    [(8000, 1), (11025, 2), (16000, 6), (22050, 1), (44100, 6), (48000, 2), (88200, 1), (96000, 6)],
)
def test_rates_and_channel_counts_are_preserved(folder, rate, channels):
    source = media.speech_like(rate, 1.0, channels=channels)
    for path in (
        media.write_soundfile(folder / f"r{rate}c{channels}.wav", source, rate),
        media.write_pyav_audio(folder / f"r{rate}c{channels}.m4a", source, rate, codec="aac", container_format="ipod"),
    ):
        info = probe_audio(path)
        assert (info.sample_rate, info.channels) == (rate, channels), path.name
        left, sr = read_channel0(path)
        assert sr == rate and len(left) == len(source), path.name
        if path.suffix == ".wav":
            np.testing.assert_allclose(left, source[:, 0], atol=1.0 / 32768 + 1e-7)
        else:
            assert _lag(left, source[:, 0], max_lag=256) == 0
            assert np.corrcoef(left, source[:, 0])[0, 1] > 0.95
        frames = list(iter_audio_frames(path))
        assert frames[0].layout.nb_channels == channels
        assert sum(f.samples for f in frames) == len(source)


def test_unicode_and_spaces_in_paths(tmp_path):
    folder = tmp_path / "música con espacios ü"
    folder.mkdir()
    source = media.music(22050, 1.0, channels=2)
    for name in ("sång ♪ 1.flac", "曲 2.m4a", "clip — 3.mkv"):
        path = folder / name
        if path.suffix == ".flac":
            media.write_soundfile(path, source, 22050)
        elif path.suffix == ".m4a":
            media.write_pyav_audio(path, source, 22050, codec="aac", container_format="ipod")
        else:
            media.write_video(path, source, 22050)
        left, rate = read_channel0(path)
        assert rate == 22050 and abs(len(left) - len(source)) <= 1100, name
        with pytest.raises(InputError, match="past the end"):
            excerpt_samples(probe_audio(path), 5.0)


def test_excerpt_bounds_name_the_value_and_the_length(written, caplog):
    info = probe_audio(written["wav"][0])
    cases = [((-1.0, None), "-1"), ((2.0, None), "2 s"), ((3.5, None), "3.5"), ((0.0, 0.0), "0"), ((0.0, -2.0), "-2")]
    for (start, duration), fragment in cases:
        with pytest.raises(InputError) as caught:
            excerpt_samples(info, start, duration)
        message = str(caught.value)
        assert fragment in message and "2.00 s long" in message and info.path.name in message
    with pytest.raises(InputError):
        excerpt_samples(info, float("nan"))
    with pytest.raises(InputError):
        excerpt_samples(info, 0.0, float("inf"))
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.audio.decode"):
        assert excerpt_samples(info, 1.5, 10.0) == (round(1.5 * RATE), round(0.5 * RATE))
    assert "runs past the end" in caplog.text
    assert len(read_channel0(info, start=1.5, duration=10.0)[0]) == round(0.5 * RATE)


@pytest.fixture(scope="module")
def bad_inputs(folder):
    return media.write_bad_inputs(folder / "bad")


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("missing", "does not exist"),
        ("directory", "is a directory"),
        ("empty", "is empty"),
        ("random-bytes", "not an audio or video file"),
        ("random-bytes-mp3", "not an audio or video file"),
        ("text-mp3", "not an audio or video file"),
        ("truncated-mp4", "not an audio or video file"),
        ("no-audio-track", "no audio track"),
        ("header-only-wav", "no audio samples"),
    ],
)
def test_bad_inputs_are_one_line_input_errors_naming_the_file(bad_inputs, kind, fragment, capfd):
    path = bad_inputs[kind]
    for read in (probe_audio, read_channel0, iter_channel0, iter_audio_frames):  # checked at the call
        with pytest.raises(InputError) as caught:
            read(path)
        message = str(caught.value)
        assert fragment in message and path.name in message and "\n" not in message
    assert caught.value.exit_code == 2
    assert capfd.readouterr().err == ""  # no decoder chatter on stderr


def test_a_truncated_mkv_decodes_what_is_there_with_a_warning(folder, caplog):
    whole = media.write_video(folder / "whole.mkv", media.music(22050, 4.0, channels=2), 22050, audio_codec="aac")
    cut = media.truncate(whole, folder / "cut.mkv", keep=0.5)
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.audio.decode"):
        left, _ = read_channel0(cut)
    assert 0.5 < len(left) / 22050 < 3.0
    assert "may be truncated" in caplog.text and "cut.mkv" in caplog.text


def test_six_channel_soundtrack_frames_keep_every_channel(folder):
    source = media.music(48000, 1.0, channels=6)
    path = media.write_soundfile(folder / "surround.wav", source, 48000)
    frames = list(iter_audio_frames(path, start=0.25))
    planes = np.concatenate([f.to_ndarray() for f in frames], 1)
    assert frames[0].layout.name == "5.1" and planes.shape == (6, 36000)
    np.testing.assert_allclose(planes.T, source[12000:], atol=1.0 / 32768 + 1e-7)


@pytest.mark.parametrize("backend", ["soundfile", "pyav"])
def test_memory_does_not_grow_with_the_files_length(tmp_path, backend):
    """Ten minutes of 8 kHz audio (19 MB as float32) stream through in a few blocks' memory."""
    path = tmp_path / "long.wav"
    rate, minutes = 8000, 10
    chunk = (np.random.default_rng(0).normal(0, 0.1, (rate * 60, 1))).astype(np.float32)
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(chunk)
    info = probe_audio(path, backend=backend)
    tracemalloc.start()
    try:
        total = sum(len(block) for block in iter_channel0(info, block_size=1 << 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == rate * 60 * minutes
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB while streaming {total * 4 / 2**20:.0f} MiB"
