"""The GANterpretations audio analysis, exact to the original, vectorised and streaming.

spectrogram -> total-variation distances -> smoothed signal -> inflection points -> alphas.

The conventions are those the original code ran with: matplotlib's `specgram` defaults
(NFFT 256, overlap 128, symmetric Hann window, one-sided PSD, linear power) on channel 0 at
the file's own sample rate; `tv[i] = mean(|S[:, i+1] - S[:, i]|)` divided by its maximum; a
trailing running mean; the seed's `get_inflection_points` loop; per-segment cumulative-sum
alphas. Every index it returns equals the one the seed's plain loop returns. Smoothing 0 is
the seed document's own algorithm: the loop runs on the TV distances themselves.

The inflection-point search is in `inflection`; `inflection_points` is importable from here too.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ganterp_fast.engine.analysis.beats import ONSET_HOP, SOURCES
from ganterp_fast.engine.analysis.inflection import INFLECTION_TYPES, inflection_points
from ganterp_fast.engine.errors import InputError

if TYPE_CHECKING:
    from ganterp_fast.engine.audio.source import Source

log = logging.getLogger(__name__)

N_FFT = 256  # matplotlib.mlab.specgram's default NFFT
HOP_LENGTH = 128  # NFFT - noverlap, with specgram's default noverlap of 128
NUM_BINS = N_FFT // 2 + 1  # one-sided spectrum: 129 bins

# Spectrogram columns computed per FFT call: bounds the working memory (about 16 MB of
# float64 frames) whatever the length of the audio.
_COLUMNS_PER_CHUNK = 8192
# Columns of the plotted spectrogram are averaged down to at most this many.
_PLOT_COLUMNS = 2000


@dataclass(frozen=True)
class AnalysisOptions:
    """Parameters of the analysis; the defaults are the published example's."""

    threshold: float = 1e-2
    inflection_type: str = "min"
    absolute_threshold: float = 8e-2
    rolling_length: int = 200
    smoothing: int = 256
    #: "mix", or the "harmonic" / "percussive" part (librosa's HPSS) that the analysis runs on.
    analysis_source: str = "mix"
    #: Move each inflection point to the nearest beat of librosa's beat tracker (first and last stay).
    snap_to_beats: bool = False
    #: Keep librosa's onset strength envelope of the mix (for the pulse and plots).
    onsets: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise InputError(f"threshold must be a finite number >= 0, got {self.threshold}")
        if self.inflection_type not in INFLECTION_TYPES:
            raise InputError(
                f"inflection type must be one of {', '.join(INFLECTION_TYPES)}, got {self.inflection_type!r}"
            )
        if not math.isfinite(self.absolute_threshold):
            raise InputError(f"absolute threshold must be a finite number, got {self.absolute_threshold}")
        if int(self.rolling_length) != self.rolling_length or self.rolling_length < 1:
            raise InputError(f"rolling length must be an integer >= 1, got {self.rolling_length}")
        if int(self.smoothing) != self.smoothing or self.smoothing < 0:
            raise InputError(f"smoothing must be an integer >= 0 (0: none), got {self.smoothing}")
        if self.analysis_source not in SOURCES:
            raise InputError(f"analysis source must be one of {', '.join(SOURCES)}, got {self.analysis_source!r}")

    @property
    def uses_librosa(self) -> bool:
        """Whether the analysis needs more than the seed's method (HPSS, beats or onsets)."""
        return self.analysis_source != "mix" or self.snap_to_beats or self.onsets


