"""Cue sheets: the path's inflection points as an editable timeline (CSV or JSON).

A sheet holds one row per cue: its time in seconds, the class (index and name), the z it
uses and the transition into it. The header holds what reproduces the path on its own: the
analysis parameters, the seed, z mode, truncation and the size of the seeded z draw, the
sample rate and hop of the analysis. `analyze --cues` writes a sheet; `render --cues` reads
it, so a user can move, add and delete cues, change classes (by name or index) and make any
change an instant `cut` instead of the default `smooth` transition.

The parsed sheet is plain data (frozen dataclasses, tuples), so a render job that holds it
pickles.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.classes import all_classes, class_index

FORMAT = "ganterp-fast cue sheet"
VERSION = 1
TRANSITIONS = ("smooth", "cut")
COLUMNS = ("time_s", "class", "name", "z", "transition")
CUE_FORMATS = (".csv", ".json")


@dataclass(frozen=True)
class Cue:
    """One cue: from `time_s` on the video shows `class_id` with z number `z`.

    `transition` is how the video arrives at this cue from the one before: "smooth" follows
    the audio's alphas between the two cues, "cut" holds the previous cue and changes at
    `time_s` at once. `line` is where the cue came from (0: not from a file).
    """

    time_s: float
    class_id: int
    z: int
    transition: str = "smooth"
    line: int = 0


@dataclass(frozen=True)
class CueSheet:
    """Cues in time order, and what the header says about how they were made."""

    cues: tuple[Cue, ...]
    #: How many z the seeded draw holds (z 0..z_count-1 come from it; others are drawn one by one).
    z_count: int
    seed: int = 0
    z_mode: str = "per-point"
    truncation: float = 0.4
    #: The analysis parameters the sheet was made with (AnalysisOptions fields), or empty.
    analysis: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    sample_rate: int | None = None
    hop_length: int | None = None
    duration_s: float | None = None
    start: float = 0.0
    duration: float | None = None
    origin: str = ""  # the file it was read from, for messages

    def where(self, cue: Cue) -> str:
        """'FILE line N' (or 'ORIGIN item N') for messages about `cue`."""
        if self.origin and cue.line:
            return f"{self.origin} line {cue.line}"
        return f"{self.origin or 'cues'} item {self.cues.index(cue) + 1}"


# --------------------------------------------------------------------------- times


_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from '12.5', '1:03', '1:03.25' or '1:02:03' (h:mm:ss); ValueError otherwise."""
    value = text.strip()
    match = _TIME.match(value)
    if not match:
        raise ValueError(f"{text!r} is not a time: give seconds (12.5) or m:ss (1:03.5)")
    a, b, seconds = match.groups()
    hours, minutes = (int(a), int(b)) if b is not None else (0, int(a) if a is not None else 0)
    if (a is not None) and float(seconds) >= 60:
        raise ValueError(f"{text!r} is not a time: seconds after a colon must be below 60")
    total = hours * 3600 + minutes * 60 + float(seconds)
    if not math.isfinite(total):
        raise ValueError(f"{text!r} is not a finite time")
    return total


def parse_classes_at(spec: str, *, seed: int = 0, z_mode: str = "per-point", truncation: float = 0.4) -> CueSheet:
    """`--classes-at "0:00 jellyfish, 0:12.5 mountain bike, 1:03 volcano"` as a cue sheet.

    Each item is a time (seconds or m:ss) and a class (a name or an index); cue k takes z
    number k (per-point) or z 0 (fixed), and every transition is smooth.
    """
    cues = []
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise InputError("--classes-at is empty: give 'TIME CLASS, TIME CLASS, ...' such as '0:00 jellyfish, 12 7'")
    for number, item in enumerate(items, start=1):
        head, _, rest = item.partition(" ")
        try:
            time_s = parse_time(head)
        except ValueError as exc:
            raise InputError(f"--classes-at item {number} ({item!r}): {exc}") from None
        if not rest.strip():
            raise InputError(
                f"--classes-at item {number} ({item!r}) has no class: give 'TIME CLASS', e.g. '0:12 volcano'"
            )
        try:
            cls = class_index(rest.strip())
        except InputError as exc:
            raise InputError(f"--classes-at item {number}: {exc}") from None
        cues.append(Cue(time_s, cls, 0 if z_mode == "fixed" else number - 1, "smooth", 0))
    _check_order(cues, lambda k: f"--classes-at item {k + 1}")
    return CueSheet(
        tuple(cues),
        z_count=1 if z_mode == "fixed" else len(cues),
        seed=seed,
        z_mode=z_mode,
        truncation=truncation,
        origin="--classes-at",
    )


