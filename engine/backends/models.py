"""What `--model` means, and the cache of exported models.

A model is a ready `.onnx` file (used as is), a pretrained name (`biggan-deep-128|256|512`),
a checkpoint directory (`config.json` + `pytorch_model.bin`) or either of those two on the
Hugging Face Hub (`hf:OWNER/REPO[/FILE.onnx]`, `engine.backends.hub`). Names and directories are
exported once into the cache (`$GANTERP_CACHE_DIR`, default the user cache directory) and
reused: entries are keyed by source, weights hash, precision and exporter version, written
atomically under a file lock, and come with a sidecar holding their sha256 and size, so a
corrupt or half-written entry is rebuilt, never used. Exporting needs the `[export]` extra
(torch); a ready `.onnx` does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ganterp_fast import __version__
from ganterp_fast.engine.backends.contract import (
    CONFIG_NAME,
    EXPORT_PRECISIONS,
    FORMAT_VERSION,
    PRETRAINED_NAMES,
    WEIGHTS_NAME,
)
from ganterp_fast.engine.backends.hub import checkpoint_directory, is_hub_spec, parse_spec, ready_model
from ganterp_fast.engine.backends.preparation import ModelProgress, Preparation
from ganterp_fast.engine.cache import CACHE_ENV, cache_dir, file_sha256
from ganterp_fast.engine.errors import InputError, MissingExtraError

log = logging.getLogger(__name__)

_SIDECAR_SUFFIX = ".json"
# The values `--weights random` draws for a seed (export/random_weights.py); part of the cache
# key, so a change of the drawing never reuses a model cached with the old values.
RANDOM_WEIGHTS_VERSION = 2


def resolve_model(
    model: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    weights: str | None = None,
    seed: int = 0,
    progress: Callable[[ModelProgress], None] | None = None,
) -> Path:
    """The `.onnx` file for `model`, exporting a name or checkpoint directory into the cache once.

    `weights="random"` uses seeded random weights (`seed`) in the model's architecture.
    `progress` gets each step of a first use's export (weights, export, parity, save) with an
    ETA, and a last report when the model is ready; nothing when the cache has it.
    Raises `InputError` for an unknown model, `MissingExtraError` when an export is needed
    and torch is not installed, `ModelError` when the export fails.
    """
    if precision not in EXPORT_PRECISIONS:
        raise InputError(f"precision {precision!r}: use one of {', '.join(EXPORT_PRECISIONS)}")
    if weights not in (None, "random"):
        raise InputError(f"weights {weights!r}: use 'random' or leave it unset")
    ready = ready_model(model, weights=weights)
    if ready is not None:
        return ready
    text = os.fspath(model)
    key = cache_key(text, precision=precision, weights=weights, seed=seed)
    directory = cache_dir() / "models"
    entry = directory / f"{_slug(key)}-{precision}-{_digest(key)[:16]}.onnx"
    with contextlib.ExitStack() as stack:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_locked(entry.with_name(entry.name + ".lock")))
        except OSError as exc:
            raise InputError(
                f"cannot use the model cache {directory}: {exc.strerror or exc}; set {CACHE_ENV} to a writable folder"
            ) from None
        if _entry_valid(entry, key):
            log.info("model cache hit: %s", entry)
            return entry
        _remove_entry(entry)
        # Whoever builds this entry holds the lock: partial files left now are from a killed export.
        for stale in entry.parent.glob(f".{entry.name}.*partial"):
            stale.unlink(missing_ok=True)
        log.info("model cache miss: exporting %s (%s) to %s", text, precision, entry)
        export = _import_export()
        steps = Preparation(progress)  # the export lays out the plan; the sidecar belongs to its last step
        if is_hub_spec(text) and weights == "random":  # random weights need the architecture only: the local copy
            text = str(checkpoint_directory(parse_spec(text)))
        export.export_model(text, entry, precision=precision, weights=weights, seed=seed, progress=steps)
        _write_sidecar(entry, key)
        steps.finish()
    return entry


def cache_key(model: str, *, precision: str, weights: str | None, seed: int) -> dict[str, Any]:
    """What identifies an export: source, weights hash, precision and exporter version."""
    base: dict[str, Any] = {"format": FORMAT_VERSION, "exporter": __version__, "precision": precision}
    random = f"random-v{RANDOM_WEIGHTS_VERSION}-seed{seed}"
    if model in PRETRAINED_NAMES:
        source: dict[str, Any] = {"kind": "pretrained", "name": model}
        source["weights"] = random if weights == "random" else model
        return {**base, "source": source}
    if is_hub_spec(model):  # the downloaded checkpoint's hashes, under the repository's name
        spec = parse_spec(model)
        key = cache_key(str(checkpoint_directory(spec)), precision=precision, weights=weights, seed=seed)
        key["source"].update(kind="hub", name=spec.repo_id + (f"/{spec.file}" if spec.file else ""))
        return key
    directory = Path(model).expanduser()
    if directory.is_dir():
        config, checkpoint = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config.is_file() or (weights is None and not checkpoint.is_file()):
            raise InputError(f"checkpoint directory {directory} needs {CONFIG_NAME} and {WEIGHTS_NAME}")
        source = {"kind": "checkpoint", "name": directory.resolve().name, "config_sha256": file_sha256(config)}
        source["weights"] = random if weights == "random" else file_sha256(checkpoint)
        return {**base, "source": source}
    raise InputError(
        f"model {model!r} is not one of: a pretrained name ({', '.join(PRETRAINED_NAMES)}), "
        f"a checkpoint directory ({CONFIG_NAME} + {WEIGHTS_NAME}), an existing .onnx file, "
        "or a Hub model (hf:OWNER/REPO[/FILE.onnx][@REVISION])"
    )


def model_resolution(model: str | os.PathLike[str]) -> int:
    """The output size in pixels of a pretrained name or checkpoint directory, without exporting it."""
    text = os.fspath(model)
    if text in PRETRAINED_NAMES:
        return int(text.rsplit("-", 1)[1])
    if is_hub_spec(text):
        text = str(checkpoint_directory(parse_spec(text)))
    directory = Path(text).expanduser()
    config = directory / CONFIG_NAME
    if directory.is_dir() and config.is_file():
        try:
            return int(json.loads(config.read_text(encoding="utf-8"))["output_dim"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{config} does not hold a BigGAN config with an output_dim ({exc})") from None
    cache_key(text, precision="fp32", weights="random", seed=0)  # raises the InputError naming what works
    raise InputError(f"checkpoint directory {directory} needs {CONFIG_NAME}")


def _import_export() -> Any:
    try:
        return importlib.import_module("ganterp_fast.export")
    except ImportError as exc:
        error = MissingExtraError("exporting a model", "export")
        error.args = (
            f"{error} ({exc.name or exc}); a ready .onnx made elsewhere with 'ganterp-fast export' runs without torch",
        )
        raise error from exc


def _slug(key: dict[str, Any]) -> str:
    source = key["source"]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(source["name"]))[:48] or "model"
    return f"{name}-random" if str(source["weights"]).startswith("random") else name


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _sidecar(entry: Path) -> Path:
    return entry.with_name(entry.name + _SIDECAR_SUFFIX)


def _entry_valid(entry: Path, key: dict[str, Any]) -> bool:
    """True when the entry exists and matches its sidecar (key, size, sha256)."""
    sidecar = _sidecar(entry)
    if not entry.exists() and not sidecar.exists():
        return False
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        valid = (
            recorded.get("key") == key
            and recorded.get("size") == entry.stat().st_size
            and recorded.get("sha256") == file_sha256(entry)
        )
    except (OSError, ValueError, AttributeError):
        valid = False
    if not valid:
        log.warning("model cache entry %s is corrupt or incomplete; rebuilding it", entry)
    return valid


def _remove_entry(entry: Path) -> None:
    for path in (entry, _sidecar(entry)):
        path.unlink(missing_ok=True)


def _write_sidecar(entry: Path, key: dict[str, Any]) -> None:
    record = {"key": key, "size": entry.stat().st_size, "sha256": file_sha256(entry)}
    sidecar = _sidecar(entry)
    temporary = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.partial")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, sidecar)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (blocks while another process builds the entry)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; writes are still atomic
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
