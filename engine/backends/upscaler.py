"""A learned upscaler after the generator: a super-resolution ONNX graph on the generator's device.

```python
plan = read_upscaler("realesrgan-x4.onnx")           # the graph read once: names, factor, fixed sizes
up = open_upscaler(plan, device="cpu")               # an ONNX Runtime session with the generator's providers
big = up(frames)                                     # uint8 [B, H, W, 3] -> uint8 [B, 4H, 4W, 3]
```

The graph's side (signature, factor, `describe_upscaler`) is `upscaler_graph`. Frames with a
side over the plan's `tile` px are cut into tiles of `tile` px, each run with `overlap` px of
its neighbours around it and cropped back to its own part, so a fully convolutional model
whose receptive field lies within the overlap gives the untiled frame to rounding. Tiles (or
whole frames) of a batch run together, and their number halves when the device runs out of
memory. uint8 frames become floats in [0, 1] on the way in and are rounded back on the way
out. Never imports torch.

fp32 runs in ONNX Runtime and is exact. A bf16 render (`--precision bf16`, or auto on a CPU
with AVX512-BF16 or AMX) runs the upscaler through OpenVINO's CPU plugin in bf16 behind the
generators' quality gate (`gate`): the first time a file runs on a kind of CPU, its bf16
output on seeded sample frames is measured against its fp32 output, and below the gate (or
where OpenVINO cannot compile it) the upscaler runs in fp32, with the reason logged.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.upscaler_graph import UpscalerPlan
from ganterp_fast.engine.errors import GanterpError, InputError, ModelError, RenderError
from ganterp_fast.engine.pipeline import Ahead, is_out_of_memory, reason

log = logging.getLogger(__name__)

CPU_TILES, CUDA_TILES = 4, 16  # tiles (or whole frames) per session run
# The bf16 gate's sample frames: GATE_FRAMES seeded pictures of GATE_SIDE px (a fixed-size input:
# its own size), smooth colour fields with hard-edged shapes and fine grain, what generators draw.
GATE_FRAMES, GATE_SIDE, GATE_SEED = 4, 64, 20261206
SHAPES_KEPT = 3  # OpenVINO: one compiled model per input shape (the gate's, the frames', a short batch's)


def tile_windows(size: int, tile: int, overlap: int, window: int | None = None) -> list[tuple[int, int, int]]:
    """(window start, core start, core stop) along one axis of `size` px.

    Cores of `tile` px cover the axis; each runs inside a window of `window` px (default
    tile + 2 overlap) kept inside the frame, so every window has one size and every core has
    at least `overlap` px of context on each side that is not the frame's edge.
    """
    if window is None:
        if tile <= 0 or size <= tile:
            return [(0, 0, size)]
        window = min(size, tile + 2 * overlap)
    if window >= size:
        return [(0, 0, size)]
    tile = window - 2 * overlap
    spans = []
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        spans.append((min(max(start - overlap, 0), size - window), start, stop))
    return spans


class Upscaler:
    """An upscaler: uint8 NHWC frames in, uint8 NHWC frames `factor` times larger out. fp32 through
    ONNX Runtime on the generator's device; bf16 through OpenVINO on the CPU (ungated: see `open_upscaler`)."""

    def __init__(
        self,
        plan: UpscalerPlan,
        *,
        device: str = "cpu",
        device_id: int = 0,
        threads: int | None = None,
        precision: str = "fp32",
    ):
        self.plan = plan
        self.precision = precision
        self.seconds = 0.0
        if precision == "bf16":
            self._infer: Callable[[np.ndarray], np.ndarray] = _OpenVinoBf16(plan, threads)
            self.device, self.providers = "cpu", ["OpenVINO CPU bf16"]
            self.batch = plan.batch or CPU_TILES
        elif precision == "fp32":
            self._open_onnxruntime(plan, device, device_id, threads)
        else:
            raise InputError(f"upscaler precision {precision!r}: use fp32 or bf16")
        log.info("upscaler %s x%d on %s (%s)", plan.name, plan.factor, self.device, ", ".join(self.providers))

    def _open_onnxruntime(self, plan: UpscalerPlan, device: str, device_id: int, threads: int | None) -> None:
        from ganterp_fast.engine.backends.onnxruntime_generator import import_onnxruntime
        from ganterp_fast.engine.backends.providers import plan_providers, preload_cuda_libraries

        ort = import_onnxruntime()
        asked = f"cuda:{device_id}" if device.startswith("cuda") else "cpu"
        providers = plan_providers(ort.get_available_providers(), device=asked, threads=threads)
        if providers.device == "cuda":
            preload_cuda_libraries(ort)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = providers.intra_op_threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            session = ort.InferenceSession(
                plan.path,
                sess_options=options,
                providers=providers.provider_names,
                provider_options=[opts for _, opts in providers.providers],
            )
        except Exception as exc:  # onnxruntime's own types: a custom operator, a broken graph
            raise InputError(f"upscaler {plan.path}: ONNX Runtime cannot load it ({reason(exc)[:200]})") from None
        self._infer = lambda chunk: session.run([plan.output_name], {plan.input_name: chunk})[0]
        self.device = providers.device
        self.providers = list(session.get_providers())
        self.batch = plan.batch or (CUDA_TILES if providers.device == "cuda" else CPU_TILES)

    @property
    def factor(self) -> int:
        return self.plan.factor

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] -> uint8 [B, kH, kW, 3]: tiled where a side is over the plan's tile."""
        began = time.perf_counter()
        count, height, width, _ = frames.shape
        k, plan = self.plan.factor, self.plan
        window = plan.window or (None, None)
        rows = tile_windows(height, plan.tile, plan.overlap, window[0])
        cols = tile_windows(width, plan.tile, plan.overlap, window[1])
        wh = height if len(rows) == 1 else window[0] or min(height, plan.tile + 2 * plan.overlap)
        ww = width if len(cols) == 1 else window[1] or min(width, plan.tile + 2 * plan.overlap)
        images = frames.transpose(0, 3, 1, 2)
        pieces = np.stack(
            [images[:, :, y : y + wh, x : x + ww] for y, _, _ in rows for x, _, _ in cols], axis=1
        ).reshape(-1, 3, wh, ww)
        upscaled = self._run(pieces.astype(plan.dtype) / np.asarray(255, plan.dtype))
        upscaled = upscaled.reshape(count, len(rows) * len(cols), 3, wh * k, ww * k)
        out = np.empty((count, height * k, width * k, 3), np.uint8)
        index = 0
        for y, top, bottom in rows:
            for x, left, right in cols:
                part = upscaled[:, index, :, (top - y) * k : (bottom - y) * k, (left - x) * k : (right - x) * k]
                out[:, top * k : bottom * k, left * k : right * k] = _to_uint8(part).transpose(0, 2, 3, 1)
                index += 1
        self.seconds += time.perf_counter() - began
        return out

    def _run(self, pieces: np.ndarray) -> np.ndarray:
        """The session over `pieces` [M, 3, h, w] float, `batch` at a time (halved when memory runs out)."""
        outputs, start = [], 0
        while start < len(pieces):
            chunk = pieces[start : start + self.batch]
            fill = self.plan.batch - len(chunk) if self.plan.batch else 0
            if fill > 0:  # a fixed batch: the last chunk padded
                chunk = np.concatenate([chunk, np.zeros((fill, *chunk.shape[1:]), chunk.dtype)])
            try:
                result = self._infer(chunk)
            except Exception as exc:
                if not is_out_of_memory(exc) or self.batch == 1 or self.plan.batch:
                    raise
                self.batch //= 2
                log.warning("upscaler out of memory at %d tiles a run: going on with %d", self.batch * 2, self.batch)
                continue
            outputs.append(result[: len(chunk) - max(fill, 0)])
            start += self.batch
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8, rounded to the nearest level (Real-ESRGAN's own conversion)."""
    return np.rint(np.clip(values.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


class _OpenVinoBf16:
    """The upscaler's graph through OpenVINO's CPU plugin in bf16: float NCHW in, float NCHW out,
    one compiled model per input shape (static shapes run faster than OpenVINO's dynamic ones)."""

    def __init__(self, plan: UpscalerPlan, threads: int | None) -> None:
        from ganterp_fast.engine.backends.capability import import_openvino
        from ganterp_fast.engine.backends.gate import openvino_cache_root
        from ganterp_fast.engine.backends.machine import physical_cores

        self._ov = import_openvino()
        self.plan = plan
        self._config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16",
            "INFERENCE_NUM_THREADS": threads or physical_cores(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._cache = openvino_cache_root() / "compiled" / f"{plan.sha256[:20]}-bf16-upscaler"
        try:
            self._model = self._ov.Core().read_model(plan.path)
        except Exception as exc:  # openvino raises plain RuntimeErrors
            raise ModelError(f"OpenVINO cannot read the upscaler {plan.path}: {reason(exc)[:200]}") from exc
        self._requests: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        request = self._request(tuple(chunk.shape))
        try:
            result = request.infer({self.plan.input_name: np.ascontiguousarray(chunk, np.float32)})
        except Exception as exc:
            raise ModelError(f"OpenVINO failed on the upscaler {self.plan.name}: {reason(exc)[:200]}") from exc
        return np.array(result[self.plan.output_name], dtype=np.float32, copy=True)

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape in self._requests:
            self._requests.move_to_end(shape)
            return self._requests[shape]
        self._model.reshape({self.plan.input_name: list(shape)})
        config = dict(self._config)
        try:
            self._cache.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = os.fspath(self._cache)
        except OSError as exc:
            log.warning("cannot use the OpenVINO cache %s (%s); compiling without it", self._cache, exc)
        try:
            compiled = self._ov.Core().compile_model(self._model, "CPU", config)
        except Exception as exc:  # openvino raises plain RuntimeErrors
            raise ModelError(f"OpenVINO cannot compile the upscaler {self.plan.path}: {reason(exc)[:200]}") from exc
        self._requests[shape] = compiled.create_infer_request()
        while len(self._requests) > SHAPES_KEPT:
            self._requests.popitem(last=False)
        return self._requests[shape]


def gate_samples(plan: UpscalerPlan) -> np.ndarray:
    """The bf16 gate's sample frames, uint8 [GATE_FRAMES, H, W, 3]: the same for every run of a plan's shape."""
    height, width = plan.window or (GATE_SIDE, GATE_SIDE)
    rng = np.random.default_rng(GATE_SEED)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = np.empty((GATE_FRAMES, height, width, 3), np.uint8)
    for frame in frames:
        image = np.zeros((height, width, 3))
        for channel in range(3):  # smooth colour fields
            for _ in range(3):
                fy, fx = rng.uniform(0.3, 4.0, 2)
                image[..., channel] += rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 7))
        for _ in range(6):  # hard-edged shapes
            top, left = rng.integers(0, height), rng.integers(0, width)
            image[top : top + rng.integers(2, height // 2 + 3), left : left + rng.integers(2, width // 2 + 3)] = (
                rng.uniform(-0.8, 0.8, 3)
            )
        image += rng.normal(0.0, 0.04, image.shape)  # grain
        frame[...] = np.clip(np.rint((image + 1.0) * 127.5), 0, 255)
    return frames


@functools.lru_cache(maxsize=2)
def open_upscaler(
    plan: UpscalerPlan, *, device: str = "cpu", device_id: int = 0, threads: int | None = None
) -> Upscaler:
    """The upscaler's session for `plan` on the generator's device, made once per process
    (each segment of a segmented render uses it again): bf16 where the plan asks for it, the
    device is the CPU, bf16 is native here and the upscaler passes its gate; fp32 otherwise."""
    if plan.precision != "fp32":
        bf16 = _gated_bf16(plan, device, threads)
        if bf16 is not None:
            return bf16
    return Upscaler(plan, device=device, device_id=device_id, threads=threads)


def _gated_bf16(plan: UpscalerPlan, device: str, threads: int | None) -> Upscaler | None:
    """The bf16 upscaler where it may run and passes its gate; None (fp32), with the reason logged, elsewhere."""
    from ganterp_fast.engine.backends.capability import bf16_capability
    from ganterp_fast.engine.backends.contract import AUTO_BF16
    from ganterp_fast.engine.backends.gate import compare_frames, gated, stored_gate

    asked = plan.precision != AUTO_BF16  # --precision bf16: say why it does not run so
    capability = bf16_capability()
    why = None
    if device != "cpu":
        why = f"bf16 runs on the CPU, and the generator runs on {device}"
    elif plan.dtype != "float32":
        why = f"its input is {plan.dtype}; bf16 reads an fp32 graph"
    elif not capability.native:
        why = f"this CPU ({capability.describe()}) has no native bf16"
    if why is not None:
        (log.warning if asked else log.debug)("upscaler %s runs in fp32: %s", plan.name, why)
        return None
    stored = stored_gate(plan.path, "bf16", capability=capability)
    if stored is not None and not stored.passed:
        log.warning("upscaler %s fails the bf16 quality gate (%s): running fp32", plan.name, _figures(stored))
        return None
    try:
        candidate = Upscaler(plan, threads=threads, precision="bf16")

        def measure():  # -> GateResult
            began = time.perf_counter()
            samples = gate_samples(plan)
            expected = Upscaler(plan, threads=threads)(samples)
            figures = {"precision": "bf16", "capability": capability, "since": began}
            return compare_frames(plan.path, expected, candidate(samples), **figures)

        result = gated(plan.path, measure, precision="bf16", capability=capability)
    except GanterpError as exc:
        log.warning("upscaler %s runs in fp32: OpenVINO bf16 failed (%s)", plan.name, exc)
        return None
    if not result.passed:
        log.warning("upscaler %s fails the bf16 quality gate (%s): running fp32", plan.name, _figures(result))
        return None
    log.info("upscaler %s in bf16: %s", Path(plan.path).name, _figures(result))
    return candidate


def _figures(result: Any) -> str:
    """A `GateResult` of an upscaler in words."""
    return (
        f"bf16 vs fp32 on {result.samples} sample frames: PSNR {result.psnr_db:.1f} dB "
        f"(worst frame {result.worst_frame_psnr_db:.1f} dB, gate {result.threshold_db:g} dB), "
        f"max error {result.max_abs_error} levels"
    )


def upscaled(frames: Any, upscaler: Upscaler, on_time: Any = None) -> Ahead[np.ndarray]:
    """Upscaled batches over generator batches, on their own thread one batch ahead; closing
    stops it and closes the frames underneath (`on_time` gets the upscaler's seconds)."""
    spent = upscaler.seconds
    done = [0]

    def run() -> Iterator[np.ndarray]:
        for batch in frames:
            yield upscaler(batch)
            done[0] += len(batch)

    def close() -> None:
        frames.close()
        if on_time is not None:
            on_time(upscaler.seconds - spent)

    return Ahead(
        run,
        name="ganterp-upscale",
        failure=lambda exc: RenderError(f"the upscaler failed after {done[0]} frames: {reason(exc)}"),
        on_close=close,
    )
