"""The render pipeline: audio -> analysis -> latent path -> generator -> encoder.

Stages overlap: a worker thread runs the generator batch after batch (ONNX Runtime
releases the GIL) while the calling thread encodes the previous batch (PyAV releases it
too), joined by a bounded queue, so memory does not grow with the song's length. The
output is written to a temporary file and renamed only when everything succeeded.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import Analysis, AnalysisOptions, analyze
from .contract import DEVICES, PRECISIONS
from .encode import H264_ENCODERS
from .errors import GanterpError, InputError, RenderError
from .files import check_output, same_file
from .path import LatentPath, PathOptions, parse_fps

log = logging.getLogger(__name__)

# Batches in flight between the generator and the encoder: enough to keep both busy.
_QUEUE_DEPTH = 2


@dataclass(frozen=True)
class RenderOptions:
    """Everything a render takes besides its input and output. Defaults live here."""

    model: str = "biggan-deep-128"
    weights: str | None = None  # "random": the architecture with seeded random weights
    weights_seed: int = 0
    precision: str = "auto"  # fp16 on CUDA, fp32 on the CPU
    device: str = "auto"
    batch_size: int | None = None  # None: a default per device and resolution
    fps: str | float | Fraction = "30"
    crf: int = 18
    preset: str = "medium"
    threads: int | None = None  # ONNX Runtime intra-op threads on the CPU (None: automatic)
    encoder_threads: int = 0  # x264 threads (0: automatic); raise it on GPU hosts with many cores
    codec: str = "libx264"  # or "h264_nvenc" (NVENC GPUs), or "auto": NVENC where it opens, else libx264
    cuda_graph: bool = False  # CUDA: capture and replay one CUDA graph per batch size
    tensorrt: bool = False  # CUDA: TensorRT provider first (fp16 engines, cached)
    overwrite: bool = False
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    path: PathOptions = field(default_factory=PathOptions)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.batch_size is not None and (int(self.batch_size) != self.batch_size or self.batch_size < 1):
            raise InputError(f"batch size must be an integer of at least 1, got {self.batch_size}")
        if self.weights not in (None, "random"):
            raise InputError(f"weights must be 'random' or left out (the model's own), got {self.weights!r}")
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be in 0..51 (lower is better quality), got {self.crf}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be at least 1, got {self.threads}")
        if self.codec not in (*H264_ENCODERS, "auto"):
            raise InputError(f"codec must be one of {', '.join(H264_ENCODERS)} or auto, got {self.codec!r}")
        if int(self.encoder_threads) != self.encoder_threads or self.encoder_threads < 0:
            raise InputError(f"encoder threads must be an integer >= 0 (0: automatic), got {self.encoder_threads}")
        if str(self.fps).strip().lower() != "native":
            parse_fps(self.fps)  # validate early; 'native' needs the audio's rate


@dataclass
class StageTimes:
    """Seconds spent in each stage (inference and encoding overlap, so they add up to more than the wall time)."""

    model: float = 0.0
    analysis: float = 0.0
    path: float = 0.0
    inference: float = 0.0
    encode: float = 0.0
    wall: float = 0.0

    def bound(self) -> str:
        """The stage the pipeline waited on most."""
        return "inference" if self.inference >= self.encode else "encode"


@dataclass
class RenderResult:
    output: Path
    frames: int
    fps: Fraction
    resolution: int
    batch_size: int
    device: str
    providers: list[str]
    model_path: Path
    classes: list[tuple[float, int]]
    unused_classes: list[int]
    analysis: Analysis
    times: StageTimes

    @property
    def frames_per_second(self) -> float:
        busy = self.times.wall - self.times.model - self.times.analysis
        return self.frames / busy if busy > 0 else float("inf")


@dataclass(frozen=True)
class Progress:
    """A progress report: `stage` is "model", "analysis" or "render" (frames counted in the last)."""

    frames_done: int
    frames_total: int
    stage: str = "render"


def default_batch_size(device: str, resolution: int) -> int:
    """CPU: small batches (no gain past ~4, and a short wait for the first frames); CUDA: large."""
    if device == "cuda":
        return {128: 64, 256: 32}.get(resolution, 16)
    return 4


def planned_device(device: str) -> str:
    """The device a generator asked for `device` will most likely run on ("cpu" or "cuda")."""
    from .generator import _import_onnxruntime
    from .providers import plan_providers

    if device != "auto":
        return device
    return plan_providers(_import_onnxruntime().get_available_providers(), device="auto").device


def _precision_for(options: RenderOptions, device: str) -> str:
    if options.precision != "auto":
        return options.precision
    return "fp16" if device == "cuda" else "fp32"


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        marker in text
        for marker in (
            "out of memory",
            "failed to allocate memory",
            "cudaerrormemoryallocation",
            "bad_alloc",
            "status_alloc_failed",
        )
    )  # the last: cuBLAS's and cuDNN's CUBLAS_STATUS_ALLOC_FAILED / CUDNN_STATUS_ALLOC_FAILED


class _BatchRunner:
    """Runs the generator, halving the batch size (and carrying on) when memory runs out."""

    def __init__(self, generator: Any, truncation: float, batch_size: int) -> None:
        self.generator = generator
        self.truncation = truncation
        self.batch_size = batch_size

    def __call__(self, z: np.ndarray, classes: np.ndarray) -> np.ndarray:
        outputs = []
        start = 0
        while start < len(z):
            stop = min(start + self.batch_size, len(z))
            try:
                outputs.append(self.generator(z[start:stop], classes[start:stop], truncation=self.truncation))
            except Exception as exc:
                if not _is_out_of_memory(exc) or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                log.warning("out of memory at batch size %d: going on with %d", self.batch_size * 2, self.batch_size)
                continue
            start = stop
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


def render(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: RenderOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> RenderResult:
    """Render a music video of `input_path` into `output_path` (H.264 mp4 with the soundtrack)."""
    from .audio import excerpt_samples, probe_audio
    from .encode import AudioClip, EncodeOptions, VideoWriter, choose_h264_encoder, container_for
    from .generator import Generator
    from .models import resolve_model

    options = options or RenderOptions()
    times = StageTimes()
    wall_start = time.perf_counter()
    # Everything a user can get wrong is found here, before a model export or analysis.
    info = probe_audio(input_path)
    excerpt_samples(info, options.analysis.start, options.analysis.duration)
    if same_file(input_path, output_path):
        raise InputError(f"output {output_path} is the input file: choose another name for the video")
    output = check_output(output_path, overwrite=options.overwrite)
    container_for(output)
    codec = choose_h264_encoder(options.codec)

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(Progress(done, total, stage))

    report("model")
    started = time.perf_counter()
    ready_model = str(options.model).lower().endswith(".onnx")  # used as is: no export, no precision choice
    planned = planned_device(options.device)
    precision = _precision_for(options, planned)
    model_path = resolve_model(options.model, precision=precision, weights=options.weights, seed=options.weights_seed)
    generator = Generator(
        model_path,
        device=options.device,
        threads=options.threads,
        tensorrt=options.tensorrt,
        cuda_graph=options.cuda_graph,
    )
    if options.precision not in ("auto", generator.precision) and ready_model:
        raise InputError(
            f"--precision {options.precision} asked for, but {model_path} is a ready {generator.precision} model; "
            f"leave --precision at auto, or export the model with --precision {options.precision}"
        )
    if _precision_for(options, generator.device) != precision and not ready_model:
        # CUDA was offered but could not be used (or the reverse): the precision that suits.
        precision = _precision_for(options, generator.device)
        model_path = resolve_model(
            options.model, precision=precision, weights=options.weights, seed=options.weights_seed
        )
        generator = Generator(
            model_path,
            device=generator.device,
            threads=options.threads,
            tensorrt=options.tensorrt,
            cuda_graph=options.cuda_graph,
        )
    times.model = time.perf_counter() - started
    log.info("model %s on %s (%s)", model_path.name, generator.device, ", ".join(generator.providers))

    report("analysis")
    started = time.perf_counter()
    analysis = analyze(input_path, options.analysis)
    times.analysis = time.perf_counter() - started

    fps = parse_fps(options.fps, sample_rate=analysis.sample_rate)
    path = LatentPath(analysis, options.path, fps)
    batch_size = options.batch_size or default_batch_size(generator.device, generator.resolution)
    runner = _BatchRunner(generator, options.path.truncation, batch_size)
    clip = AudioClip(Path(input_path), start=options.analysis.start, duration=analysis.duration_s)
    encode_options = EncodeOptions(
        crf=options.crf, preset=options.preset, codec=codec, threads=int(options.encoder_threads)
    )

    batches: queue.Queue[tuple[int, np.ndarray] | BaseException | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
    stop = threading.Event()

    def produce() -> None:
        try:
            for first, z, classes in _timed(path.batches(batch_size), times, "path"):
                if stop.is_set():
                    return
                began = time.perf_counter()
                frames = runner(z, classes)
                times.inference += time.perf_counter() - began
                _put(batches, (first, frames), stop)
            _put(batches, None, stop)
        except BaseException as exc:  # handed to the encoding thread, which re-raises it
            _put(batches, exc, stop)

    worker = threading.Thread(target=produce, name="ganterp-generator", daemon=True)
    done = 0
    try:
        with VideoWriter(
            output,
            width=generator.resolution,
            height=generator.resolution,
            fps=fps,
            audio=clip,
            options=encode_options,
            overwrite=options.overwrite,
        ) as writer:
            report("render", 0, path.num_frames)
            worker.start()
            while True:
                item = _get(batches)
                if item is None:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, GanterpError):
                        raise item
                    reason = " ".join(str(item).split()) or type(item).__name__
                    raise RenderError(f"the generator failed after {done} frames: {reason}") from item
                _, frames = item
                began = time.perf_counter()
                writer.write(frames)
                times.encode += time.perf_counter() - began
                done += len(frames)
                report("render", done, path.num_frames)
            if done != path.num_frames:  # checked before the writer closes, so nothing is kept
                raise RenderError(f"rendered {done} frames of {path.num_frames}")
            began = time.perf_counter()
    finally:
        stop.set()
        _drain(batches)
        if worker.is_alive():
            worker.join(timeout=30)
    times.encode += time.perf_counter() - began  # flushing the encoder and the rest of the audio
    times.wall = time.perf_counter() - wall_start
    return RenderResult(
        output=output,
        frames=done,
        fps=fps,
        resolution=generator.resolution,
        batch_size=runner.batch_size,
        device=generator.device,
        providers=list(generator.providers),
        model_path=model_path,
        classes=path.schedule(),
        unused_classes=path.unused_classes,
        analysis=analysis,
        times=times,
    )


def _timed(iterator: Any, times: StageTimes, stage: str) -> Any:
    while True:
        began = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            setattr(times, stage, getattr(times, stage) + time.perf_counter() - began)
        yield item


def _put(target: queue.Queue, item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(source: queue.Queue) -> Any:
    # A timeout keeps the wait interruptible by Ctrl-C on every platform.
    while True:
        try:
            return source.get(timeout=0.1)
        except queue.Empty:
            continue


def _drain(source: queue.Queue) -> None:
    while True:
        try:
            source.get_nowait()
        except queue.Empty:
            return
