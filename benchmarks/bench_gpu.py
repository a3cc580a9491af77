"""GPU generator throughput: images/s per GPU at 128/256/512 across batch sizes (fp16).

Runs only where ONNX Runtime really runs on CUDA (onnxruntime-gpu installed and the CUDA
provider present in a session's `get_providers()`, not merely in `get_available_providers()`,
which onnxruntime-gpu lists even with no GPU). Anywhere else it says so and exits 0.

Modes, for each resolution and batch size, on the fp16 export of BigGAN-deep with seeded,
well-conditioned random weights (full architecture, cached under `--work`):
- `engine`: ganterp-fast's `Generator(device="cuda")`: IO binding with preallocated device
  buffers, latents copied in, uint8 frames copied back (what a render gets);
- `device_only`: the same session with inputs and output left on the device (no copies: the
  generator's own ceiling);
- `engine_cuda_graph`: `Generator(device="cuda", cuda_graph=True)` (`render --cuda-graph`):
  the engine's path with one captured CUDA graph per batch size, copies included;
- `cuda_graph`: one session per batch size with `enable_cuda_graph`, fixed device buffers,
  no copies (CUDA graphs need fixed shapes and addresses, and every node on CUDA);
- `tensorrt`: the engine's TensorRT EP path (fp16, engine and timing caches), where offered.
It also times libx264 on this host's CPU cores on the generated frames, to say which stage
would bound a render here (NVENC too, where the GPU has it).

    python -m benchmarks.bench_gpu --out benchmarks/results
    python -m benchmarks.bench_gpu --resolutions 128 --batches 1 8 32 64 --no-tensorrt
    python -m benchmarks.bench_gpu --estimate          # the paper estimate for an H100, anywhere
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average, model_folder, prepare_checkpoint, prepare_export
from ganterp_fast.engine.backends.bench import GFLOP_PER_IMAGE
from ganterp_fast.engine.backends.contract import NUM_CLASSES, Z_DIM, truncated_normal
from ganterp_fast.engine.backends.machine import gpu_description
from ganterp_fast.engine.backends.timing import time_calls

# Useful compute per image with the 3-channel last conv (engineering-facts.md).
DEFAULT_BATCHES = (1, 4, 8, 16, 32, 64)


def activation_traffic_mb(resolution: int, *, norm_passes: int, fused: bool = False) -> float:
    """HBM traffic of one image's activations in fp16 (MB): a paper model of the exported graph.

    Each conv reads its input and writes its output; each conditional batch norm + ReLU is
    `norm_passes` read-or-write passes over its tensor (6: Mul, Add, Relu each read and write;
    2: fused into one pass); a block's skip path slices, upsamples and adds; attention writes
    and reads its score matrix. `fused`: the ideal where everything but the convs' own reads
    and writes disappears.
    """
    from ganterp_fast.export.checkpoint import make_config

    config = make_config(resolution)
    ch, side, elements = config.channel_width, 4, 0.0
    for index, (up, c_in, c_out) in enumerate(config.layers):
        if index == config.attention_layer_position:
            c, n = ch * c_in, side * side
            projections = c // 8 * n + c // 8 * n // 4 + c // 2 * n // 4
            scores = n * n // 4
            elements += (
                c * n + projections + 2 * scores + c // 2 * n + c * n
                if fused
                else 3 * c * n + 2 * projections + 4 * scores + c * n + 3 * c * n
            )
        c_in, c_out = ch * c_in, ch * c_out
        mid, small = c_in // 4, side * side
        big = small * 4 if up else small
        if fused:
            elements += c_in * small + mid * small + mid * (small if up else big) + 4 * mid * big + c_out * big
            elements += c_out * small
        else:
            elements += norm_passes * c_in * small + c_in * small + mid * small  # norm, conv_0
            elements += norm_passes * mid * small + mid * small + mid * big + (2 * mid * big if up else 0)  # conv_1
            elements += 2 * (norm_passes * mid * big + mid * big) + mid * big + c_out * big  # conv_2, conv_3
            elements += 2 * c_out * small + (c_out * small + c_out * big if up else 0) + 3 * c_out * big  # skip, add
        side = side * 2 if up else side
    pixels = side * side
    if fused:
        elements += ch * pixels + 3 * pixels
    else:
        elements += norm_passes * ch * pixels + ch * pixels + 3 * pixels + 18 * pixels  # norm, RGB conv, tanh, scale
    return (2 * elements + 3 * pixels) / 1e6  # fp16 activations, uint8 frame


def estimate(bandwidth: float, flops: float, efficiency: float) -> str:
    """The paper estimate of images/s per GPU, memory- and compute-bound, as a Markdown table."""
    rows = []
    for resolution, gflop in GFLOP_PER_IMAGE.items():
        unfused = activation_traffic_mb(resolution, norm_passes=6)
        norm_fused = activation_traffic_mb(resolution, norm_passes=2)
        ideal = activation_traffic_mb(resolution, norm_passes=2, fused=True)
        rows.append(
            [
                resolution,
                gflop,
                f"{flops / (gflop * 1e9):.0f}",
                f"{unfused:.0f}",
                f"{norm_fused:.0f}",
                f"{ideal:.0f}",
                f"{gflop * 1e3 / unfused:.0f}",
                f"{efficiency * bandwidth / (unfused * 1e6):.0f}",
                f"{bandwidth / (norm_fused * 1e6):.0f}",
            ]
        )
    return "\n".join(
        [
            f"Paper estimate: {flops / 1e12:.0f} TFLOP/s fp16 dense, {bandwidth / 1e12:.2f} TB/s HBM "
            f"(ridge {flops / bandwidth:.0f} FLOP/byte); fp16 activations per image",
            "",
            markdown_table(
                [
                    "px",
                    "GFLOP/image",
                    "compute-bound images/s",
                    "MB as exported",
                    "MB norm+ReLU fused",
                    "MB ideal",
                    "FLOP/byte as exported",
                    f"images/s as exported at {efficiency:.0%} HBM",
                    "images/s norm+ReLU fused at 100% HBM",
                ],
                rows,
            ),
        ]
    )


def cuda_check() -> tuple[bool, str]:
    """(True, "") where a CUDA session really starts; (False, why) otherwise."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return False, f"ONNX Runtime offers no CUDA provider (providers: {', '.join(available)}; CPU build installed)"
    from onnx import TensorProto, helper

    from ganterp_fast.engine.backends.providers import preload_cuda_libraries

    preload_cuda_libraries(ort)  # the NVIDIA wheels' CUDA/cuDNN libraries, before the first CUDA session

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own non-exported types
        return False, f"a CUDA session does not start: {exc}"
    if "CUDAExecutionProvider" not in session.get_providers():
        return (
            False,
            "the CUDA provider is listed but a session fell back to the CPU (no GPU, driver or CUDA libraries)",
        )
    return True, ""


