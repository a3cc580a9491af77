"""The latent path: a (class, z) pair per inflection point, sampled at each video frame's time.

Segment k of the analysis runs from inflection point k to k+1 and its alphas rise from near 0
to 1, so the path's position at spectrogram column j is u = k + alpha[j]: class and z are
interpolated between point floor(u) and the next one. Frames sample u at their own time
(t = f / fps, column j sits at j * hop / sample_rate, as the original's one frame per
column did), so any frame rate follows the same path, and a section of it (`start_s`) is
sampled at the full path's times from its start on. Everything is derived from the analysis,
the classes and the seed: any frame range can be computed on its own, with identical results
whatever the batch size.

A cue sheet (`latent.cue_sheet`) replaces the analysis's points with a user's: each cue's time
becomes its spectrogram column, and between two cues u follows the same per-segment alphas
of the audio's signal ("smooth"), or holds and jumps at the later cue ("cut"). The analysis's
own points make the same cues, so an unedited sheet gives the same frames. The pulse adds
the onset envelope, as a peak-and-decay curve sampled at each frame's time, along one seeded
direction of z.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ganterp_fast.engine.analysis.analyze import Analysis, segment_alphas
from ganterp_fast.engine.backends.contract import NUM_CLASSES, TRUNCNORM_BOUND, Z_DIM, truncated_normal
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.fields import Options, option, real, whole
from ganterp_fast.engine.latent.classes import class_index
from ganterp_fast.engine.latent.cue_sheet import CueSheet
from ganterp_fast.engine.latent.keyframes import between, class_vectors, model_classes

log = logging.getLogger(__name__)

Z_MODES = ("per-point", "fixed")
INTERPOLATIONS = ("lerp", "slerp")  # slerp: along the sphere Gaussian latents live near
MIN_FPS, MAX_FPS = 1, 1000


def class_list(text: str) -> tuple[str, ...]:
    """--classes 'jellyfish, 107, volcano' -> its items (names or indices), blanks dropped."""
    return tuple(item.strip() for item in str(text).split(",") if item.strip())


def _known_classes(classes: Sequence[int | str]) -> tuple[int | str, ...]:
    """The classes as given, each known (unknown names and indices fail here, before any work)."""
    for item in classes:
        try:
            class_index(item)
        except InputError as exc:
            raise ValueError(f": {exc}") from None
    return tuple(classes)


@dataclass(frozen=True)
class PathOptions(Options):
    """How the path is drawn; the same options and seed give the same frames."""

    classes: tuple[int | str, ...] = option(
        (),
        flag="--classes",
        check=_known_classes,
        parse=class_list,
        metavar="LIST",
        help="comma-separated ImageNet class names or indices, one per inflection point in order; missing ones "
        "are drawn at random (see 'ganterp-fast classes')",
    )
    z_mode: str = option(
        "per-point",
        flag="--z-mode",
        choices=Z_MODES,
        help="one z per inflection point (the paper) or one for the whole video (the original code)",
    )
    truncation: float = option(
        0.4,
        flag="--truncation",
        check=real(0, 1, above=True, rule="must be in (0, 1]"),
        help="BigGAN truncation in (0, 1]: lower is cleaner, higher more varied",
    )
    seed: int = option(
        0,
        flag="--seed",
        check=whole(0),
        help="seed of the random classes and z: the same seed gives the same frames",
    )
    interpolation: str = option(
        "lerp",
        flag="--interpolation",
        choices=INTERPOLATIONS,
        help="how z moves between keyframes: lerp (straight) or slerp (along the sphere, for Gaussian latents)",
    )
    #: A cue sheet (`cue_files.read_sheet`, `cue_sheet.parse_classes_at`) instead of the analysis's points.
    cues: CueSheet | None = option(None)
    #: Strength of the onset pulse on z (0: off); needs an analysis with onsets.
    pulse: float = option(
        0.0,
        flag="--pulse",
        check=real(0, rule="must be a number >= 0 (0: off)"),
        metavar="S",
        label="pulse (0: off)",
        help="strength of the onset pulse: z jumps on each onset (librosa) and relaxes between them; 0: off",
    )
    #: Strength of the onset pulse on the truncation: T * (1 + S * pulse), at most 1 (0: off).
    pulse_truncation: float = option(
        0.0,
        flag="--pulse-truncation",
        check=real(0, rule="must be a number >= 0 (0: off)"),
        metavar="S",
        label="pulse on the truncation",
        help="the same pulse on the truncation: T x (1 + S x pulse), at most 1; 0: off",
    )

    @property
    def pulsing(self) -> bool:
        """The onset pulse moves z or the truncation (the analysis must then keep its onsets)."""
        return self.pulse > 0 or self.pulse_truncation > 0

    def pulse_direction(self, z_dim: int) -> np.ndarray:
        """The seeded direction (float64 [z_dim]) along which the pulse pushes z."""
        return truncated_normal(np.random.default_rng([self.seed, 3]), (z_dim,))

    def pulsed(self, z: np.ndarray, pulses: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """z pushed along `direction` by the pulse (0..1 per row) at this strength, within z's bounds."""
        strength = self.pulse * self.truncation * pulses
        bound = TRUNCNORM_BOUND * self.truncation
        return np.clip(z + (strength[:, None] * direction).astype(np.float32), -bound, bound)

    def pulsed_truncations(self, pulses: np.ndarray) -> np.ndarray:
        """The truncation raised by the pulse (0..1 per frame): T x (1 + S x pulse), at most 1."""
        return np.minimum(self.truncation * (1.0 + self.pulse_truncation * pulses), 1.0)

    @classmethod
    def from_sheet(cls, sheet: CueSheet, *, pulse: float = 0.0, pulse_truncation: float = 0.0) -> PathOptions:
        """The options that render `sheet`: its seed, z mode and truncation."""
        return cls(
            z_mode=sheet.z_mode,
            truncation=sheet.truncation,
            seed=sheet.seed,
            cues=sheet,
            pulse=pulse,
            pulse_truncation=pulse_truncation,
        )

    def check_together(self) -> None:
        if self.cues is None:
            return
        if self.classes:
            raise InputError("give either classes or cues, not both: the cues name their classes")
        for name, mine, theirs in (
            ("seed", self.seed, self.cues.seed),
            ("z mode", self.z_mode, self.cues.z_mode),
            ("truncation", self.truncation, self.cues.truncation),
        ):
            if mine != theirs:
                raise InputError(
                    f"{name} {mine} differs from the {name} of {self.cues.origin or 'the cues'} ({theirs}): "
                    f"use the cues' own (PathOptions.from_sheet) or edit the sheet's header"
                )


