"""The 1000 ImageNet classes in BigGAN's order: names and synonyms to indices and back."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib import resources

from ganterp_fast.engine.backends.contract import NUM_CLASSES
from ganterp_fast.engine.errors import InputError


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]


@functools.cache
def all_classes() -> tuple[ImageNetClass, ...]:
    """The classes, read once from the package's `data/imagenet_classes.tsv`."""
    text = resources.files(__package__).joinpath("data/imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines()[1:]:
        index, wnid, names = line.split("\t")
        rows.append(ImageNetClass(int(index), wnid, tuple(n.strip() for n in names.split(","))))
    return tuple(rows)


@functools.cache
def _by_name() -> dict[str, tuple[int, ...]]:
    table: dict[str, list[int]] = {}
    for cls in all_classes():
        for key in {n.lower() for n in cls.names} | {cls.wnid.lower()}:
            table.setdefault(key, []).append(cls.index)
    return {key: tuple(indices) for key, indices in table.items()}


def class_index(query: str | int) -> int:
    """The index of a class given by index (0-999), WordNet id or any of its names.

    Names are case-insensitive. An unknown name raises `InputError` with close matches; a
    name two classes share (e.g. "crane") asks for the index.
    """
    if isinstance(query, int) or (isinstance(query, str) and query.strip().lstrip("-").isdigit()):
        index = int(query)
        if not 0 <= index < NUM_CLASSES:
            raise InputError(f"class index {index} is out of range: ImageNet classes are 0 to {NUM_CLASSES - 1}")
        return index
    key = " ".join(str(query).split()).lower()
    if not key:
        raise InputError("empty class name: give an ImageNet class name or an index 0-999")
    matches = _by_name().get(key)
    if matches is None:
        close = difflib.get_close_matches(key, list(_by_name()), n=4, cutoff=0.6)
        contained = [name for name in _by_name() if key in name][:4]
        suggestions = list(dict.fromkeys(close + contained))[:5]
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise InputError(f"unknown class {query!r}{hint} (see 'ganterp-fast classes QUERY' for names and indices)")
    if len(matches) > 1:
        options = ", ".join(f"{i} ({all_classes()[i].name}, {all_classes()[i].wnid})" for i in matches)
        raise InputError(f"class name {query!r} is ambiguous: it names {options}; give the index instead")
    return matches[0]


def class_label(index: int) -> str:
    """A class as messages show it: its index and first name, '850 (teddy, teddy bear)' -> '850 (teddy)'."""
    return f"{index} ({all_classes()[index].name})"


def parse_classes(spec: str | list[str | int] | tuple[str | int, ...] | None) -> list[int]:
    """A comma-separated list (or a sequence) of class names and indices, to indices."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [class_index(item.strip() if isinstance(item, str) else item) for item in items if str(item).strip()]


def find_classes(query: str | None = None) -> list[ImageNetClass]:
    """Classes whose WordNet id or any name contains `query` (all of them for None); a number is
    that index alone ("850": class 850, not the WordNet ids that contain 850)."""
    if not query:
        return list(all_classes())
    key = query.strip().lower()
    if key.isdigit():
        return [all_classes()[int(key)]] if int(key) < NUM_CLASSES else []
    return [cls for cls in all_classes() if key in cls.wnid.lower() or any(key in name.lower() for name in cls.names)]
