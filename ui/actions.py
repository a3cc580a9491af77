"""What the page's buttons do, over the engine's public API and nothing else.

The cue table is a cue sheet: it is drawn from the analysis exactly as `analyze --cues`
draws one (`cue_sheet.sheet_from_path`), written back as a `.csv` sheet with the analysis's
header, and rendered as `ganterp-fast render INPUT --cues SHEET ...` would: the sheet's
options (`sheet_options.sheet_options`, which `render --cues` uses too) in `RenderOptions`,
then `job.prepare` and `RenderJob.run`. No step has a second implementation here; this
module only shapes values for the page and its messages.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from ganterp_fast.engine.analysis.analyze import Analysis, AnalysisOptions, analyze
from ganterp_fast.engine.errors import InputError, OptionError
from ganterp_fast.engine.job import Progress, RenderJob, RenderResult, prepare
from ganterp_fast.engine.latent.classes import all_classes
from ganterp_fast.engine.latent.cue_files import format_sheet, read_sheet
from ganterp_fast.engine.latent.cue_sheet import CueSheet, sheet_from_path
from ganterp_fast.engine.latent.path import LatentPath, PathOptions
from ganterp_fast.engine.latent.sheet_options import sheet_options
from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions

log = logging.getLogger(__name__)

#: The cue table's columns: a cue sheet's, with the class shown as "name (index)".
TABLE_HEADERS = ["time_s", "class", "z", "transition"]
_LABEL = re.compile(r"^\s*(.*?)\s*\((\d{1,3})\)\s*$")


def class_label(index: int) -> str:
    """A class as the picker and the table show it: 'jellyfish (107)' (the index settles shared names)."""
    return f"{all_classes()[index].name} ({index})"


def class_choices() -> list[str]:
    """The 1000 classes in the picker, in BigGAN's order."""
    return [class_label(i) for i in range(len(all_classes()))]


# ----------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Analysed:
    """An analysis as the page shows it: the plot, a summary, and its cue sheet as a table."""

    analysis: Analysis
    sheet: CueSheet
    plot: Path
    rows: list[list[Any]]
    summary: str


