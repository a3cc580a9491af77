"""Output files written whole or not at all: a temporary file beside the target, renamed on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def check_output(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Validate an output path before any work: its folder exists and is writable, and an
    existing file is only replaced when `overwrite` is set."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"output {target} is a directory: give a file name")
    if target.exists() and not overwrite:
        raise InputError(f"output {target} already exists: pass --overwrite (-y) to replace it")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {folder} does not exist: create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output folder {folder} is not writable: choose another path")
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error
    (KeyboardInterrupt included) it is removed and `path` is left as it was."""
    target = check_output(path, overwrite=overwrite)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent or ".")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        if target.exists() and not overwrite:  # appeared while we worked
            raise InputError(f"output {target} appeared while writing: pass --overwrite (-y) to replace it")
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
