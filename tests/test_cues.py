"""Cue sheets and --classes-at: the round trip to the plain render, edits, cuts, and every
malformed sheet, through the real command line and real decoded video."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest

from ganterp_fast.cli.main import main
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.cue_files import read_sheet, write_sheet
from ganterp_fast.engine.latent.cue_sheet import Cue, CueSheet, parse_classes_at, parse_time, sheet_from_path
from ganterp_fast.engine.latent.path import LatentPath, PathOptions

BUSY = ("--threshold", "0.002", "--rolling-length", "60", "--smoothing", "128", "--inflection-type", "both")
BUSY_OPTIONS = AnalysisOptions(threshold=0.002, rolling_length=60, smoothing=128, inflection_type="both")
FPS = 10
SONG = media.Song(rate=22050, seconds=4.0, seed=4)  # conftest's `song`


@pytest.fixture(scope="module")
def analysis(song):
    result = analyze(song, BUSY_OPTIONS)
    assert len(result.inflection_points) >= 4, "the test song needs several inflection points"
    return result


def decode(path: Path) -> np.ndarray:
    with av.open(os.fspath(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def write_rows(path: Path, rows: list[str], header: str = "time_s,class,name,z,transition") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def render_cli(*args) -> int:
    return main(["render", *map(str, args), "-q", "--fps", str(FPS), "--crf", "0"])


def test_times_in_seconds_and_minutes():
    assert parse_time("12.5") == 12.5
    assert parse_time("1:03") == 63.0
    assert parse_time("1:03.25") == 63.25
    assert parse_time("1:02:03") == 3723.0
    for bad in ("abc", "1:75", "-3", ""):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_analyze_writes_a_sheet_that_reproduces_the_path_at_every_frame(song, analysis, tmp_path):
    for suffix in (".csv", ".json"):
        sheet_file = tmp_path / f"cues{suffix}"
        assert main(["analyze", str(song), *BUSY, "--seed", "5", "--cues", str(sheet_file), "-q"]) == 0
        sheet = read_sheet(sheet_file)
        assert sheet.seed == 5 and sheet.analysis["threshold"] == 0.002 and sheet.sample_rate == 22050
        plain = LatentPath(analysis, PathOptions(seed=5), Fraction(FPS))
        assert [c.class_id for c in sheet.cues] == plain.class_ids
        for fps in (Fraction(FPS), Fraction(30000, 1001)):
            plain = LatentPath(analysis, PathOptions(seed=5), fps)
            cued = LatentPath(analysis, PathOptions.from_sheet(sheet), fps)
            for a, b in zip(plain.frames(0, plain.num_frames), cued.frames(0, cued.num_frames)):
                np.testing.assert_array_equal(a, b)
    fixed = tmp_path / "fixed.csv"
    assert main(["analyze", str(song), *BUSY, "--z-mode", "fixed", "--cues", str(fixed), "-q"]) == 0
    plain = LatentPath(analysis, PathOptions(z_mode="fixed"), Fraction(FPS))
    cued = LatentPath(analysis, PathOptions.from_sheet(read_sheet(fixed)), Fraction(FPS))
    for a, b in zip(plain.frames(0, plain.num_frames), cued.frames(0, cued.num_frames)):
        np.testing.assert_array_equal(a, b)


def test_render_from_an_unedited_sheet_gives_the_plain_render(song, tiny_onnx, tmp_path):
    sheet = tmp_path / "cues.csv"
    assert main(["analyze", str(song), *BUSY, "--seed", "2", "--cues", str(sheet), "-q"]) == 0
    assert render_cli(song, "-o", tmp_path / "plain.mp4", "--model", tiny_onnx, *BUSY, "--seed", "2") == 0
    assert render_cli(song, "-o", tmp_path / "cued.mp4", "--model", tiny_onnx, "--cues", sheet) == 0
    plain, cued = decode(tmp_path / "plain.mp4"), decode(tmp_path / "cued.mp4")
    assert len(plain) == FPS * 4
    np.testing.assert_array_equal(plain, cued)


def test_an_edited_class_changes_the_frames_after_its_cue_and_not_before(analysis):
    plain = LatentPath(analysis, PathOptions(seed=1), Fraction(FPS))
    sheet = _sheet_of(plain)
    k = 2
    new_class = (sheet.cues[k].class_id + 500) % 1000
    for transition in ("smooth", "cut"):
        cues = list(sheet.cues)
        cues[k] = replace(cues[k], transition=transition)
        before = LatentPath(analysis, PathOptions.from_sheet(replace(sheet, cues=tuple(cues))), Fraction(FPS))
        before_z, before_vectors = before.frames(0, before.num_frames)
        cues[k] = replace(cues[k], class_id=new_class)
        path = LatentPath(analysis, PathOptions.from_sheet(replace(sheet, cues=tuple(cues))), Fraction(FPS))
        z, vectors = path.frames(0, path.num_frames)
        np.testing.assert_array_equal(z, before_z)  # only the class was edited
        # smooth: the way to cue k starts at cue k-1; cut: nothing changes before cue k itself.
        unchanged_until = sheet.cues[k - 1 if transition == "smooth" else k].time_s
        changed = np.flatnonzero(np.any(vectors != before_vectors, axis=1))
        assert changed.min() / FPS >= unchanged_until - 1 / FPS
        at_cue = int(np.ceil(sheet.cues[k].time_s * FPS))
        assert vectors[at_cue, new_class] > 0.5 and before_vectors[at_cue, new_class] == 0
        if transition == "cut":  # the change is instant: the frame before the cue shows none of it
            assert vectors[at_cue - 1, new_class] == 0


def _sheet_of(path: LatentPath) -> CueSheet:
    return sheet_from_path(path)


def test_a_cut_is_instant_and_a_moved_cue_moves_the_change_in_the_decoded_video(song, tiny_onnx, tmp_path):
    changes = {}
    for name, time_s in (("early", 1.0), ("late", 2.55)):
        sheet = write_rows(tmp_path / f"{name}.csv", ["0,jellyfish,,0,smooth", f"{time_s},volcano,,1,cut"])
        out = tmp_path / f"{name}.mp4"
        assert render_cli(song, "-o", out, "--model", tiny_onnx, "--cues", sheet) == 0
        frames = decode(out).astype(np.int16)
        steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        jump = int(np.argmax(steps)) + 1  # the first frame after the change
        changes[name] = jump
        # One instant change: the frames on either side hold still (up to encoder noise).
        assert steps[jump - 1] > 10 * max(np.delete(steps, jump - 1).max(), 0.05)
        assert abs(jump - time_s * FPS) <= 1, (name, jump)
    assert changes["late"] - changes["early"] == pytest.approx((2.55 - 1.0) * FPS, abs=1)


def test_classes_at_puts_each_class_at_its_time(analysis):
    sheet = parse_classes_at("0:00 jellyfish, 0:01.5 mountain bike, 3 volcano")
    assert [c.time_s for c in sheet.cues] == [0.0, 1.5, 3.0]
    assert [c.class_id for c in sheet.cues] == [107, 671, 980]
    path = LatentPath(analysis, PathOptions.from_sheet(sheet), Fraction(FPS))
    _, vectors = path.frames(0, path.num_frames)
    assert np.argmax(vectors[0]) == 107
    assert np.argmax(vectors[15]) == 671 or vectors[15, 671] > 0.45
    assert np.argmax(vectors[-1]) == 980
    for bad, fragment in (
        ("0 jellyfish, 1 jelyfish", "did you mean"),
        ("x jellyfish", "not a time"),
        ("0 jellyfish, 0 volcano", "not after"),
        ("0", "no class"),
    ):
        with pytest.raises(InputError, match=fragment):
            parse_classes_at(bad)


@pytest.mark.parametrize(
    "rows,fragments",
    [
        (["0,jelyfish,,0,smooth", "1,volcano,,1,smooth"], ["line 2", "unknown class 'jelyfish'", "did you mean"]),
        (["0,107,,0,smooth", "2,980,,1,smooth", "1.5,7,,2,smooth"], ["line 4", "not after", "time order"]),
        (["0,107,,0,smooth", "99,980,,1,smooth"], ["line 3", "past the end", "4.000 s"]),
        (["0,107,,0,smooth", "1.x,980,,1,smooth"], ["line 3", "'1.x' is not a time"]),
        (["0,107,,0,smooth", "1,980,,one,smooth"], ["line 3", "z 'one' is not a number"]),
        (["0,107,,0,smooth", "1,980,,1,fade"], ["line 3", "transition 'fade'", "smooth or cut"]),
        (["0,107,volcano,0,smooth"], ["line 2", "107 is 'jellyfish' but name says 'volcano'"]),
        (["0,107,,0,smooth", "1,1000,,1,smooth"], ["line 3", "0 to 999"]),
        (["0,107,,0,smooth", "1,,,1,smooth"], ["line 3", "no class"]),
        ([], ["no cues"]),
    ],
)
def test_a_malformed_sheet_names_file_line_and_problem_and_writes_nothing(
    song, tiny_onnx, tmp_path, capsys, rows, fragments
):
    sheet = write_rows(tmp_path / "bad cues.csv", rows)
    out = tmp_path / "out.mp4"
    assert render_cli(song, "-o", out, "--model", tiny_onnx, "--cues", sheet) == 2
    message = capsys.readouterr().err.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert str(sheet) in message
    for fragment in fragments:
        assert fragment in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad cues.csv"]


def test_malformed_json_sheets_name_the_line(tmp_path):
    good = {"path": {"seed": 0}, "cues": [{"time_s": 0, "class": 107}, {"time_s": 1, "class": "jelyfish"}]}
    path = tmp_path / "cues.json"
    path.write_text(json.dumps(good, indent=1), encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_sheet(path)
    text = path.read_text().splitlines()
    line = next(i for i, row in enumerate(text, start=1) if "jelyfish" in row)
    assert f"{path} line " in str(info.value) and "did you mean" in str(info.value)
    assert int(str(info.value).split(" line ")[1].split(":")[0]) in (line - 2, line - 1, line)
    path.write_text('{"cues": [', encoding="utf-8")
    with pytest.raises(InputError, match="line 1: not valid JSON"):
        read_sheet(path)


# ---------------------------------------------------------------- sheets saved by other tools


def csv_module(text: str, **dialect) -> str:
    """The sheet as a script that edits it with Python's csv module writes it back."""
    out = io.StringIO(newline="")
    csv.writer(out, **dialect).writerows(csv.reader(io.StringIO(text, newline="")))
    return out.getvalue()


