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
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ganterp_fast.engine.backends.upscaler_graph import UpscalerPlan
from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.pipeline import Ahead, is_out_of_memory, reason

log = logging.getLogger(__name__)

CPU_TILES, CUDA_TILES = 4, 16  # tiles (or whole frames) per session run


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
    """An upscaler's ONNX Runtime session: uint8 NHWC frames in, uint8 NHWC frames `factor` times larger out."""

    def __init__(self, plan: UpscalerPlan, *, device: str = "cpu", device_id: int = 0, threads: int | None = None):
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
            self._session = ort.InferenceSession(
                plan.path,
                sess_options=options,
                providers=providers.provider_names,
                provider_options=[opts for _, opts in providers.providers],
            )
        except Exception as exc:  # onnxruntime's own types: a custom operator, a broken graph
            raise InputError(f"upscaler {plan.path}: ONNX Runtime cannot load it ({reason(exc)[:200]})") from None
        self.plan = plan
        self.device = providers.device
        self.providers = list(self._session.get_providers())
        self.batch = plan.batch or (CUDA_TILES if providers.device == "cuda" else CPU_TILES)
        self.seconds = 0.0
        log.info("upscaler %s x%d on %s (%s)", plan.name, plan.factor, self.device, ", ".join(self.providers))

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
                result = self._session.run([self.plan.output_name], {self.plan.input_name: chunk})[0]
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


@functools.lru_cache(maxsize=2)
def open_upscaler(
    plan: UpscalerPlan, *, device: str = "cpu", device_id: int = 0, threads: int | None = None
) -> Upscaler:
    """The upscaler's session for `plan` on the generator's device, made once per process
    (each segment of a segmented render uses it again)."""
    return Upscaler(plan, device=device, device_id=device_id, threads=threads)


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