@dataclass(frozen=True)
class Analysis:
    """The result of `analyze`: one value of `signal` and `alphas` per spectrogram column."""

    sample_rate: int
    num_samples: int
    num_columns: int
    tv: np.ndarray
    signal: np.ndarray
    inflection_points: np.ndarray
    alphas: np.ndarray
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    source: str | None = None
    #: Decibel spectrogram averaged down to at most ~2000 columns, for plots (or None).
    plot_spectrogram: np.ndarray | None = field(default=None, repr=False)
    hop_length: int = HOP_LENGTH
    n_fft: int = N_FFT
    #: librosa's onset strength envelope of the mix, one value per `onset_hop_length` samples (or None).
    onset_envelope: np.ndarray | None = field(default=None, repr=False)
    onset_hop_length: int = ONSET_HOP
    #: Beat times in seconds from librosa's beat tracker (with snap_to_beats; else None).
    beat_times: np.ndarray | None = field(default=None, repr=False)
    #: The inflection points before they were snapped to beats (with snap_to_beats; else None).
    unsnapped_points: np.ndarray | None = field(default=None, repr=False)
    #: The excerpt of the source analysed: its start in seconds and the length asked for (None: to the end).
    start: float = 0.0
    duration: float | None = None

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def column_rate(self) -> float:
        """Spectrogram columns per second: the original's frame rate (344.5 at 44.1 kHz)."""
        return self.sample_rate / self.hop_length

    def column_times(self) -> np.ndarray:
        """Centre of each spectrogram column in seconds from the excerpt's start (as specgram's t)."""
        return (np.arange(self.num_columns) * self.hop_length + self.n_fft / 2) / self.sample_rate

    @property
    def inflection_times(self) -> np.ndarray:
        return self.column_times()[self.inflection_points]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `analyze --json` schema)."""
        return {
            "source": self.source,
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "n_fft": self.n_fft,
            "num_columns": self.num_columns,
            "num_samples": self.num_samples,
            "duration_s": self.duration_s,
            "parameters": {**asdict(self.options), "start": self.start, "duration": self.duration},
            "inflection_points": self.inflection_points.tolist(),
            "inflection_times_s": self.inflection_times.tolist(),
            "tv": self.tv.tolist(),
            "signal": self.signal.tolist(),
            "alphas": self.alphas.tolist(),
            **({"beat_times_s": self.beat_times.tolist()} if self.beat_times is not None else {}),
            **({"unsnapped_points": self.unsnapped_points.tolist()} if self.unsnapped_points is not None else {}),
            **(
                {"onset_hop_length": self.onset_hop_length, "onset_envelope": self.onset_envelope.tolist()}
                if self.onset_envelope is not None
                else {}
            ),
        }


# --------------------------------------------------------------------------- spectrogram


def _window() -> np.ndarray:
    # mlab.window_hanning: the symmetric numpy Hann window.
    return np.hanning(N_FFT)


def _psd_columns(frames: np.ndarray, sample_rate: int, window: np.ndarray) -> np.ndarray:
    """One-sided PSD of each row of `frames` [n, NFFT], scaled exactly as mlab does.

    Returns [n, 129] (columns of the spectrogram as rows, contiguous for the TV mean).
    """
    spectrum = np.fft.rfft(frames * window, n=N_FFT, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    power[:, 1:-1] *= 2.0  # one-sided: double all but DC and Nyquist
    power /= sample_rate
    power /= (window**2).sum()
    return power


def spectrogram(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The whole spectrogram [129, T] of `samples`, as `matplotlib.mlab.specgram(x, Fs=sr)[0]`.

    For analysis of long audio use `analyze`, which streams; this is for plots and tests.
    """
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < N_FFT:
        x = np.concatenate([x, np.zeros(N_FFT - len(x))])
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]
    return _psd_columns(frames, sample_rate, _window()).T


class _StreamingTV:
    """Feeds blocks of samples; keeps only the TV distances (and a small plot image)."""

    def __init__(self, sample_rate: int, *, plot_group: int = 0) -> None:
        self.sample_rate = sample_rate
        self._window = _window()
        self._pending = np.zeros(0, dtype=np.float64)
        self._last_column: np.ndarray | None = None
        self._tv: list[np.ndarray] = []
        self.num_samples = 0
        self.num_columns = 0
        self._plot_group = plot_group
        self._plot_acc = np.zeros(NUM_BINS)
        self._plot_count = 0
        self._plot: list[np.ndarray] = []

    def feed(self, block: np.ndarray) -> None:
        self.num_samples += len(block)
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float64)])
        usable = (len(self._pending) - N_FFT) // HOP_LENGTH + 1 if len(self._pending) >= N_FFT else 0
        done = 0
        while done < usable:
            n = min(_COLUMNS_PER_CHUNK, usable - done)
            begin = done * HOP_LENGTH
            frames = np.lib.stride_tricks.sliding_window_view(
                self._pending[begin : begin + (n - 1) * HOP_LENGTH + N_FFT], N_FFT
            )[::HOP_LENGTH]
            self._columns(_psd_columns(frames, self.sample_rate, self._window))
            done += n
        self._pending = self._pending[usable * HOP_LENGTH :]

    def finish(self) -> None:
        if self.num_columns == 0 and self.num_samples > 0:
            # Shorter than one window: specgram zero-pads to NFFT and gives one column.
            padded = np.concatenate([self._pending, np.zeros(N_FFT - len(self._pending))])
            self._columns(_psd_columns(padded[None, :], self.sample_rate, self._window))
        if self._plot_count:
            self._plot.append(self._plot_acc / self._plot_count)

    def _columns(self, power: np.ndarray) -> None:
        if self._last_column is not None:
            power_with_previous = np.concatenate([self._last_column[None, :], power])
        else:
            power_with_previous = power
        if len(power_with_previous) > 1:
            self._tv.append(np.abs(np.diff(power_with_previous, axis=0)).mean(axis=1))
        self._last_column = power[-1].copy()
        self.num_columns += len(power)
        if self._plot_group:
            self._accumulate_plot(power)

    def _accumulate_plot(self, power: np.ndarray) -> None:
        i = 0
        while i < len(power):
            take = min(self._plot_group - self._plot_count, len(power) - i)
            self._plot_acc += power[i : i + take].sum(axis=0)
            self._plot_count += take
            i += take
            if self._plot_count == self._plot_group:
                self._plot.append(self._plot_acc / self._plot_count)
                self._plot_acc = np.zeros(NUM_BINS)
                self._plot_count = 0

    def tv(self) -> np.ndarray:
        return np.concatenate(self._tv) if self._tv else np.zeros(0)

    def plot_image(self) -> np.ndarray | None:
        if not self._plot:
            return None
        power = np.stack(self._plot, axis=1)
        return 10.0 * np.log10(np.maximum(power, 1e-20))


