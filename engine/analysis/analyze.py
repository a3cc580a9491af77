"""The GANterpretations audio analysis, exact to the original, vectorised and streaming.

spectrogram -> total-variation distances -> smoothed signal -> inflection points -> alphas.

The spectrogram and its TV distances (matplotlib's `specgram` conventions) are in
`spectrogram`; here are the options, the result and the rest: a trailing running mean, the
seed's `get_inflection_points` loop, per-segment cumulative-sum alphas. Every index it
returns equals the one the seed's plain loop returns. Smoothing 0 is the seed document's own
algorithm: the loop runs on the TV distances themselves.

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
from ganterp_fast.engine.analysis.spectrogram import HOP_LENGTH, N_FFT, StreamingTV, normalized_tv
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.fields import Options, option, real, whole

if TYPE_CHECKING:
    from ganterp_fast.engine.audio.source import Source

log = logging.getLogger(__name__)

# Columns of the plotted spectrogram are averaged down to at most this many.
_PLOT_COLUMNS = 2000


@dataclass(frozen=True)
class AnalysisOptions(Options):
    """Parameters of the analysis; the defaults are the published example's."""

    threshold: float = option(
        1e-2,
        flag="--threshold",
        check=real(0),
        help="how far a peak must stand above the means around it",
    )
    inflection_type: str = option(
        "min",
        flag="--inflection-type",
        choices=INFLECTION_TYPES,
        help="which extrema count as inflection points",
    )
    absolute_threshold: float = option(
        8e-2,
        flag="--absolute-threshold",
        check=real(),
        help="with 'min': minima above this are ignored",
    )
    rolling_length: int = option(
        200,
        flag="--rolling-length",
        check=whole(1),
        metavar="COLUMNS",
        help="window of the means, in spectrogram columns",
    )
    smoothing: int = option(
        256,
        flag="--smoothing",
        check=whole(0, note="0: none"),
        metavar="COLUMNS",
        label="smoothing (columns; 0: none)",
        help="running mean over the TV distances; 0: none",
    )
    analysis_source: str = option(
        "mix",
        flag="--analysis-source",
        choices=SOURCES,
        help="run the analysis on the mix, or on its harmonic or percussive part (librosa's HPSS)",
    )
    snap_to_beats: bool = option(
        False,
        flag="--snap-to-beats",
        help="move each inflection point to the nearest beat (librosa's beat tracker); the first and last stay",
    )
    #: Keep librosa's onset strength envelope of the mix (for the pulse and plots); the CLI sets it with a pulse.
    onsets: bool = option(False)


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


# --------------------------------------------------------------------------- signal


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
    stream = StreamingTV(int(sample_rate), plot_group=group)
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
