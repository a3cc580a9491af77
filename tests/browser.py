"""What the browser tests share: Debian's Chromium, and why they are skipped where it is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def skip_reason(modules: dict[str, str]) -> str | None:
    """Why browser tests cannot run here (None: they can): no Chromium, or a module (name -> its
    extra) that is not installed."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (scripts/test.sh installs Debian's chromium package)"
    for module, extra in modules.items():
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (the [{extra}] extra)"
    return None
