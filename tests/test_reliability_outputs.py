"""Reliability of outputs: a bad output path is exit 2 before any work, and an existing video
survives a full disk, a file size limit, Ctrl-C and SIGTERM; the README's exit codes are the
code's.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from reliability_helpers import (
    FAST,
    assert_error,
    cli,
    cli_patched,
    default_sigint,
    listing,
    partials,
    run_all,
)

from ganterp_fast.cli import main as cli_main
from ganterp_fast.engine import errors
from ganterp_fast.engine.backends import models

README = Path(__file__).resolve().parents[1] / "README.md"


# ---------------------------------------------------------------- output folders


@pytest.fixture
def unwritable_folder(tmp_path) -> Iterator[Path]:
    """A folder this process cannot write into: permissions, or for root an immutable folder."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable (tmpfs?): no way to make a folder unwritable")
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("an immutable folder still counts as writable here")
        yield folder
    finally:
        subprocess.run([chattr, "-i", folder], capture_output=True)


def test_output_folder_problems_are_found_before_any_work(song, tmp_path, unwritable_folder):
    """Every output problem is exit 2 at once: a pretrained model name that would need an
    export (and the network) shows the model was never touched."""
    (tmp_path / "a file").write_text("not a folder")
    video_in = media.write_video(tmp_path / "clip.mp4", media.music(8000, 1.0), 8000)
    cases = {
        "missing-folder": (tmp_path / "no such folder" / "v.mp4", ["no such folder", "does not exist"]),
        "under-a-file": (tmp_path / "a file" / "v.mp4", ["a file", "not a folder"]),
        "deep-under-a-file": (tmp_path / "a file" / "x" / "v.mp4", ["a file", "not a folder"]),
        "unwritable": (unwritable_folder / "v.mp4", [unwritable_folder.name, "not writable"]),
        "a-directory": (tmp_path, [tmp_path.name, "is a directory"]),
        "not-a-video-suffix": (tmp_path / "v.avi", ["v.avi", ".mp4"]),
        "no-suffix": (tmp_path / "video", ["video", ".mkv"]),
    }
    commands = {
        key: ["render", song, "-o", out, "--model", "biggan-deep-512", *FAST] for key, (out, _) in cases.items()
    }
    commands["the-input-itself"] = ["render", video_in, "-o", video_in, "-y", "--model", "biggan-deep-512", *FAST]
    before = listing(tmp_path)
    results = run_all(commands)
    for key, (_, fragments) in cases.items():
        assert_error(results[key], 2, *fragments)
    assert_error(results["the-input-itself"], 2, "clip.mp4", "is the input file")
    assert listing(tmp_path) == before and listing(unwritable_folder) == []
    assert not list((Path(os.environ[models.CACHE_ENV]) / "models").glob("biggan-deep-512*"))
    assert video_in.read_bytes()[4:8] == b"ftyp"


# ---------------------------------------------------------------- a full disk


FULL_DISK = """
import errno, av
real_open = av.open

class FullDisk:
    '''The output file: its writes fail with ENOSPC once {after} packets are in.'''

    def __init__(self, inner, name):
        self.inner, self.name, self.packets = inner, name, 0

    def mux(self, packets):
        self.packets += len(packets) if isinstance(packets, list) else 1
        if self.packets > {after}:
            raise OSError(errno.ENOSPC, "No space left on device", self.name)
        return self.inner.mux(packets)

    def __getattr__(self, name):
        return getattr(self.inner, name)

def open_output(file, mode="r", **kwargs):
    container = real_open(file, mode, **kwargs)
    return FullDisk(container, file) if mode == "w" else container

av.open = open_output
"""


def test_the_disk_filling_up_mid_render_is_exit_1_and_the_old_video_survives(song, tiny_onnx, tmp_path):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    result = cli_patched(FULL_DISK.format(after=40), "render", song, "-o", out, "-y", "--model", tiny_onnx, *FAST)
    assert_error(result, 1, "video.mp4", "No space left on device", "after")
    assert out.read_bytes() == b"the previous video"
    assert listing(tmp_path) == ["video.mp4"]


def test_a_file_size_limit_mid_render_is_exit_1_and_leaves_nothing(song, tiny_onnx, tmp_path):
    """RLIMIT_FSIZE makes the real writes fail (EFBIG), as a full disk does, through the real CLI."""

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    result = cli("render", song, "-o", out, "-y", "--model", tiny_onnx, "--crf", "0", *FAST, preexec_fn=small_disk)
    assert_error(result, 1, "video.mp4", "File too large")
    assert out.read_bytes() == b"the previous video"
    assert listing(tmp_path) == ["video.mp4"]


# ---------------------------------------------------------------- interrupts


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_overwrite_leaves_the_old_video_untouched(tiny_onnx, tmp_path, sig, code, word):
    source = media.write_soundfile(tmp_path / "long.wav", media.music(8000, 60.0), 8000)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "video.mp4"
    out.write_bytes(b"the previous video")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ganterp_fast",
            "render",
            str(source),
            "-o",
            str(out),
            "-y",
            "--model",
            str(tiny_onnx),
            "--fps",
            "60",
            "--batch-size",
            "2",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not partials(folder):
        time.sleep(0.02)
    assert partials(folder), "the render never started writing"
    time.sleep(0.3)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [f"ganterp-fast render: {word}; nothing was written"]
    assert out.read_bytes() == b"the previous video"
    assert listing(folder) == ["video.mp4"]


# ---------------------------------------------------------------- exit codes


def test_readme_exit_codes_match_the_code():
    text = README.read_text(encoding="utf-8")
    table = text.split("### Exit codes", 1)[1].split("\n\n")[1]
    rows = dict(re.findall(r"^\| ([\d /]+?) \| (.+?) \|$", table, re.M))
    assert set(rows) == {"0", "1", "2", "130 / 143"}, rows
    assert (cli_main.EXIT_INTERRUPTED, cli_main.EXIT_TERMINATED) == (130, 143)
    assert {cls.__name__: cls.exit_code for cls in (errors.GanterpError, errors.RenderError)} == {
        "GanterpError": 1,
        "RenderError": 1,
    }
    for cls in (errors.InputError, errors.ModelError, errors.ProviderError, errors.MissingExtraError):
        assert cls.exit_code == 2, cls
    assert "bad input or options" in rows["2"] and "nothing was written" in rows["1"]
