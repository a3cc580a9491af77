"""argparse flags made from the option declarations (`engine.fields.option`), and the option
objects made from the parsed flags.

A field's flag, default, choices, metavar and help come from its declaration; the flag's
`dest` is the flag's own name ("--encoder-threads" -> `encoder_threads`), so a flag, a field
and an error message share one name and nothing translates between them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TypeVar

from ganterp_fast.engine.fields import Declaration, declared, default_of

T = TypeVar("T")


def dest(flag: str) -> str:
    """argparse's attribute for a flag: "--preview-fps" -> "preview_fps"."""
    return flag.lstrip("-").replace("-", "_")


def add_options(
    group: argparse.ArgumentParser | argparse._ArgumentGroup,
    owner: type,
    names: Sequence[str] | None = None,
) -> None:
    """Add the flags of `owner`'s fields `names` (every field with a flag for None), in that order."""
    for item, found in declared(owner, names):
        if found.flag is None:
            continue
        default = default_of(item)
        text = found.help
        flags = [found.short, found.flag] if found.short else [found.flag]
        if isinstance(default, bool):
            group.add_argument(*flags, action="store_true", help=text)
            continue
        if default is not None and default != () and "default" not in text:
            text += " (default: %(default)s)"
        group.add_argument(*flags, default=default, help=text, **_kind(found, default))


def _kind(found: Declaration, default: Any) -> dict[str, Any]:
    """The argparse keywords for a flag's values: its type, choices and metavar."""
    keywords: dict[str, Any] = {}
    parse = found.parse or (type(default) if type(default) in (int, float) else None)
    if parse is not None:
        keywords["type"] = parse
    if found.choices is not None:
        keywords["choices"] = found.choices
    if found.metavar is not None:
        keywords["metavar"] = found.metavar
    return keywords


def from_args(owner: type[T], args: argparse.Namespace, **given: Any) -> T:
    """`owner` made from the parsed flags of its fields (those this command has), and `given`.

    A value the field's rule refuses raises its `OptionError`, which names the flag.
    """
    values = {}
    for item, found in declared(owner):
        if found.flag is not None and item.name not in given and hasattr(args, dest(found.flag)):
            values[item.name] = getattr(args, dest(found.flag))
    return owner(**values, **given)
