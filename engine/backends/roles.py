"""Roles in a foreign generator's graph: which input is the latent, the class vector, the
truncation, and what the image output holds; assigned from names, shapes and types.

A generator needs a float latent input [N, D]; it may have a float class input [N, C] and a
truncation (psi) input, a scalar or one per sample; its image output is NCHW or NHWC with 3
channels, float in [-1, 1] (the GAN convention, the default) or [0, 1] (`value_range`), or
uint8. Where names do not decide (two rank-2 inputs of the same width, neither named like a
latent), `inputs={"latent": "a", "class": "b"}` does. Pure functions of the graph's
signature: `engine.backends.foreign` reads the graph and wraps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ganterp_fast.engine.backends.contract import MAKE_ONE
from ganterp_fast.engine.errors import ModelError

ROLES = ("latent", "class", "truncation")
VALUE_RANGES = ("-1,1", "0,1")
FLOAT_TYPES = ("float", "float16")
NEEDS = (
    "a generator needs a float latent input [N, D], optionally a float class input [N, C] and a "
    f"truncation input (scalar or [N]), and an image output [N, 3, H, W] or [N, H, W, 3]; or {MAKE_ONE}"
)
_LATENT = re.compile(r"(^|[^a-z])(z|latents?|noise|w)([^a-z]|$)", re.IGNORECASE)
_CLASS = re.compile(r"(^|[^a-z])(c|y|class(es)?(_vectors?)?|labels?|cond(ition)?|one_?hot)([^a-z]|$)", re.IGNORECASE)
_TRUNCATION = re.compile(r"psi|trunc", re.IGNORECASE)
_IMAGE = re.compile(r"img|image|frame|out|rgb|x", re.IGNORECASE)


@dataclass(frozen=True)
class Tensor:
    """One input or output of a graph: its name, element type ("float", "float16", "uint8", ...) and
    shape (an int per fixed axis, None per symbolic one)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("N" if dim is None else str(dim) for dim in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


@dataclass(frozen=True)
class Roles:
    """What each input and the output is: the plain data a wrapped graph records in its metadata."""

    latent: str
    z_dim: int
    output: str
    layout: str  # "NCHW" | "NHWC"
    height: int
    width: int
    output_dtype: str  # "float", "float16" or "uint8"
    value_range: str  # "-1,1" | "0,1" ("0,255" for uint8)
    latent_dtype: str = "float"
    class_input: str | None = None
    num_classes: int = 0
    truncation: str | None = None
    truncation_rank: int = 0
    batch: int | None = None  # a fixed batch size of the graph; None: any


def parse_inputs(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """`latent=z,class=c,truncation=psi` (or a mapping) -> {role: input name}; ValueError naming the roles."""
    if text is None or text == "":
        return {}
    pairs = text.items() if isinstance(text, Mapping) else (item.partition("=")[::2] for item in str(text).split(","))
    found: dict[str, str] = {}
    for role, name in pairs:
        role, name = str(role).strip(), str(name).strip()
        if role not in ROLES or not name:
            raise ValueError(f"must be ROLE=INPUT pairs with ROLE one of {', '.join(ROLES)} (e.g. latent=z,class=c)")
        found[role] = name
    return found


def assign_roles(
    path: str,
    inputs: list[Tensor],
    outputs: list[Tensor],
    *,
    named: Mapping[str, str] | None = None,
    value_range: str = "-1,1",
) -> Roles:
    """The roles of a graph's inputs and output; `ModelError` saying what was found and what a generator needs."""
    named = dict(named or {})
    by_name = {item.name: item for item in inputs}
    found = "inputs " + ("; ".join(item.describe() for item in inputs) or "none")
    found += ", outputs " + ("; ".join(item.describe() for item in outputs) or "none")
    for role, name in named.items():
        if name not in by_name:
            raise ModelError(f"{path}: --model-inputs names {role}={name}, but the graph has {found}")
    latent, classes, truncation = (by_name.get(named.get(role, "")) for role in ROLES)
    free = [item for item in inputs if item.name not in named.values()]
    if truncation is None:
        truncation = next((i for i in free if i.dtype in FLOAT_TYPES and len(i.shape) <= 1), None)
        if truncation is not None and len(truncation.shape) == 1 and not _TRUNCATION.search(truncation.name):
            truncation = None  # a vector input that is not named like psi is not taken for one
    free = [item for item in free if item is not truncation]
    matrices = [item for item in free if item.dtype in FLOAT_TYPES and len(item.shape) == 2]
    if latent is None or (classes is None and "class" not in named and len(matrices) > 0):
        latent, classes = _latent_and_class(path, latent, classes, matrices, found)
    if latent is None:
        deeper = [item for item in free if item.dtype in FLOAT_TYPES and len(item.shape) > 2]
        what = f"a rank-{len(deeper[0].shape)} input {deeper[0].name}" if deeper else "no float [N, D] input"
        raise ModelError(f"{path}: {what} where a latent [N, D] is needed ({found}); {NEEDS}")
    rest = [item.name for item in inputs if item not in (latent, classes, truncation)]
    if rest:
        named_hint = "name the roles with --model-inputs"
        raise ModelError(f"{path}: inputs {', '.join(rest)} have no role ({found}); {NEEDS}; {named_hint}")
    for item, role in ((latent, "latent"), (classes, "class")):
        if item is not None and (len(item.shape) != 2 or item.shape[1] is None or item.dtype not in FLOAT_TYPES):
            raise ModelError(f"{path}: the {role} input {item.describe()} is not a float [N, width]; {NEEDS}")
    output = _image_output(path, outputs, found)
    channels_first = output.shape[1] == 3
    height, width = (output.shape[2], output.shape[3]) if channels_first else (output.shape[1], output.shape[2])
    if height is None or width is None:
        raise ModelError(f"{path}: the image output {output.describe()} has no fixed height and width; {NEEDS}")
    if value_range not in VALUE_RANGES:
        raise ModelError(f"value range {value_range!r}: use one of {', '.join(VALUE_RANGES)}")
    batch = latent.shape[0]
    return Roles(
        latent=latent.name,
        z_dim=int(latent.shape[1]),
        latent_dtype=latent.dtype,
        output=output.name,
        layout="NCHW" if channels_first else "NHWC",
        height=int(height),
        width=int(width),
        output_dtype=output.dtype,
        value_range="0,255" if output.dtype == "uint8" else value_range,
        class_input=classes.name if classes is not None else None,
        num_classes=int(classes.shape[1]) if classes is not None else 0,
        truncation=truncation.name if truncation is not None else None,
        truncation_rank=len(truncation.shape) if truncation is not None else 0,
        batch=batch if isinstance(batch, int) and batch > 0 else None,
    )


def _latent_and_class(
    path: str, latent: Tensor | None, classes: Tensor | None, matrices: list[Tensor], found: str
) -> tuple[Tensor | None, Tensor | None]:
    """The latent and class inputs among the rank-2 float inputs, by name where one is given or fits."""
    if latent is not None:
        rest = [item for item in matrices if item is not latent]
        return latent, classes or (rest[0] if len(rest) == 1 else None)
    if classes is not None:
        rest = [item for item in matrices if item is not classes]
        return (rest[0] if len(rest) == 1 else None), classes
    if len(matrices) == 1:
        return matrices[0], None
    if len(matrices) == 2:
        first, second = matrices
        latents = [item for item in matrices if _LATENT.search(item.name) and not _CLASS.search(item.name)]
        labels = [item for item in matrices if _CLASS.search(item.name) and not _LATENT.search(item.name)]
        if len(latents) == 1:
            return latents[0], second if latents[0] is first else first
        if len(labels) == 1:
            return (second if labels[0] is first else first), labels[0]
    if len(matrices) >= 2:
        names = ", ".join(item.name for item in matrices)
        raise ModelError(
            f"{path}: cannot tell the latent from the class input among {names} ({found}); "
            "name them with --model-inputs latent=NAME,class=NAME"
        )
    return None, None


def _image_output(path: str, outputs: list[Tensor], found: str) -> Tensor:
    images = [
        item
        for item in outputs
        if len(item.shape) == 4 and (item.shape[1] == 3 or item.shape[3] == 3) and item.dtype in (*FLOAT_TYPES, "uint8")
    ]
    if not images:
        raise ModelError(f"{path}: no image output [N, 3, H, W] or [N, H, W, 3] ({found}); {NEEDS}")
    named = [item for item in images if _IMAGE.search(item.name)]
    return (named or images)[0]
