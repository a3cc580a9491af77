"""What the engine sees in a model, ours or foreign: its inputs and outputs, the roles assigned,
sizes, value range, precision, FLOPs per image counted from the graph, and which backends and
precisions can run it here. `describe_model` returns plain, JSON-ready data (`ganterp-fast inspect`).

FLOPs: 2 x the multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul nodes, their
shapes from ONNX Runtime's symbolic shape inference (else `onnx.shape_inference`) with the
batch fixed at 1; nodes whose shapes stay unknown are counted in `uncounted_nodes`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ganterp_fast.engine.backends.contract import (
    AUTO_BF16,
    META_PREFIX,
    NUM_CLASSES,
    OUTPUT_NAME,
    Z_DIM,
    check_metadata,
    model_precision,
    read_metadata,
)
from ganterp_fast.engine.backends.foreign import check_operators, is_foreign, load_graph, signature
from ganterp_fast.engine.backends.roles import assign_roles
from ganterp_fast.engine.errors import InputError

MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def describe_model(
    path: str | os.PathLike[str], *, inputs: Mapping[str, str] | None = None, value_range: str = "-1,1"
) -> dict[str, Any]:
    """The model at `path` as the engine sees it (a ganterp-fast export, or a foreign generator's roles)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist; give an .onnx file")
    model = load_graph(path, external=False)
    found_inputs, found_outputs = signature(model)
    metadata = read_metadata(path)
    report: dict[str, Any] = {
        "model": str(path),
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in found_inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in found_outputs],
    }
    if is_foreign(metadata):
        check_operators(path, model)
        roles = assign_roles(str(path), found_inputs, found_outputs, named=inputs, value_range=value_range)
        precision = "fp16" if roles.latent_dtype == "float16" else "fp32"
        report.update(
            kind="foreign",
            roles={"latent": roles.latent, "class": roles.class_input, "truncation": roles.truncation},
            output={"name": roles.output, "layout": roles.layout, "dtype": roles.output_dtype},
            z_dim=roles.z_dim,
            num_classes=roles.num_classes,
            height=roles.height,
            width=roles.width,
            value_range=roles.value_range,
            batch=roles.batch,
            assigned=asdict(roles),
        )
    else:
        check_metadata(metadata, path)
        precision = model_precision(metadata)
        side = int(metadata[META_PREFIX + "resolution"])
        report.update(
            kind="ganterp-fast export",
            roles={"latent": "z", "class": "class_vector", "truncation": "truncation_weights"},
            output={"name": OUTPUT_NAME, "layout": "NHWC", "dtype": "uint8"},
            z_dim=Z_DIM,
            num_classes=NUM_CLASSES,
            height=side,
            width=side,
            value_range="0,255",
            batch=None,
            source=metadata.get(META_PREFIX + "name") or metadata.get(META_PREFIX + "source"),
        )
    flops, uncounted = graph_flops(model)
    report.update(
        resolution=f"{report['height']}x{report['width']}",
        precision=precision,
        flops_per_image=flops,
        gflops_per_image=round(flops / 1e9, 3),
        uncounted_nodes=uncounted,
        runs_here=runnable_here(precision),
    )
    return report


def graph_flops(model: Any) -> tuple[int, int]:
    """(FLOPs of one image, MAC nodes whose shapes stayed unknown), from shape inference at batch 1."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in copy.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    try:  # ONNX Runtime's symbolic inference follows Reshape and Shape arithmetic (attention) where onnx's stops
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        inferred = SymbolicShapeInference.infer_shapes(copy, auto_merge=True)
    except Exception:
        inferred = None
    try:
        inferred = inferred or onnx.shape_inference.infer_shapes(copy, data_prop=True)
    except Exception:  # a graph shape inference cannot follow: its nodes counted as unknown
        inferred = copy
    shapes: dict[str, list[int] | None] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
        shapes[value.name] = [1, *shape[1:]] if shape and shape[0] < 0 else shape  # a batch axis left symbolic: 1
    for tensor in inferred.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    total, unknown = 0, 0
    for node in inferred.graph.node:
        if node.op_type not in MAC_OPS:
            continue
        macs = _macs(node, shapes)
        if macs is None:
            unknown += 1
        else:
            total += macs
    return 2 * total, unknown


def _macs(node: Any, shapes: Mapping[str, list[int] | None]) -> int | None:
    known = [shapes.get(name) for name in (*node.input[:2], node.output[0])]
    if any(shape is None or any(d < 0 for d in shape) for shape in known):
        return None
    first, second, out = known
    if node.op_type == "Conv":  # each output element: C_in / groups x kernel
        return math.prod(out) * math.prod(second[1:])
    if node.op_type == "ConvTranspose":  # each input element to C_out / groups x kernel
        return math.prod(first) * math.prod(second[1:])
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        return math.prod(out) * (first[0] if trans_a else first[-1])
    return math.prod(out) * first[-1]  # MatMul


def graph_gflop(path: str | os.PathLike[str]) -> float:
    """GFLOP of one image counted from the graph at `path` (`graph_flops`)."""
    return graph_flops(load_graph(Path(path), external=False))[0] / 1e9


def runnable_here(precision: str) -> list[dict[str, str]]:
    """The (backend, device, precision) the backend choice offers for a model of `precision` on this machine."""
    from ganterp_fast.engine.backends.capability import bf16_capability
    from ganterp_fast.engine.backends.choice import registered_backends
    from ganterp_fast.engine.backends.onnxruntime_generator import import_onnxruntime

    cuda = "CUDAExecutionProvider" in import_onnxruntime().get_available_providers()
    try:
        native_bf16 = bf16_capability().native
    except Exception:  # no OpenVINO: no bf16
        native_bf16 = False
    found = []
    for backend in registered_backends():
        for device in backend.devices:
            if device == "cuda" and not cuda:
                continue
            for name in backend.precisions:
                if name in ("auto", AUTO_BF16) or (backend.reads or name) != precision:
                    continue
                if name == "bf16" and not native_bf16:
                    continue
                found.append({"backend": backend.name, "device": device, "precision": name})
    return found