def latents(batch: int, seed: int, truncation: float) -> dict[str, np.ndarray]:
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator

    rng = np.random.default_rng(seed)
    z = (truncated_normal(rng, (batch, Z_DIM)) * truncation).astype(np.float32)
    classes = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, batch)]
    return Generator.prepare(z, classes, truncation)


def timed_rate(run: Callable[[], Any], batch: int, *, min_seconds: float, min_runs: int = 5) -> dict[str, float]:
    """images/s from the best and median of repeated calls after two warm-up calls."""
    times = time_calls(run, seconds=min_seconds, warmup=2, min_runs=min_runs)
    return {
        "images_per_s": round(batch / min(times), 1),
        "images_per_s_median": round(batch / statistics.median(times), 1),
        "ms_per_batch_best": round(1000 * min(times), 3),
        "runs": len(times),
    }


def cuda_session(ort: Any, model: Path, *, cuda_graph: bool) -> Any:
    """A CUDA session with the engine's provider options (`enable_cuda_graph` with `cuda_graph`)."""
    from ganterp_fast.engine.backends.providers import plan_providers

    providers = plan_providers(
        ort.get_available_providers(), device="cuda", precision="fp16", cuda_graph=cuda_graph
    ).providers
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        str(model),
        sess_options=options,
        providers=[n for n, _ in providers],
        provider_options=[o for _, o in providers],
    )


def device_runner(ort: Any, session: Any, feeds: dict[str, np.ndarray], resolution: int) -> Callable[[], None]:
    """Inputs and output bound to fixed device buffers; a call runs device to device, no copies."""
    binding = session.io_binding()
    keep = []
    for name, array in feeds.items():
        value = ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)
        binding.bind_ortvalue_input(name, value)
        keep.append(value)
    batch = feeds["z"].shape[0]
    output = ort.OrtValue.ortvalue_from_shape_and_type([batch, resolution, resolution, 3], np.uint8, "cuda", 0)
    binding.bind_ortvalue_output("frames", output)
    keep.append(output)

    def run() -> None:
        session.run_with_iobinding(binding)
        _ = keep  # the buffers live as long as the runner

    return run


