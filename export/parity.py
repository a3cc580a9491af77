"""The check of an export against pytorch-pretrained-biggan's own forward.

ONNX Runtime runs the graph on one batch of three samples that differ in everything the graph
computes per sample: truncations 0.4 and 0.58 (rows picked the way the reference's float
arithmetic picks them: 0.58 / 0.02 is 28.999999999999996) and 1.0 (the last row alone), a
one-hot and two mixed class vectors; and on the first sample again alone (batch 1). Every
image is compared with the reference: a wrong weight, statistics row, class embedding or a
mixing of samples within a batch moves every pixel it touches. fp32 must be within 2 uint8
levels of `clip((x + 1) / 2 * 256, 0, 255)`, fp16 finite with a PSNR of at least 35 dB.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from pytorch_pretrained_biggan import BigGAN

from ganterp_fast.engine.backends.contract import NUM_CLASSES, OUTPUT_NAME, Z_DIM, truncated_normal, truncation_weights
from ganterp_fast.engine.errors import ModelError

log = logging.getLogger(__name__)

FP32_MAX_LEVELS = 2.0  # uint8 levels
FP16_MIN_PSNR_DB = 35.0
PARITY_TRUNCATIONS = (0.4, 0.58, 1.0)  # one sample each, in one batch
PARITY_MIXED = (False, True, True)  # one-hot, then two mixed class vectors
PARITY_CASES = "batch 3 t=0.4/0.58/1.0 one-hot/mixed/mixed; its first sample at batch 1"
_PARITY_SEED = 1234


def sample_inputs(
    truncations: Sequence[float], mixed: Sequence[bool], *, generator: np.random.Generator
) -> dict[str, np.ndarray]:
    """Graph inputs of one sample per truncation (truncated noise scaled by it), one-hot or mixed classes.

    Also returns the truncations themselves under "_truncation" for the reference.
    """
    per_sample = np.asarray(truncations, dtype=np.float64)
    batch = per_sample.size
    noise = truncated_normal(generator, (batch, Z_DIM))
    classes = np.zeros((batch, NUM_CLASSES))
    for row in range(batch):
        picks = generator.choice(NUM_CLASSES, size=2, replace=False)
        if mixed[row]:
            share = generator.uniform(0.2, 0.8)
            classes[row, picks[0]], classes[row, picks[1]] = share, 1.0 - share
        else:
            classes[row, picks[0]] = 1.0
    return {
        "z": (noise * per_sample[:, None]).astype(np.float32),
        "class_vector": classes.astype(np.float32),
        "truncation_weights": truncation_weights(per_sample).astype(np.float32),
        "_truncation": per_sample,
    }


def reference_frames(model: BigGAN, z: np.ndarray, class_vector: np.ndarray, truncation: float) -> np.ndarray:
    """pytorch-pretrained-biggan's output as float `clip((x + 1) / 2 * 256, 0, 255)`, NHWC."""
    with torch.no_grad():
        image = model(torch.from_numpy(z), torch.from_numpy(class_vector), float(truncation))
    return torch.clamp((image.float() + 1.0) / 2.0 * 256.0, 0.0, 255.0).permute(0, 2, 3, 1).numpy()


def check_parity(model: BigGAN, onnx_model: Path | onnx.ModelProto, *, precision: str) -> dict[str, float]:
    """Compare the ONNX model (a file or one in memory; ONNX Runtime, CPU) with PyTorch.

    Returns the max and mean absolute difference in uint8 levels and the PSNR; raises
    `ModelError` outside tolerance or where either side produces NaN or infinity.
    """
    feeds = sample_inputs(PARITY_TRUNCATIONS, PARITY_MIXED, generator=np.random.default_rng(_PARITY_SEED))
    per_sample = feeds.pop("_truncation")
    with _probe_session(onnx_model, precision) as (session, probe_name):
        batched = session.run([OUTPUT_NAME, probe_name], feeds)
        alone = session.run([OUTPUT_NAME, probe_name], {name: value[:1] for name, value in feeds.items()})
    for activations in (batched[1], alone[1]):
        if not np.isfinite(activations).all():
            raise ModelError(
                f"export check failed: the {precision} graph produces NaN or infinity "
                f"(truncations {PARITY_TRUNCATIONS}); export fp32 instead"
            )
    reference = np.concatenate(
        [
            reference_frames(model, feeds["z"][i : i + 1], feeds["class_vector"][i : i + 1], per_sample[i])
            for i in range(per_sample.size)
        ]
    ).astype(np.float64)
    if not np.isfinite(reference).all():
        raise ModelError("the PyTorch reference itself produces NaN or infinity: the weights are broken")
    diff = np.concatenate(
        [(batched[0].astype(np.float64) - reference).ravel(), (alone[0].astype(np.float64) - reference[:1]).ravel()]
    )
    return _judge(diff, precision)


def _judge(diff: np.ndarray, precision: str) -> dict[str, float]:
    mse = float(np.mean(diff**2))
    figures = {
        "max_abs_diff": float(np.max(np.abs(diff))),
        "mean_abs_diff": float(np.mean(np.abs(diff))),
        "psnr_db": 10.0 * math.log10(255.0**2 / mse) if mse > 0 else float("inf"),
    }
    log.info(
        "parity (%s): max %.2f levels, mean %.3f, PSNR %.1f dB",
        precision,
        figures["max_abs_diff"],
        figures["mean_abs_diff"],
        figures["psnr_db"],
    )
    if precision == "fp32" and figures["max_abs_diff"] > FP32_MAX_LEVELS:
        raise ModelError(
            f"export parity check failed: the fp32 graph differs from PyTorch by up to "
            f"{figures['max_abs_diff']:.2f} uint8 levels (tolerance {FP32_MAX_LEVELS:g}; "
            f"PSNR {figures['psnr_db']:.1f} dB)"
        )
    if precision == "fp16" and not figures["psnr_db"] >= FP16_MIN_PSNR_DB:
        raise ModelError(
            f"export parity check failed: the fp16 graph reaches only {figures['psnr_db']:.1f} dB "
            f"PSNR against PyTorch (needs {FP16_MIN_PSNR_DB:g} dB; max diff "
            f"{figures['max_abs_diff']:.0f} levels); export fp32 instead"
        )
    return figures


@contextlib.contextmanager
def _probe_session(onnx_model: Path | onnx.ModelProto, precision: str) -> Iterator[tuple[object, str]]:
    """An ONNX Runtime CPU session of the model that also returns its last Tanh's output.

    The Tanh's output is the image before the uint8 cast, where NaN or infinity still shows.
    A model in memory gets the extra output only while it is serialised for the session.
    """
    import onnxruntime as ort

    model = onnx.load(os.fspath(onnx_model)) if isinstance(onnx_model, (str, os.PathLike)) else onnx_model
    tanh = [node for node in model.graph.node if node.op_type == "Tanh"]
    if not tanh:
        raise ModelError("the exported graph has no Tanh node: unexpected graph structure")
    name = tanh[-1].output[0]
    elem = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    try:
        serialized = model.SerializeToString()
    finally:
        del model.graph.output[-1]
    options = ort.SessionOptions()
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(serialized, sess_options=options, providers=["CPUExecutionProvider"])
    del serialized
    yield session, name
