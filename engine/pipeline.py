"""The pipeline's moving parts: a stage run one step ahead on its own thread, and the batch
runner that halves its batch when the device runs out of memory.

ONNX Runtime, OpenVINO, swscale and x264 all release the GIL, so a stage on a worker thread
(the generator, the compositor) overlaps the next one on the caller's (the encoder); a
bounded queue between them keeps memory flat whatever the song's length.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

from ganterp_fast.engine.errors import GanterpError

log = logging.getLogger(__name__)

T = TypeVar("T")
# Items in flight between a stage and the next: enough to keep both busy.
QUEUE_DEPTH = 2
_DONE = object()


class Ahead(Generic[T]):
    """Iterates `items()` on a worker thread, at most `depth` items ahead of the consumer.

    An exception in the worker is raised on the consumer's thread: a `GanterpError` as it
    is, anything else as `failure(exc)` (chained). `close` stops the worker and calls
    `on_close`. Waits poll, so Ctrl-C interrupts them on every platform.
    """

    def __init__(
        self,
        items: Callable[[], Iterator[T]],
        *,
        name: str,
        failure: Callable[[BaseException], BaseException],
        on_close: Callable[[], None] | None = None,
        depth: int = QUEUE_DEPTH,
    ) -> None:
        self._items, self._failure, self._on_close = items, failure, on_close
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._produce, name=name, daemon=True)
        self._started = self._finished = self._closed = False

    def _produce(self) -> None:
        try:
            for item in self._items():
                if self._stop.is_set():
                    return
                self._put(item)
            self._put(_DONE)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._put(exc)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Ahead[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        if not self._started:
            self._started = True
            self._worker.start()
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            if isinstance(item, GanterpError):
                raise item
            raise self._failure(item) from item
        return item

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        if self._on_close is not None:
            self._on_close()


def reason(exc: BaseException) -> str:
    """An exception's message on one line (its type where it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says the device (or the host) ran out of memory."""
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


class BatchRunner:
    """Runs the generator, halving the batch size (and carrying on) when memory runs out."""

    def __init__(self, generator: Any, truncation: float, batch_size: int) -> None:
        self.generator = generator
        self.truncation = truncation
        self.batch_size = batch_size

    def __call__(self, z: np.ndarray, classes: np.ndarray, truncations: np.ndarray | None = None) -> np.ndarray:
        """Frames for z and class vectors; `truncations`: one per frame (the pulse), else the path's."""
        outputs = []
        start = 0
        while start < len(z):
            stop = min(start + self.batch_size, len(z))
            truncation = self.truncation if truncations is None else truncations[start:stop]
            try:
                outputs.append(self.generator(z[start:stop], classes[start:stop], truncation=truncation))
            except Exception as exc:
                if not is_out_of_memory(exc) or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                log.warning("out of memory at batch size %d: going on with %d", self.batch_size * 2, self.batch_size)
                continue
            start = stop
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
