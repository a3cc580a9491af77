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


class MissingExtraError(GanterpError):
    """An optional dependency (an install extra) is needed for this operation."""

    exit_code = 2

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the [{extra}] extra: pip install 'ganterp-fast[{extra}]'")
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
