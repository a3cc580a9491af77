"""A model's first use: each step reported with an ETA, shown by the CLI, silent with -q or a cache hit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganterp_fast.engine.backends import models
from ganterp_fast.engine.backends.preparation import ModelProgress, Preparation

STEPS = ["weights", "export", "parity", "save"]


def test_eta_follows_the_pace_of_the_finished_steps() -> None:
    now = [0.0]
    seen: list[ModelProgress] = []
    steps = Preparation(seen.append, [("weights", 1.0), ("export", 3.0)], clock=lambda: now[0])
    steps.begin("weights", "drawing")
    assert seen[-1].eta_s == pytest.approx(4.0) and (seen[-1].index, seen[-1].count) == (1, 2)
    now[0] = 2.0  # twice as slow as planned: the rest is expected twice as slow too
    steps.begin("export", "tracing")
    assert seen[-1].eta_s == pytest.approx(6.0) and seen[-1].elapsed_s == pytest.approx(2.0)
    now[0] = 7.0
    steps.finish()
    final = seen[-1]
    assert final.done and final.elapsed_s == pytest.approx(7.0)
    assert final.times == (("weights", 2.0), ("export", 5.0))
    assert final.line() == "model ready in 7.0 s (weights 2.0 s, export 5.0 s)"
    assert "model [2/2] export: tracing (2.0 s, about 6 s left)" == seen[1].line()


def test_first_use_reports_each_step_and_a_cache_hit_none(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    seen: list[ModelProgress] = []
    entry = models.resolve_model(tiny_checkpoint, progress=seen.append)
    assert [update.step for update in seen[:-1]] == STEPS
    assert [update.index for update in seen[:-1]] == [1, 2, 3, 4] and {u.count for u in seen} == {4}
    assert all(update.stage == "model" and update.eta_s is not None and update.eta_s >= 0 for update in seen)
    elapsed = [update.elapsed_s for update in seen]
    assert elapsed == sorted(elapsed)
    final = seen[-1]
    assert final.done and [name for name, _ in final.times] == STEPS and final.eta_s == 0
    assert str(entry) in seen[3].detail  # the save step names the cache entry it writes
    assert entry.with_name(entry.name + ".json").is_file()  # the sidecar was written before "done"

    again: list[ModelProgress] = []
    assert models.resolve_model(tiny_checkpoint, progress=again.append) == entry
    assert again == []


def _render(song: Path, checkpoint: Path, out: Path, cache: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, models.CACHE_ENV: str(cache)}
    argv = ["render", str(song), "-o", str(out), "--model", str(checkpoint), "--duration", "1", "--fps", "8", *flags]
    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *argv], capture_output=True, text=True, timeout=300, env=env
    )


def test_render_shows_the_steps_and_quiet_hides_them(tiny_checkpoint: Path, song: Path, tmp_path: Path) -> None:
    shown = _render(song, tiny_checkpoint, tmp_path / "a.mp4", tmp_path / "cache-a")
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stderr.splitlines() if line.startswith("model ")]
    assert [line.split("]")[1].split(":")[0].strip() for line in lines[:-1]] == STEPS
    assert all("s left)" in line for line in lines[:-1]) and lines[-1].startswith("model ready in ")

    quiet = _render(song, tiny_checkpoint, tmp_path / "b.mp4", tmp_path / "cache-b", "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert (tmp_path / "cache-b").is_dir() and (tmp_path / "b.mp4").is_file()  # it did export and render
    assert not [line for line in quiet.stderr.splitlines() if line.startswith(("model [", "model ready", "preparing"))]
