"""Seeded, well-conditioned random weights in the BigGAN-deep architecture.

A freshly built `BigGAN(config)` gives NaN: its spectral-norm vectors are not converged and
the last batch norm's affine parameters are uninitialised memory. This module makes a model
that behaves like a trained one numerically, for tests, benchmarks and offline try-outs, in
a few seconds:

- every spectrally normalised weight is Gaussian with `u`/`v` set to its exact top singular
  vectors (from the smaller Gram matrix), so eval mode divides by the true largest singular value;
- batch-norm statistics are calibrated from the activations the model really produces, one
  small forward pass per anchor truncation (0 and 1), each batch norm seeing the output of
  the already normalised layers before it; the rows between are interpolated, so all 51 rows
  differ and the output depends on the truncation. Activations stay O(1): no denormals, no
  flat images.

Deterministic for a seed on a given machine (torch's CPU kernels are). The values changed in
version 2 (`engine.backends.models.RANDOM_WEIGHTS_VERSION`, part of the model cache's
key: raise it with any change to the values drawn for a seed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import scipy.linalg
import torch
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from pytorch_pretrained_biggan.model import BigGANBatchNorm, GenBlock, Generator
from threadpoolctl import threadpool_limits

from ganterp_fast.engine.backends.contract import PRETRAINED_NAMES
from ganterp_fast.engine.errors import InputError

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    LoadedModel,
    describe,
    make_config,
    read_config,
    resolution_of,
    state_dict_sha256,
)

log = logging.getLogger(__name__)

# Calibration: one forward pass per anchor row (truncation 0 and 1) of this many samples.
# Fewer than 4 miss the spread between images and the outputs saturate (measured at channel
# width 16: 25 % of pixels at |x| > 0.99 with 2 samples, 1 % with 4, 0.04 % with 8).
_CALIBRATION_BATCH = 4
# Class embeddings: one Gaussian column per class, about as long as a z at truncation 1
# (|z| ~ sqrt(128)), so class and z both steer the generator.
_EMBED_STD = 1.0
_BIAS_STD = 0.05
_ATTENTION_GAMMA = 0.5
# A channel whose calibrated variance is this small against its layer's mean variance is
# floored to it, so no division by ~0 amplifies rounding noise.
_VAR_FLOOR = 1e-3


def make_random_biggan(
    resolution: int = 128, *, channel_width: int | None = None, seed: int = 0, config: BigGANConfig | None = None
) -> BigGAN:
    """A BigGAN-deep generator (eval mode) with seeded, well-conditioned random weights.

    `config` overrides `resolution`/`channel_width` (e.g. a checkpoint's own config).
    """
    config = config if config is not None else make_config(resolution, channel_width=channel_width)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        model = BigGAN(config)
        model.eval()
        _init_parameters(model, generator)
        _converge_spectral_norms(model)
        _calibrate_statistics(model, generator)
    log.info(
        "random BigGAN-deep-%d (channel_width %d, seed %d) ready in %.1f s",
        resolution_of(config),
        config.channel_width,
        seed,
        time.perf_counter() - started,
    )
    return model


def write_random_checkpoint(
    directory: str | os.PathLike[str], *, resolution: int = 128, channel_width: int | None = None, seed: int = 0
) -> Path:
    """Write `make_random_biggan(...)` as a checkpoint directory (config.json + pytorch_model.bin)."""
    model = make_random_biggan(resolution, channel_width=channel_width, seed=seed)
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    (target / CONFIG_NAME).write_text(model.config.to_json_string(), encoding="utf-8")
    partial = target / (WEIGHTS_NAME + ".partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, target / WEIGHTS_NAME)
    return target


def _spectral_modules(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    for module in model.modules():
        if hasattr(module, "weight_orig") and hasattr(module, "weight_u"):
            yield module


def _init_parameters(model: BigGAN, generator: torch.Generator) -> None:
    """Gaussian weights, small biases, unit affine batch norm, a visible attention gate."""
    for name, tensor in model.state_dict(keep_vars=True).items():
        data = tensor.data
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("weight_orig",):
            data.copy_(torch.randn(data.shape, generator=generator))
        elif name == "embeddings.weight":
            data.copy_(torch.randn(data.shape, generator=generator) * _EMBED_STD)
        elif leaf == "bias":
            data.copy_(torch.randn(data.shape, generator=generator) * _BIAS_STD)
        elif leaf == "gamma":
            data.fill_(_ATTENTION_GAMMA)
    final = model.generator.bn
    final.weight.data.fill_(1.0)
    final.bias.data.zero_()


def _converge_spectral_norms(model: BigGAN) -> None:
    """Set each spectral norm's u, v to the exact top singular vectors of its weight.

    The top eigenvector of the smaller Gram matrix gives one singular vector and a product with
    the weight the other: the same as an SVD at a fraction of its cost. LAPACK's subset solver
    computes that one eigenvector alone (float64), on one thread: these matrices (at most
    512x512) gain nothing from two, and two threads on a busy machine wait on each other.
    """
    with threadpool_limits(1, user_api="blas"):
        for module in _spectral_modules(model):
            _set_singular_vectors(module)


def _set_singular_vectors(module: torch.nn.Module) -> None:
    matrix = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
    wide = matrix.shape[0] <= matrix.shape[1]
    gram = (matrix @ matrix.T if wide else matrix.T @ matrix).double().numpy()
    size = gram.shape[0]
    _, vector = scipy.linalg.eigh(gram, subset_by_index=[size - 1, size - 1], driver="evr")
    top = torch.from_numpy(vector[:, 0]).float()
    u, v = (top, matrix.T @ top) if wide else (matrix @ top, top)
    module.weight_u.copy_(torch.nn.functional.normalize(u, dim=0))
    module.weight_v.copy_(torch.nn.functional.normalize(v, dim=0))


def _truncated_normal(shape: tuple[int, ...], generator: torch.Generator, bound: float = 2.0) -> torch.Tensor:
    """Standard normal samples redrawn until inside [-bound, bound] (BigGAN's truncated noise)."""
    values = torch.randn(shape, generator=generator)
    while True:
        outside = values.abs() > bound
        count = int(outside.sum())
        if not count:
            return values
        values[outside] = torch.randn(count, generator=generator)


def _calibrate_statistics(model: BigGAN, generator: torch.Generator) -> None:
    """Per-row batch-norm statistics measured from the model's own activations."""
    config = model.config
    n_stats = int(config.n_stats)
    anchors = [0, n_stats - 1]
    batch = _CALIBRATION_BATCH
    base_z = _truncated_normal((batch, int(config.z_dim)), generator)
    classes = torch.randint(0, int(config.num_classes), (batch,), generator=generator)
    one_hot = torch.nn.functional.one_hot(classes, int(config.num_classes)).float()
    norms = [m for m in model.modules() if isinstance(m, BigGANBatchNorm)]
    measured: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {id(m): [] for m in norms}

    def measure(module: BigGANBatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        var = torch.clamp(var, min=float(var.mean()) * _VAR_FLOOR + 1e-6)
        measured[id(module)].append((mean, var))
        # Every row holds the batch statistics, whichever row(s) the truncation selects.
        module.running_means.copy_(mean.expand_as(module.running_means))
        module.running_vars.copy_(var.expand_as(module.running_vars))

    hooks = [m.register_forward_pre_hook(measure) for m in norms]
    try:
        for row in anchors:
            truncation = row / (n_stats - 1)
            cond = torch.cat((base_z * truncation, model.embeddings(one_hot)), dim=1)
            _calibration_pass(model.generator, cond, truncation)
    finally:
        for hook in hooks:
            hook.remove()

    for module in norms:
        means = torch.stack([m for m, _ in measured[id(module)]])
        variances = torch.stack([v for _, v in measured[id(module)]])
        module.running_means.copy_(_interpolate_rows(means, anchors, n_stats))
        module.running_vars.copy_(_interpolate_rows(variances, anchors, n_stats))


def _calibration_pass(generator: Generator, cond: torch.Tensor, truncation: float) -> None:
    """The generator's forward up to its last batch norm (the RGB convolution after it is not needed)."""
    x = generator.gen_z(cond).view(-1, 4, 4, 16 * generator.config.channel_width)
    x = x.permute(0, 3, 1, 2).contiguous()
    for layer in generator.layers:
        x = layer(x, cond, truncation) if isinstance(layer, GenBlock) else layer(x)
    generator.bn(x, truncation)


def _interpolate_rows(values: torch.Tensor, anchors: list[int], n_rows: int) -> torch.Tensor:
    """Linear interpolation of per-anchor rows [len(anchors), C] to all rows [n_rows, C]."""
    out = torch.empty((n_rows, values.shape[1]), dtype=values.dtype)
    for index, (start, stop) in enumerate(zip(anchors[:-1], anchors[1:])):
        weight = torch.linspace(0.0, 1.0, stop - start + 1, dtype=values.dtype)[:, None]
        out[start : stop + 1] = values[index] * (1 - weight) + values[index + 1] * weight
    return out


def random_source(source: str | os.PathLike[str], *, seed: int, resolution: int | None = None) -> LoadedModel:
    """Random weights in the architecture a name (or a checkpoint directory's config) describes, for the exporter."""
    text = os.fspath(source)
    if text in PRETRAINED_NAMES:
        named = int(text.rsplit("-", 1)[1])
        if resolution is not None and resolution != named:
            raise InputError(f"resolution {resolution} contradicts {text}")
        model = make_random_biggan(named, seed=seed)
        base = text
    elif Path(text).is_dir() and (Path(text) / "config.json").is_file():
        config = read_config(Path(text) / "config.json")
        model = make_random_biggan(config=config, seed=seed)
        base = f"biggan-deep-{resolution_of(config)}-cw{config.channel_width}"
    else:
        raise InputError(
            f"random weights need an architecture: a name ({', '.join(PRETRAINED_NAMES)}) "
            f"or a checkpoint directory with a config.json, not {text!r}"
        )
    arch = describe(model.config)
    return LoadedModel(
        model,
        f"{base}-random-seed{seed}",
        f"random:{base}:seed={seed}",
        state_dict_sha256(model.state_dict()),
        arch["resolution"],
    )
