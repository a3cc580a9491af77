"""Option declarations: each field of an option dataclass states its default, rule, help and flag once.

    smoothing: int = option(256, flag="--smoothing", check=whole(0, note="0: none"), metavar="COLUMNS",
                            help="running mean over the TV distances; 0: none")

`Options.__post_init__` runs every field's check; a failing one raises `OptionError`, which
carries the field ("AnalysisOptions.smoothing") for a Python user, the flag ("--smoothing")
for the command line and the label for the web page. `cli.flags` makes argparse flags from
the declarations and the option objects from the parsed arguments; the page takes its
controls' labels, choices and defaults from them.

A check takes the value and returns the value to store (the same one, or a normal form of
it); it raises `ValueError` with the rule the value broke, worded to follow the option's
name: "must be an integer >= 0, got -1".
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ganterp_fast.engine.errors import InputError, OptionError

_KEY = "ganterp_fast.option"


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What one field states besides its name and default."""

    flag: str | None = None  # the command-line flag ("--smoothing"); None: the API alone
    help: str = ""
    check: Callable[[Any], Any] | None = None
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # the flag's argparse type (int and float follow the default)
    label: str | None = None  # the web page's control (None: the name, spaced)
    short: str | None = None  # a one-letter alias of the flag ("-y")


def option(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
    flag: str | None = None,
    help: str = "",
    check: Callable[[Any], Any] | None = None,
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    label: str | None = None,
    short: str | None = None,
) -> Any:
    """A dataclass field with its declaration; `choices` alone makes the check `one_of(choices)`."""
    choices = tuple(choices) if choices is not None else None
    if check is None and choices is not None:
        check = one_of(choices)
    declaration = Declaration(flag, help, check, choices, metavar, parse, label, short)
    return dataclasses.field(default=default, default_factory=factory, metadata={_KEY: declaration})


def declared(
    owner: type | object, names: Sequence[str] | None = None
) -> Iterator[tuple[dataclasses.Field, Declaration]]:
    """(field, declaration) of the fields `names` (all declared ones for None), in that order."""
    items = {item.name: item for item in dataclasses.fields(owner) if _KEY in item.metadata}  # type: ignore[arg-type]
    for name in names if names is not None else list(items):
        if name not in items:
            raise AttributeError(f"{_name(owner)} has no declared option {name!r}")
        yield items[name], items[name].metadata[_KEY]


def default_of(item: dataclasses.Field) -> Any:
    """A field's default value (its factory called where it has one)."""
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return None if item.default is dataclasses.MISSING else item.default


def label_of(item: dataclasses.Field, found: Declaration) -> str:
    """The web page's name for the option: its label, or its name with spaces."""
    return found.label or item.name.replace("_", " ")


def error(owner: type | object, name: str, rule: str) -> OptionError:
    """The `OptionError` of field `name` of `owner` breaking `rule` (its flag and label from the declaration)."""
    item, found = next(declared(owner, (name,)))
    return OptionError(f"{_name(owner)}.{name}", rule, flag=found.flag, label=label_of(item, found))


class Options:
    """Base of the option dataclasses: each declared field's check runs once, in field order, then
    `check_together` (rules between fields). A failing check raises the field's `OptionError`."""

    def __post_init__(self) -> None:
        for item, found in declared(self):
            if found.check is None:
                continue
            value = getattr(self, item.name)
            try:
                checked = found.check(value)
            except ValueError as exc:
                raise error(self, item.name, str(exc)) from None
            if checked is not value:
                object.__setattr__(self, item.name, checked)
        self.check_together()

    def check_together(self) -> None:
        """Rules that span fields; raise `error(self, name, rule)` naming the field to change."""


def _name(owner: type | object) -> str:
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


# ------------------------------------------------------------------------------ checks


def is_real(value: Any) -> bool:
    """A real number (int, float, numpy's, Fraction), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def whole(minimum: int, maximum: int | None = None, *, note: str = "") -> Callable[[Any], int]:
    """An integer from `minimum` (to `maximum`); a whole float is taken as its int."""
    bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    rule = f"must be an integer {bounds}{f' ({note})' if note else ''}"

    def check(value: Any) -> int:
        if not is_real(value) or not math.isfinite(value) or int(value) != value:
            raise ValueError(f"{rule}, got {value!r}")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ValueError(f"{rule}, got {value!r}")
        return number

    return check


def real(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: bool = False,
    rule: str | None = None,
) -> Callable[[Any], float]:
    """A finite number >= `minimum` (> with `above`) and <= `maximum`; `rule` words the bounds."""
    if rule is None:
        low = "" if minimum is None else f" {'>' if above else '>='} {minimum:g}"
        high = "" if maximum is None else f"{' and' if low else ''} <= {maximum:g}"
        rule = f"must be a finite number{low}{high}"

    def check(value: Any) -> float:
        ok = is_real(value) and math.isfinite(value)
        ok = ok and (minimum is None or (value > minimum if above else value >= minimum))
        if not (ok and (maximum is None or value <= maximum)):
            raise ValueError(f"{rule}, got {value!r}")
        return value

    return check


def one_of(choices: Sequence[Any], *, none: bool = False) -> Callable[[Any], Any]:
    """One of `choices` (or None with `none`)."""
    words = ", ".join(str(c) for c in choices) + (" or none" if none else "")

    def check(value: Any) -> Any:
        if (value is None and none) or value in choices:
            return value
        raise ValueError(f"must be one of {words}, got {value!r}")

    return check


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None, or a value `check` accepts."""
    return lambda value: None if value is None else check(value)


def by_parser(parse: Callable[[Any], Any], subject: str, *, keep: bool = False) -> Callable[[Any], Any]:
    """A check from a parser whose `InputError` begins with `subject` ("size ..."): the rest is the rule.

    Returns the parsed value, or the value as given with `keep`.
    """

    def check(value: Any) -> Any:
        try:
            parsed = parse(value)
        except InputError as exc:
            text = str(exc)
            raise ValueError(text[len(subject) :] if text.startswith(subject) else f": {text}") from None
        return value if keep else parsed

    return check