def earlier_version(text: str) -> str:
    """The sheet as version 0.1.0 wrote it: each header line raw, its JSON unquoted."""
    lines = text.splitlines(keepends=True)
    return "".join(next(csv.reader([line]))[0] + "\n" if line.startswith('"#') else line for line in lines)


def libreoffice(sheet: Path, folder: Path) -> Path:
    """The sheet opened and saved as CSV (UTF-8, comma, double quotes) by LibreOffice Calc, headless."""
    office = shutil.which("libreoffice") or shutil.which("soffice")
    if office is None:
        pytest.skip("LibreOffice is not installed (scripts/test.sh installs Debian's libreoffice-calc)")
    result = subprocess.run(
        [office, f"-env:UserInstallation={(folder / 'profile').as_uri()}", "--headless", "--infilter=CSV:44,34,76,1"]
        + ["--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1", "--outdir", str(folder), str(sheet)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    saved = folder / sheet.name
    assert result.returncode == 0 and saved.exists(), result.stdout + result.stderr
    return saved


#: What a tool may do to a sheet that `analyze --cues` wrote, as text in -> text out.
CSV_EDITS = {
    "csv module": csv_module,
    "csv module, every field quoted, \\n": lambda text: csv_module(text, quoting=csv.QUOTE_ALL, lineterminator="\n"),
    "a byte-order mark": lambda text: "\ufeff" + text,
    "Windows line endings": lambda text: text.replace("\n", "\r\n"),
    "BOM, Windows line endings, csv module": lambda text: "\ufeff" + csv_module(text),
    "written by the earlier version": earlier_version,
    "earlier version, then the csv module": lambda text: csv_module(earlier_version(text)),
    "LibreOffice": None,  # a real round trip through a file
    "LibreOffice, then a byte-order mark": None,
}
JSON_EDITS = {
    "a byte-order mark": lambda text: "\ufeff" + text,
    "Windows line endings": lambda text: text.replace("\n", "\r\n"),
    "BOM and Windows line endings": lambda text: "\ufeff" + text.replace("\n", "\r\n"),
}


@pytest.fixture(scope="module")
def written(song, tiny_onnx, tmp_path_factory) -> dict:
    """The sheets `analyze --cues` writes (.csv, .json) and the plain render they reproduce."""
    folder = tmp_path_factory.mktemp("written")
    sheets = {suffix: folder / f"cues{suffix}" for suffix in (".csv", ".json")}
    for sheet in sheets.values():
        assert main(["analyze", str(song), *BUSY, "--seed", "2", "--cues", str(sheet), "-q"]) == 0
    assert render_cli(song, "-o", folder / "plain.mp4", "--model", tiny_onnx, *BUSY, "--seed", "2") == 0
    return {**sheets, "plain": decode(folder / "plain.mp4")}


def edited(written: dict, suffix: str, edit: str, folder: Path) -> Path:
    """The sheet of `written` after `edit`, saved as the tool saves it (bytes as they are)."""
    source = written[suffix]
    if edit.startswith("LibreOffice"):
        saved = libreoffice(source, folder)
        return saved if edit == "LibreOffice" else _write(folder / "bom.csv", "\ufeff" + saved.read_text("utf-8"))
    change = (CSV_EDITS if suffix == ".csv" else JSON_EDITS)[edit]
    return _write(folder / f"edited{suffix}", change(source.read_text(encoding="utf-8")))


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "suffix,edit", [(".csv", edit) for edit in CSV_EDITS] + [(".json", edit) for edit in JSON_EDITS]
)
def test_a_sheet_saved_by_a_spreadsheet_or_a_script_loads_and_renders_the_same_frames(
    written, song, tiny_onnx, tmp_path, suffix, edit
):
    sheet_file = edited(written, suffix, edit, tmp_path)
    assert sheet_file.read_bytes() != written[suffix].read_bytes()
    original, sheet = read_sheet(written[suffix]), read_sheet(sheet_file)
    assert replace(sheet, cues=(), origin="") == replace(original, cues=(), origin="")
    assert sheet.analysis == original.analysis and sheet.analysis["threshold"] == 0.002
    cues = [(c.class_id, c.z, c.transition) for c in sheet.cues]
    assert cues == [(c.class_id, c.z, c.transition) for c in original.cues]
    np.testing.assert_allclose([c.time_s for c in sheet.cues], [c.time_s for c in original.cues], rtol=1e-14)
    out = tmp_path / "cued.mp4"
    assert render_cli(song, "-o", out, "--model", tiny_onnx, "--cues", sheet_file) == 0
    np.testing.assert_array_equal(decode(out), written["plain"])


@pytest.mark.parametrize("edit", ["BOM, Windows line endings, csv module", "LibreOffice"])
def test_a_mistake_in_a_sheet_saved_by_a_tool_names_its_file_and_line(written, song, tiny_onnx, tmp_path, capsys, edit):
    sheet_file = edited(written, ".csv", edit, tmp_path)
    lines = sheet_file.read_bytes().decode("utf-8-sig").splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if "time_s" in line) + 3  # the third cue
    fields = next(csv.reader([lines[number - 1]]))
    lines[number - 1] = ",".join([fields[0], "jelyfish", "", *fields[3:]])
    sheet_file.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    out = tmp_path / "out.mp4"
    assert render_cli(song, "-o", out, "--model", tiny_onnx, "--cues", sheet_file) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert f"{sheet_file} line {number}: unknown class 'jelyfish'" in message
    assert not out.exists()


