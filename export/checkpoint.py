"""BigGAN-deep checkpoints: architectures, pretrained download, strict loading, hashing.

A model source is one of the pretrained names (`biggan-deep-128|256|512`, fetched and cached
by pytorch-pretrained-biggan's own loader from its legacy address, else from the Hugging Face
Hub's copy where one exists: `engine.backends.hub.PRETRAINED_HUB`), a directory in that
package's layout (`config.json` + `pytorch_model.bin`), which loads offline, or such a
checkpoint on the Hub (`hf:OWNER/REPO[@REVISION]`). Weights load as data only
(`torch.load(weights_only=True)`): a pickle holding code is refused. pytorch-pretrained-biggan loads
state dicts with `strict=False`, silently ignoring wrong keys: here every key and shape is
checked and a mismatch is a `ModelError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pytorch_pretrained_biggan import BigGAN, BigGANConfig

from ganterp_fast.engine.backends import hub
from ganterp_fast.engine.backends.contract import CONFIG_NAME, NUM_CLASSES, PRETRAINED_NAMES, WEIGHTS_NAME, Z_DIM
from ganterp_fast.engine.cache import file_sha256
from ganterp_fast.engine.errors import InputError, MissingExtraError, ModelError

log = logging.getLogger(__name__)

# Layer tables of the released BigGAN-deep generators: (upsample?, in, out) in units of
# channel_width. 256 is the first 12 blocks of 512; checked against the analytic compute
# (22.6 / 77.7 / 151.5 GFLOP per image at 128 / 256 / 512 with channel_width 128).
_F, _T = False, True
_LAYERS_512 = [
    (_F, 16, 16), (_T, 16, 16), (_F, 16, 16), (_T, 16, 8), (_F, 8, 8), (_T, 8, 8), (_F, 8, 8),
    (_T, 8, 4), (_F, 4, 4), (_T, 4, 2), (_F, 2, 2), (_T, 2, 1), (_F, 1, 1), (_T, 1, 1),
]  # fmt: skip
ARCHITECTURES: dict[int, list[tuple[bool, int, int]]] = {
    128: [
        (_F, 16, 16),
        (_T, 16, 16),
        (_F, 16, 16),
        (_T, 16, 8),
        (_F, 8, 8),
        (_T, 8, 4),
        (_F, 4, 4),
        (_T, 4, 2),
        (_F, 2, 2),
        (_T, 2, 1),
    ],  # fmt: skip
    256: _LAYERS_512[:12],
    512: _LAYERS_512,
}
DEFAULT_CHANNEL_WIDTH = 128
# The self-attention block sits before layer 8 (at 64x64) in all three released models.
ATTENTION_LAYER_POSITION = 8

# A quick reachability probe before pytorch-pretrained-biggan's loader, which sends its
# requests without a timeout and would hang on a network that drops packets.
_PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LoadedModel:
    """A BigGAN in eval mode with what the export metadata says about it."""

    model: BigGAN
    name: str
    source: str
    weights_sha256: str
    resolution: int


def make_config(resolution: int = 128, *, channel_width: int | None = None) -> BigGANConfig:
    """The BigGAN-deep configuration of a released resolution, optionally narrower."""
    if resolution not in ARCHITECTURES:
        raise InputError(f"resolution {resolution} is not a BigGAN-deep size; use one of {sorted(ARCHITECTURES)}")
    width = DEFAULT_CHANNEL_WIDTH if channel_width is None else int(channel_width)
    if width < 8 or width % 8:
        raise InputError(f"channel_width {channel_width} must be a positive multiple of 8 (attention uses ch // 8)")
    return BigGANConfig(
        output_dim=resolution,
        channel_width=width,
        layers=[list(layer) for layer in ARCHITECTURES[resolution]],
        attention_layer_position=ATTENTION_LAYER_POSITION,
    )


def resolution_of(config: BigGANConfig) -> int:
    """Output side in pixels: 4 doubled once per upsampling block."""
    return 4 * 2 ** sum(1 for layer in config.layers if layer[0])


def load_biggan(source: str | os.PathLike[str]) -> BigGAN:
    """Load a BigGAN-deep generator in eval mode from a pretrained name or a checkpoint directory.

    Raises `ModelError` when the weights cannot be fetched or read, or when the checkpoint's
    keys or shapes do not match the architecture its `config.json` describes.
    """
    return load_source(source).model


def load_source(source: str | os.PathLike[str]) -> LoadedModel:
    """`load_biggan`, also returning the name, source and weights hash for the metadata."""
    text = os.fspath(source)
    if text in PRETRAINED_NAMES:
        config_path, weights_path = _fetch_pretrained(text)
        name = text
    elif hub.is_hub_spec(text):
        spec = hub.parse_spec(text)
        directory = hub.checkpoint_directory(spec)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        name, text = spec.repo_id.rsplit("/", 1)[1], hub.source_label(spec, directory)
    else:
        directory = Path(text)
        if not directory.is_dir():
            raise ModelError(
                f"model source {text!r} is neither a pretrained name ({', '.join(PRETRAINED_NAMES)}) "
                f"nor a checkpoint directory holding {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ModelError(
                    f"checkpoint directory {directory} has no {path.name}; it needs {CONFIG_NAME} and {WEIGHTS_NAME}"
                )
        name = directory.resolve().name
        text = str(directory.resolve())
    config = read_config(config_path)
    model = BigGAN(config)
    load_state_dict_strict(model, read_state_dict(weights_path), origin=str(weights_path))
    model.eval()
    log.info("loaded %s (%d px) from %s", name, resolution_of(config), weights_path)
    return LoadedModel(model, name, text, file_sha256(weights_path), resolution_of(config))


def read_config(path: Path) -> BigGANConfig:
    """Parse a pytorch-pretrained-biggan `config.json`, checking the fields the model needs."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the model configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"model configuration {path} is not a JSON object")
    config = BigGANConfig.from_dict(data)
    try:
        layers = [(bool(up), int(a), int(b)) for up, a, b in config.layers]
        checks = [
            int(config.z_dim) == Z_DIM,
            int(config.num_classes) == NUM_CLASSES,
            int(config.n_stats) > 1,
            int(config.channel_width) >= 8 and int(config.channel_width) % 8 == 0,
            len(layers) > int(config.attention_layer_position) >= 0,
        ]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model configuration {path} has malformed fields: {exc}") from exc
    if not all(checks):
        raise ModelError(
            f"model configuration {path} is not a BigGAN-deep generator this exporter supports "
            f"(z_dim {Z_DIM}, {NUM_CLASSES} classes, channel_width a multiple of 8, attention inside the layers)"
        )
    if int(config.output_dim) != resolution_of(config):
        log.warning(
            "config output_dim %s disagrees with its layers (%d px); using the layers",
            config.output_dim,
            resolution_of(config),
        )
    return config


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict of tensors (weights only: no pickled code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for a bad file
        raise ModelError(f"cannot read the weights {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights file {path} does not hold a state dict of tensors")
    return state


def load_state_dict_strict(model: BigGAN, state: dict[str, torch.Tensor], *, origin: str) -> None:
    """Copy `state` into `model`, refusing missing or unexpected keys and wrong shapes."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes ({_few(wrong)})")
    if problems:
        raise ModelError(f"checkpoint {origin} does not match its config.json: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"checkpoint {origin} has non-finite values in {key}")


def _few(items: list[str], count: int = 4) -> str:
    shown = ", ".join(items[:count])
    return shown + (", ..." if len(items) > count else "")


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hex sha256 of a state dict's names, dtypes, shapes and bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _biggan_cache_dir() -> str:
    """pytorch-pretrained-biggan's download cache, read at call time (it reads it at import)."""
    default = Path.home() / ".pytorch_pretrained_biggan"
    return os.environ.get("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(default))


def _fetch_pretrained(name: str) -> tuple[Path, Path]:
    """Config and weights of a pretrained model, downloaded once by the package's loader.

    Where the legacy address fails, a copy already in the package's cache is used, else the
    Hub's copy (`hub.PRETRAINED_HUB`: its cache offline); without one the error names the
    offline alternatives. Legacy first: the same bytes every earlier export and existing
    cache of this name came from; the Hub's copy is a re-upload by a third party.
    """
    from pytorch_pretrained_biggan import file_utils
    from pytorch_pretrained_biggan import model as biggan_model

    urls = (biggan_model.PRETRAINED_CONFIG_ARCHIVE_MAP[name], biggan_model.PRETRAINED_MODEL_ARCHIVE_MAP[name])
    cache = _biggan_cache_dir()
    try:
        if hub.offline():  # HF_HUB_OFFLINE: the legacy address (Hugging Face's old storage) is not asked either
            raise OSError("HF_HUB_OFFLINE is set")
        _probe(urls[0])
        paths = tuple(Path(file_utils.cached_path(url, cache_dir=cache)) for url in urls)
    except (OSError, ValueError) as exc:  # requests' errors derive from OSError
        cached = [_cached_copy(url, cache) for url in urls]
        if all(cached):
            log.warning("cannot reach the download server (%s); using the cached copy in %s", exc, cache)
            return cached[0], cached[1]  # type: ignore[return-value]
        reason = f"{type(exc).__name__}: {exc}"
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        try:
            directory = hub.pretrained_directory(name)
        except (ModelError, MissingExtraError) as hub_exc:
            reason += f"; nor from the Hugging Face Hub: {hub_exc}"
            directory = None
        if directory is not None:
            log.warning(
                "cannot fetch %s from its legacy address (%s); using the Hub's copy %s", name, reason, directory
            )
            return directory / CONFIG_NAME, directory / WEIGHTS_NAME
        raise ModelError(
            f"could not fetch the pretrained weights of {name} ({reason}). "
            f"Offline, pass a local checkpoint directory holding {CONFIG_NAME} and {WEIGHTS_NAME} "
            "instead of the name, or use --weights random for seeded random weights in the same architecture."
        ) from exc
    return paths[0], paths[1]


def _probe(url: str) -> None:
    import requests

    response = requests.head(url, allow_redirects=True, timeout=_PROBE_TIMEOUT_S)
    if response.status_code != 200:
        raise OSError(f"HEAD {url} answered {response.status_code}")


def _cached_copy(url: str, cache: str) -> Path | None:
    """A file pytorch-pretrained-biggan downloaded earlier for `url` (named sha256(url).sha256(etag))."""
    from pytorch_pretrained_biggan.file_utils import url_to_filename

    stem = url_to_filename(url)
    directory = Path(cache)
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.glob(stem + "*") if p.is_file() and p.suffix != ".json")
    return found[-1] if found else None


def describe(config: BigGANConfig) -> dict[str, Any]:
    """The architecture fields that identify a configuration (for cache keys and metadata)."""
    return {
        "resolution": resolution_of(config),
        "channel_width": int(config.channel_width),
        "layers": [[bool(u), int(a), int(b)] for u, a, b in config.layers],
        "attention_layer_position": int(config.attention_layer_position),
        "n_stats": int(config.n_stats),
        "eps": float(config.eps),
    }
