"""Models from the Hugging Face Hub: `--model hf:OWNER/REPO[/FILE][@REVISION]` and the pretrained copies.

`hf:OWNER/REPO` is a BigGAN checkpoint (`config.json` + `pytorch_model.bin`, exported once
like a local checkpoint directory), `hf:OWNER/REPO/SUBFOLDER` the same in a subfolder, and
`hf:OWNER/REPO/FILE.onnx` a generator graph used like a local `.onnx`. `@REVISION` pins a
branch, tag or commit (default `main`). Files come through `huggingface_hub`: kept in the
Hub's own cache (`HF_HUB_CACHE`, or `HF_HOME/hub`), resumed when cut short, served from
that cache with `HF_HUB_OFFLINE=1` or without network. Each file is checked against the
checksum the Hub gave it: the cache names a file's blob by its etag, the sha256 of an LFS
file (the weights, the graphs) and the git blob sha1 of a small one (`config.json`).
`PRETRAINED_HUB` is where the pretrained names come from when their legacy address fails.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ganterp_fast.engine.backends.contract import CONFIG_NAME, MODEL_CHOICES, WEIGHTS_NAME, is_ready_model
from ganterp_fast.engine.cache import file_sha256
from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError

log = logging.getLogger(__name__)

PREFIX = "hf:"
# How long a connection to the Hub may take before it counts as unreachable (DNS failures and
# refusals answer at once; this bounds a network that drops packets).
_CONNECT_TIMEOUT_S = 5.0
SPEC_FORM = "hf:OWNER/REPO, hf:OWNER/REPO/FILE.onnx or hf:OWNER/REPO/SUBFOLDER, each with an optional @REVISION"


@dataclass(frozen=True)
class HubSource:
    """A pretrained checkpoint on the Hub: its repository, pinned revision and files."""

    repo_id: str
    revision: str
    files: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME)


# The pretrained names' copies on the Hub, in pytorch-pretrained-biggan's layout. Only the
# 128 px model is published there (config.json 630 bytes, pytorch_model.bin 211 MB); the 256
# and 512 px models have no copy under that owner, so they keep the legacy address alone.
# Revision: the repository's `main`, a named revision, because no commit hash of it could be
# read here; every file is still checked against the sha256 the Hub gives it (`_check_blob`),
# and the checkpoint's keys, shapes and values by the strict loader (export/checkpoint.py).
PRETRAINED_HUB: dict[str, HubSource] = {
    "biggan-deep-128": HubSource("osanseviero/BigGAN-deep-128", "main"),
}

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_SPEC = re.compile(rf"hf:(?P<repo>{_NAME}/{_NAME})(?:/(?P<file>[^@]+))?(?:@(?P<revision>[A-Za-z0-9][A-Za-z0-9._/-]*))?")


@dataclass(frozen=True)
class HubSpec:
    """A parsed `hf:` model: repository, file or subfolder (None: the root) and revision."""

    repo_id: str
    file: str | None = None
    revision: str | None = None

    @property
    def onnx(self) -> bool:
        """Whether it names a generator graph rather than a checkpoint."""
        return self.file is not None and self.file.lower().endswith(".onnx")

    def __str__(self) -> str:
        text = PREFIX + self.repo_id + (f"/{self.file}" if self.file else "")
        return text + (f"@{self.revision}" if self.revision else "")


def is_hub_spec(model: str | os.PathLike[str]) -> bool:
    """Whether `model` names a model on the Hugging Face Hub (`hf:...`)."""
    return isinstance(model, str) and model.startswith(PREFIX)


def parse_spec(model: str) -> HubSpec:
    """The parts of an `hf:` model; `InputError` naming the forms that work when malformed."""
    found = _SPEC.fullmatch(model)
    file = found["file"] if found else None
    parts = file.split("/") if file else []
    if found is None or any(part in ("", ".", "..") for part in parts) or file and "\\" in file:
        raise InputError(f"model {model!r} is not a Hub model; use {SPEC_FORM} (e.g. hf:osanseviero/BigGAN-deep-128)")
    return HubSpec(found["repo"], file, found["revision"])


def hub_model(model: str) -> Path:
    """The local file (`.onnx`) or checkpoint directory of an `hf:` model, downloaded into the Hub's cache once."""
    spec = parse_spec(model)
    if spec.onnx:
        return _download(spec, spec.file or "")
    return checkpoint_directory(spec)


def checkpoint_directory(spec: HubSpec) -> Path:
    """The snapshot folder holding the checkpoint's config.json and pytorch_model.bin (one commit for both)."""
    prefix = f"{spec.file}/" if spec.file else ""
    config = _download(spec, prefix + CONFIG_NAME)
    commit = _commit_of(config)
    pinned = HubSpec(spec.repo_id, spec.file, commit or spec.revision)
    weights = _download(pinned, prefix + WEIGHTS_NAME)
    if weights.parent != config.parent:
        raise ModelError(f"{spec}: {CONFIG_NAME} and {WEIGHTS_NAME} came from different snapshots")
    return config.parent


def pretrained_directory(name: str) -> Path | None:
    """The Hub copy of a pretrained name's checkpoint, or None when it has none; `ModelError` when it cannot be had."""
    source = PRETRAINED_HUB.get(name)
    if source is None:
        return None
    return checkpoint_directory(HubSpec(source.repo_id, None, source.revision))


def source_label(spec: HubSpec, directory: Path) -> str:
    """The `hf:` name of a downloaded checkpoint with the commit it came from (for the export's metadata)."""
    commit = _commit_of(directory / CONFIG_NAME)
    return str(HubSpec(spec.repo_id, spec.file, commit or spec.revision))


