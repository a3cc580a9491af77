"""A preview of a section (--preview --start/--duration) shows the full render's path there: the
whole input (or a cue sheet's excerpt) is analysed and the section alone is rendered. Without
--preview, --start/--duration still cut the excerpt that is analysed and rendered."""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import media
import numpy as np
import pytest

from ganterp_fast.cli.main import main
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
from ganterp_fast.engine.audio.excerpt import Section
from ganterp_fast.engine.audio.source import open_source
from ganterp_fast.engine.errors import OptionError
from ganterp_fast.engine.job import prepare
from ganterp_fast.engine.options import OutputOptions

SR = 8000
BUSY = ("--threshold", "2e-3", "--inflection-type", "both", "--rolling-length", "60", "--smoothing", "64")
BUSY_OPTIONS = AnalysisOptions(threshold=2e-3, inflection_type="both", rolling_length=60, smoothing=64)


def blocks() -> np.ndarray:
    """Ten seconds of four clearly different sounds (changes at 2.5, 4 and 7 s), 8 kHz mono."""
    t = np.arange(10 * SR) / SR
    x = np.zeros_like(t)
    rng = np.random.default_rng(0)
    edges = (0.0, 2.5, 4.0, 7.0, 10.0)
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        part = (t >= a) & (t < b)
        x[part] = 0.5 * np.sin(2 * np.pi * (220, 880, 330, 1500)[i] * t[part])
        if i % 2:
            x[part] += 0.3 * rng.normal(size=part.sum())
    return (0.8 * x / np.abs(x).max()).astype(np.float32)[:, None]


SONG = media.Song(rate=SR, seconds=10.0, samples=blocks)  # conftest's `song`


def points(song: Path, start: float = 0.0, duration: float | None = None) -> list[float]:
    result = analyze(open_source(song, start=start, duration=duration), BUSY_OPTIONS)
    return [round(c * result.hop_length / result.sample_rate, 1) for c in result.inflection_points]


