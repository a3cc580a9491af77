"""Output files written whole or not at all: a temporary file beside the target, renamed on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ganterp_fast.engine.errors import InputError


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
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker == folder:
            raise InputError(f"output folder {folder} is a file, not a folder: choose another path")
        if blocker is not None and not blocker.is_dir():
            raise InputError(
                f"output folder {folder} cannot exist: {blocker} is a file, not a folder; choose another path"
            )
        raise InputError(f"output folder {folder} does not exist: create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output folder {folder} is not writable: choose another path")
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file (through links and relative paths)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return os.path.realpath(a) == os.path.realpath(b)


def temporary_beside(target: Path, *, prefix: str, suffix: str) -> Path:
    """An empty temporary file in `target`'s folder, with the permissions `target` will have.

    mkstemp makes files private (0600); renamed onto the target they would stay so. The file
    gets the existing target's mode when it replaces one, else what the umask gives a new file.
    Raises OSError when the folder cannot be written.
    """
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent or ".")
    try:
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return Path(name)


def _umask() -> int:
    """The process's umask, read without changing it (Linux); os.umask's round trip elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error
    (KeyboardInterrupt included) it is removed and `path` is left as it was."""
    target = check_output(path, overwrite=overwrite)
    temporary = temporary_beside(target, prefix=f".{target.stem}.", suffix=f".partial{target.suffix}")
    try:
        yield temporary
        if target.exists() and not overwrite:  # appeared while we worked
            raise InputError(f"output {target} appeared while writing: pass --overwrite (-y) to replace it")
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
