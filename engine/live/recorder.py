"""`--record`: the frames a page showed with the audio it heard, through the normal encoder.

While the session runs, the heard audio goes to a WAV file and the video, one frame per slot
of 1/fps of heard audio (the frame shown at that moment, held while none newer was shown),
to an H.264 file, both streamed into a hidden folder beside the output, so memory stays flat
however long the session. `finish` muxes the two into the output (the audio as AAC, the video
copied) and renames it into place; `abort`, or a failure, removes everything and leaves any
earlier file at the output's name untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.files import atomic_output, check_output
from ganterp_fast.engine.video.encode import EncodeOptions, VideoWriter

log = logging.getLogger(__name__)


class Recorder:
    """Collects (shown frame, heard audio) of one page at a time and writes them at the end."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        fps: Fraction,
        width: int,
        height: int,
        options: EncodeOptions = EncodeOptions(),
        overwrite: bool = False,
    ) -> None:
        from ganterp_fast.engine.video.encode import container_for

        self.output = check_output(output, overwrite=overwrite)  # refused before any work
        container_for(self.output)
        self.overwrite = overwrite
        self.fps = Fraction(fps)
        self.width, self.height = int(width), int(height)
        self.options = options
        try:
            self._folder = Path(tempfile.mkdtemp(prefix=f".{self.output.stem}.recording-", dir=self.output.parent))
        except OSError as exc:
            raise InputError(f"cannot write into {self.output.parent}: {exc.strerror or exc}") from exc
        self._lock = threading.Lock()
        self._video: VideoWriter | None = None
        self._audio = None  # soundfile.SoundFile once the first audio arrives
        self._rate = 0
        self._channels = 0
        self._samples = 0
        self._slots = 0
        self._shown: deque[tuple[float, np.ndarray]] = deque()
        self._current: np.ndarray | None = None
        self.owner: object | None = None  # the page whose audio and frames are recorded
        self.finished = False

    @property
    def seconds(self) -> float:
        return self._samples / self._rate if self._rate else 0.0

    def claim(self, owner: object) -> bool:
        """`owner` (a page) becomes the one recorded unless another holds the recording."""
        with self._lock:
            if self.owner is None and not self.finished:
                self.owner = owner
            return self.owner is owner

    def release(self, owner: object) -> None:
        with self._lock:
            if self.owner is owner:
                self.owner = None
                self._shown.clear()

    def shown(self, owner: object, time_s: float, image: np.ndarray) -> None:
        """A frame the page shows from its clock's `time_s` on."""
        with self._lock:
            if self.owner is not owner or self.finished:
                return
            self._shown.append((float(time_s), image))
            while len(self._shown) > 256:  # a page that never reports its clock: keep the newest
                self._current = self._shown.popleft()[1]

    def heard(self, owner: object, samples: np.ndarray, sample_rate: int, clock_s: float) -> None:
        """Audio the page heard (int16 or float [n] or [n, channels]) up to its clock's `clock_s`."""
        import soundfile

        with self._lock:
            if self.owner is not owner or self.finished:
                return
            block = np.asarray(samples)
            block = block[:, None] if block.ndim == 1 else block
            if self._audio is None:
                self._rate, self._channels = int(sample_rate), block.shape[1]
                self._audio = soundfile.SoundFile(
                    self._folder / "audio.wav", "w", samplerate=self._rate, channels=self._channels, subtype="PCM_16"
                )
            if block.shape[1] != self._channels:  # another page's layout: its first channels, or repeated
                block = (
                    np.resize(block, (len(block), self._channels))
                    if block.shape[1] < self._channels
                    else block[:, : self._channels]
                )
            if block.dtype == np.int16:
                block = block.astype(np.float32) / 32768.0
            self._audio.write(block)
            self._samples += len(block)
            self._video_until(self._samples / self._rate, clock_s)

    def _video_until(self, seconds: float, clock_s: float) -> None:
        """Write the shown frame into every slot up to `seconds` of heard audio."""
        while self._shown and self._shown[0][0] <= clock_s + 1e-6:
            self._current = self._shown.popleft()[1]
        target = int(seconds * self.fps + Fraction(1, 2))
        if target <= self._slots:
            return
        if self._video is None:
            self._video = VideoWriter(
                self._folder / "video.mp4",
                width=self.width,
                height=self.height,
                fps=self.fps,
                audio=None,
                options=self.options,
            )
        frame = self._current if self._current is not None else np.zeros((self.height, self.width, 3), np.uint8)
        self._video.write(np.repeat(frame[None], target - self._slots, axis=0))
        self._slots = target

    def finish(self) -> Path | None:
        """Mux what was recorded into the output (atomically); None when nothing was heard."""
        with self._lock:
            if self.finished:
                return None
            self.finished = True
            try:
                if self._audio is None or self._video is None:
                    log.warning("recording: no audio was heard, so %s was not written", self.output)
                    return None
                self._audio.close()
                self._video.close()
                return self._mux()
            finally:
                self._cleanup()

    def abort(self) -> None:
        """Drop what was recorded (nothing to do once `finish` has run)."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            self._cleanup()

    def _cleanup(self) -> None:
        if self._audio is not None:
            with contextlib.suppress(Exception):
                self._audio.close()
        if self._video is not None:
            with contextlib.suppress(Exception):
                self._video.abort()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _mux(self) -> Path:
        import av

        from ganterp_fast.engine.audio.soundtrack import Soundtrack
        from ganterp_fast.engine.audio.source import open_source
        from ganterp_fast.engine.video.encode import container_for

        audio = open_source(self._folder / "audio.wav")
        try:
            with atomic_output(self.output, overwrite=self.overwrite) as temporary:
                container = container_for(self.output)
                options = {"movflags": "+faststart"} if container != "matroska" else {}
                with (
                    av.open(os.fspath(self._folder / "video.mp4")) as video,
                    av.open(os.fspath(temporary), "w", format=container, options=options) as out,
                ):
                    stream = video.streams.video[0]
                    copied = out.add_stream_from_template(stream)
                    track = Soundtrack(out, audio.info, bitrate=self.options.audio_bitrate)
                    try:
                        for packet in video.demux(stream):
                            if packet.dts is None:
                                continue
                            track.mux_until(float(packet.pts * stream.time_base))
                            packet.stream = copied
                            out.mux(packet)
                        track.mux_until(None)
                    finally:
                        track.close()
        except av.FFmpegError as exc:
            raise RenderError(f"writing the recording {self.output} failed: {exc}") from exc
        log.info("recorded %.1f s into %s", self.seconds, self.output)
        return self.output