def x264_rate(frames: np.ndarray, threads: int, seconds: float = 3.0) -> float:
    """libx264 (crf 18, medium, as a render) frames/s on this host's CPU for these frames."""
    import av

    context = av.CodecContext.create("libx264", "w")
    context.width = context.height = frames.shape[1]
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 30)
    context.options = {"crf": "18", "preset": "medium"}
    context.thread_type = "AUTO"
    context.thread_count = threads
    context.open()
    count = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = count
            context.encode(frame)
            count += 1
    context.encode(None)
    return count / (time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512], choices=(128, 256, 512))
    parser.add_argument("--batches", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per point, after warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--no-cuda-graph", action="store_true")
    parser.add_argument("--no-tensorrt", action="store_true")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="checkpoints and fp16 exports kept here")
    parser.add_argument("--out", type=Path, default=None, help="also save gpu.json and gpu.md here")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the paper estimate (memory- and compute-bound images/s) and exit; no GPU needed",
    )
    parser.add_argument("--hbm-tbps", type=float, default=3.35, help="for --estimate (default: H100 SXM)")
    parser.add_argument("--fp16-tflops", type=float, default=990.0, help="for --estimate (default: H100 SXM dense)")
    parser.add_argument("--efficiency", type=float, default=0.8, help="for --estimate: achievable share of HBM")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.estimate:
        print(estimate(args.hbm_tbps * 1e12, args.fp16_tflops * 1e12, args.efficiency))
        return 0

    ok, why = cuda_check()
    if not ok:
        print(json.dumps({"benchmark": "gpu", "skipped": True, "reason": why}))
        print(f"bench_gpu: no CUDA GPU here, skipped ({why}). No GPU figures are measured on this machine.")
        return 0

    import onnxruntime as ort

    from ganterp_fast.engine.backends.onnxruntime_generator import Generator
    from ganterp_fast.engine.backends.providers import TENSORRT
    from ganterp_fast.engine.video.encode import probe_h264_encoders

    record: dict[str, Any] = {
        "settings": {
            "precision": "fp16",
            "weights": f"random seed {args.seed} (full architecture)",
            "batches": args.batches,
            "seconds_per_point": args.seconds,
            "truncation": args.truncation,
            "gpu": gpu_description(),
            "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(),
            "host_cpus": os.cpu_count(),
            "h264_encoders": list(probe_h264_encoders()),
            "load_average_1min_before": load_average(),
        },
        "preparation": {},
        "results": {},
        "best": {},
        "encoder": {},
    }
    tensorrt = not args.no_tensorrt and TENSORRT in ort.get_available_providers()
    for resolution in args.resolutions:
        folder = model_folder(args.work, resolution, args.seed)
        checkpoint, checkpoint_s = prepare_checkpoint(folder, resolution=resolution, seed=args.seed)
        model, export_s = prepare_export(checkpoint, folder / "fp16.onnx", "fp16")
        record["preparation"][resolution] = {"random_weights_s": checkpoint_s, "fp16_export_and_parity_s": export_s}
        rows: dict[str, dict[int, Any]] = {
            "engine": {},
            "engine_cuda_graph": {},
            "device_only": {},
            "cuda_graph": {},
            "tensorrt": {},
        }
        engine = Generator(model, device="cuda")
        engine_graph = None if args.no_cuda_graph else Generator(model, device="cuda", cuda_graph=True)
        record["preparation"][resolution]["engine_cuda_graph_active"] = bool(engine_graph and engine_graph.cuda_graph)
        shared = cuda_session(ort, model, cuda_graph=False)
        frames = None
        for batch in args.batches:
            feeds = latents(batch, args.seed, args.truncation)
            z, classes = feeds["z"], feeds["class_vector"]
            try:
                rows["engine"][batch] = timed_rate(
                    lambda: engine(z, classes, args.truncation), batch, min_seconds=args.seconds
                )
                if frames is None or len(frames) < min(batch, 16):  # a few frames for the encoder timing
                    frames = engine(z, classes, args.truncation)
            except Exception as exc:  # out of memory at a large batch: record it and go on
                rows["engine"][batch] = {"error": str(exc).splitlines()[0][:200]}
                continue
            try:
                rows["device_only"][batch] = timed_rate(
                    device_runner(ort, shared, feeds, resolution), batch, min_seconds=args.seconds
                )
            except Exception as exc:
                rows["device_only"][batch] = {"error": str(exc).splitlines()[0][:200]}
            if engine_graph is not None and engine_graph.cuda_graph:
                try:
                    rows["engine_cuda_graph"][batch] = timed_rate(
                        lambda: engine_graph(z, classes, args.truncation), batch, min_seconds=args.seconds
                    )
                except Exception as exc:
                    rows["engine_cuda_graph"][batch] = {"error": str(exc).splitlines()[0][:200]}
            if not args.no_cuda_graph:
                try:
                    graph_session = cuda_session(ort, model, cuda_graph=True)
                    rows["cuda_graph"][batch] = timed_rate(
                        device_runner(ort, graph_session, feeds, resolution), batch, min_seconds=args.seconds
                    )
                except Exception as exc:  # e.g. a node that falls back to the CPU makes capture impossible
                    rows["cuda_graph"][batch] = {"error": str(exc).splitlines()[0][:200]}
                finally:
                    graph_session = None
        if tensorrt:
            try:
                started = time.perf_counter()
                trt = Generator(model, device="cuda", tensorrt=True)
                warm = latents(8, args.seed, args.truncation)
                trt(warm["z"], warm["class_vector"], args.truncation)  # builds (or loads) the engine
                record["preparation"][resolution]["tensorrt_engine_s"] = round(time.perf_counter() - started, 1)
                for batch in [b for b in args.batches if b <= 64]:  # the engine's profile: batch 1..64
                    feeds = latents(batch, args.seed, args.truncation)
                    rows["tensorrt"][batch] = timed_rate(
                        lambda f=feeds: trt(f["z"], f["class_vector"], args.truncation), batch, min_seconds=args.seconds
                    )
                trt = None
            except Exception as exc:
                rows["tensorrt"]["error"] = str(exc).splitlines()[0][:200]
        record["results"][resolution] = rows
        record["best"][resolution] = {
            mode: max(
                ((b, r["images_per_s"]) for b, r in points.items() if isinstance(r, dict) and "images_per_s" in r),
                key=lambda item: item[1],
                default=None,
            )
            for mode, points in rows.items()
        }
        if frames is not None:
            record["encoder"][resolution] = {"libx264_fps_all_cores": round(x264_rate(frames[:16], 0), 1)}
        engine = engine_graph = shared = None
    record["settings"]["load_average_1min_after"] = load_average()
    write_results("gpu", record, _markdown(record), args.out)
    return 0


