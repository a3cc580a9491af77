"""Options as users meet them: one declaration per option gives the flag, its default and help,
and the rule; an error names the field a Python user set and the flag a CLI user typed.

Every numeric flag of every command is tried with 0, a negative number, nan, inf and a word:
each refusal is exit 2 with one error line naming that flag (argparse's usage line first
where argparse refuses a word), and nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import media
import pytest

from ganterp_fast.cli.main import build_parser, main
from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.audio.excerpt import Excerpt
from ganterp_fast.engine.errors import InputError, OptionError
from ganterp_fast.engine.latent.path import PathOptions
from ganterp_fast.engine.live.session import LiveOptions
from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions
from ganterp_fast.engine.video.encode import EncodeOptions

OPTION_CLASSES = (
    AnalysisOptions,
    PathOptions,
    EncodeOptions,
    ModelOptions,
    OutputOptions,
    RenderOptions,
    Excerpt,
    LiveOptions,
)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("song")
    return media.write_soundfile(folder / "song.wav", media.music(8000, 2.0), 8000)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str], str]:
    """Exit code, stderr lines and stdout of the command (argparse's own exits included)."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse refuses (or --help answers) before main's handler
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, err.strip().splitlines(), out


# ------------------------------------------------------------------- the declarations


@pytest.mark.parametrize("owner", OPTION_CLASSES, ids=lambda c: c.__name__)
def test_every_option_field_is_declared_and_its_flag_is_a_command_s(owner: type, capsys) -> None:
    from ganterp_fast.engine.fields import declared

    assert [item.name for item, _ in declared(owner)] == [item.name for item in dataclasses.fields(owner)]
    helps = ""
    for command in ("render", "analyze", "bench", "ui", "live"):
        code, _, out = _run(capsys, [command, "--help"])
        assert code == 0
        helps += out
    for _, found in declared(owner):
        assert found.flag is None or f"{found.flag} " in helps, found.flag


def test_defaults_and_help_come_from_the_declarations(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, out = _run(capsys, ["render", "--help"])
    assert code == 0
    text = " ".join(out.split())
    for fragment in (
        "--smoothing COLUMNS running mean over the TV distances; 0: none (default: 256)",
        "--crf CRF x264 quality, 0-51, lower is better (default: 18)",
        "--preview-fps F --preview: its frame rate (default: 6)",
        "--fps FPS frame rate:",
        "--start SECONDS start of the excerpt (default: 0)",
        # Without --preview, --start and --duration cut the excerpt that is analysed and rendered.
        "--start and --duration cut an excerpt out of INPUT: the excerpt alone is analysed and rendered",
    ):
        assert fragment in text, fragment
    args = build_parser().parse_args(["render", "x.wav"])
    assert (args.smoothing, args.threshold, args.crf, args.fps, args.truncation) == (256, 0.01, 18, "30", 0.4)


def test_a_python_user_reads_the_field_and_a_cli_user_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionError) as caught:
        AnalysisOptions(smoothing=-1)
    error = caught.value
    assert isinstance(error, InputError)
    assert str(error) == "AnalysisOptions.smoothing must be an integer >= 0 (0: none), got -1"
    assert (error.field, error.flag) == ("AnalysisOptions.smoothing", "--smoothing")
    copy = pickle.loads(pickle.dumps(error))  # it crosses process boundaries (Ray workers) intact
    assert (str(copy), copy.flag, copy.label) == (str(error), error.flag, error.label)
    with pytest.raises(OptionError, match=r"^EncodeOptions\.threads must be an integer >= 0"):
        EncodeOptions(threads=-1)
    code, err, _ = _run(capsys, ["analyze", "song.wav", "--smoothing", "-1"])
    assert code == 2 and err == ["ganterp-fast analyze: error: --smoothing must be an integer >= 0 (0: none), got -1"]
    code, err, _ = _run(capsys, ["render", "song.wav", "--encoder-threads", "-1"])
    assert code == 2 and err == [
        "ganterp-fast render: error: --encoder-threads must be an integer >= 0 (0: automatic), got -1"
    ]


def test_options_keep_their_normal_forms() -> None:
    assert ModelOptions(device=" CUDA:1").device == "cuda:1"
    assert OutputOptions(size="720p").size == (1280, 720)
    assert RenderOptions(model="x.onnx").model == ModelOptions(model="x.onnx")
    assert AnalysisOptions(rolling_length=100.0).rolling_length == 100
    with pytest.raises(OptionError, match="RenderOptions.fps 'native' is 1500 at 192000 Hz"):
        RenderOptions(fps="native").frame_rate(192000)


# ------------------------------------------------------------------ every numeric flag

BAD_NUMBERS = ("0", "-3", "nan", "inf", "many")
# command -> flag -> the values of BAD_NUMBERS it takes (any other is refused).
NUMERIC_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "render": {
        "--start": ("0",),
        "--duration": (),
        "--truncation": (),
        "--seed": ("0",),
        "--pulse": ("0",),
        "--pulse-truncation": ("0",),
        "--fps": (),
        "--crf": ("0",),
        "--encoder-threads": ("0",),
        "--pip-size": (),
        "--preview-fps": (),
        "--batch-size": (),
        "--threads": (),
        "--threshold": ("0",),
        "--absolute-threshold": ("0", "-3"),  # minima above a negative bound: all of them are ignored
        "--rolling-length": (),
        "--smoothing": ("0",),
    },
    "analyze": {
        "--start": ("0",),
        "--duration": (),
        "--threshold": ("0",),
        "--absolute-threshold": ("0", "-3"),
        "--rolling-length": (),
        "--smoothing": ("0",),
        "--truncation": (),
        "--seed": ("0",),
        "--pulse": ("0",),
        "--pulse-truncation": ("0",),
    },
    "export": {"--opset": (), "--seed": ("0",)},
    "bench": {"--seconds": (), "--threads": (), "--batch-sizes": (), "--resolutions": ()},
    "ui": {"--port": (), "--max-file-size": ()},
    "live": {
        "--port": ("0",),  # any free port
        "--live-batch": (),
        "--fps": (),
        "--truncation": (),
        "--seed": ("0",),
        "--pulse": ("0",),
        "--pulse-truncation": ("0",),
        "--crf": ("0",),
        "--threads": (),
        "--threshold": ("0",),
        "--absolute-threshold": ("0", "-3"),
        "--rolling-length": (),
        "--smoothing": ("0",),
    },
}
CASES = [
    (command, flag, value)
    for command, flags in NUMERIC_FLAGS.items()
    for flag, taken in flags.items()
    for value in BAD_NUMBERS
    if value not in taken
]


