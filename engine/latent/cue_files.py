"""Cue sheets as files: `.csv` (a spreadsheet's) and `.json`, written whole and read back strictly.

A CSV sheet is a valid CSV file from its first line: each header line (`# path: {...}`, with
the header's values as JSON) is one quoted field, so a spreadsheet or Python's `csv` module
that opens and saves the sheet keeps it as it is. Reading is forgiving about what such tools
do on saving: a UTF-8 byte-order mark, Windows line endings, every field quoted, rows padded
with empty fields, numbers written back with 15 digits, and header lines split at their commas
(the form earlier versions wrote, one raw line each). Everything else is an InputError naming
the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.classes import all_classes, class_index
from ganterp_fast.engine.latent.cue_sheet import (
    COLUMNS,
    FORMAT,
    TRANSITIONS,
    VERSION,
    Cue,
    CueSheet,
    check_order,
    parse_time,
)

CUE_FORMATS = (".csv", ".json")
#: The header's parts, in the order a sheet holds them.
HEADER_KEYS = ("source", "excerpt", "audio", "analysis", "path")

Rows = list[tuple[int, dict[str, Any]]]  # (line, column -> value) for each cue


# --------------------------------------------------------------------------- writing


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
    comments = [
        f"# {FORMAT} {VERSION}: one row per cue; edit times, classes (name or index), z and transitions",
        "# transition: smooth (follows the audio from the cue before) or cut (an instant change)",
        *(f"# {key}: {json.dumps(header[key])}" for key in HEADER_KEYS),
    ]
    csv.writer(out, lineterminator="\n").writerows([line] for line in comments)  # one field each, quoted as CSV needs
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
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's) is dropped
    except FileNotFoundError:
        raise InputError(f"cue sheet {name} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"cue sheet {name} is a directory: give a .csv or .json file") from None
    except UnicodeDecodeError:
        raise InputError(
            f"cue sheet {name} is not UTF-8 text: save it as UTF-8 (a spreadsheet's 'CSV UTF-8' or 'Unicode (UTF-8)')"
        ) from None
    except OSError as exc:
        raise InputError(f"cue sheet {name} cannot be read: {exc.strerror or exc}") from None
    header, rows = _read_json(text, name) if suffix == ".json" else _read_csv(text, name)
    return _build(header, rows, name)


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank line of `text` with its number and its fields, without trailing empty fields
    (a spreadsheet pads every row to the widest one). A line that starts with '#' is one field as
    it stands; a quoted one ('"# path: {""seed"": 0}"', as sheets are written) is parsed as CSV."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            fields = [line.strip().rstrip(",")]
        else:
            fields = next(csv.reader([line]), [])
        while fields and not fields[-1].strip():
            fields.pop()
        if fields:
            yield number, fields


def _read_csv(text: str, name: str) -> tuple[dict[str, Any], Rows]:
    header: dict[str, Any] = {}
    body: list[tuple[int, list[str]]] = []
    for number, fields in _records(text):
        if fields[0].lstrip().startswith("#"):
            # One field as written; several where a tool split an earlier version's raw line at its commas.
            key, sep, value = ",".join(fields).strip()[1:].partition(":")
            key = key.strip()
            if sep and key in HEADER_KEYS:
                try:
                    header[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise InputError(f"{name} line {number}: the {key} header is not valid JSON") from None
            continue
        body.append((number, fields))
    if not body:
        raise InputError(f"cue sheet {name} has no rows: expected a header line '{','.join(COLUMNS)}' and cues")
    first_line, first = body[0]
    columns = [c.strip().lower() for c in first]
    if "time_s" not in columns or not ({"class", "name"} & set(columns)):
        raise InputError(
            f"{name} line {first_line}: expected the column names {','.join(COLUMNS)} "
            f"(time_s and class or name are required), got {','.join(first)!r}"
        )
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise InputError(
            f"{name} line {first_line}: unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}"
        )
    rows = []
    for number, values in body[1:]:
        if len(values) > len(columns):
            raise InputError(f"{name} line {number}: {len(values)} fields, the header names {len(columns)}")
        rows.append((number, {c: v.strip() for c, v in zip(columns, values)}))
    return header, rows


def _read_json(text: str, name: str) -> tuple[dict[str, Any], Rows]:
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
    header = {key: data.get(key) for key in HEADER_KEYS if key in data}
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


# --------------------------------------------------------------------------- rows to cues


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


def _cue(row: dict[str, Any], where: str, number: int, default_z: int) -> Cue:
    """One row as a cue: its time, class, z (`default_z` where empty) and transition."""
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
    raw_z = row.get("z")
    z = default_z if raw_z is None or str(raw_z).strip() == "" else int(_number(raw_z, "z", where, integer=True))
    if z < 0:
        raise InputError(f"{where}: z {z} must be a whole number >= 0")
    transition = str(row.get("transition") or "smooth").strip().lower()
    if transition not in TRANSITIONS:
        raise InputError(f"{where}: transition {row.get('transition')!r} must be smooth or cut")
    return Cue(time_s, cls, z, transition, number)


def _build(header: dict[str, Any], rows: Rows, name: str) -> CueSheet:
    path = header.get("path") if isinstance(header.get("path"), dict) else {}
    seed = int(_number(path.get("seed", 0), "seed", f"{name} (path header)", integer=True))
    z_mode = str(path.get("z_mode", "per-point"))
    truncation = float(_number(path.get("truncation", 0.4), "truncation", f"{name} (path header)"))
    if z_mode not in ("per-point", "fixed"):
        raise InputError(f"{name} (path header): z_mode must be per-point or fixed, got {z_mode!r}")
    cues: list[Cue] = []
    for number, row in rows:
        cues.append(_cue(row, f"{name} line {number}", number, 0 if z_mode == "fixed" else len(cues)))
    if not cues:
        raise InputError(f"cue sheet {name} has no cues: give at least one row")
    check_order(cues, lambda k: f"{name} line {cues[k].line}")
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