def test_sheet_conflicts_and_a_subprocess_exit_code(song, tiny_onnx, tmp_path):
    sheet_file = tmp_path / "cues.csv"
    write_sheet(
        CueSheet((Cue(0.0, 107, 0), Cue(1.0, 980, 1)), z_count=2, seed=3, analysis={"threshold": 0.002}),
        sheet_file,
    )
    result = subprocess.run(
        [sys.executable, "-m", "ganterp_fast", "render", str(song), "-o", str(tmp_path / "x.mp4")]
        + ["--model", str(tiny_onnx), "--cues", str(sheet_file), "--seed", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "--seed 4 differs from the cue sheet's 3" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "ganterp_fast", "render", str(song), "-o", str(tmp_path / "x.mp4")]
        + ["--model", str(tiny_onnx), "--cues", str(sheet_file), "--classes", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--classes and --cues" in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_job_with_cues_and_pulse_pickles_and_any_range_equals_one_pass(song, tiny_onnx, tmp_path):
    import pickle

    from ganterp_fast.engine.job import prepare
    from ganterp_fast.engine.options import RenderOptions

    sheet = parse_classes_at("0 jellyfish, 1.2 volcano, 2.5 7")
    sheet = replace(sheet, cues=(*sheet.cues[:2], replace(sheet.cues[2], transition="cut")))
    options = RenderOptions(
        model=str(tiny_onnx),
        fps="12",
        analysis=replace(BUSY_OPTIONS, onsets=True),
        path=PathOptions.from_sheet(sheet, pulse=0.7),
    )
    job = prepare(song, tmp_path / "out.mp4", options)
    copy = pickle.loads(pickle.dumps(job))
    whole = job.path.frames(0, job.num_frames)
    parts = [copy.path.frames(a, b) for a, b in job.segments(seconds=1.0)]
    for i in range(2):
        np.testing.assert_array_equal(np.concatenate([p[i] for p in parts]), whole[i])
    assert not (tmp_path / "out.mp4").exists()
