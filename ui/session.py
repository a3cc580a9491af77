"""Where the page keeps files: one folder for the server, one per browser session inside it.

The server's folder is also Gradio's cache (`GRADIO_TEMP_DIR`), so uploads land in it and
the videos and plots written into a session's folder are served as they are, without a
copy. A session's folder and its uploads are removed when its tab closes; the whole folder
when the server stops.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_-]")
STAGING_AGE = 60.0  # seconds: an empty staging file this old belongs to an upload that has finished


class Workspace:
    """The server's temporary folder and its per-session folders."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="ganterp-ui-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.sessions = self.root / "sessions"
        self.sessions.mkdir(exist_ok=True)
        self._uploads: dict[str, set[Path]] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def folder(self, session: str) -> Path:
        """The session's folder (created on first use)."""
        path = self.sessions / (_SAFE.sub("_", session) or "anonymous")
        path.mkdir(exist_ok=True)
        return path

    def new_file(self, session: str, stem: str, suffix: str) -> Path:
        """A fresh file name in the session's folder (numbered, so a browser never shows an old copy)."""
        with self._lock:
            number = self._counters.get(session, 0) + 1
            self._counters[session] = number
        stem = _SAFE.sub("_", stem)[:60] or "file"
        return self.folder(session) / f"{stem}-{number}{suffix}"

    def adopt_upload(self, session: str, path: str | os.PathLike[str]) -> Path:
        """Record an upload Gradio stored in its cache, so it goes with the session."""
        path = Path(path)
        if self._inside(path):
            with self._lock:
                self._uploads.setdefault(session, set()).add(path)
        return path

    def close_session(self, session: str) -> None:
        """Remove the session's folder and its uploads."""
        with self._lock:
            uploads = self._uploads.pop(session, set())
            self._counters.pop(session, None)
        for upload in uploads:
            _remove(upload)
            parent = upload.parent  # Gradio stores each upload in a folder of its own
            if parent != self.root and self._inside(parent) and not any(parent.iterdir()):
                parent.rmdir()
        _remove(self.sessions / (_SAFE.sub("_", session) or "anonymous"))
        self.sweep()

    def sweep(self, *, age: float = STAGING_AGE) -> None:
        """Remove the empty staging files Gradio's upload parser leaves in its cache (one per upload),
        once they are `age` seconds old (a file being uploaded into is written to, so it is newer)."""
        now = time.time()
        for path in self.root.glob("tmp*"):
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_size == 0 and now - info.st_mtime > age:
                _remove(path)

    def shorten(self, text: str) -> str:
        """A message with the paths of files in the workspace cut to their names (what the user uploaded)."""
        root = re.escape(os.path.abspath(self.root))
        return re.sub(root + r"/(?:[^\s/]+/)*", "", text)

    def close(self) -> None:
        """Remove everything (the server stops)."""
        _remove(self.root)

    def _inside(self, path: Path) -> bool:
        try:
            return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(self.root))
        except (OSError, ValueError):
            return False


def gradio_environment(workspace: Workspace) -> dict[str, str]:
    """The variables Gradio reads when it is imported and launched: no analytics, no server-side
    rendering (which needs Node), and its cache inside the workspace."""
    return {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SSR_MODE": "False", "GRADIO_TEMP_DIR": str(workspace.root)}


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
