"""The peak a generator's rate is compared with: one GEMM in the precision that runs, measured in the same run.

numpy's sgemm for fp32 on the CPU, a one-MatMul model through the same runtime for int8
(ONNX Runtime's MatMulInteger) and bf16 (OpenVINO), and an fp16 MatMul through ONNX
Runtime's CUDA provider on a GPU. The onnx package builds the ONNX models.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.timing import time_calls
from ganterp_fast.engine.errors import MissingExtraError

GEMM_SIZE = {"cpu": 2048, "cuda": 8192}  # square GEMM side: big enough to reach the machine's rate


def gemm_peak(
    kind: str, precision: str, *, device_id: int = 0, threads: int | None = None, seconds: float = 1.0
) -> dict[str, Any]:
    """The best GEMM rate (GFLOP/s, or GOP/s for int8) on this device in `precision`.

    The record names how it was measured; `gflops` is None with a `why` where it cannot be
    (the onnx package builds the int8 and CUDA models; OpenVINO runs bf16).
    """
    size = GEMM_SIZE["cuda" if kind == "cuda" else "cpu"]
    try:
        if kind == "cuda":
            run, how = _ort_matmul("fp16", size, device_id=device_id, threads=threads), "ONNX Runtime CUDA fp16 MatMul"
        elif precision == "int8":
            run, how = _ort_matmul("int8", size, threads=threads), "ONNX Runtime MatMulInteger (u8 x s8)"
        elif precision == "bf16":
            run, how = _openvino_matmul(size, threads=threads), "OpenVINO CPU MatMul, bf16 hint"
        else:
            run, how = _numpy_sgemm(size), "numpy sgemm (fp32)"
        times = time_calls(run, seconds=seconds, warmup=2)
    except ImportError as exc:
        return {"gflops": None, "precision": precision, "why": f"needs the {exc.name or exc} package to build the GEMM"}
    except Exception as exc:  # a runtime that cannot run the GEMM: the models' figures stand without it
        return {"gflops": None, "precision": precision, "why": " ".join(str(exc).split())[:200]}
    flop = 2.0 * size**3
    return {
        "gflops": round(flop / min(times) / 1e9, 1),
        "gflops_median": round(flop / statistics.median(times) / 1e9, 1),
        "method": how,
        "precision": "fp16" if kind == "cuda" else precision,
        "size": size,
        "runs": len(times),
    }


def peak_precision(kind: str, precision: str) -> str:
    """The GEMM precision a model's rate is compared with: fp16 on CUDA; on the CPU its own (fp16 runs as fp32)."""
    if kind == "cuda":
        return "fp16"
    return precision if precision in ("int8", "bf16") else "fp32"


def _numpy_sgemm(size: int) -> Callable[[], Any]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    return lambda: a @ b


def _ort_matmul(precision: str, size: int, *, device_id: int = 0, threads: int | None = None) -> Callable[[], Any]:
    """A one-node ONNX model (MatMul fp16, or MatMulInteger u8 x s8) run through ONNX Runtime."""
    from onnx import TensorProto, helper, numpy_helper

    from ganterp_fast.engine.backends.machine import physical_cores
    from ganterp_fast.engine.backends.onnxruntime_generator import import_onnxruntime
    from ganterp_fast.engine.backends.providers import CPU, CUDA, preload_cuda_libraries

    ort = import_onnxruntime()
    rng = np.random.default_rng(0)
    if precision == "int8":
        a = rng.integers(0, 255, (size, size), dtype=np.uint8)
        b = rng.integers(-127, 127, (size, size), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        types = (TensorProto.UINT8, TensorProto.INT32)
    else:
        a = rng.standard_normal((size, size)).astype(np.float16)
        b = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float16)
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        types = (TensorProto.FLOAT16, TensorProto.FLOAT16)
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("a", types[0], [size, size])],
        [helper.make_tensor_value_info("c", types[1], [size, size])],
        initializer=[numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    if precision == "int8":
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[CPU])
        return lambda: session.run(None, {"a": a})
    preload_cuda_libraries(ort)
    session = ort.InferenceSession(
        model.SerializeToString(),
        options,
        providers=[CUDA],
        provider_options=[{"device_id": str(device_id)}],
    )
    if CUDA not in session.get_providers():
        raise MissingExtraError("the CUDA GEMM peak (the CUDA provider did not start)", "gpu")
    binding = session.io_binding()
    a_device = ort.OrtValue.ortvalue_from_numpy(a, "cuda", device_id)
    c_device = ort.OrtValue.ortvalue_from_shape_and_type([size, size], np.float16, "cuda", device_id)
    binding.bind_ortvalue_input("a", a_device)
    binding.bind_ortvalue_output("c", c_device)
    return lambda: session.run_with_iobinding(binding)  # synchronous: returns when the GPU is done


def _openvino_matmul(size: int, *, threads: int | None = None) -> Callable[[], Any]:
    """A one-MatMul OpenVINO model compiled for the CPU with the bf16 precision hint."""
    import openvino as ov
    from openvino import opset13

    from ganterp_fast.engine.backends.machine import physical_cores

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    parameter = opset13.parameter([size, size], ov.Type.f32, name="a")
    product = opset13.matmul(parameter, opset13.constant(b), False, False)
    model = ov.Model([product], [parameter], "gemm")
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": str(threads or physical_cores())},
    )
    request = compiled.create_infer_request()
    return lambda: request.infer({0: a})
