"""Helpers shared by the reliability tests (tests/test_reliability_*.py): the real command in
a subprocess, with or without a fault injected, a few at a time, and the checks on its one line.

Reliability as a user meets it: every bad input, option and fault gets one clear line and
the documented exit code, nothing is written, no temporary file is left, and an existing
output survives anything short of a finished render with --overwrite.

Most cases run the real command (`python -m ganterp_fast`) in a subprocess; the ones that
need a fault injected patch the library in that subprocess (or in-process) at the layer the
fault comes from: the output file's writes, the generator session, the disk's size limit.
Independent commands run a few at a time, so the whole suite stays quick on two cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import media

SONG_SECONDS = media.Song().seconds  # conftest's `song`
FAST = ["-q", "--preset", "ultrafast"]


def default_sigint() -> None:
    """`preexec_fn` for a process a test interrupts: Ctrl-C's default, whoever started the suite.

    A suite started in the background (`nohup ... &`, some CI runners) runs with SIGINT ignored,
    and the processes it starts inherit that: Python then never raises KeyboardInterrupt in them.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: object, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def cli_patched(prelude: str, *args: object, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The command line after `prelude` (Python that injects a fault) ran in the same process."""
    code = (
        textwrap.dedent(prelude)
        + "\nimport sys\nfrom ganterp_fast.cli.main import main\nraise SystemExit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def run_all(commands: dict[str, list[object]], *, workers: int = 4) -> dict[str, subprocess.CompletedProcess]:
    """Run independent commands a few at a time (most of each is Python starting up)."""
    with ThreadPoolExecutor(workers) as pool:
        futures = {key: pool.submit(cli, *args) for key, args in commands.items()}
        return {key: future.result() for key, future in futures.items()}


def assert_error(
    result: subprocess.CompletedProcess, code: int, *fragments: str, command: str = "render", usage: bool = False
) -> str:
    """Exit `code`, no traceback, and one error line (after argparse's usage where `usage`)
    naming every fragment. Returns the line."""
    stderr = result.stderr
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines, "no message at all"
    line = lines[-1]
    assert line.startswith(f"ganterp-fast {command}: error: "), stderr
    assert sum("error:" in item for item in lines) == 1, stderr
    if usage:
        assert lines[0].startswith("usage: "), stderr
    else:
        assert len(lines) == 1, stderr  # -q: the error is all there is
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def partials(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders for p in folder.iterdir() if "partial" in p.name)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def decoded_summary(path: Path) -> dict:
    """Frame count (from packets: no decoding), rate, and the audio stream's rate, channels and duration."""
    with av.open(os.fspath(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        summary = {
            "codec": video.codec_context.name,
            "fps": Fraction(video.average_rate),
            "audio_rate": audio.codec_context.sample_rate,
            "audio_channels": audio.codec_context.layout.nb_channels,
            "audio_seconds": float(audio.duration * audio.time_base),
        }
        summary["frames"] = sum(1 for packet in container.demux(video) if packet.size)
    return summary