def analyse(
    input_path: str | os.PathLike[str],
    analysis: AnalysisOptions,
    path: PathOptions,
    plot: str | os.PathLike[str],
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> Analysed:
    """`analyze --plot --cues`: the analysis, its plot and the cue sheet of the path it draws."""
    from ganterp_fast.engine.analysis.plot import plot_analysis

    result = analyze(input_path, analysis, start=start, duration=duration, keep_plot=True)
    latent = LatentPath(result, path, Fraction(30))  # the classes, z and times render would use
    sheet = sheet_from_path(latent)
    plot_analysis(result, plot, overwrite=True, latent=latent)
    count = len(result.inflection_points)
    summary = (
        f"**{count} inflection point{'' if count == 1 else 's'}** in {result.duration_s:.2f} s of audio "
        f"at {result.sample_rate} Hz"
    )
    if analysis.snap_to_beats and result.beat_times is not None:
        summary += f", snapped to {len(result.beat_times)} beats"
    return Analysed(result, sheet, Path(plot), table_rows(sheet), summary)


def table_rows(sheet: CueSheet) -> list[list[Any]]:
    """The cue table of a sheet: one row per cue (time in ms precision: the same spectrogram column)."""
    return [[round(cue.time_s, 3), class_label(cue.class_id), cue.z, cue.transition] for cue in sheet.cues]


# ---------------------------------------------------------------------------- editing


def table_cells(rows: Any) -> list[list[Any]]:
    """The table's rows as lists (Gradio hands a list of lists, or a DataFrame), blank rows dropped."""
    if rows is None:
        return []
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    out = []
    for row in rows:
        cells = list(row) + [""] * (len(TABLE_HEADERS) - len(row))
        if any(str(c).strip() not in ("", "nan", "None") for c in cells):
            out.append(cells[: len(TABLE_HEADERS)])
    return out


def _cue_number(rows: list[list[Any]], number: Any) -> int:
    try:
        k = int(float(number))
    except (TypeError, ValueError):
        k = 0
    if not 1 <= k <= len(rows):
        raise InputError(f"cue {number} does not exist: the table has cues 1 to {len(rows)}" if rows else "no cues yet")
    return k - 1


def set_class(rows: Any, number: Any, label: str | None) -> list[list[Any]]:
    """Cue `number` (1-based) shows the class `label` (a picker label, a name or an index)."""
    rows = table_cells(rows)
    k = _cue_number(rows, number)
    if not label or not str(label).strip():
        raise InputError("no class chosen: type a few letters of a name in the class picker and pick one")
    rows[k][1] = str(label).strip()
    return rows


def add_cue(rows: Any, number: Any, duration_s: float) -> list[list[Any]]:
    """A cue after cue `number`, halfway to the next one (or to the end), with a z of its own."""
    rows = table_cells(rows)
    k = _cue_number(rows, number)
    here = _float(rows[k][0])
    after = _float(rows[k + 1][0]) if k + 1 < len(rows) else duration_s
    zs = [int(_float(r[2])) for r in rows if str(r[2]).strip() not in ("", "nan")]
    rows.insert(k + 1, [round((here + after) / 2, 3), rows[k][1], max(zs, default=-1) + 1, "smooth"])
    return rows


def delete_cue(rows: Any, number: Any) -> list[list[Any]]:
    rows = table_cells(rows)
    k = _cue_number(rows, number)
    if len(rows) == 1:
        raise InputError("the last cue cannot be deleted: a video needs at least one class")
    del rows[k]
    return rows


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


# ----------------------------------------------------------------------- the cue sheet


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def write_table_sheet(base: CueSheet, rows: Any, path: str | os.PathLike[str], *, truncation: float) -> Path:
    """The table as a `.csv` cue sheet with `base`'s header (analysis, seed, z draw) and `truncation`.

    A class cell 'name (index)' is written as both columns, so the sheet checks they agree;
    anything else (a name or an index typed in) goes to the class column as it is.
    """
    header = format_sheet(replace(base, cues=(), truncation=truncation), ".csv")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for time_s, label, z, transition in table_cells(rows):
        label = _cell(label)
        match = _LABEL.match(label)
        cls, name = (match.group(2), match.group(1)) if match else (label, "")
        writer.writerow([_cell(time_s), cls, name, _cell(z), _cell(transition)])
    path = Path(path)
    path.write_text(header + out.getvalue(), encoding="utf-8")
    return path


def table_message(message: str, sheet_path: str | os.PathLike[str]) -> str:
    """A sheet's message about 'FILE line N' as one about the table's row ('cue 3')."""
    name = os.fspath(sheet_path)
    try:
        text = Path(sheet_path).read_text(encoding="utf-8")
    except OSError:
        return message.replace(name, "the cue table")
    lines = text.splitlines()
    first_row = next((i for i, line in enumerate(lines, start=1) if line.startswith("time_s,")), 0)

    def row(match: re.Match[str]) -> str:
        return f"cue {int(match.group(1)) - first_row}"

    message = re.sub(re.escape(name) + r" line (\d+)", row, message)
    return message.replace(f"{name} (path header)", "the path settings").replace(name, "the cue table")


def check_sheet(sheet_path: str | os.PathLike[str]) -> CueSheet:
    """The sheet parsed (its mistakes as `InputError`s naming the cue)."""
    try:
        return read_sheet(sheet_path)
    except InputError as exc:
        raise InputError(table_message(str(exc), sheet_path)) from None


# ----------------------------------------------------------------------------- render


class GeneratorCache:
    """The open generator of the last render's model plan, reused while the plan stays the same.

    Renders run one at a time per device (the page queues them), so one generator is shared.
    """

    def __init__(self) -> None:
        self._plan: Any = None
        self._generator: Any = None
        self._lock = threading.Lock()

    def get(self, job: RenderJob) -> Any:
        with self._lock:
            if self._generator is None or self._plan != job.model:
                self._generator = None
                self._generator = job.open_generator()
                self._plan = job.model
            return self._generator


class ProgressText:
    """Engine progress as (frames done, frames total, a line with frames/s and the time left)."""

    def __init__(
        self, report: Callable[[int | None, int | None, str], None], clock: Callable[[], float] = time.monotonic
    ):
        self.report = report
        self.clock = clock
        self._first: tuple[float, int] | None = None

    def __call__(self, update: Progress) -> None:
        if update.stage == "model":
            self.report(None, None, "preparing the model (a name or checkpoint is exported once, then cached)")
            return
        if update.stage == "analysis":
            self.report(None, None, "analysing the audio")
            return
        now = self.clock()
        if self._first is None or update.frames_done < self._first[1]:
            self._first = (now, update.frames_done)
        began, first = self._first
        elapsed = now - began
        rate = (update.frames_done - first) / elapsed if elapsed > 0 and update.frames_done > first else 0.0
        left = update.frames_total - update.frames_done
        eta = f"ETA {_duration(left / rate)}" if rate > 0 else "ETA: measuring"
        speed = f"{rate:.1f} frames/s" if rate > 0 else "starting"
        text = f"{update.frames_done}/{update.frames_total} frames, {speed}, {eta}"
        self.report(update.frames_done, update.frames_total, text)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def render_sheet(
    input_path: str | os.PathLike[str],
    sheet_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: ModelOptions,
    fps: str = "30",
    pulse: float = 0.0,
    interpolation: str = "lerp",
    picture: OutputOptions | None = None,
    generators: GeneratorCache | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RenderResult:
    """`ganterp-fast render INPUT --cues SHEET -o OUTPUT ...`: the same options, job and frames.

    The sheet gives the analysis, the path and the excerpt (`sheet_options`, as `render --cues`
    takes them); `interpolation` how the path moves between its cues (`--interpolation`);
    `picture` the size, fit, layout and preview.
    """
    try:
        sheet = read_sheet(sheet_path)
        analysis, path = sheet_options(sheet, pulse=pulse)
        path = replace(path, interpolation=interpolation)  # the control's, as render --cues takes the flag's
        options = RenderOptions(model=model, fps=fps, analysis=analysis, path=path, output=picture or OutputOptions())
        job = prepare(input_path, output, options, start=sheet.start, duration=sheet.duration, progress=progress)
        generator = generators.get(job) if generators is not None else None
        return job.run(generator=generator, progress=progress)
    except OptionError:
        raise  # a control's value: the page names the control
    except InputError as exc:
        raise InputError(table_message(str(exc), sheet_path)) from None


def _cue_text(time_s: float, index: int, num_classes: int) -> str:
    """A cue as the summary states it: ImageNet's name for 1000-class models, the index for others,
    the time alone for an unconditional model (a latent keyframe)."""
    if not num_classes:
        return f"{time_s:.2f} s"
    return f"{time_s:.2f} s " + (all_classes()[index].name if num_classes == 1000 else f"class {index}")


def render_summary(result: RenderResult, *, limit: int = 12) -> str:
    """What the page says about a finished render."""
    times = result.times
    width = getattr(result, "width", 0) or result.resolution
    height = getattr(result, "height", 0) or result.resolution
    num_classes = getattr(result, "num_classes", 1000)
    cues = ", ".join(_cue_text(t, c, num_classes) for t, c in result.classes[:limit])
    more = " ..." if len(result.classes) > limit else ""
    full = getattr(result, "full_frames", 0)
    preview = (
        f"  \na preview: the full render's {full} frames would take about {_duration(result.full_render_seconds)} here"
        if full
        else ""
    )
    return (
        f"**{result.frames} frames** at {float(result.fps):g} fps, {width}x{height}, "
        f"{result.analysis.duration_s:.2f} s of audio; {times.wall:.1f} s "
        f"({result.frames_per_second:.1f} frames/s on {result.device})  \n"
        f"{'cues' if num_classes else 'keyframes'}: {cues}{more}{preview}"
    )


def number_or_none(value: Any) -> float | None:
    """A page's number box: a positive number, or None for empty / 0 ('to the end')."""
    number = _float(value)
    return number if number > 0 else None