def render(capsys: pytest.CaptureFixture[str], song: Path, output: Path, tiny_onnx: Path, *flags: object) -> str:
    """The summary of a render of `song` into `output` (exit 0)."""
    argv = ["render", str(song), "-o", str(output), "--model", str(tiny_onnx), "--precision", "fp32", "--crf", "0"]
    code = main([*argv, *BUSY, *map(str, flags)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def summary_points(out: str) -> str:
    return next(line for line in out.splitlines() if "inflection points, classes:" in line)


def decode(path: Path) -> tuple[list[tuple[float, np.ndarray]], float]:
    """The video's (time, rgb) frames and its audio stream's length in seconds."""
    with av.open(os.fspath(path)) as container:
        audio = container.streams.audio[0]
        length = float(audio.duration * audio.time_base)
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return frames, length


def test_the_song_has_points_an_excerpt_alone_does_not(song):
    whole, excerpt = points(song), points(song, 2.0, 6.0)
    inside = [t for t in whole if 2.0 <= t <= 8.0]
    assert 3.5 in inside and 2.0 not in inside, whole  # the full render's change at 3.5 s, none at 2 s
    assert [round(2.0 + t, 1) for t in excerpt] != inside and len(excerpt) != len(whole), excerpt


def test_a_section_preview_shows_the_full_previews_frames_classes_and_its_own_soundtrack(
    song, tiny_onnx, tmp_path, capsys
):
    full, section = tmp_path / "full.mp4", tmp_path / "section.mp4"
    whole = render(capsys, song, full, tiny_onnx, "--preview")
    part = render(capsys, song, section, tiny_onnx, "--preview", "--start", 2, "--duration", 6)
    assert summary_points(part) == summary_points(whole)  # the full render's points and classes
    assert f"{len(points(song))} inflection points" in summary_points(whole)
    assert "6.0 s of audio (2.0-8.0 s of the full render's 10.0 s)" in part, part
    assert "the full render of this section (180 frames at 30 fps)" in part, part

    all_frames, full_audio = decode(full)
    frames, audio = decode(section)
    assert len(all_frames) == 60 and len(frames) == 36
    assert abs(full_audio - 10.0) < 0.05 and abs(audio - 6.0) < 0.05, (full_audio, audio)
    for k, (t, image) in enumerate(frames):
        assert abs(t - k / 6) < 1e-3
        assert np.array_equal(image, all_frames[12 + k][1]), k


def test_the_sections_soundtrack_is_the_inputs_at_those_times(song, tiny_onnx, tmp_path):
    job = prepare(song, tmp_path / "p.mp4", _options(tiny_onnx), section=Section(start=2, duration=6))
    sound = job.soundtrack
    assert (sound.first_sample, sound.num_samples, sound.start, sound.duration) == (2 * SR, 6 * SR, 2.0, 6.0)
    assert job.analysis.num_samples == 10 * SR and job.num_frames == 36 and job.full_frames == 180
    full = prepare(song, tmp_path / "p.mp4", _options(tiny_onnx))
    z, classes = job.path.frames(0, job.num_frames)
    z_full, classes_full = full.path.frames(12, 48)
    assert np.array_equal(z, z_full) and np.array_equal(classes, classes_full)
    assert job.path.schedule() == full.path.schedule() and job.fingerprint() != full.fingerprint()
    # To the end: the rest of the song, at the full render's path.
    rest = prepare(song, tmp_path / "p.mp4", _options(tiny_onnx), section=Section(start=7))
    assert rest.num_frames == 18 and rest.soundtrack.num_samples == 3 * SR


def _options(tiny_onnx: Path):  # -> RenderOptions
    return media.render_options(model=str(tiny_onnx), analysis=BUSY_OPTIONS, output=OutputOptions(preview=True))


def test_without_preview_start_and_duration_cut_the_excerpt_that_is_analysed(song, tiny_onnx, tmp_path, capsys):
    out = render(capsys, song, tmp_path / "excerpt.mp4", tiny_onnx, "--fps", 6, "--start", 2, "--duration", 6)
    excerpt = points(song, 2.0, 6.0)
    assert f"{len(excerpt)} inflection points" in summary_points(out)
    assert [f"{t:.1f}" for t in excerpt] == re.findall(r"(\d+\.\d)s \d+ \(", summary_points(out))
    assert "6.0 s of audio\n" in out and "full render" not in out
    frames, audio = decode(tmp_path / "excerpt.mp4")
    assert len(frames) == 36 and abs(audio - 6.0) < 0.05


def test_a_preview_of_a_cue_sheets_excerpt_counts_from_the_excerpts_start(song, tiny_onnx, tmp_path, capsys):
    sheet = tmp_path / "cues.csv"
    assert main(["analyze", str(song), *BUSY, "--start", "1", "--duration", "8", "--cues", str(sheet), "-q"]) == 0
    full, section = tmp_path / "full.mp4", tmp_path / "section.mp4"
    whole = render(capsys, song, full, tiny_onnx, "--preview", "--cues", sheet)
    part = render(capsys, song, section, tiny_onnx, "--preview", "--cues", sheet, "--start", 3, "--duration", 2)
    assert summary_points(part) == summary_points(whole)
    all_frames, _ = decode(full)
    frames, audio = decode(section)
    assert len(all_frames) == 48 and len(frames) == 12 and abs(audio - 2.0) < 0.05
    for k, (_, image) in enumerate(frames):
        assert np.array_equal(image, all_frames[18 + k][1]), k


def test_a_section_preview_shows_the_inputs_picture_at_the_sections_times(tiny_onnx, tmp_path, capsys):
    clip = media.write_video(tmp_path / "clip.mp4", media.music(22050, 6.0, channels=2), 22050)
    flags = ("--preview", "--size", "256x144", "--layout", "pip")
    render(capsys, clip, tmp_path / "full.mp4", tiny_onnx, *flags)
    render(capsys, clip, tmp_path / "section.mp4", tiny_onnx, *flags, "--start", 2, "--duration", 3)
    all_frames, _ = decode(tmp_path / "full.mp4")
    frames, audio = decode(tmp_path / "section.mp4")
    assert len(frames) == 18 and abs(audio - 3.0) < 0.05
    for k, (_, image) in enumerate(frames):
        assert np.array_equal(image, all_frames[12 + k][1]), k


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--start", "10"), "--start 10 s is at or past the end of the audio: song.wav is 10.00 s long"),
        (("--start", "12", "--duration", "2"), "--start 12 s is at or past the end"),
        (("--duration", "0"), "--duration must be a positive number of seconds"),
        (("--start", "-1"), "--start must be a number of seconds >= 0"),
    ],
)
def test_a_bad_section_is_one_line_naming_its_flag(song, tmp_path, capsys, flags, named):
    output = tmp_path / "never.mp4"
    code = main(["render", str(song), "-o", str(output), "--weights", "random", "--preview", *flags])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


def test_a_python_user_reads_the_sections_field(song, tmp_path):
    with pytest.raises(OptionError, match=r"^Section\.duration must be a positive number"):
        Section(duration=0)
    with pytest.raises(OptionError, match=r"^Section\.start 11 s is at or past the end of the audio"):
        prepare(song, tmp_path / "x.mp4", section=Section(start=11))
