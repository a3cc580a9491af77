"""`ganterp-fast analyze` and `classes` as a user runs them: real files, real processes."""

from __future__ import annotations

import json
import subprocess
import sys

import media
import numpy as np
import pytest
import soundfile

from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze_samples
from ganterp_fast.engine.audio.example import EXAMPLE_RATE, example_music


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


SONG = media.Song(rate=EXAMPLE_RATE, name="song with spaces é.wav", samples=lambda: example_music().T)


def test_json_holds_the_analysis_and_its_parameters(song, tmp_path):
    out = tmp_path / "a.json"
    result = cli(
        "analyze", song, "--json", out, "--threshold", "0.002", "--inflection-type", "both", "--rolling-length", "100"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for key in (
        "sample_rate",
        "hop_length",
        "n_fft",
        "num_columns",
        "duration_s",
        "tv",
        "signal",
        "inflection_points",
        "alphas",
        "parameters",
    ):
        assert key in data
    assert data["sample_rate"] == EXAMPLE_RATE and data["hop_length"] == 128 and data["n_fft"] == 256
    assert len(data["signal"]) == len(data["alphas"]) == data["num_columns"] == len(data["tv"]) + 1
    assert data["parameters"]["threshold"] == 0.002 and data["parameters"]["inflection_type"] == "both"
    # The file holds what the library computes from the same samples (16-bit, as written).
    samples, _ = soundfile.read(song, dtype="float32")
    expected = analyze_samples(
        samples[:, 0], EXAMPLE_RATE, AnalysisOptions(threshold=0.002, inflection_type="both", rolling_length=100)
    )
    assert data["inflection_points"] == expected.inflection_points.tolist()
    assert len(data["inflection_points"]) > 2


def test_summary_excerpt_and_plot(song, tmp_path):
    plot = tmp_path / "a.png"
    result = cli("analyze", song, "--start", "2", "--duration", "5", "--plot", plot)
    assert result.returncode == 0, result.stderr
    assert "5.00 s at 22050 Hz" in result.stdout and "inflection points" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000


def test_summary_names_the_classes_of_the_cues(song):
    result = cli("analyze", song, "--classes-at", "0:00 jellyfish, 0:03 107, 0:05.5 volcano")
    assert result.returncode == 0, result.stderr
    assert "3 cues: 0.00s 107 (jellyfish), 3.00s 107 (jellyfish), 5.50s 980 (volcano)" in result.stdout


def test_outputs_get_the_umask_permissions(song, tmp_path):
    out, plot = tmp_path / "a.json", tmp_path / "a.png"
    code = (
        "import os, sys; os.umask(0o022); from ganterp_fast.cli.main import main; "
        f"sys.exit(main(['analyze', {str(song)!r}, '--json', {str(out)!r}, '--plot', {str(plot)!r}, '-q']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o644 and plot.stat().st_mode & 0o777 == 0o644


def test_existing_outputs_are_not_clobbered(song, tmp_path):
    out = tmp_path / "a.json"
    out.write_text("keep me")
    result = cli("analyze", song, "--json", out)
    assert result.returncode == 2 and "--overwrite" in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == "keep me"
    assert cli("analyze", song, "--json", out, "-y").returncode == 0
    assert json.loads(out.read_text())["num_columns"] > 0


def test_a_failed_plot_keeps_no_json(song, tmp_path):
    """--json with --plot: the JSON is committed only once the plot is drawn (here matplotlib is missing)."""
    out, plot = tmp_path / "a.json", tmp_path / "a.png"
    code = (
        "import sys; sys.modules['matplotlib'] = None; from ganterp_fast.cli.main import main; "
        f"sys.exit(main(['analyze', {str(song)!r}, '--json', {str(out)!r}, '--plot', {str(plot)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "plot" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not plot.exists() and list(tmp_path.iterdir()) == []
    # The install hint works from PyPI and from a clone alike.
    assert "pip install 'ganterp-fast[plot]' (in a clone: pip install '.[plot]')" in result.stderr


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda d: d / "missing.wav", "does not exist"),
        (lambda d: d, "directory"),
        (lambda d: (d / "empty.wav").write_bytes(b"") or d / "empty.wav", "empty"),
        (lambda d: (d / "text.mp3").write_text("hello, this is not audio\n" * 20) and d / "text.mp3", "text.mp3"),
        (
            lambda d: (d / "noise.bin").write_bytes(np.random.default_rng(0).bytes(5000)) and d / "noise.bin",
            "noise.bin",
        ),
    ],
    ids=["missing", "directory", "empty", "text-named-mp3", "random-bytes"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, fragment):
    path = make(tmp_path)
    out = tmp_path / "out.json"
    result = cli("analyze", path, "--json", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    result = cli("analyze", tmp_path / "missing.wav", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.parametrize(
    "flag,value",
    [("--threshold", "-1"), ("--rolling-length", "0"), ("--start", "-3"), ("--duration", "0"), ("--smoothing", "-1")],
)
def test_bad_options_exit_2(song, flag, value):
    result = cli("analyze", song, flag, value)
    assert result.returncode == 2 and "Traceback" not in result.stderr and value in result.stderr


def test_start_past_the_end(song):
    result = cli("analyze", song, "--start", "100")
    assert result.returncode == 2 and "100" in result.stderr


def test_example_input_and_help():
    result = cli("analyze", "--example")
    assert result.returncode == 0, result.stderr
    assert "12.00 s at 22050 Hz" in result.stdout
    for command in ("analyze", "render", "export", "classes"):
        helped = cli(command, "--help")
        assert helped.returncode == 0 and "usage" in helped.stdout
    version = cli("--version")
    assert version.returncode == 0 and "ganterp-fast" in version.stdout


def test_classes_lists_and_searches():
    everything = cli("classes")
    assert everything.returncode == 0 and len(everything.stdout.splitlines()) == 1000
    found = cli("classes", "jellyfish")
    assert found.stdout.startswith(" 107")
    assert cli("classes", "no such thing").returncode == 1
    # A number is that class alone, not every WordNet id that contains its digits.
    one = cli("classes", "850")
    assert one.returncode == 0 and one.stdout.splitlines() == [" 850  n04399382  teddy, teddy bear"]
    assert "n04399382" in cli("classes", "n0439938").stdout  # WordNet ids are still searched as text
    past = cli("classes", "1000")
    assert past.returncode == 1 and "0 to 999" in past.stdout