# --------------------------------------------------------------------------- signal


def normalized_tv(raw_tv: np.ndarray) -> np.ndarray:
    """TV distances divided by their maximum; all zeros (silence) stay zeros, never NaN."""
    tv = np.asarray(raw_tv, dtype=np.float64)
    peak = tv.max() if len(tv) else 0.0
    return tv / peak if peak > 0 and math.isfinite(peak) else np.zeros_like(tv)


def smooth(tv: np.ndarray, smoothing: int) -> np.ndarray:
    """Trailing running mean with the original's padding: one value per spectrogram column.

    `tv[i]` compares columns i and i + 1, so there is one distance fewer than columns.
    N = `smoothing` >= 1: element j is the mean of tv[j - N .. j - 1]; the first N elements
    are copies of the first full mean (audio shorter than N columns is smoothed over all it
    has). N = 0: no smoothing, the distances themselves: element j is tv[j], the change from
    column j to column j + 1, and the last column repeats the last distance. Either way the
    result is one longer than `tv`.
    """
    tv = np.asarray(tv, dtype=np.float64)
    if len(tv) == 0:
        return np.zeros(1)
    if int(smoothing) == 0:
        return np.append(tv, tv[-1])
    n = min(int(smoothing), len(tv))
    cumsum = np.cumsum(np.insert(tv, 0, 0.0))
    valid = (cumsum[n:] - cumsum[:-n]) / float(n)
    return np.concatenate([np.full(n, valid[0]), valid])


