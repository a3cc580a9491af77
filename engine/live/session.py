"""One live session: the model opened once, and a frame loop for every page connected to it.

`LiveSession` prepares everything that can fail before a page connects (the input and its
analysis, the model, the recording's output, the OSC target), then `connect` gives each page
a `Page`: its own feed (a file's path is shared; a microphone gets its own online analysis),
its own `Producer` thread and statistics. The generator runs one batch at a time for all pages
(a lock), so a second tab shares the machine rather than queueing work. `close` stops every
page's loop and writes the recording.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.fields import Options, option, optional, whole
from ganterp_fast.engine.live.feeds import Cue, FileFeed, MicFeed
from ganterp_fast.engine.live.osc import check_target
from ganterp_fast.engine.live.producer import FileClock, Frames, Producer
from ganterp_fast.engine.options import RenderOptions

log = logging.getLogger(__name__)

#: Largest batch a file's page runs ahead with: more frames ahead only adds to the wait at a seek.
MAX_FILE_BATCH = 8


@dataclass(frozen=True)
class LiveOptions(Options):
    """Where the live page is served and what the session sends and keeps besides the picture."""

    mic: bool = option(
        False,
        flag="--mic",
        help="listen to the page's microphone or line-in (the default when no INPUT is given)",
    )
    host: str = option(
        "127.0.0.1",
        flag="--host",
        check=str,
        help="address to listen on; 0.0.0.0 serves every network interface, so anyone who can reach this "
        "machine can open the page (default: %(default)s, this machine only)",
    )
    port: int = option(
        7870, flag="--port", check=whole(0, 65535, note="0: any free port"), help="port to listen on; 0: any free one"
    )
    record: str | None = option(
        None,
        flag="--record",
        check=optional(os.fspath),
        metavar="PATH",
        help="write the frames shown with the audio heard into this video when the session ends "
        "(Ctrl-C, or the page's stop control)",
    )
    osc: str | None = option(
        None,
        flag="--osc",
        check=optional(check_target),
        metavar="HOST:PORT",
        help="send each inflection point, onset, beat and class change as OSC messages (UDP) to HOST:PORT",
    )
    live_batch: int | None = option(
        None,
        flag="--live-batch",
        check=optional(whole(1, 64)),
        parse=int,
        metavar="N",
        help="frames per generator call: a file's page runs this far ahead (default: the model's batch, at "
        f"most {MAX_FILE_BATCH}); a microphone's waits for it (default 1: the lowest latency)",
    )


class LiveSession:
    """The model, the input (or none: microphones) and the outputs, shared by every page."""

    def __init__(
        self,
        input_path: str | os.PathLike[str] | None,
        options: RenderOptions | None = None,
        live: LiveOptions | None = None,
        *,
        progress: Callable[[Any], None] | None = None,
        generator: Any = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options or RenderOptions()
        self.live = live or LiveOptions()
        self.notify = notify or (lambda text: log.warning("%s", text))
        if input_path is not None and self.live.mic:
            raise InputError(f"give either INPUT ({input_path}) or --mic, not both")
        self.mode = "mic" if input_path is None else "file"
        self._audio_folder: Path | None = None  # the page's copy of a file's soundtrack
        self.recorder = None
        self._lock = threading.Lock()  # one generator call at a time
        self._pages_lock = threading.Lock()
        self.pages: list[Page] = []
        self.closed = False
        try:
            self._prepare(input_path, progress, generator)
        except BaseException:  # a model that cannot be had, Ctrl-C while preparing: nothing left behind
            self._discard()
            raise

    def _prepare(self, input_path: Any, progress: Callable[[Any], None] | None, generator: Any) -> None:
        from ganterp_fast.engine.backends.plan import plan_model
        from ganterp_fast.engine.backends.upscaler_graph import plan_upscaler
        from ganterp_fast.engine.video.compose import plan_composition

        options, live = self.options, self.live
        self.model = plan_model(options.model)
        self.upscaler_plan = plan_upscaler(options.model, self.model.resolution)  # --upscaler: before --size
        if self.mode == "file":
            self._prepare_file(input_path)
        else:
            self.source = self.analysis = self.path = None
            self.feed = None
            self.audio_file = None
            self.fps = options.frame_rate(48000)  # 'native' follows the page's rate; see fps_for
        side, frame_width = self.model.resolution, self.model.width
        if self.upscaler_plan is not None:
            side = self.upscaler_plan.output_size(side)
            frame_width = self.upscaler_plan.output_size(frame_width) if frame_width else None
        composition = plan_composition(
            resolution=side, size=options.output.size, fit=options.output.fit, frame_width=frame_width
        )
        self.composition = None if composition.identity else composition
        self.width = composition.width
        self.height = composition.height
        self._compositor = None
        if live.record is not None:
            from ganterp_fast.engine.live.recorder import Recorder

            self.recorder = Recorder(
                live.record,
                fps=self.fps,
                width=self.width,
                height=self.height,
                options=options.encode,
                overwrite=options.overwrite,
            )
        self.osc = None
        if live.osc is not None:
            from ganterp_fast.engine.live.osc import OscOut

            self.osc = OscOut(live.osc)
        self.generator = generator if generator is not None else self.model.open(progress=progress)
        self.upscaler = None
        if self.upscaler_plan is not None:
            from ganterp_fast.engine.backends.upscaler import open_upscaler

            self.upscaler = open_upscaler(
                self.upscaler_plan,
                device=self.generator.device,
                device_id=getattr(self.generator, "device_id", 0),
                threads=options.model.threads,
            )
        self.batch_size = self._batch_size()
        self._warm_up()

    # ---------------------------------------------------------------- preparing

    def _prepare_file(self, input_path: str | os.PathLike[str]) -> None:
        from ganterp_fast.engine.analysis.analyze import analyze
        from ganterp_fast.engine.audio.source import open_source
        from ganterp_fast.engine.latent.path import LatentPath

        self.source = open_source(input_path)
        analysis_options = self.options.analysis
        if self.options.path.pulsing or self.live.osc:
            analysis_options = replace(analysis_options, onsets=True)
        self.analysis = analyze(self.source, analysis_options)
        if self.live.osc and self.analysis.beat_times is None and self.analysis.onset_envelope is not None:
            from ganterp_fast.engine.analysis.beats import beat_times

            self.analysis = replace(
                self.analysis, beat_times=beat_times(self.analysis.onset_envelope, self.analysis.sample_rate)
            )
        self.fps = self.options.frame_rate(self.analysis.sample_rate)
        self.path = LatentPath(
            self.analysis,
            self.options.path,
            self.fps,
            z_dim=self.model.z_dim,
            num_classes=self.model.num_classes,
            z_truncated=self.model.z_truncated,
        )
        self.feed = FileFeed(self.analysis, self.path)
        self.audio_file = self._page_audio()

    def _page_audio(self) -> Path:
        """The input's soundtrack (its excerpt, decoded as the analysis decodes it) as a WAV file the
        page can play and seek, whatever the input's format."""
        import av

        from ganterp_fast.engine.audio.decode import iter_audio_frames

        self._audio_folder = Path(tempfile.mkdtemp(prefix="ganterp-live-"))
        target = self._audio_folder / "audio.wav"
        source = self.source
        layout = "mono" if source.info.channels == 1 else "stereo"
        with av.open(os.fspath(target), "w", format="wav") as out:
            track = out.add_stream("pcm_s16le", rate=source.sample_rate, layout=layout)
            resampler = av.AudioResampler(format="s16", layout=layout, rate=source.sample_rate)
            frames = iter_audio_frames(source.info, start=source.start, duration=source.duration)
            for frame in itertools.chain(frames, [None]):  # None: the resampler's last samples
                for piece in resampler.resample(frame):
                    out.mux(track.encode(piece))
            out.mux(track.encode(None))
        return target

    def _batch_size(self) -> int:
        if self.live.live_batch is not None:
            return self.live.live_batch
        if self.mode == "mic":
            return 1
        return max(1, min(MAX_FILE_BATCH, int(self.options.model.batch_size or self.model.batch_size)))

    def _warm_up(self) -> None:
        """One call at each batch size a page will use, so the first page's frames come at once."""
        for size in sorted({1, self.batch_size}):
            z = np.zeros((size, self.model.z_dim), np.float32)
            classes = np.zeros((size, self.model.num_classes), np.float32)
            if self.model.num_classes:
                classes[:, 0] = 1
            began = time.monotonic()
            self.generate(z, classes, None)
            self.warm_batch_s = time.monotonic() - began

    # ---------------------------------------------------------------- running

    def fps_for(self, sample_rate: int) -> Fraction:
        return self.options.frame_rate(sample_rate) if self.mode == "mic" else self.fps

    def generate(self, z: np.ndarray, classes: np.ndarray, truncations: np.ndarray | None) -> np.ndarray:
        """Frames for latents (one batch at a time for every page), fitted to --size."""
        truncation = self.options.path.truncation if truncations is None else truncations
        with self._lock:
            images = self.generator(z, classes, truncation=truncation)
            if self.upscaler is not None:
                images = self.upscaler(images)
            if self.composition is not None:
                if self._compositor is None:
                    from ganterp_fast.engine.video.compose import Compositor

                    self._compositor = Compositor(self.composition, self.fps)
                images = self._compositor(images)
        return images

    def connect(
        self,
        send: Callable[[Frames], bool],
        *,
        sample_rate: int | None = None,
        message: Callable[[str], None] | None = None,
    ) -> Page:
        """A new page: `send` hands it frames; microphones give the rate of the audio they send."""
        if self.closed:
            raise InputError("the live session has ended")
        page = Page(self, send, sample_rate=sample_rate, message=message)
        with self._pages_lock:
            self.pages.append(page)
        page.start()
        return page

    def cues(self, cues: list[Cue]) -> None:
        if cues and self.osc is not None:
            self.osc.send(cues)

    def disconnect(self, page: Page) -> None:
        page.stop()
        with self._pages_lock:
            if page in self.pages:
                self.pages.remove(page)

    def close(self) -> Path | None:
        """Stop every page and write the recording (None: no recording, or nothing heard)."""
        if self.closed:
            return None
        self._stop_pages()
        try:
            return self.recorder.finish() if self.recorder is not None else None
        finally:
            self._discard()

    def abort(self) -> None:
        """Stop everything and keep nothing (a failure)."""
        self._stop_pages()
        self._discard()

    def _stop_pages(self) -> None:
        self.closed = True
        for page in list(self.pages):
            self.disconnect(page)

    def _discard(self) -> None:
        """Remove what the session keeps on disk: an unfinished recording, the page's soundtrack."""
        import shutil

        if self.recorder is not None:
            self.recorder.abort()  # nothing once the recording is finished
        if self._audio_folder is not None:
            shutil.rmtree(self._audio_folder, ignore_errors=True)


