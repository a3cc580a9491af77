"""The analysis online: fed audio blocks as they arrive, it finds the seed's inflection points
as soon as their look-ahead has been heard, and gives the path position u for any recent time.

Memory is bounded: the pending samples of one spectrogram window, the last `smoothing` + 1
running sums, the last 2 * rolling_length + 2 signal values, and about ten seconds of u (and
of the onset pulse). Nothing grows with the length of the stream.

- Columns, TV distances and the trailing smoothing are the offline analysis's, column for
  column (`spectrogram.spectrogram` on each complete window; the running cumulative sum of
  `analyze.smooth`). The first `smoothing` signal values are the first full mean, as
  offline, so they are known only once `smoothing` columns have been heard.
- The search is the seed's loop, one position at a time: position c is tested once the
  signal up to c + rolling_length is known, and a hit jumps rolling_length ahead, as the
  offline search does. The detection delay is therefore rolling_length columns plus half a
  window (with smoothing 0, rolling_length + 1 columns: the search runs on the distances),
  0.583 s at 44.1 kHz with the defaults, plus at most one block (`delay_s`).
- Normalisation with no future. Offline, the thresholds apply to TV divided by the whole
  song's maximum. Online the test at position c divides its window by a level known when the
  test runs (one scale for the whole window, so only the thresholds feel the level):
  `level="peak"` (the default): the largest distance heard so far; `"hold"`: a peak hold that
  releases with a 30 s time constant (follows a microphone's gain, but sits under the song's
  maximum, so its points drift from the offline ones); `"calibrated"`: the largest distance of the first 10 s,
  then fixed (points in those seconds become known at 10 s). Measured on 24 pieces of real
  music (23 game soundtracks from Debian's extremetuxracer-data and hyperrogue-music, and
  gradio's sax.wav; 33 minutes, default options; `benchmarks/bench_online.py`), the running
  peak agreed best: 470 of 501 live points within 0.25 s of one of the 520 offline ones
  (precision 0.94, recall 0.90), against 0.78 / 0.71 for the hold and 0.77 / 0.66 for the
  calibrated level. It equals the offline level once the song's loudest moment has passed;
  before that the signal reads louder than offline, so a few more extrema clear `threshold`
  and fewer minima stay under `absolute_threshold`. With the same level the points are the
  offline ones, column for column.
- u (`position`): floor(u) is the index of the last point the path has reached, frac(u) its
  alpha. Between points the target alpha rises with the signal's mass since the last point
  relative to the mean mass of the last eight segments (`_alpha`: linear up to 0.8, then
  approaching 1 without reaching it). When a point becomes known the target moves past the
  next integer and u glides there at no more than one unit per `GLIDE_S` (a bounded change
  per column, no jump); u never decreases and stays finite in silence.
- Onsets (`onsets=True`, `online_onsets`): librosa's onset strength every 512 samples, a
  causal peak pick for "onset" events, `pulse(t)` like `beats.pulse_curve`, and "beat"
  events predicted from the tempo and phase of the last 8 s (librosa has no online tracker).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ganterp_fast.engine.analysis.analyze import Analysis, AnalysisOptions
from ganterp_fast.engine.analysis.online_onsets import LiveEvent, OnsetStream, Ring
from ganterp_fast.engine.analysis.spectrogram import HOP_LENGTH, N_FFT, spectrogram
from ganterp_fast.engine.errors import InputError

if TYPE_CHECKING:
    from ganterp_fast.engine.audio.source import Source

log = logging.getLogger(__name__)

LEVELS = ("peak", "hold", "calibrated")
HOLD_RELEASE_S = 30.0  # level="hold": time constant of the release
CALIBRATION_S = 10.0  # level="calibrated": seconds whose largest distance sets the level
GLIDE_S = 0.25  # u moves at most one unit per GLIDE_S seconds
HISTORY_S = 10.0  # how far back position(t) and pulse(t) can look
_SEGMENTS_KEPT = 8  # segments whose mean mass is the expected mass of the next one
_FIRST_SEGMENT = 3  # before any segment: its expected length in rolling_lengths (offline median on real music: 3.0)
_KNEE = 0.8  # the target alpha follows the mass linearly up to here


@dataclass(frozen=True)
class LivePoint:
    """An inflection point as it became known."""

    index: int  # 0 for the start, 1, 2, ... in order
    column: int  # spectrogram column (as the offline inflection_points)
    time_s: float  # the column's centre, as Analysis.inflection_times (point 0: 0)
    detected_at_s: float  # audio time (samples fed / sample rate) when it became known


def _alpha(x: float) -> float:
    """The target alpha for a mass x times the expected one: x up to _KNEE, then towards 1, never 1."""
    if x <= _KNEE:
        return max(x, 0.0)
    rest = 1.0 - _KNEE
    return _KNEE + rest * (1.0 - math.exp(-(x - _KNEE) / rest))


class OnlineAnalysis:
    """The seed's analysis on a stream: `feed` blocks of mono samples, read points, u and the pulse."""

    def __init__(
        self,
        sample_rate: int,
        options: AnalysisOptions = AnalysisOptions(),
        *,
        onsets: bool = False,
        level: str = "peak",
    ) -> None:
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise InputError(f"sample rate must be a positive integer, got {sample_rate}")
        if level not in LEVELS:
            raise InputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if options.analysis_source != "mix":
            raise InputError(
                f"analysis source {options.analysis_source!r} is offline only (HPSS needs seconds of "
                "future): the live analysis runs on the mix"
            )
        if options.snap_to_beats:
            raise InputError("snap to beats is offline only (the beat tracker needs the whole song): leave it off")
        self.sample_rate = int(sample_rate)
        self.options = options
        self.level = level
        self._r = int(options.rolling_length)
        self._n = int(options.smoothing)
        self._column_s = HOP_LENGTH / self.sample_rate
        self._samples = 0
        # Spectrogram columns and distances.
        self._pending = np.zeros(0)
        self._last_power: np.ndarray | None = None
        self._num_tv = 0
        # Level.
        self._level = 0.0
        self._hold_decay = math.exp(-self._column_s / HOLD_RELEASE_S)
        self._calibration_tv = max(1, round(CALIBRATION_S / self._column_s))
        # Smoothing: the last N + 1 running sums of the distances (offline: np.cumsum).
        self._cumsum = Ring(self._n + 1)
        self._cumsum.append(0.0)
        self._running = 0.0
        # Signal (unnormalised) and its running mass for the last 2R + 2 columns.
        self._signal = Ring(2 * self._r + 2)
        self._mass = Ring(2 * self._r + 2)
        self._mass_total = 0.0
        self._next_test = self._r + 1
        # Points and u.
        self._points = [LivePoint(0, 0, 0.0, 0.0)]
        self._point_mass = 0.0  # running mass just before the last point's column
        self._segments: deque[float] = deque(maxlen=_SEGMENTS_KEPT)
        self._u = 0.0
        self._u_history = Ring(max(2, round(HISTORY_S / self._column_s)))
        self._u_step = self._column_s / GLIDE_S
        self._events: list[LiveEvent] = []
        self._onsets = OnsetStream(self.sample_rate, history_s=HISTORY_S) if onsets else None

    # ------------------------------------------------------------------ public

    @property
    def time_s(self) -> float:
        """Audio time fed so far."""
        return self._samples / self.sample_rate

    @property
    def points(self) -> list[LivePoint]:
        """The inflection points known so far; point 0 is the start."""
        return list(self._points)

    @property
    def delay_s(self) -> float:
        """The look-ahead of the search: from a point's time to the audio that confirms it (plus a block)."""
        ahead = self._r + (1 if self._n == 0 else 0)
        return (ahead * HOP_LENGTH + N_FFT / 2) / self.sample_rate

    def feed(self, block: np.ndarray) -> list[LiveEvent]:
        """Take the next block of 1-D float samples; return the events that became known in it."""
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 1:
            raise InputError(f"expected 1-D mono samples, got an array of shape {block.shape}")
        self._samples += len(block)
        self._events = []
        for tv in self._distances(block):
            self._column(tv)
        if self._onsets is not None:
            self._events.extend(self._onsets.feed(block, self.time_s))
        return self._events

    def position(self, t: float | None = None) -> float:
        """The path position u at audio time t (default: now); column j sits at j * 128 / sample rate.

        Times after the newest column give its u; times older than HISTORY_S the oldest kept.
        """
        if t is None:
            return self._u
        return self._u_history.at(float(t) / self._column_s)

    def pulse(self, t: float | None = None) -> float:
        """The onset pulse in [0, 1] at audio time t (default: now); 0 without onsets."""
        if self._onsets is None:
            return 0.0
        return self._onsets.pulse(self.time_s if t is None else float(t))

    def buffer_sizes(self) -> dict[str, int]:
        """Values held in each rolling buffer (constant once the stream is under way)."""
        sizes = {
            "pending_samples": len(self._pending),
            "running_sums": len(self._cumsum.values),
            "signal": len(self._signal.values),
            "u_history": len(self._u_history.values),
            "segments": len(self._segments),
            "events": len(self._events),
        }
        if self._onsets is not None:
            sizes.update(self._onsets.buffer_sizes())
        return sizes

    # ------------------------------------------------------------------ columns

    def _distances(self, block: np.ndarray) -> np.ndarray:
        """The TV distances of the columns this block completes (mean |difference| over bins)."""
        self._pending = np.concatenate([self._pending, block])
        usable = (len(self._pending) - N_FFT) // HOP_LENGTH + 1 if len(self._pending) >= N_FFT else 0
        if usable == 0:
            return np.zeros(0)
        power = spectrogram(self._pending[: (usable - 1) * HOP_LENGTH + N_FFT], self.sample_rate).T
        self._pending = self._pending[usable * HOP_LENGTH :]
        with_previous = power if self._last_power is None else np.concatenate([self._last_power[None, :], power])
        self._last_power = power[-1].copy()
        return np.abs(np.diff(with_previous, axis=0)).mean(axis=1)

    def _column(self, tv: float) -> None:
        """One new distance: the level, the smoothed signal, the search and u."""
        tv = float(tv)
        self._num_tv += 1
        if self.level == "hold":
            self._level = max(tv, self._level * self._hold_decay)
        elif self.level == "peak" or self._num_tv <= self._calibration_tv:
            self._level = max(tv, self._level)
        if self._n == 0:
            self._value(tv)
            return
        self._running += tv
        self._cumsum.append(self._running)
        count = self._cumsum.count - 1  # distances summed
        if count < self._n:
            return
        value = (self._cumsum[count] - self._cumsum[count - self._n]) / float(self._n)
        if count == self._n:  # offline pads the first N values with the first full mean
            for _ in range(self._n):
                self._value(value)
        self._value(value)

    def _value(self, value: float) -> None:
        """The next signal value (unnormalised): searches the positions it completes, then moves u."""
        self._signal.append(value)
        self._mass_total += value
        self._mass.append(self._mass_total)
        if self.level != "calibrated" or self._num_tv >= self._calibration_tv:
            while self._next_test + self._r < self._signal.count:
                self._test(self._next_test)
        self._advance()

    def _test(self, c: int) -> None:
        """The seed's test at position c (its loop's i = c - R - 1) on the window divided by the level."""
        r = self._r
        level = self._level
        a = self._signal.span(c - r - 1, c + r + 1) / level if level > 0 else np.zeros(2 * r + 2)
        x, before, after = a[r + 1], a[r], a[r + 2]
        prev_mean, next_mean = np.mean(a[0:r]), np.mean(a[r + 2 : 2 * r + 2])
        threshold = self.options.threshold
        hit = (
            np.sign(x - prev_mean) == np.sign(x - next_mean)
            and np.sign(x - before) == np.sign(x - after)
            and abs(x - prev_mean) > threshold
            and abs(x - next_mean) > threshold
        )
        if not hit:
            self._next_test = c + 1
            return
        self._next_test = c + r
        kind = self.options.inflection_type
        if (kind == "min" and (x > before or x > self.options.absolute_threshold)) or (kind == "max" and x < before):
            return
        self._point(c)

    def _point(self, c: int) -> None:
        mass_before = self._mass[c - 1] if c > 0 else 0.0
        self._segments.append(mass_before - self._point_mass)
        self._point_mass = mass_before
        index = len(self._points)
        point = LivePoint(index, c, (c * HOP_LENGTH + N_FFT / 2) / self.sample_rate, self.time_s)
        self._points.append(point)
        self._events.append(LiveEvent("inflection", point.time_s, point.detected_at_s, index))
        log.debug("inflection point %d at %.3f s, known at %.3f s", index, point.time_s, point.detected_at_s)

    def _advance(self) -> None:
        """u for the newest signal column: toward the target, at most one unit per GLIDE_S."""
        if self._segments:
            expected = sum(self._segments) / len(self._segments)
        else:
            expected = self._mass_total / self._mass.count * _FIRST_SEGMENT * self._r
        mass = self._mass_total - self._point_mass
        x = mass / expected if expected > 0 else (1.0 if mass > 0 else 0.0)
        target = len(self._points) - 1 + _alpha(x)
        self._u = min(max(target, self._u), self._u + self._u_step)
        self._u_history.append(self._u)