def parse_fps(value: str | float | int | Fraction, *, sample_rate: int | None = None) -> Fraction:
    """A frame rate from '30', '29.97', '30000/1001' or 'native' (sample rate / 128)."""
    text = str(value).strip().lower()
    if text == "native":
        if sample_rate is None:
            raise InputError("fps 'native' needs the audio's sample rate")
        fps = Fraction(sample_rate, 128)
        if fps > MAX_FPS:
            raise InputError(
                f"fps 'native' is {float(fps):g} at {sample_rate} Hz, above {MAX_FPS}: give a rate such as 30 or 60"
            )
        return fps
    try:
        fps = Fraction(text).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise InputError(
            f"fps must be a positive number, a ratio such as 30000/1001, or 'native'; got {value!r}"
        ) from None
    # Below 1 fps a single frame would outlast a short song (frames are at least 1), leaving a
    # video longer than its soundtrack; above 1000 no player shows the frames.
    if not MIN_FPS <= fps <= MAX_FPS:
        raise InputError(
            f"fps must be from {MIN_FPS} to {MAX_FPS} frames per second (e.g. 24, 30, 30000/1001), got {value!r}"
        )
    return fps


class LatentPath:
    """Per-frame z and class vectors for a render, computed batch by batch."""

    def __init__(
        self,
        analysis: Analysis,
        options: PathOptions,
        fps: Fraction,
        *,
        start_s: float = 0.0,
        duration_s: float | None = None,
        z_dim: int = Z_DIM,
        num_classes: int = NUM_CLASSES,
        z_truncated: bool = True,
    ) -> None:
        """The path of `analysis` at `fps`; `start_s` and `duration_s` (None: to the end) pick a
        section of it: frame f is then at time start_s + f / fps, the full path's there. `z_dim`
        and `num_classes` are the model's (0 classes: unconditional); `z_truncated`: z is scaled
        by the truncation (BigGAN, and models whose graph takes no truncation)."""
        self.z_dim, self.num_classes = z_dim, num_classes
        self.analysis = analysis
        self.options = options
        self.fps = Fraction(fps)
        self.start_s = float(start_s)
        if self.start_s < 0 or (self.start_s and self.start_s >= analysis.duration_s):
            raise InputError(f"section start {start_s:g} s is outside the audio's 0..{analysis.duration_s:.3f} s")
        n = analysis.num_columns
        if options.cues is None:
            columns = np.asarray(analysis.inflection_points, dtype=np.int64)
            self.class_ids, self.unused_classes, self.random_classes = _choose_classes(
                model_classes(options, options.classes, num_classes), len(columns), options.seed, max(num_classes, 1)
            )
            fixed = options.z_mode == "fixed"
            self.cue_z = [0] * len(columns) if fixed else list(range(len(columns)))
            self.z_count = 1 if fixed else len(columns)
            self.cue_transitions = ["smooth"] * len(columns)
            alphas = analysis.alphas
        else:
            columns = _cue_columns(options.cues, analysis)
            ids = [cue.class_id for cue in options.cues.cues]
            if num_classes and max(ids, default=0) >= num_classes:
                where = options.cues.origin or "the cues"
                raise InputError(f"{where}: class {max(ids)} is past this model's classes 0 to {num_classes - 1}")
            self.class_ids = ids if num_classes else [0] * len(ids)  # unconditional: the cues' z alone
            self.unused_classes, self.random_classes = [], 0
            self.cue_z = [cue.z for cue in options.cues.cues]
            self.z_count = options.cues.z_count
            self.cue_transitions = [cue.transition for cue in options.cues.cues]
            alphas = segment_alphas(analysis.signal, columns)
        self.columns = columns
        self.num_points = len(columns)
        self.cue_times = columns * analysis.hop_length / analysis.sample_rate
        scale = options.truncation if z_truncated else 1.0
        self.z_points = (_draw_z(options.seed, self.z_count, self.cue_z, z_dim) * scale).astype(np.float32)
        self._z_index = np.asarray(self.cue_z, dtype=np.int64)
        # Path position per spectrogram column: cue index + alpha, 0 before the first cue and
        # K-1 from the last one on; a cut holds the cue before until its own column.
        k = self.num_points
        if k > 1:
            segment = np.searchsorted(columns, np.arange(n), side="right") - 1
            segment = np.minimum(segment, k - 2)
            self._u = segment + alphas
            self._u[: columns[0]] = 0.0
            for i in range(1, k):
                if self.cue_transitions[i] == "cut":
                    self._u[columns[i - 1] : columns[i]] = i - 1
        else:
            self._u = np.zeros(n)
        self._u[-1] = k - 1
        self._column_times = np.arange(n) * analysis.hop_length / analysis.sample_rate
        length = analysis.duration_s - self.start_s if duration_s is None else duration_s
        self.num_frames = frame_count(length, self.fps)
        self._pulse = self._pulse_times = self._pulse_direction = None
        if options.pulsing:
            self._prepare_pulse(options)

    def _prepare_pulse(self, options: PathOptions) -> None:
        from ganterp_fast.engine.analysis.beats import pulse_curve

        envelope = self.analysis.onset_envelope
        if envelope is None:
            raise InputError("the pulse needs the onset envelope: analyse with AnalysisOptions(onsets=True)")
        hop_s = self.analysis.onset_hop_length / self.analysis.sample_rate
        self._pulse = pulse_curve(envelope, hop_s)
        self._pulse_times = np.arange(len(envelope)) * hop_s
        self._pulse_direction = options.pulse_direction(self.z_dim)

    def pulse(self, frames: np.ndarray) -> np.ndarray:
        """The pulse curve (0..1, before the strength) at each frame index; zeros with no pulse."""
        if self._pulse is None:
            return np.zeros(len(frames))
        return np.interp(self.times(frames), self._pulse_times, self._pulse)

    def column_positions(self) -> np.ndarray:
        """The path position u at each spectrogram column (a copy)."""
        return self._u.copy()

    def positions(self, frames: np.ndarray) -> np.ndarray:
        """The path position u (inflection point index + fraction) at each frame index."""
        return np.interp(self.times(frames), self._column_times, self._u)

    def times(self, frames: np.ndarray) -> np.ndarray:
        """Each frame's time in seconds on the full path: (start_s * fps + f) / fps, so a
        section starting on one of the full path's frames gives exactly that frame's times."""
        frames = np.asarray(frames, dtype=np.float64)
        fps = float(self.fps)
        return (frames if not self.start_s else self.start_s * fps + frames) / fps

    def frames(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """z [B, 128] (already scaled by truncation) and class vectors [B, 1000] for frames start..stop-1."""
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(f"frame range {start}..{stop} outside 0..{self.num_frames}")
        u = self.positions(np.arange(start, stop))
        low = np.minimum(np.floor(u).astype(np.int64), self.num_points - 1)
        high = np.minimum(low + 1, self.num_points - 1)
        frac = (u - low).astype(np.float32)
        z = between(self.z_points[low], self.z_points[high], frac, self.options.interpolation)
        same = self._z_index[low] == self._z_index[high]  # one z (fixed mode, or a repeated z): exactly it
        z[same] = self.z_points[low[same]]
        if self._pulse is not None and self.options.pulse > 0:
            z = self.options.pulsed(z, self.pulse(np.arange(start, stop)), self._pulse_direction)
        classes = np.asarray(self.class_ids)
        vectors = class_vectors(classes[low], classes[high], frac, self.num_classes)
        return z.astype(np.float32), vectors

    def truncations(self, start: int, stop: int) -> np.ndarray | None:
        """Per-frame truncations for frames start..stop-1 with a pulse on the truncation; else None
        (the generator takes `options.truncation` for every frame)."""
        if self._pulse is None or self.options.pulse_truncation <= 0:
            return None
        return self.options.pulsed_truncations(self.pulse(np.arange(start, stop)))

    def batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first frame index, z, class vectors) for consecutive batches of frames."""
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        stop = self.num_frames if stop is None else stop
        for first in range(start, stop, batch_size):
            z, vectors = self.frames(first, min(first + batch_size, stop))
            yield first, z, vectors

    def schedule(self) -> list[tuple[float, int]]:
        """(time in seconds, class index) at each inflection point (or cue)."""
        return [(float(t), int(c)) for t, c in zip(self.cue_times, self.class_ids)]


def _draw_z(seed: int, count: int, indices: Sequence[int], z_dim: int = Z_DIM) -> np.ndarray:
    """z number i for each i in `indices`: row i of the seeded draw of `count`, or beyond it a
    z drawn on its own from the seed and i (float64, before truncation)."""
    table = truncated_normal(np.random.default_rng([seed, 1]), (count, z_dim))
    rows = [table[i] if i < count else truncated_normal(np.random.default_rng([seed, 2, i]), (z_dim,)) for i in indices]
    return np.stack(rows) if rows else np.zeros((0, z_dim))


def _cue_columns(sheet: CueSheet, analysis: Analysis) -> np.ndarray:
    """Each cue's spectrogram column (the nearest to its time); InputError naming the cue when a
    time is past the end or within one column of the cue before."""
    rate = analysis.sample_rate / analysis.hop_length
    end = analysis.duration_s
    columns = []
    for cue in sheet.cues:
        if cue.time_s > end + 1e-9:
            raise InputError(
                f"{sheet.where(cue)}: time {cue.time_s:g} s is past the end of the audio ({end:.3f} s): "
                "move it earlier or delete the row"
            )
        column = min(int(round(cue.time_s * rate)), analysis.num_columns - 1)
        if columns and column <= columns[-1]:
            raise InputError(
                f"{sheet.where(cue)}: time {cue.time_s:g} s falls on the same spectrogram column "
                f"({1000 / rate:.1f} ms) as the cue before it: move the cues apart or delete one"
            )
        columns.append(column)
    return np.asarray(columns, dtype=np.int64)


def _choose_classes(
    requested: Sequence[int | str], count: int, seed: int, num_classes: int = NUM_CLASSES
) -> tuple[list[int], list[int], int]:
    """The first `count` requested classes, the rest drawn at random (seeded).

    Returns (classes, requested ones left unused, how many were drawn).
    """
    given = [class_index(item) for item in requested]
    chosen = given[:count]
    unused = given[count:]
    missing = count - len(chosen)
    if missing > 0:
        rng = np.random.default_rng([seed, 0])
        chosen += [int(i) for i in rng.integers(0, num_classes, size=missing)]
    if unused:
        log.warning(
            "%d inflection point%s but %d classes given: %d unused (%s)",
            count,
            "" if count == 1 else "s",
            len(given),
            len(unused),
            ", ".join(map(str, unused)),
        )
    return chosen, unused, max(missing, 0)


def frame_count(duration_s: float, fps: Fraction) -> int:
    """Frames for a soundtrack of `duration_s` seconds at `fps`: the nearest whole number, at least 1."""
    return max(1, math.floor(Fraction(duration_s) * Fraction(fps) + Fraction(1, 2)))