def segment_alphas(signal: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per segment [p_k, p_k+1): cumulative sum over its sum, from near 0 to 1; last element 1.

    A segment with no energy (silence) gets a linear ramp instead of NaN.
    """
    s = np.asarray(signal, dtype=np.float64)
    alphas = np.ones(len(s))
    for begin, end in zip(points[:-1], points[1:]):
        segment = s[begin:end]
        total = segment.sum()
        if total > 0 and math.isfinite(total):
            alphas[begin:end] = np.cumsum(segment) / total
        else:
            alphas[begin:end] = np.arange(1, end - begin + 1) / (end - begin)
    return alphas


# --------------------------------------------------------------------------- entry points


def analyze_tv(
    raw_tv: np.ndarray,
    *,
    sample_rate: int,
    num_samples: int,
    num_columns: int,
    options: AnalysisOptions = AnalysisOptions(),
    source: str | None = None,
    plot_spectrogram: np.ndarray | None = None,
) -> Analysis:
    """Everything after the spectrogram: normalisation, smoothing, inflection points, alphas.

    With smoothing 0 the search runs on the TV distances themselves, as the seed document's
    algorithm does: the points equal the seed's `get_inflection_points(tv)`, and point i (a
    column index) marks the change from column i to column i + 1; the last point is then the
    last distance's column, one before the last column. With smoothing N >= 1 it runs on the
    smoothed signal, one value per column (the original code). The alphas follow the signal
    per column either way; the path reaches column j at 128 j / sample_rate seconds of video
    (`Analysis.column_times()` gives the centres of the columns' windows, 128 samples later).
    """
    tv = normalized_tv(raw_tv)
    signal = smooth(tv, options.smoothing)
    signal = signal[:num_columns] if len(signal) >= num_columns else np.pad(signal, (0, num_columns - len(signal)))
    searched = tv[: max(num_columns - 1, 0)] if int(options.smoothing) == 0 else signal
    points = inflection_points(
        searched,
        options.threshold,
        absolute_threshold=options.absolute_threshold,
        type=options.inflection_type,
        rolling_length=options.rolling_length,
    )
    return Analysis(
        sample_rate=sample_rate,
        num_samples=num_samples,
        num_columns=num_columns,
        tv=tv,
        signal=signal,
        inflection_points=points,
        alphas=segment_alphas(signal, points),
        options=options,
        source=source,
        plot_spectrogram=plot_spectrogram,
    )


def analyze_samples(
    samples: np.ndarray | Iterable[np.ndarray],
    sample_rate: int,
    options: AnalysisOptions = AnalysisOptions(),
    *,
    keep_plot: bool = False,
    expected_samples: int | None = None,
    source: str | None = None,
) -> Analysis:
    """Analyse channel-0 samples given as one array or as an iterable of blocks."""
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise InputError(f"sample rate must be a positive integer, got {sample_rate}")
    blocks = [samples] if isinstance(samples, np.ndarray) else samples
    if keep_plot:
        expected = (
            expected_samples
            if expected_samples is not None
            else (len(samples) if isinstance(samples, np.ndarray) else 0)
        )
        expected_columns = max(1, expected // HOP_LENGTH)
        group = max(1, math.ceil(expected_columns / _PLOT_COLUMNS)) if expected else 64
    else:
        group = 0
    stream = _StreamingTV(int(sample_rate), plot_group=group)
    onsets = None
    if options.snap_to_beats or options.onsets:
        from ganterp_fast.engine.analysis.beats import OnsetTracker

        onsets = OnsetTracker(int(sample_rate))
    blocks = _checked(blocks, onsets)
    if options.analysis_source != "mix":
        from ganterp_fast.engine.analysis.beats import hpss_blocks

        blocks = hpss_blocks(blocks, int(sample_rate), options.analysis_source)
    for block in blocks:
        stream.feed(block)
    stream.finish()
    if stream.num_samples == 0:
        raise InputError(f"{source or 'the audio'} holds no audio samples")
    result = analyze_tv(
        stream.tv(),
        sample_rate=int(sample_rate),
        num_samples=stream.num_samples,
        num_columns=stream.num_columns,
        options=options,
        source=source,
        plot_spectrogram=stream.plot_image(),
    )
    if onsets is not None:
        result = _with_onsets(result, onsets.finish())
    return result


def _checked(blocks: Iterable[np.ndarray], onsets: Any) -> Iterator[np.ndarray]:
    """The blocks, each checked to be 1-D and (when `onsets` is a tracker) fed to it first."""
    for block in blocks:
        if block.ndim != 1:
            raise InputError(f"expected 1-D channel samples, got an array of shape {block.shape}")
        if onsets is not None:
            onsets.feed(block)
        yield block


def _with_onsets(result: Analysis, envelope: np.ndarray) -> Analysis:
    """The analysis with the onset envelope, and with snap_to_beats its points moved onto beats."""
    from dataclasses import replace

    from ganterp_fast.engine.analysis.beats import beat_times, snap_points

    options = result.options
    result = replace(result, onset_envelope=envelope if options.onsets else None)
    if not options.snap_to_beats:
        return result
    beats = beat_times(envelope, result.sample_rate)
    if len(beats) == 0:
        log.warning("snap to beats: no beats found, the inflection points stay where they are")
    # A point at column j shows at video time j * hop / sample_rate: the beat's nearest column.
    columns = np.round(beats * result.sample_rate / result.hop_length).astype(np.int64)
    points = snap_points(result.inflection_points, columns)
    return replace(
        result,
        inflection_points=points,
        alphas=segment_alphas(result.signal, points),
        beat_times=beats,
        unsnapped_points=result.inflection_points,
    )


def analyze(
    path: str | os.PathLike[str] | Source,
    options: AnalysisOptions | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
    keep_plot: bool = False,
    **overrides: Any,
) -> Analysis:
    """Analyse channel 0 of an audio or video file at its own sample rate.

    `path` is a file or a `Source` probed already (`source.open_source`); `start` and
    `duration` choose the excerpt of a file (a `Source` carries its own). `options` holds the
    parameters (`AnalysisOptions`); keyword overrides such as `threshold=0.02` replace single
    fields. Memory does not grow with the file's length: samples are streamed and only one
    value per column is kept.
    """
    from dataclasses import replace

    from ganterp_fast.engine.audio.decode import iter_channel0
    from ganterp_fast.engine.audio.source import open_source

    options = replace(options or AnalysisOptions(), **overrides)
    source = open_source(path, start=start, duration=duration)
    blocks = iter_channel0(source.info, start=source.start, duration=source.duration)
    result = analyze_samples(
        blocks,
        source.sample_rate,
        options,
        keep_plot=keep_plot,
        expected_samples=source.num_samples,
        source=os.fspath(source.path),
    )
    result = replace(result, start=source.start, duration=source.duration)
    log.info(
        "analysed %s: %.1f s at %d Hz, %d columns, %d inflection points",
        source.path,
        result.duration_s,
        result.sample_rate,
        result.num_columns,
        len(result.inflection_points),
    )
    return result
