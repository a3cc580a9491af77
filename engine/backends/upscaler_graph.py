"""Reading an upscaler's graph: what it takes and gives, its scale factor, its cost (see `upscaler`).

An upscaler is what Real-ESRGAN's exports are: one float input NCHW [N, 3, H, W] with RGB in
[0, 1], one output [N, 3, kH, kW] with a whole factor k. The factor is read from the graph:
the output's static size over the input's, else ONNX shape inference with the input fixed to
a size, else a probe run on a tiny input on the CPU. `UpscalerPlan` is what the render job
carries; `describe_upscaler` is what `inspect` shows. Imports onnx when a file is read.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.pipeline import reason

NEEDS = (
    "an upscaler needs one float input NCHW [N, 3, H, W] (RGB in [0, 1]) and an output [N, 3, k*H, k*W] "
    "with a whole factor k, as Real-ESRGAN's ONNX exports have"
)
MAX_FACTOR = 16
PROBE_SIDE = 32  # the side of the input used to find the factor of a fully dynamic graph
_FLOAT_TYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto.FLOAT, FLOAT16


@dataclass(frozen=True)
class UpscalerPlan:
    """An upscaler's graph as read once: plain data, picklable; `open_upscaler` runs it."""

    path: str
    factor: int
    input_name: str
    output_name: str
    dtype: str  # "float32" or "float16": what the input takes
    window: tuple[int, int] | None = None  # a graph whose input has a fixed (H, W): every run is that size
    batch: int | None = None  # a graph whose input has a fixed batch
    tile: int = 512  # frames with a side over this are tiled (0: whole frames)
    overlap: int = 16  # context around each tile, cropped from its output
    sha256: str = ""  # the file's bytes (a changed file is a changed render)
    precision: str = "fp32"  # "bf16" or "auto-bf16": OpenVINO bf16 behind its quality gate on a native-bf16 CPU

    @property
    def name(self) -> str:
        return Path(self.path).name

    def output_size(self, resolution: int) -> int:
        """The side of an upscaled `resolution` px frame."""
        return resolution * self.factor

    def check_frames(self, resolution: int) -> None:
        """`InputError` where frames of this side cannot run (smaller than a fixed-size input)."""
        if self.window is not None and min(self.window) > resolution:
            raise InputError(
                f"upscaler {self.path} takes a fixed {self.window[1]}x{self.window[0]} input, larger than the "
                f"{resolution} px frames: use an upscaler with dynamic or smaller spatial axes"
            )
        if self.window is not None and any(side - 2 * self.overlap < 1 for side in self.window if side < resolution):
            raise InputError(
                f"upscaler {self.path}: its fixed {self.window[1]}x{self.window[0]} input leaves no tile inside an "
                f"overlap of {self.overlap} px: lower --upscaler-overlap"
            )


# ------------------------------------------------------------------ reading the graph


def read_upscaler(path: str | os.PathLike[str], *, tile: int = 512, overlap: int = 16) -> UpscalerPlan:
    """The plan of the upscaler at `path`; `InputError` saying what is wrong and what an upscaler needs."""
    file = Path(path).absolute()  # workers elsewhere in the tree (segments, Ray on this host) find it too
    if not file.is_file():
        raise InputError(f"upscaler {path} does not exist; {NEEDS}")
    stat = file.stat()
    return _read(str(file), stat.st_size, stat.st_mtime_ns, tile, overlap)


@functools.lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int, tile: int, overlap: int) -> UpscalerPlan:
    from ganterp_fast.engine.cache import file_sha256

    model = _load(path)
    graph = model.graph
    constants = {item.name for item in graph.initializer}
    inputs = [item for item in graph.input if item.name not in constants]
    if len(inputs) != 1 or not graph.output:
        raise InputError(
            f"upscaler {path} has inputs {[i.name for i in inputs]} and outputs {[o.name for o in graph.output]}; "
            f"{NEEDS}"
        )
    source, target = inputs[0], graph.output[0]
    in_shape, out_shape = _dims(source), _dims(target)
    dtype = _FLOAT_TYPES.get(source.type.tensor_type.elem_type)
    if dtype is None or len(in_shape) != 4 or in_shape[1] not in (3, None):
        raise InputError(f"upscaler {path} takes {_described(source)}; {NEEDS}")
    if len(out_shape) != 4 or out_shape[1] not in (3, None):
        raise InputError(f"upscaler {path} gives {_described(target)}; {NEEDS}")
    window = (in_shape[2], in_shape[3]) if None not in in_shape[2:] else None
    factor = _factor(path, model, in_shape, out_shape, dtype)
    return UpscalerPlan(
        path=path,
        factor=factor,
        input_name=source.name,
        output_name=target.name,
        dtype=dtype,
        window=window,  # type: ignore[arg-type]
        batch=in_shape[0],
        tile=tile,
        overlap=overlap,
        sha256=file_sha256(Path(path)),
    )


def _load(path: str) -> Any:
    try:
        import onnx
    except ImportError as exc:
        from ganterp_fast.engine.errors import MissingExtraError

        raise MissingExtraError("reading an upscaler", "cpu") from exc
    try:
        return onnx.load(path)
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise InputError(f"upscaler {path} is not an ONNX model ({reason(exc)[:120]}); {NEEDS}") from None


def _dims(value: Any) -> list[int | None]:
    """A graph value's shape: whole numbers where fixed, None where named or unknown."""
    if not value.type.tensor_type.HasField("shape"):
        return []
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim
    ]


def _described(value: Any) -> str:
    import onnx

    kind = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()
    shape = ", ".join("?" if d is None else str(d) for d in _dims(value))
    return f"{value.name!r} {kind} [{shape}]"


