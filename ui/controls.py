"""The page's controls made from the option declarations (`engine.fields.option`): each control's
label, choices and default are its option's, so the page and the command line cannot drift
apart, and an `OptionError` names the control by the label the page shows.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ganterp_fast.engine.fields import declared, default_of, label_of

_UNSET: Any = object()


def _option(owner: type, name: str, value: Any) -> tuple[Any, str, tuple[Any, ...] | None]:
    """(value, label, choices) of `owner`'s field `name`; `value` replaces the default where given."""
    item, found = next(declared(owner, (name,)))
    return (default_of(item) if value is _UNSET else value), label_of(item, found), found.choices


def number(owner: type, name: str, *, value: Any = _UNSET, **kwargs: Any) -> gr.Number:
    """A number box for the option (`kwargs`: Gradio's, e.g. minimum, step, precision, elem_id)."""
    value, label, _ = _option(owner, name, value)
    return gr.Number(value, label=label, **kwargs)


def radio(owner: type, name: str, *, extra: tuple[str, ...] = (), value: Any = _UNSET, **kwargs: Any) -> gr.Radio:
    """Radio buttons over the option's choices (after `extra` ones, such as 'none')."""
    value, label, choices = _option(owner, name, value)
    return gr.Radio([*extra, *(choices or ())], value=value, label=label, **kwargs)


def checkbox(owner: type, name: str, *, label: str | None = None, **kwargs: Any) -> gr.Checkbox:
    value, own, _ = _option(owner, name, _UNSET)
    return gr.Checkbox(value, label=label or own, **kwargs)


def dropdown(owner: type, name: str, choices: list[str], *, value: Any = _UNSET, **kwargs: Any) -> gr.Dropdown:
    """A dropdown of `choices` that also takes a typed value (an fps, a size)."""
    value, label, _ = _option(owner, name, value)
    return gr.Dropdown(choices, value=str(value), allow_custom_value=True, label=label, **kwargs)


def textbox(owner: type, name: str, *, value: Any = _UNSET, **kwargs: Any) -> gr.Textbox:
    """A text box for the option (a file path, a Hub name, ROLE=INPUT pairs); empty where it is unset."""
    value, label, _ = _option(owner, name, value)
    return gr.Textbox("" if value is None else str(value), label=label, **kwargs)


def slider(owner: type, name: str, minimum: float, maximum: float, **kwargs: Any) -> gr.Slider:
    value, label, _ = _option(owner, name, _UNSET)
    return gr.Slider(minimum, maximum, value=value, label=label, **kwargs)
