"""The graph side of int8 quantisation: which nodes to quantise, and quantize_static over them.

`candidate_nodes` picks the convolutions in graph order (all but the RGB one) and the
attention matmuls, `conv_macs` weighs each convolution by its multiply-adds, and `Quantizer`
runs ONNX Runtime's static QDQ quantisation for any number of leading convolutions kept in
fp32, calibrating once and reusing the cached ranges. `quantize.py` draws the latents, runs
the quality gate and writes the result.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ganterp_fast.engine.errors import ModelError

log = logging.getLogger(__name__)

PERCENTILE = 99.99
# Merge min/max after every calibration batch instead of holding every activation of every
# batch (the full 128 px model keeps ~100 MB of convolution activations per image). Done with
# CalibStridedMinMax: onnxruntime 1.32's CalibMaxIntermediateOutputs discards the batches
# it should merge (MinMaxCalibrater.collect_data clears them without computing their range).
_CALIB_STRIDE = 1


@dataclass(frozen=True)
class Int8Settings:
    """How to quantise. Defaults are the fastest measured on a 2-core AVX-512 VNNI CPU.

    uint8 activations beat int8 ones (ORT's x86 int8 kernels are u8 x s8); `reduce_range`
    (7-bit weights, for CPUs without VNNI) is no faster with VNNI and costs ~1.6 dB;
    quantising the attention matmuls is slower than leaving them float.
    """

    activation_type: str = "uint8"
    reduce_range: bool = False
    preprocess: bool = True  # onnxruntime.quantization.shape_inference.quant_pre_process
    calibration_method: str = "minmax"
    quantize_attention: bool = False
    # Leading convolutions kept in fp32; None: the fewest that pass the gate (binary search).
    float_convs: int | None = None


def prepare_model(source: Path, work: Path, preprocess: bool) -> Path:
    """ORT's pre-quantisation step (symbolic shapes, basic optimisation) or the model as is."""
    if not preprocess:
        return source
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = (work / "prepared.onnx").resolve()
    source = source.resolve()
    started = time.perf_counter()
    previous = os.getcwd()
    os.chdir(work)  # where shape inference drops its debug file when it gives up
    try:
        quant_pre_process(str(source), str(prepared), auto_merge=True)
    except Exception as exc:  # symbolic shape inference raises bare Exception
        log.warning("quant_pre_process failed (%s); quantising the model as exported", exc)
        return source
    finally:
        os.chdir(previous)
    log.info("pre-processed for quantisation in %.1f s", time.perf_counter() - started)
    return prepared


def candidate_nodes(graph: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Convolutions in graph order except the last RGB one (feeds Tanh); attention matmuls.

    The RGB convolution's output quantisation would be the image's own error (tanh is steep
    at 0), for 0.8% of the work. Attention matmuls are those with no constant operand.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {init.name for init in graph.graph.initializer}
    constants |= {n.output[0] for n in graph.graph.node if n.op_type == "Constant"}
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    rgb = [n.name for n in convs if any(c.op_type == "Tanh" for c in consumers.get(n.output[0], []))]
    if len(rgb) != 1 or not all(n.name for n in graph.graph.node):
        raise ModelError("unexpected graph structure: need named nodes and one convolution feeding Tanh")
    producers = {out: n for n in graph.graph.node for out in n.output}
    attention = [
        n.name
        for n in graph.graph.node
        if n.op_type == "MatMul" and not any(i in constants for i in n.input) and _after_conv(n, producers)
    ]
    return [n.name for n in convs if n.name != rgb[0]], attention


def _after_conv(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]) -> bool:
    """True when a convolution lies upstream of `node` (the conditioning matmuls have none)."""
    stack, seen = list(node.input), set()
    while stack:
        name = stack.pop()
        if name in seen or name not in producers:
            continue
        seen.add(name)
        if producers[name].op_type == "Conv":
            return True
        stack.extend(producers[name].input)
    return False


def conv_macs(graph: onnx.ModelProto, convs: list[str]) -> dict[str, float]:
    """Multiply-adds per image of every convolution, from inferred shapes ({} when unknown)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(graph) if not graph.graph.value_info else graph
    except Exception:  # shape inference raises several types; the share is informative only
        return {}
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in inferred.graph.value_info}
    weights = {init.name: list(init.dims) for init in graph.graph.initializer}
    macs: dict[str, float] = {}
    for node in graph.graph.node:
        if node.op_type != "Conv":
            continue
        out, weight = shapes.get(node.output[0]), weights.get(node.input[1])
        if not out or not weight or len(out) != 4 or not all(out[1:]):
            return {}
        macs[node.name] = float(np.prod(weight)) * out[2] * out[3]
    return macs if all(name in macs for name in convs) else {}


def mac_share(macs: dict[str, float], quantized: list[str]) -> float:
    return sum(macs[name] for name in quantized) / sum(macs.values())


class Quantizer:
    """quantize_static over one calibration (cached), for any set of leading fp32 convolutions."""

    def __init__(
        self,
        prepared: Path,
        work: Path,
        convs: list[str],
        attention: list[str],
        settings: Int8Settings,
        calibration: Callable[[], Any],
    ) -> None:
        """`calibration` makes a fresh onnxruntime CalibrationDataReader for each build."""
        self.prepared, self.work, self.convs, self.settings = prepared, work, convs, settings
        self.attention = attention if settings.quantize_attention else []
        self.calibration = calibration
        self.cache = work / "calibration.json"

    def build(self, float_convs: int) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        settings = self.settings
        target = self.work / f"int8-{float_convs}.onnx"
        extra: dict[str, Any] = {"CalibStridedMinMax": _CALIB_STRIDE}
        method = CalibrationMethod.MinMax
        if settings.calibration_method == "percentile":
            method, extra = CalibrationMethod.Percentile, {"CalibPercentile": PERCENTILE}
        ops = ["Conv", "MatMul"] if self.attention else ["Conv"]
        started = time.perf_counter()
        try:
            quantize_static(
                str(self.prepared),
                str(target),
                self.calibration(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=ops,
                per_channel=True,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QUInt8 if settings.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=self.convs[float_convs:] + self.attention,
                calibrate_method=method,
                extra_options=extra,
                calibration_cache_path=self.cache,
            )
        except Exception as exc:  # the quantiser raises many types
            raise ModelError(f"int8 quantisation failed: {type(exc).__name__}: {exc}") from exc
        log.debug("quantised (%d leading convolutions fp32) in %.1f s", float_convs, time.perf_counter() - started)
        return target
