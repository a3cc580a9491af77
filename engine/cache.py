"""The project's cache folder and file hashes: the models cache, OpenVINO's and TensorRT's caches sit under it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "GANTERP_CACHE_DIR"


def cache_dir() -> Path:
    """Root of ganterp-fast's cache: `$GANTERP_CACHE_DIR`, else the user cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ganterp-fast"))


def file_sha256(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