class Page:
    """One connected page: its feed, its frame loop, its clock and what it reported."""

    def __init__(
        self,
        session: LiveSession,
        send: Callable[[Frames], bool],
        *,
        sample_rate: int | None,
        message: Callable[[str], None] | None,
    ) -> None:
        self.session = session
        self.message = message or session.notify
        self._send = send
        self.stats: dict[str, Any] = {}
        self.clock = FileClock()
        self.sample_rate = int(sample_rate or 0)
        self.channels = 1  # of the audio the page sends
        self.audio_seconds = 0.0
        if session.mode == "file":
            feed = session.feed
        else:
            if not self.sample_rate:
                raise InputError("a microphone page must give its audio's sample rate")
            model = session.model
            feed = MicFeed(
                self.sample_rate,
                session.options.analysis,
                session.options.path,
                session.fps_for(self.sample_rate),
                z_dim=model.z_dim,
                num_classes=model.num_classes,
                z_truncated=model.z_truncated,
            )
        self.feed = feed
        self.producer = Producer(
            feed,
            session.generate,
            self._deliver,
            batch_size=session.batch_size,
            clock=self.clock,
            cues=session.cues,
            message=self.message,
        )
        self.producer.stats.batch_s = session.warm_batch_s

    def start(self) -> None:
        self.producer.start()

    def stop(self) -> None:
        self.producer.stop()
        if self.session.recorder is not None:
            self.session.recorder.release(self)

    def _deliver(self, frames: Frames) -> bool:
        recorder = self.session.recorder
        if recorder is not None and recorder.owner is self:
            for t, image in zip(frames.times, frames.images):
                recorder.shown(self, float(t), image)
        return self._send(frames)

    def report_clock(self, seconds: float, playing: bool) -> None:
        """The page's playback clock (a file)."""
        self.clock.report(seconds, playing)

    def audio(self, samples: np.ndarray, *, clock_s: float | None = None) -> None:
        """Audio the page heard: int16 [n] or [n, channels] at its rate. A microphone's drives the
        analysis; either kind is what a recording keeps."""
        block = np.asarray(samples)
        frames = len(block)
        self.audio_seconds += frames / self.sample_rate if self.sample_rate else 0.0
        if self.session.mode == "mic":
            mono = block.astype(np.float32)
            if mono.ndim == 2:
                mono = mono.mean(axis=1)
            if block.dtype == np.int16:
                mono /= 32768.0
            cues = self.feed.feed(mono)
            self.session.cues(cues)
            self.producer.audio_arrived()
        recorder = self.session.recorder
        if recorder is not None and self.sample_rate and recorder.claim(self):
            if clock_s is None:  # a microphone: frames are shown at the audio's time, one display delay later
                delay = float(self.stats.get("delay_s", 0.0) or 0.0)
                clock_s = self.audio_seconds - delay
            recorder.heard(self, block, self.sample_rate, clock_s)