# --------------------------------------------------------------------------- a file, as if playing

MATCH_TOLERANCE_S = 0.25  # a live point matches an offline one this close in time


@dataclass(frozen=True)
class LiveAnalysis:
    """A file played through `OnlineAnalysis`, beside the offline analysis of the same samples."""

    points: list[LivePoint]
    events: list[LiveEvent]
    offline: Analysis
    level: str
    delay_s: float
    block_size: int
    seconds: float  # wall-clock time of the live pass

    def agreement(self, tolerance_s: float = MATCH_TOLERANCE_S) -> dict[str, Any]:
        """How far the live points agree with the offline ones (the start and the end left out)."""
        live = np.array([p.time_s for p in self.points[1:]])
        offline = self.offline.inflection_times[1:-1]
        return agreement(live, offline, np.array([p.detected_at_s - p.time_s for p in self.points[1:]]), tolerance_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `analyze --live --json` schema)."""
        off = self.offline
        return {
            "source": off.source,
            "sample_rate": off.sample_rate,
            "duration_s": off.duration_s,
            "parameters": {**asdict(off.options), "start": off.start, "duration": off.duration},
            "level": self.level,
            "delay_s": self.delay_s,
            "block_size": self.block_size,
            "inflection_points": [{**asdict(p), "delay_s": p.detected_at_s - p.time_s} for p in self.points],
            "detected_at_s": [p.detected_at_s for p in self.points],
            "events": [asdict(e) for e in self.events if e.kind != "inflection"],
            "offline": {
                "inflection_points": off.inflection_points.tolist(),
                "inflection_times_s": off.inflection_times.tolist(),
            },
            "agreement": self.agreement(),
            "realtime_factor": off.duration_s / self.seconds if self.seconds > 0 else None,
        }


def matched_differences(live: np.ndarray, offline: np.ndarray, tolerance_s: float) -> list[float]:
    """|time difference| of live and offline points matched one to one, closest first, within `tolerance_s`."""
    pairs = sorted(
        (abs(a - b), i, j) for i, a in enumerate(live) for j, b in enumerate(offline) if abs(a - b) <= tolerance_s
    )
    used_live: set[int] = set()
    used_offline: set[int] = set()
    differences = []
    for d, i, j in pairs:
        if i not in used_live and j not in used_offline:
            used_live.add(i)
            used_offline.add(j)
            differences.append(float(d))
    return differences


def agreement(live: np.ndarray, offline: np.ndarray, delays: np.ndarray, tolerance_s: float) -> dict[str, Any]:
    """Counts, precision and recall of the matched points, and the spread of their times and delays."""
    differences = matched_differences(live, offline, tolerance_s)

    def stats(values: Any) -> tuple[float | None, float | None]:
        if len(values) == 0:
            return None, None
        return float(np.median(values)), float(np.percentile(values, 95))

    median_difference, p95_difference = stats(differences)
    median_delay, p95_delay = stats(delays)
    return {
        "tolerance_s": tolerance_s,
        "live": len(live),
        "offline": len(offline),
        "matched": len(differences),
        "precision": len(differences) / len(live) if len(live) else None,
        "recall": len(differences) / len(offline) if len(offline) else None,
        "median_abs_difference_s": median_difference,
        "p95_abs_difference_s": p95_difference,
        "median_delay_s": median_delay,
        "p95_delay_s": p95_delay,
    }


def analyze_live(
    path_or_source: str | os.PathLike[str] | Source,
    options: AnalysisOptions | None = None,
    *,
    block_size: int = 1024,
    onsets: bool = False,
    level: str = "peak",
    start: float = 0.0,
    duration: float | None = None,
) -> LiveAnalysis:
    """Play channel 0 of a file through `OnlineAnalysis` in blocks, as if it were playing, and
    analyse it offline too. `block_size` samples per block; the rest as `OnlineAnalysis`."""
    from ganterp_fast.engine.analysis.analyze import analyze
    from ganterp_fast.engine.audio.decode import iter_channel0
    from ganterp_fast.engine.audio.source import open_source

    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise InputError(f"block size must be a whole number of samples >= 1, got {block_size!r}")
    options = options or AnalysisOptions()
    source = open_source(path_or_source, start=start, duration=duration)
    online = OnlineAnalysis(source.sample_rate, options, onsets=onsets, level=level)
    events: list[LiveEvent] = []
    began = time.perf_counter()
    for block in iter_channel0(source.info, start=source.start, duration=source.duration, block_size=block_size):
        events.extend(online.feed(block))
    seconds = time.perf_counter() - began
    offline = analyze(source, options)
    if online.time_s == 0:
        raise InputError(f"{source.path} holds no audio samples")
    return LiveAnalysis(online.points, events, offline, level, online.delay_s, block_size, seconds)