def _check_order(cues: Sequence[Cue], where: Any) -> None:
    for k in range(1, len(cues)):
        if cues[k].time_s <= cues[k - 1].time_s:
            raise InputError(
                f"{where(k)}: time {format_time(cues[k].time_s)} is not after the cue before it "
                f"({format_time(cues[k - 1].time_s)}): cues must be in time order, each later than the last"
            )


def format_time(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 60 else f"{int(seconds // 60)}:{seconds % 60:06.3f}"


# --------------------------------------------------------------------------- writing


def sheet_from_path(path: Any) -> CueSheet:
    """The cue sheet of a `LatentPath`: its points, classes and z, exactly as it draws them."""
    analysis = path.analysis
    options = path.options
    rows = tuple(
        Cue(float(t), int(c), int(z), transition, 0)
        for t, c, z, transition in zip(path.cue_times, path.class_ids, path.cue_z, path.cue_transitions)
    )
    from dataclasses import asdict

    return CueSheet(
        cues=rows,
        z_count=path.z_count,
        seed=int(options.seed),
        z_mode=options.z_mode,
        truncation=float(options.truncation),
        analysis=asdict(analysis.options),
        sample_rate=analysis.sample_rate,
        hop_length=analysis.hop_length,
        duration_s=analysis.duration_s,
        start=float(getattr(analysis, "start", 0.0) or 0.0),
        duration=getattr(analysis, "duration", None),
        origin=os.fspath(analysis.source) if analysis.source else "",
    )


def _header(sheet: CueSheet) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": sheet.origin or None,
        "excerpt": {"start": sheet.start, "duration": sheet.duration},
        "audio": {"sample_rate": sheet.sample_rate, "hop_length": sheet.hop_length, "duration_s": sheet.duration_s},
        "analysis": sheet.analysis,
        "path": {"seed": sheet.seed, "z_mode": sheet.z_mode, "truncation": sheet.truncation, "z_count": sheet.z_count},
    }


def _row(cue: Cue) -> dict[str, Any]:
    return {
        "time_s": repr(float(cue.time_s)),
        "class": cue.class_id,
        "name": all_classes()[cue.class_id].name,
        "z": cue.z,
        "transition": cue.transition,
    }


def format_sheet(sheet: CueSheet, suffix: str) -> str:
    """The sheet as the text of a `.csv` or `.json` file."""
    header = _header(sheet)
    if suffix == ".json":
        rows = [{**_row(c), "time_s": float(c.time_s)} for c in sheet.cues]
        return json.dumps({**header, "cues": rows}, indent=1) + "\n"
    out = io.StringIO()
    out.write(f"# {FORMAT} {VERSION}: one row per cue; edit times, classes (name or index), z and transitions\n")
    out.write("# transition: smooth (follows the audio from the cue before) or cut (an instant change)\n")
    for key in ("source", "excerpt", "audio", "analysis", "path"):
        out.write(f"# {key}: {json.dumps(header[key])}\n")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for cue in sheet.cues:
        writer.writerow(_row(cue))
    return out.getvalue()