def hub_cache() -> Path:
    """The Hub's cache folder, read when called: HF_HUB_CACHE, else HF_HOME/hub, else the library's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(_library().constants.HF_HUB_CACHE)


def offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for the cache alone (read when called, unlike the library's constant)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() in ("1", "on", "yes", "true")
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _library() -> Any:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtraError("a model from the Hugging Face Hub (hf:...)", "cpu") from exc
    return huggingface_hub


def _download(spec: HubSpec, filename: str) -> Path:
    hub = _library()
    from huggingface_hub import errors

    revision = spec.revision or "main"
    try:
        path = hub.hf_hub_download(
            spec.repo_id, filename, revision=revision, cache_dir=hub_cache(), local_files_only=not _reachable()
        )
    except errors.LocalEntryNotFoundError:
        raise ModelError(_not_cached(spec, filename)) from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        raise ModelError(
            f"{spec}: no repository {spec.repo_id} on the Hugging Face Hub, or it is private or gated "
            "(log in with: huggingface-cli login)"
        ) from None
    except errors.RevisionNotFoundError:
        raise ModelError(f"{spec}: {spec.repo_id} has no revision {revision!r} on the Hugging Face Hub") from None
    except errors.EntryNotFoundError:
        raise ModelError(f"{spec}: {spec.repo_id} has no file {filename} at revision {revision}") from None
    except OSError as exc:  # the library's HTTP errors derive from OSError
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        raise ModelError(f"{spec}: cannot download {filename} from the Hugging Face Hub ({reason})") from None
    except ValueError as exc:  # the library's validation of a repository id or revision
        raise InputError(f"model {spec}: {str(exc).splitlines()[0]}; use {SPEC_FORM}") from None
    path = Path(path)
    _check_blob(path)
    log.info("Hub file %s@%s/%s: %s", spec.repo_id, revision, filename, path)
    return path


def _reachable() -> bool:
    """False when offline, or when the Hub's host cannot be connected to (checked once a process).

    Without network the library would retry a file it has not cached for about 25 s; this
    check makes it serve the cache (or say what is missing) at once instead.
    """
    if offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT") or _library().constants.ENDPOINT
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy reaches it, not a direct connection: let the library try
    return _connects(endpoint)


@functools.lru_cache(maxsize=4)
def _connects(endpoint: str) -> bool:
    parsed = urlsplit(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError as exc:
        log.warning("cannot connect to the Hugging Face Hub at %s (%s); using its cache alone", endpoint, exc)
        return False


def _not_cached(spec: HubSpec, filename: str) -> str:
    reason = "HF_HUB_OFFLINE is set" if offline() else "the Hub cannot be reached from here"
    files = f" {spec.file}" if spec.onnx else ""
    revision = f" --revision {spec.revision}" if spec.revision else ""
    local = f"DIR/{spec.file}" if spec.file else "DIR"
    return (
        f"{spec}: {filename} is not in the Hugging Face cache ({hub_cache()}) and {reason}; "
        f"on a machine with network run: hf download {spec.repo_id}{files}{revision} --local-dir DIR "
        f"(huggingface-cli download before huggingface_hub 0.34), copy DIR here and pass --model {local}"
    )


def _commit_of(path: Path) -> str | None:
    """The commit of a file in the cache's layout (`.../snapshots/<commit>/FILE`), else None."""
    parts = path.parts
    if "snapshots" not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index("snapshots")
    commit = parts[index + 1] if index + 1 < len(parts) else ""
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _check_blob(path: Path) -> None:
    """Refuse a cached file whose bytes do not match the etag its blob is named by (LFS sha256, git sha1)."""
    blob = path.resolve()
    stat = blob.stat()
    digest, expected = _blob_digest(str(blob), stat.st_size, stat.st_mtime_ns)
    if digest is None:
        log.debug("no checksum to check %s against (not a blob of the Hub's cache)", path)
    elif digest != expected:
        raise ModelError(
            f"{path} does not match its checksum on the Hub ({digest[:12]}..., expected {expected[:12]}...): "
            f"it is damaged; delete {blob} and download it again"
        )


@functools.lru_cache(maxsize=32)
def _blob_digest(blob: str, size: int, mtime_ns: int) -> tuple[str | None, str]:
    """(digest of the file in its etag's kind, the etag), once per file version in a process."""
    del mtime_ns  # the cache key only
    path = Path(blob)
    etag = path.name
    if path.parent.name != "blobs":
        return None, etag
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        return file_sha256(path), etag
    if re.fullmatch(r"[0-9a-f]{40}", etag):
        return git_blob_sha1(path, size), etag
    return None, etag


def git_blob_sha1(path: Path, size: int | None = None) -> str:
    """The git object id of a file's bytes: sha1 of `blob <size>\\0` and the bytes."""
    size = path.stat().st_size if size is None else size
    digest = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ready_model(model: str | os.PathLike[str], *, weights: str | None = None) -> Path | None:
    """The path of `model` when it names a ready .onnx (`is_ready_model`), None for a name or checkpoint directory.

    Raises `InputError` when that file does not exist, or when `weights` (random weights) is asked of it.
    """
    if not is_ready_model(model):
        return None
    path = Path(os.fspath(model)).expanduser()
    if weights is not None:
        raise InputError(f"--weights {weights} applies to a model name or checkpoint, not to the ready model {path}")
    if os.fspath(model).startswith("hf:"):  # downloaded into the Hub's cache once
        return hub_model(os.fspath(model))
    if not path.is_file():
        raise InputError(f"model file {path} does not exist; give {MODEL_CHOICES}")
    return path
