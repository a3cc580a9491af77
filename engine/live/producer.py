"""The frame loop of one page: the generator run against the audio clock, never queued behind it.

One frame slot every 1/fps of audio. With a file the page's clock says where playback is and
the loop makes the next batch for the earliest slots it can deliver before their time (the
batch's measured duration ahead); with a microphone it makes the frame for the newest audio
received. Either way, when the generator is slower than the frame rate the slots it cannot
make on time are skipped, which spreads the dropped frames evenly and keeps the latency at
one batch, never a growing queue. A page that pauses gets the frame for its paused time; a
seek (a jump of the clock) starts again from the new time without counting drops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ganterp_fast.engine.live.feeds import Cue

log = logging.getLogger(__name__)

#: Slack for sending and showing a frame, added to the measured batch time when planning ahead.
MARGIN_S = 0.04
#: After playback starts or resumes, frames skipped within this long are the player's start, not drops.
SETTLE_S = 1.0
#: A jump of the clock larger than this (forwards or back) is a seek, not frames dropped.
SEEK_S = 1.5


@dataclass
class Frames:
    """A batch made for slots first..first+len-1 (time = slot / fps), uint8 [B, H, W, 3]."""

    first: int
    times: np.ndarray
    images: np.ndarray
    dropped: int  # slots skipped so far in this page's session (the batch's share included)


@dataclass
class ProducerStats:
    made: int = 0
    dropped: int = 0
    batches: int = 0
    batch_s: float = 0.0  # moving average of one batch: latents, generator, sending
    started: float = field(default_factory=time.monotonic)

    def add_batch(self, frames: int, seconds: float) -> None:
        self.made += frames
        self.batches += 1
        self.batch_s = seconds if self.batches == 1 else 0.8 * self.batch_s + 0.2 * seconds

    def frames_per_s(self, batch: int) -> float:
        """What the generator sustains here (frames per second of wall time)."""
        return batch / self.batch_s if self.batch_s > 0 else math.inf


class FileClock:
    """The page's playback clock: the last reported time, run forward while playing."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._time = 0.0
        self._at = time.monotonic()
        self._playing = False
        self._version = 0

    def report(self, seconds: float, playing: bool) -> None:
        with self._changed:
            self._time, self._at, self._playing = float(seconds), time.monotonic(), bool(playing)
            self._version += 1
            self._changed.notify_all()

    def now(self) -> tuple[float, bool, int]:
        with self._changed:
            extra = time.monotonic() - self._at if self._playing else 0.0
            return self._time + extra, self._playing, self._version

    def wait(self, seconds: float, version: int | None = None) -> None:
        """Sleep up to `seconds`, waking early on a new report (after `version`)."""
        with self._changed:
            if version is None or self._version == version:
                self._changed.wait(max(0.0, seconds))

    def wake(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()


class Producer:
    """Runs one page's frame loop on its own thread until `stop()` (or the page goes away).

    `generate(z, classes, truncations) -> uint8 [B, H, W, 3]`; `send(Frames) -> bool` hands a
    batch to the page (False: the page is gone); `cues(list[Cue])` gets the music's moments as
    the clock passes them; `message(text)` is told once when the generator cannot keep up, and
    of a failure that ends the loop.
    """

    def __init__(
        self,
        feed,  # FileFeed | MicFeed
        generate: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
        send: Callable[[Frames], bool],
        *,
        batch_size: int = 1,
        clock: FileClock | None = None,
        cues: Callable[[list[Cue]], None] | None = None,
        message: Callable[[str], None] | None = None,
    ) -> None:
        self.feed, self.generate, self.send = feed, generate, send
        self.fps = float(feed.fps)
        self.batch_size = max(1, int(batch_size))
        self.clock = clock or FileClock()
        self.on_cues = cues or (lambda cues: None)
        self.message = message or (lambda text: None)
        self._said_behind = False
        self.stats = ProducerStats()
        self._stop = threading.Event()
        self._audio = threading.Condition()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # ---------------------------------------------------------------- control

    def start(self) -> None:
        loop = self._file_loop if self.feed.mode == "file" else self._mic_loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="ganterp-live", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.clock.wake()
        with self._audio:
            self._audio.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def audio_arrived(self) -> None:
        """A microphone block was fed to the feed: wake the loop."""
        with self._audio:
            self._audio.notify_all()

    def _run(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # told to the page and the terminal by the session
            self.error = exc
            log.debug("live frame loop failed", exc_info=True)
            self.message(f"the generator failed: {exc}")

    # ---------------------------------------------------------------- making frames

    def _make(self, slots: np.ndarray, skipped: int, times: np.ndarray | None = None) -> bool:
        """Frames for `slots` (at their times on the frame grid, or at `times`)."""
        began = time.monotonic()
        first, stop = int(slots[0]), int(slots[-1]) + 1
        times = slots / self.fps if times is None else times
        if self.feed.mode == "file":  # a file's slots are consecutive frames of its render path
            z, classes, truncations = self.feed.frames(first, stop)
        else:
            z, classes, truncations = self.feed.at(times)
        images = self.generate(z, classes, truncations)
        self.stats.dropped += skipped
        ok = self.send(Frames(first, times, images, self.stats.dropped))
        self.stats.add_batch(len(slots), time.monotonic() - began)
        self._check_pace()
        return ok

    def _check_pace(self) -> None:
        if self._said_behind or self.stats.batches < 30:  # once, past the first calls' warm-up
            return
        sustained = self.stats.frames_per_s(self.batch_size)
        if sustained < 0.9 * self.fps:
            self._said_behind = True
            self.message(
                f"the generator makes about {sustained:.1f} frames/s here, below the {self.fps:g} fps asked: "
                f"frames are dropped evenly; lower --fps, use --precision bf16 or int8, or a smaller --model"
            )

    def _file_loop(self) -> None:
        last = -1  # the last slot made
        told = -1.0  # the music's moments are announced up to this clock time
        paused_at = None
        resumed_at: float | None = None  # clock time of the start or the last pause's end
        num_frames = int(self.feed.num_frames)
        while not self._stop.is_set():
            now, playing, version = self.clock.now()
            if not playing:
                slot = min(max(0, int(now * self.fps)), num_frames - 1)
                resumed_at = None
                if slot != paused_at:
                    paused_at = slot
                    if not self._make(np.array([slot]), 0):
                        return
                    last = slot
                self.clock.wait(1.0, version)
                continue
            paused_at = None
            if resumed_at is None:
                resumed_at = now
            if told < now <= told + SEEK_S:  # the music's moments as the clock passes them (not a seek's)
                self.on_cues(self.feed.cues_between(told, now))
            told = now
            ahead = self.stats.batch_s + MARGIN_S
            due = max(0, math.ceil((now + ahead) * self.fps))  # the first slot that can be on time
            if last >= 0 and (due - last > SEEK_S * self.fps or due < last - SEEK_S * self.fps):
                last = due - 1  # a seek: start again there
            first = max(last + 1, due)
            if first >= num_frames:
                self.clock.wait(0.25, version)
                continue
            start_at = first / self.fps - ahead - self.batch_size / self.fps
            if now < start_at:  # one batch ahead is enough
                self.clock.wait(start_at - now, version)
                continue
            stop = min(first + self.batch_size, num_frames)
            # A player's first clock reports after it starts are coarse: what they skip is not dropped.
            settled = now - resumed_at > SETTLE_S
            skipped = first - last - 1 if last >= 0 and settled else 0
            if not self._make(np.arange(first, stop), skipped):
                return
            last = stop - 1

    def _mic_loop(self) -> None:
        last = -1
        while not self._stop.is_set():
            newest = math.floor(self.feed.time_s * self.fps + 1e-9)
            if newest <= last or newest < 0:
                with self._audio:
                    if math.floor(self.feed.time_s * self.fps + 1e-9) <= last and not self._stop.is_set():
                        self._audio.wait(0.25)
                continue
            first = max(last + 1, newest - self.batch_size + 1)
            skipped = first - last - 1 if last >= 0 else 0
            if skipped > SEEK_S * self.fps:  # the audio stalled (a hidden tab): not frames dropped
                skipped = 0
            # The newest frame is made for the newest audio itself, not its slot's start: a slot
            # (1/fps) less latency, on average half of one.
            slots = np.arange(first, newest + 1)
            times = slots / self.fps
            times[-1] = min(max(times[-1], self.feed.time_s), (newest + 0.999) / self.fps)  # within its slot
            if not self._make(slots, skipped, times):
                return
            last = newest