def cue_format(path: str | os.PathLike[str]) -> str:
    """'.csv' or '.json' from a sheet's file name; InputError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in CUE_FORMATS:
        raise InputError(f"cue sheet {os.fspath(path)} must end in .csv or .json")
    return suffix


def write_sheet(sheet: CueSheet, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write the sheet whole or not at all (a temporary file renamed on success)."""
    from ganterp_fast.engine.files import atomic_output

    text = format_sheet(sheet, cue_format(path))
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------------------- reading


def read_sheet(path: str | os.PathLike[str]) -> CueSheet:
    """Parse a `.csv` or `.json` sheet; every problem is an InputError naming the file and line."""
    name = os.fspath(path)
    suffix = cue_format(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"cue sheet {name} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"cue sheet {name} is a directory: give a .csv or .json file") from None
    except UnicodeDecodeError:
        raise InputError(f"cue sheet {name} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cue sheet {name} cannot be read: {exc.strerror or exc}") from None
    header, rows = _read_json(text, name) if suffix == ".json" else _read_csv(text, name)
    return _build(header, rows, name)


def _read_csv(text: str, name: str) -> tuple[dict[str, Any], list[tuple[int, dict[str, str]]]]:
    header: dict[str, Any] = {}
    body: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            key, sep, value = stripped[1:].partition(":")
            key = key.strip()
            if sep and key in ("source", "excerpt", "audio", "analysis", "path"):
                try:
                    header[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise InputError(f"{name} line {number}: the {key} header is not valid JSON") from None
            continue
        if stripped:
            body.append((number, line))
    if not body:
        raise InputError(f"cue sheet {name} has no rows: expected a header line '{','.join(COLUMNS)}' and cues")
    first_line, first = body[0]
    columns = [c.strip().lower() for c in next(csv.reader([first]))]
    if "time_s" not in columns or not ({"class", "name"} & set(columns)):
        raise InputError(
            f"{name} line {first_line}: expected the column names {','.join(COLUMNS)} "
            f"(time_s and class or name are required), got {first.strip()!r}"
        )
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise InputError(
            f"{name} line {first_line}: unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}"
        )
    rows = []
    for number, line in body[1:]:
        values = next(csv.reader([line]))
        if len(values) > len(columns):
            raise InputError(f"{name} line {number}: {len(values)} fields, the header names {len(columns)}")
        rows.append((number, {c: v.strip() for c, v in zip(columns, values)}))
    return header, rows


def _read_json(text: str, name: str) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cues"), list):
        raise InputError(f"{name}: expected a JSON object with a 'cues' list (as 'analyze --cues FILE.json' writes)")
    lines = _element_lines(text, len(data["cues"]))
    rows = []
    for k, item in enumerate(data["cues"]):
        line = lines[k] if k < len(lines) else 0
        if not isinstance(item, dict):
            raise InputError(
                f"{name} line {line}: cue {k + 1} is not an object with time_s, class, name, z, transition"
            )
        unknown = [key for key in item if key not in COLUMNS]
        if unknown:
            raise InputError(f"{name} line {line}: unknown key {unknown[0]!r}; a cue has {', '.join(COLUMNS)}")
        rows.append((line, item))
    header = {key: data.get(key) for key in ("source", "excerpt", "audio", "analysis", "path") if key in data}
    return header, rows


def _element_lines(text: str, count: int) -> list[int]:
    """The line on which each element of the top-level 'cues' array starts."""
    match = re.search(r'"cues"\s*:\s*\[', text)
    if not match:
        return []
    decoder = json.JSONDecoder()
    position = match.end()
    lines = []
    for _ in range(count):
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        lines.append(text.count("\n", 0, position) + 1)
        try:
            _, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            break
    return lines


def _number(value: Any, what: str, where: str, *, integer: bool = False) -> float:
    if isinstance(value, bool):
        value = str(value)
    try:
        number = float(value) if not isinstance(value, (int, float)) else value
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        raise InputError(f"{where}: {what} {value!r} is not a number")
    if integer and int(number) != number:
        raise InputError(f"{where}: {what} {value!r} is not a whole number")
    return number


def _build(header: dict[str, Any], rows: list[tuple[int, dict[str, Any]]], name: str) -> CueSheet:
    path = header.get("path") if isinstance(header.get("path"), dict) else {}
    try:
        seed = int(_number(path.get("seed", 0), "seed", f"{name} (path header)", integer=True))
        z_mode = str(path.get("z_mode", "per-point"))
        truncation = float(_number(path.get("truncation", 0.4), "truncation", f"{name} (path header)"))
    except InputError:
        raise
    if z_mode not in ("per-point", "fixed"):
        raise InputError(f"{name} (path header): z_mode must be per-point or fixed, got {z_mode!r}")
    cues = []
    for number, row in rows:
        where = f"{name} line {number}"
        raw_time = row.get("time_s")
        if raw_time is None or str(raw_time).strip() == "":
            raise InputError(f"{where}: no time: give seconds (12.5) or m:ss (1:03.5) in the time_s column")
        try:
            time_s = float(raw_time) if isinstance(raw_time, (int, float)) else parse_time(str(raw_time))
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        if isinstance(raw_time, bool) or not math.isfinite(time_s) or time_s < 0:
            raise InputError(f"{where}: time {raw_time!r} must be a number of seconds >= 0")
        cls = _class_of(row, where)
        default_z = 0 if z_mode == "fixed" else len(cues)
        raw_z = row.get("z")
        z = default_z if raw_z is None or str(raw_z).strip() == "" else int(_number(raw_z, "z", where, integer=True))
        if z < 0:
            raise InputError(f"{where}: z {z} must be a whole number >= 0")
        transition = str(row.get("transition") or "smooth").strip().lower()
        if transition not in TRANSITIONS:
            raise InputError(f"{where}: transition {row.get('transition')!r} must be smooth or cut")
        cues.append(Cue(time_s, cls, z, transition, number))
    if not cues:
        raise InputError(f"cue sheet {name} has no cues: give at least one row")
    _check_order(cues, lambda k: f"{name} line {cues[k].line}")
    z_count_default = 1 if z_mode == "fixed" else len(cues)
    z_count = int(_number(path.get("z_count", z_count_default), "z_count", f"{name} (path header)", integer=True))
    audio = header.get("audio") if isinstance(header.get("audio"), dict) else {}
    excerpt = header.get("excerpt") if isinstance(header.get("excerpt"), dict) else {}
    analysis = header.get("analysis") if isinstance(header.get("analysis"), dict) else {}
    return CueSheet(
        cues=tuple(cues),
        z_count=max(z_count, 1),
        seed=seed,
        z_mode=z_mode,
        truncation=truncation,
        analysis=dict(analysis),
        sample_rate=audio.get("sample_rate"),
        hop_length=audio.get("hop_length"),
        duration_s=audio.get("duration_s"),
        start=float(excerpt.get("start") or 0.0),
        duration=excerpt.get("duration"),
        origin=name,
    )


def _class_of(row: dict[str, Any], where: str) -> int:
    """The class of a row from its `class` (name or index) and `name` columns; they must agree."""
    raw_class = row.get("class")
    raw_name = row.get("name")
    given_class = raw_class is not None and str(raw_class).strip() != ""
    given_name = raw_name is not None and str(raw_name).strip() != ""
    if not given_class and not given_name:
        raise InputError(f"{where}: no class: give an ImageNet class name or an index 0-999")
    try:
        by_class = (
            class_index(raw_class if isinstance(raw_class, int) else str(raw_class).strip()) if given_class else None
        )
        by_name = class_index(str(raw_name).strip()) if given_name else None
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if by_class is not None and by_name is not None and by_class != by_name:
        raise InputError(
            f"{where}: class {raw_class} is {all_classes()[by_class].name!r} but name says {raw_name!r}: "
            "change both, or leave one of them empty"
        )
    return by_class if by_class is not None else by_name  # type: ignore[return-value]