def _factor(path: str, model: Any, in_shape: list, out_shape: list, dtype: str) -> int:
    """The whole scale factor: from static sizes, else shape inference at a fixed size, else a probe run."""
    side = PROBE_SIDE
    if None not in in_shape[2:] and None not in out_shape[2:]:
        ratios = (out_shape[2] / in_shape[2], out_shape[3] / in_shape[3])
    else:
        height, width = (in_shape[2] or side, in_shape[3] or side)
        fixed = [in_shape[0] or 1, 3, height, width]
        shape = _inferred(model, fixed) or _probe(path, fixed[0], height, width, dtype)
        ratios = (shape[2] / height, shape[3] / width)
    if ratios[0] != ratios[1] or ratios[0] != int(ratios[0]) or not 1 <= ratios[0] <= MAX_FACTOR:
        raise InputError(
            f"upscaler {path} scales height and width by {ratios[0]:g} and {ratios[1]:g}, not by one whole "
            f"factor from 1 to {MAX_FACTOR}; {NEEDS}"
        )
    return int(ratios[0])


def _with_input(model: Any, shape: list[int]) -> Any:
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    constants = {item.name for item in fixed.graph.initializer}
    source = next(item for item in fixed.graph.input if item.name not in constants)
    for dim, value in zip(source.type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = value
    return fixed


def _inferred(model: Any, shape: list[int]) -> list[int] | None:
    """The output's shape by ONNX shape inference with the input fixed to `shape`; None where it cannot tell."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(_with_input(model, shape), data_prop=True)
    except Exception:  # an operator inference does not know: the probe decides
        return None
    dims = _dims(inferred.graph.output[0])
    return dims if len(dims) == 4 and None not in dims else None  # type: ignore[return-value]


def _probe(path: str, batch: int, height: int, width: int, dtype: str) -> list[int]:
    """The output's shape from one run on the CPU on a tiny input."""
    from ganterp_fast.engine.backends.onnxruntime_generator import import_onnxruntime

    ort = import_onnxruntime()
    probe = np.zeros((batch, 3, height, width), dtype=dtype)
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        shape = list(session.run(None, {session.get_inputs()[0].name: probe})[0].shape)
    except Exception as exc:  # onnxruntime's own types: custom operators, a graph it cannot run
        text = f"does not run on a {width}x{height} input ({reason(exc)[:160]})"
        raise InputError(f"upscaler {path} {text}; {NEEDS}") from None
    if len(shape) != 4 or shape[1] != 3:
        raise InputError(f"upscaler {path} gives {shape} for a {list(probe.shape)} input; {NEEDS}")
    return shape


def describe_upscaler(path: str | os.PathLike[str], *, size: int = 128) -> dict[str, Any]:
    """What the engine sees in an upscaler: its name, factor, input and output, and its GFLOP for a
    `size` px frame (multiply-adds of its Conv/ConvTranspose/MatMul/Gemm nodes x 2; None where the
    shapes cannot be inferred). `InputError` for a file that is not an upscaler."""
    plan = read_upscaler(path)
    model = _load(plan.path)
    source = next(item for item in model.graph.input if item.name == plan.input_name)
    target = next(item for item in model.graph.output if item.name == plan.output_name)
    window = plan.window or (size, size)
    flops = _flops(model, [1, 3, *window])
    if flops is not None and plan.window is not None:  # a fixed input: count the tiles of a size px frame
        flops *= size * size / (window[0] * window[1])
    return {
        "name": plan.name,
        "path": plan.path,
        "kind": "upscaler",
        "factor": plan.factor,
        "input": _described(source),
        "output": _described(target),
        "fixed_input": list(plan.window) if plan.window else None,
        "fixed_batch": plan.batch,
        "dtype": plan.dtype,
        "frame": [size, size],
        "upscaled": [size * plan.factor, size * plan.factor],
        "gflop_per_frame": None if flops is None else float(f"{flops / 1e9:.4g}"),
    }


def _flops(model: Any, shape: list[int]) -> float | None:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(_with_input(model, shape), data_prop=True)
    except Exception:
        return None
    graph = inferred.graph
    shapes = {v.name: _dims(v) for v in [*graph.value_info, *graph.output, *graph.input]}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    total = 0.0
    for node in graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
        if not out or not weight or None in out or None in weight:
            if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
                return None
            continue
        if node.op_type == "Conv":  # each output element: C_in/groups x kh x kw multiply-adds
            total += float(np.prod(out)) * float(np.prod(weight[1:]))
        elif node.op_type == "ConvTranspose":  # each input element: C_out/groups x kh x kw
            source = shapes.get(node.input[0]) or []
            total += float(np.prod(source)) * float(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            total += float(np.prod(out)) * float(weight[0])
    return 2 * total


def plan_upscaler(options: Any, resolution: int) -> UpscalerPlan | None:
    """The upscaler of `options` (a `ModelOptions`) read and checked for `resolution` px frames;
    None without one. A bad file is the field's `OptionError` (--upscaler on the command line).

    It follows the render's `--precision`: bf16 asks for bf16, auto for bf16 where the CPU has
    it natively (both behind the upscaler's own quality gate, `upscaler.open_upscaler`); any
    other precision runs it in fp32 (exact).
    """
    from ganterp_fast.engine.backends.contract import AUTO_BF16
    from ganterp_fast.engine.fields import error

    if options.upscaler is None:
        return None
    try:
        plan = read_upscaler(options.upscaler, tile=options.upscaler_tile, overlap=options.upscaler_overlap)
        plan.check_frames(resolution)
    except InputError as exc:
        text = str(exc)
        raise error(options, "upscaler", text[len("upscaler ") :] if text.startswith("upscaler ") else text) from None
    precision = {"bf16": "bf16", "auto": AUTO_BF16}.get(options.precision, "fp32")
    return replace(plan, precision=precision)
