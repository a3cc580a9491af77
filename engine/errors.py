"""One exception root for the library, with a few meaningful subclasses.

Each carries the process exit code the command line uses for it, so the CLI maps
errors to exit codes in one place.
"""

from __future__ import annotations


class GanterpError(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = 1


class InputError(GanterpError):
    """A bad input file or option value: names the value and what would work."""

    exit_code = 2


class OptionError(InputError):
    """An option value that breaks its field's rule (`engine.fields`).

    `str(exc)` names the field a Python user set ("AnalysisOptions.smoothing must be ...");
    `flag` is the command line's name for it ("--smoothing") and `label` the web page's;
    `named(flag)` words the same message with another name.
    """

    def __init__(self, field: str, rule: str, *, flag: str | None = None, label: str | None = None) -> None:
        self.field, self.rule, self.flag, self.label = field, rule, flag, label
        super().__init__(self.named(field))

    def named(self, name: str) -> str:
        """The message with `name` for the option ("--smoothing must be an integer >= 0, got -1")."""
        return f"{name}{self.rule}" if self.rule[:1] in (" ", ":", ",") else f"{name} {self.rule}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.field, self.rule), {"flag": self.flag, "label": self.label}


class MissingExtraError(GanterpError):
    """An optional dependency (an install extra) is needed for this operation."""

    exit_code = 2

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(
            f"{what} needs the [{extra}] extra: pip install 'ganterp-fast[{extra}]' "
            f"(in a clone: pip install '.[{extra}]')"
        )
        self.extra = extra


class ModelError(GanterpError):
    """A model cannot be found, loaded, exported or is not a ganterp-fast BigGAN export."""

    exit_code = 2


class ProviderError(GanterpError):
    """The requested device / ONNX Runtime execution provider is not available."""

    exit_code = 2


class RenderError(GanterpError):
    """A render failed part-way (generator or encoder fault); nothing was written."""

    exit_code = 1