def _argv(command: str, flag: str, value: str, wav: Path, folder: Path, model: Path) -> list[str]:
    """The command with one flag set (as --flag=VALUE, so that '-3' is a value), its outputs in `folder`."""
    given = f"{flag}={value}"
    if command == "render":
        return ["render", str(wav), "-o", str(folder / "v.mp4"), "--model", str(model), given]
    if command == "analyze":
        return ["analyze", str(wav), "--json", str(folder / "a.json"), given]
    if command == "export":
        return ["export", "biggan-deep-128", "-o", str(folder / "m.onnx"), "--weights", "random", given]
    if command == "bench":
        return ["bench", str(model), "--device", "cpu", "--no-peak", "--json", str(folder / "b.json"), given]
    if command == "live":
        return ["live", str(wav), "--record", str(folder / "r.mp4"), "--model", str(model), given]
    return ["ui", "--model", str(model), given]


@pytest.mark.parametrize("command,flag,value", CASES, ids=[" ".join(case) for case in CASES])
def test_a_numeric_flag_past_its_bounds_names_itself(
    command: str, flag: str, value: str, wav: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    model = tmp_path / "model.onnx"  # never opened: the options are checked first, and cheaply
    code, err, _ = _run(capsys, _argv(command, flag, value, wav, folder, model))
    assert code == 2, err
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and errors[0] == err[-1], err
    assert errors[0].startswith(f"ganterp-fast {command}: error: "), err
    message = errors[0].split("error: ", 1)[1]
    if len(err) > 1:  # argparse refuses the word: its usage line, then the flag and the value
        assert err[0].startswith("usage: ") and message.startswith(f"argument {flag}:") and value in message, err
    else:
        assert message.startswith(f"{flag} ") and value in message, err  # the flag itself, first
    assert os.listdir(folder) == []


def test_preview_fps_is_its_own_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _ = _run(capsys, ["render", "song.wav", "--preview", "--preview-fps", "0"])
    assert code == 2 and len(err) == 1
    assert err[0].startswith("ganterp-fast render: error: --preview-fps must be from 1 to 1000"), err
    code, err, _ = _run(capsys, ["render", "song.wav", "--preview-fps", "native"])
    assert code == 2 and "--preview-fps must be a number of frames per second such as 6, not 'native'" in err[0]


@pytest.mark.parametrize(
    "flag,value",
    [("--start", "0"), ("--seed", "0"), ("--pulse", "0"), ("--crf", "0"), ("--smoothing", "0"), ("--threshold", "0")],
)
def test_zero_where_it_means_something_is_taken_as_it_is(
    flag: str, value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """0 is a start, a seed, 'off', lossless or 'none': the command goes on to the input."""
    missing = tmp_path / "missing.wav"
    code, err, _ = _run(capsys, ["render", str(missing), f"{flag}={value}", "-o", str(tmp_path / "v.mp4")])
    assert code == 2 and err == [f"ganterp-fast render: error: input {missing} does not exist"], err


def test_render_ui_and_bench_check_the_device_by_one_rule(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = str(tmp_path / "model.onnx")
    lines = set()
    for argv in (["render", "song.wav"], ["ui", "--model", model], ["bench", model]):
        code, err, _ = _run(capsys, [*argv, "--device", "tpu"])
        assert code == 2 and len(err) == 1, err
        lines.add(err[0].split(": error: ", 1)[1])
    assert lines == {"--device 'tpu': use one of auto, cpu, cuda, or cuda:N for the N-th GPU (cuda:0, cuda:1, ...)"}
    assert not list(tmp_path.iterdir())


def test_native_fps_past_the_limit_names_fps(capsys, tiny_onnx: Path, tmp_path: Path) -> None:
    """'native' is checked against the audio's rate once the file is read: still --fps's error."""
    song = media.write_soundfile(tmp_path / "hi-res.wav", media.music(192000, 0.2), 192000)
    out = tmp_path / "v.mp4"
    argv = ["render", str(song), "-o", str(out), "--model", str(tiny_onnx), "--fps", "native", "-q"]
    code, err, _ = _run(capsys, argv)
    assert code == 2 and err == [
        "ganterp-fast render: error: --fps 'native' is 1500 at 192000 Hz, above 1000: give a rate such as 30 or 60"
    ], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hi-res.wav"]


def test_checks_against_the_input_and_the_machine_name_the_flag_too(
    capsys: pytest.CaptureFixture[str], wav: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    """A start past the end, a duration shorter than a sample, more threads than CPUs: the flag's error."""
    cases = [
        (["analyze", str(wav), "--start", "5"], "--start 5 s is at or past the end of the audio: "),
        (["analyze", str(wav), "--duration", "0.00001"], "--duration 1e-05 s is shorter than one sample at 8000 Hz"),
        (
            ["render", str(wav), "-o", str(tmp_path / "v.mp4"), "--model", str(tiny_onnx), "--threads", "100000"],
            "--threads 100000: use 1 to ",
        ),
    ]
    for argv, start in cases:
        code, err, _ = _run(capsys, [*argv, "-q"])
        assert code == 2 and len(err) == 1 and err[0].split(": error: ", 1)[1].startswith(start), err
    assert not list(tmp_path.iterdir())