def _markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    gpu = s["gpu"].get("name", "unknown GPU")
    rows = []
    for resolution, modes in record["results"].items():
        for mode, points in modes.items():
            for batch, r in points.items():
                if isinstance(r, dict) and "images_per_s" in r:
                    tflops = r["images_per_s"] * GFLOP_PER_IMAGE[int(resolution)] / 1000
                    rows.append(
                        [
                            resolution,
                            mode,
                            batch,
                            f"{r['images_per_s']:.0f}",
                            f"{r['ms_per_batch_best']:.2f}",
                            f"{tflops:.0f}",
                        ]
                    )
                else:
                    rows.append([resolution, mode, batch, str(r.get("error", r) if isinstance(r, dict) else r), "", ""])
    best = [
        [res, mode, *(b if b else ("-", "-"))] for res, modes in record["best"].items() for mode, b in modes.items()
    ]
    encoder = [[res, e["libx264_fps_all_cores"]] for res, e in record["encoder"].items()]
    return "\n".join(
        [
            f"GPU generator throughput, fp16, {gpu} ({s['gpu'].get('memory', '?')}), onnxruntime {s['onnxruntime']}, "
            f"{s['weights']}",
            "",
            markdown_table(["px", "mode", "batch", "images/s", "ms/batch", "useful TFLOP/s"], rows),
            "",
            "Best batch per mode:",
            "",
            markdown_table(["px", "mode", "batch", "images/s"], best),
            "",
            f"libx264 (crf 18, medium) on this host's {s['host_cpus']} CPUs, generated frames; "
            f"H.264 encoders here: {', '.join(s['h264_encoders'])}",
            "",
            markdown_table(["px", "x264 frames/s"], encoder),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
