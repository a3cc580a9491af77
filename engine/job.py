"""The render job: prepared once (cheap, on the driver), run over any frame range (anywhere).

`prepare` does everything that can fail cheaply before any model work: it probes the input
once, checks the output and the encoder, plans the model (`backends.plan`: a pure function
of the options and the providers this machine offers), runs the analysis and draws the
latent path. The `RenderJob` it returns is immutable, picklable data; `run` renders every
frame into the output, `render_segment` renders frames [start, stop) into a video-only H.264
segment (`scale.scheduler` plans, keeps and joins them), and `result` is what either returns.

Stages overlap: a worker thread runs the generator batch after batch (ONNX Runtime and
OpenVINO release the GIL) while the calling thread encodes the previous batch (PyAV
releases it too), joined by a bounded queue, so memory does not grow with the song's length.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ganterp_fast.engine.analysis.analyze import Analysis, analyze
from ganterp_fast.engine.audio.excerpt import Section
from ganterp_fast.engine.audio.source import Source, open_source
from ganterp_fast.engine.backends.choice import FrameGenerator
from ganterp_fast.engine.backends.plan import ModelPlan, plan_model
from ganterp_fast.engine.backends.preparation import ModelProgress
from ganterp_fast.engine.backends.upscaler import open_upscaler, upscaled
from ganterp_fast.engine.backends.upscaler_graph import UpscalerPlan, plan_upscaler
from ganterp_fast.engine.errors import InputError, RenderError
from ganterp_fast.engine.files import check_output, same_file
from ganterp_fast.engine.latent.path import LatentPath, frame_count, parse_fps
from ganterp_fast.engine.options import RenderOptions
from ganterp_fast.engine.pipeline import Ahead, BatchRunner, reason
from ganterp_fast.engine.result import Progress, RenderResult, StageTimes, reporter
from ganterp_fast.engine.scale.plan import SEGMENT_SECONDS, plan_segments
from ganterp_fast.engine.video.compose import Composition, Compositor, composed
from ganterp_fast.engine.video.output_plan import plan_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderJob:
    """A prepared render: plain data, picklable, with no open files or sessions."""

    source: Source
    output: Path
    options: RenderOptions
    analysis: Analysis
    path: LatentPath
    fps: Fraction
    num_frames: int
    model: ModelPlan
    codec: str  # the H.264 encoder chosen for this machine
    times: StageTimes = field(default_factory=StageTimes, compare=False)
    composition: Composition | None = None  # size, fit and layout (None: the generator's frames as they are)
    full_frames: int = 0  # a preview (OutputOptions.preview): the full render's frame count
    section: tuple[int, int] | None = None  # (first sample, samples) of the analysed audio rendered alone
    upscaler: UpscalerPlan | None = None  # a learned upscaler between the generator and the compositor

    @property
    def frame_side(self) -> int:
        """The side of the frames the compositor gets: the model's, times the upscaler's factor."""
        return self.upscaler.output_size(self.model.resolution) if self.upscaler else self.model.resolution

    @property
    def width(self) -> int:
        return self.composition.width if self.composition is not None else self.frame_width

    @property
    def frame_width(self) -> int:
        """The width of the frames the compositor gets (`frame_side` where they are square)."""
        width = self.model.width or self.model.resolution
        return self.upscaler.output_size(width) if self.upscaler else width

    @property
    def height(self) -> int:
        return self.composition.height if self.composition is not None else self.frame_side

    @property
    def soundtrack(self) -> Source:
        """The soundtrack's excerpt: exactly the samples the analysis read, or the section's of them."""
        if self.section is None:
            return replace(self.source, duration=self.analysis.duration_s, num_samples=self.analysis.num_samples)
        first, count = self.section
        first += self.source.first_sample
        rate = self.source.sample_rate
        return replace(self.source, start=first / rate, duration=count / rate, first_sample=first, num_samples=count)

    @property
    def section_s(self) -> tuple[float, float] | None:
        """The section rendered alone: (start, duration) in seconds of the analysed audio; None: all of it."""
        if self.section is None:
            return None
        first, count = self.section
        return first / self.analysis.sample_rate, count / self.analysis.sample_rate

    def encode_options(self, *, stitchable: bool = True):  # -> encode.EncodeOptions
        preset = "ultrafast" if self.options.output.preview else self.options.encode.preset
        return replace(self.options.encode, codec=self.codec, stitchable=stitchable, preset=preset)

    def fingerprint(self) -> str:
        """A hash of what decides the frames and the file: the input's bytes, the options, the model."""
        return hashlib.sha256(json.dumps(self.fingerprint_facts(), sort_keys=True, default=str).encode()).hexdigest()

    def fingerprint_facts(self) -> dict[str, Any]:
        """The facts `fingerprint` hashes (to say what changed between two jobs)."""
        facts = {
            "input": self.source.identity(),
            "start": self.source.start,
            "samples": self.analysis.num_samples,
            "options": asdict(replace(self.options, overwrite=False)),
            "model": asdict(self.model),
            "fps": str(self.fps),
            "frames": self.num_frames,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
        }
        if self.section is not None:  # a section rendered alone
            facts["section"] = list(self.section)
        if self.upscaler is not None:  # its file's bytes, factor and tiles
            facts["upscaler"] = asdict(self.upscaler)
        return facts

    def segments(self, seconds: float = SEGMENT_SECONDS, *, workers: int = 1) -> list[tuple[int, int]]:
        """Frame ranges of about `seconds` each, covering the video; see `scale.plan.plan_segments`."""
        return plan_segments(self.num_frames, self.fps, seconds, workers=workers)

    def result(
        self, output: Path, *, generator: FrameGenerator | None = None, device: str = "", batch_size: int = 0
    ) -> RenderResult:
        """The `RenderResult` of this job written to `output`: by `generator` here, or on `device`
        (e.g. "3 Ray workers") elsewhere; `batch_size` where the generator's batch was halved."""
        return RenderResult(
            output=output,
            frames=self.num_frames,
            fps=self.fps,
            resolution=generator.resolution if generator is not None else self.model.resolution,
            batch_size=batch_size or self.model.batch_size,
            device=device or (generator.device if generator is not None else self.model.device),
            providers=list(generator.providers) if generator is not None else [],
            model_path=Path(getattr(generator, "model_path", self.options.model.model)),
            classes=self.path.schedule(),
            unused_classes=self.path.unused_classes,
            num_classes=self.model.num_classes,
            analysis=self.analysis,
            times=self.times,
            width=self.width,
            height=self.height,
            full_frames=self.full_frames,
            section_s=self.section_s,
            upscaler=f"{self.upscaler.name} x{self.upscaler.factor}" if self.upscaler else "",
        )

    # ------------------------------------------------------------------ running

    def open_generator(
        self,
        model_path: str | os.PathLike[str] | None = None,
        progress: Callable[[ModelProgress], None] | None = None,
    ) -> FrameGenerator:
        started = time.perf_counter()
        generator = self.model.open(model_path, progress)
        self.times.model += time.perf_counter() - started
        log.info("model on %s (%s)", generator.device, ", ".join(generator.providers))
        return generator

    def frames(
        self,
        generator: FrameGenerator,
        start: int = 0,
        stop: int | None = None,
        *,
        batch_size: int | None = None,
        runner: BatchRunner | None = None,
    ) -> Iterator[np.ndarray]:
        """The finished frames [start, stop) in order, in batches: uint8 [B, H, W, 3].

        The generator runs on a worker thread one batch ahead (through `runner`, which halves
        its batch when memory runs out); closing the iterator stops it.
        """
        stop = self.num_frames if stop is None else stop
        if not 0 <= start <= stop <= self.num_frames:
            raise InputError(f"frame range {start}..{stop} is outside the job's 0..{self.num_frames}")
        runner = runner or BatchRunner(generator, self.options.path.truncation, batch_size or self.model.batch_size)
        made = [start]  # frames the generator has finished, for the failure message

        def generated() -> Iterator[np.ndarray]:
            times = self.times
            first = start
            while first < stop:
                last = min(first + runner.batch_size, stop)
                began = time.perf_counter()
                z, classes = self.path.frames(first, last)
                truncations = self.path.truncations(first, last)
                times.path += time.perf_counter() - began
                began = time.perf_counter()
                frames = runner(z, classes, truncations)
                times.inference += time.perf_counter() - began
                made[0] = first = last
                yield frames

        frames = Ahead(
            generated,
            name="ganterp-generator",
            failure=lambda exc: RenderError(f"the generator failed after {made[0]} frames: {reason(exc)}"),
        )
        if self.upscaler is not None:  # on the generator's device, its own thread
            device_id = getattr(generator, "device_id", 0)
            upscaler = open_upscaler(
                self.upscaler, device=generator.device, device_id=device_id, threads=self.model.options.threads
            )
            frames = upscaled(frames, upscaler, on_time=self._add_upscale_time)
        if self.composition is None or self.composition.identity:
            return frames
        return composed(frames, Compositor(self.composition, self.fps, start), on_time=self._add_compose_time)

    def _add_compose_time(self, seconds: float) -> None:
        self.times.compose += seconds

    def _add_upscale_time(self, seconds: float) -> None:
        self.times.upscale += seconds

    def run(
        self,
        *,
        generator: FrameGenerator | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> RenderResult:
        """Render every frame into the output with the soundtrack (temporary file, renamed on success)."""
        from ganterp_fast.engine.video.encode import VideoWriter

        report = reporter(progress)
        wall = time.perf_counter()
        if generator is None:
            report("model")
            generator = self.open_generator(progress=progress)
        done = 0
        runner_batch = self.model.batch_size
        with VideoWriter(
            self.output,
            width=self.width,
            height=self.height,
            fps=self.fps,
            audio=self.soundtrack,
            options=self.encode_options(),
            overwrite=self.options.overwrite,
        ) as writer:
            report("render", 0, self.num_frames)
            loop = time.perf_counter()
            runner = BatchRunner(generator, self.options.path.truncation, self.model.batch_size)
            frames = self.frames(generator, runner=runner)
            try:
                done = self._write(frames, writer, report, done)
            finally:
                frames.close()
            runner_batch = runner.batch_size  # halved if memory ran out
            if done != self.num_frames:  # checked before the writer closes, so nothing is kept
                raise RenderError(f"rendered {done} frames of {self.num_frames}")
            began = time.perf_counter()
        self.times.encode += time.perf_counter() - began  # flushing the encoder and the rest of the audio
        self.times.render += time.perf_counter() - loop
        self.times.wall += time.perf_counter() - wall
        return self.result(self.output, generator=generator, batch_size=runner_batch)

    def render_segment(
        self,
        start: int,
        stop: int,
        destination: str | os.PathLike[str],
        *,
        generator: FrameGenerator | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> Path:
        """Render frames [start, stop) into a video-only H.264 mp4 segment (IDR first, stitchable).

        The segment's timestamps start at 0; `segments.join` shifts them by `start`. The file is
        written beside `destination` and renamed into place on success.
        """
        from ganterp_fast.engine.video.encode import VideoWriter

        if not 0 <= start < stop <= self.num_frames:
            raise InputError(f"segment {start}..{stop} is not a non-empty range inside 0..{self.num_frames}")
        report = reporter(progress)
        if generator is None:
            generator = self.open_generator()
        frames = self.frames(generator, start, stop)
        with VideoWriter(
            destination,
            width=self.width,
            height=self.height,
            fps=self.fps,
            audio=None,
            options=replace(self.encode_options(), faststart=False),
            overwrite=True,
        ) as writer:
            try:
                done = self._write(frames, writer, report, 0, total=stop - start)
            finally:
                frames.close()
            if done != stop - start:
                raise RenderError(f"segment {start}..{stop}: rendered {done} frames of {stop - start}")
        return Path(destination)

    def _write(self, frames: Iterator[np.ndarray], writer: Any, report: Callable, done: int, total: int = 0) -> int:
        total = total or self.num_frames
        for batch in frames:
            began = time.perf_counter()
            writer.write(batch)
            self.times.encode += time.perf_counter() - began
            done += len(batch)
            report("render", done, total)
        return done


def prepare(
    input_path: str | os.PathLike[str] | Source,
    output_path: str | os.PathLike[str],
    options: RenderOptions | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
    section: Section | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RenderJob:
    """Everything before the model's work: the input probed once, the output and the encoder
    checked, the model planned, the analysis run and the latent path drawn.

    `start` and `duration` cut the excerpt that is analysed and rendered. `section` renders a
    part of that render alone (times count from the excerpt's start): the whole excerpt is
    analysed and its path drawn, and the frames and soundtrack are the full render's there."""
    from ganterp_fast.engine.video.encode import choose_h264_encoder, container_for

    options = options or RenderOptions()
    times = StageTimes()
    prepare_started = time.perf_counter()
    source = open_source(input_path, start=start, duration=duration)
    if section is not None and source.info.exact:  # the analysis's length; a bad section fails before it
        section.samples(source.num_samples, source.sample_rate, what=source.length_text())
    if same_file(source.path, output_path):
        raise InputError(f"output {output_path} is the input file: choose another name for the video")
    output = check_output(output_path, overwrite=options.overwrite)
    container_for(output)
    codec = choose_h264_encoder(options.encode.codec)
    started = time.perf_counter()
    model = plan_model(options.model)
    times.model = time.perf_counter() - started
    upscaler = plan_upscaler(options.model, model.resolution)
    side = upscaler.output_size(model.resolution) if upscaler else model.resolution
    width = upscaler.output_size(model.width) if upscaler and model.width else model.width  # not square
    composition = plan_output(options.output, source, side, width)  # a layout with no video fails here

    reporter(progress)("analysis")
    started = time.perf_counter()
    analysis = analyze(source, options.analysis)
    times.analysis = time.perf_counter() - started
    started = time.perf_counter()
    fps = options.frame_rate(analysis.sample_rate)  # 'native' past 1000 fps: an OptionError naming --fps
    rendered_s, start_s, samples = analysis.duration_s, 0.0, None
    if section is not None:
        samples = section.samples(analysis.num_samples, analysis.sample_rate, what=source.length_text())
        if samples == (0, analysis.num_samples):  # all of it: the full render itself
            samples = None
        else:
            start_s, rendered_s = samples[0] / analysis.sample_rate, samples[1] / analysis.sample_rate
    full_frames = 0
    if options.output.preview:  # the same path sampled at the preview's frame times t = k / preview_fps
        full_frames = frame_count(rendered_s, fps)
        fps = min(parse_fps(options.output.preview_fps), fps)  # never more frames than the full render
    path = LatentPath(
        analysis,
        options.path,
        fps,
        start_s=start_s,
        duration_s=rendered_s,
        z_dim=model.z_dim,
        num_classes=model.num_classes,
        z_truncated=model.z_truncated,
    )
    if composition is not None and samples is not None:  # the input's picture from the section's start
        composition = replace(composition, offset=source.start + start_s)
    times.path = time.perf_counter() - started
    times.wall = time.perf_counter() - prepare_started  # `run` adds its own: the wall time covers both
    return RenderJob(
        source=source,
        output=output,
        options=options,
        analysis=analysis,
        path=path,
        fps=fps,
        num_frames=path.num_frames,
        model=model,
        codec=codec,
        times=times,
        composition=composition,
        full_frames=full_frames,
        section=samples,
        upscaler=upscaler,
    )
