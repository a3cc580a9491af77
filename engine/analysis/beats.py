"""Onsets, beats and the harmonic/percussive split, with librosa, block by block.

Everything here streams: audio arrives in blocks and only one value per onset frame (every
512 samples) is kept, so a long song costs little memory.

- `OnsetTracker` computes librosa's onset strength envelope (log-power mel spectrogram,
  positive first difference, mean over bands) on overlapping blocks of samples. One
  difference from `librosa.onset.onset_strength(y=...)` on the whole song: the decibel floor
  is the fixed -100 dB of `amin` instead of 80 dB under the whole song's peak, which is not
  known until the end; the two differ only in passages more than 80 dB under the peak.
- `beat_times` runs librosa's beat tracker on that envelope; the tempo comes from the mean of
  tempograms taken over blocks of the envelope (the tempogram of a whole long song would
  hold 384 values per onset frame).
- `hpss_blocks` yields the harmonic or percussive part of a stream of blocks (librosa's
  median-filtering HPSS on blocks with a few seconds of context on each side, cropped).
- `snap_points` moves inflection points onto beats; `pulse_curve` turns the onset envelope
  into a peak-and-decay curve in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np

from ganterp_fast.engine.errors import MissingExtraError

log = logging.getLogger(__name__)

ONSET_HOP = 512  # librosa's default hop: one onset value per 512 samples
ONSET_N_FFT = 2048  # librosa's default window
N_MELS = 128
SOURCES = ("mix", "harmonic", "percussive")

_ONSET_BLOCK_FRAMES = 4096  # onset frames per mel spectrogram call (about 47 s at 44.1 kHz)
_TEMPO_BLOCK_FRAMES = 8192  # onset frames per tempogram in the tempo estimate
_HPSS_BLOCK_S = 30.0  # seconds of audio per HPSS call
_HPSS_CONTEXT_S = 2.0  # seconds of context on each side (the median filters span 0.36 s at 44.1 kHz)


def _librosa():  # type: ignore[no-untyped-def]
    try:
        import librosa
    except ImportError:
        raise MissingExtraError("beats, onsets and the harmonic/percussive split", "cpu") from None
    return librosa


class OnsetTracker:
    """Feeds blocks of mono samples; keeps the onset strength envelope (one value per 512 samples).

    Frame t sits where `librosa.onset.onset_strength(y=...)` puts it: windows centred on
    sample t * 512, and the result shifted by two frames as librosa's `center=True` does.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        # center=True: the first window is centred on sample 0, so n_fft/2 zeros come first.
        self._pending = np.zeros(ONSET_N_FFT // 2, dtype=np.float32)
        self._last_db: np.ndarray | None = None
        self._envelope: list[np.ndarray] = []
        self.num_samples = 0

    def feed(self, block: np.ndarray) -> None:
        self.num_samples += len(block)
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        usable = (len(self._pending) - ONSET_N_FFT) // ONSET_HOP + 1 if len(self._pending) >= ONSET_N_FFT else 0
        done = 0
        while done < usable:
            n = min(_ONSET_BLOCK_FRAMES, usable - done)
            begin = done * ONSET_HOP
            self._frames(self._pending[begin : begin + (n - 1) * ONSET_HOP + ONSET_N_FFT])
            done += n
        self._pending = self._pending[usable * ONSET_HOP :]

    def finish(self) -> np.ndarray:
        """The envelope, one value per onset frame: ceil(samples / 512) + 1 values, as librosa gives."""
        total = self.num_samples // ONSET_HOP + 1
        have = sum(len(e) for e in self._envelope)
        if have < total:  # the tail: zero-pad to the last centred window (librosa pads with zeros)
            pad = (total - 1) * ONSET_HOP + ONSET_N_FFT - (have * ONSET_HOP + len(self._pending))
            tail = np.concatenate([self._pending, np.zeros(max(pad, 0), np.float32)])
            tail = tail[: (total - have - 1) * ONSET_HOP + ONSET_N_FFT]
            self._frames(tail)
        envelope = np.concatenate(self._envelope) if self._envelope else np.zeros(0)
        # librosa's onset_strength(center=True) shifts the envelope n_fft // (2 * hop) frames later.
        shift = ONSET_N_FFT // (2 * ONSET_HOP)
        envelope = np.concatenate([np.zeros(shift), envelope])
        return envelope[:total].astype(np.float64)

    def _frames(self, samples: np.ndarray) -> None:
        librosa = _librosa()
        power = librosa.feature.melspectrogram(
            y=samples, sr=self.sample_rate, n_fft=ONSET_N_FFT, hop_length=ONSET_HOP, center=False, n_mels=N_MELS
        )
        db = librosa.power_to_db(power, top_db=None)
        with_previous = db if self._last_db is None else np.concatenate([self._last_db[:, None], db], axis=1)
        strength = librosa.onset.onset_strength(S=with_previous, sr=self.sample_rate, center=False)
        self._envelope.append(strength if self._last_db is None else strength[1:])
        self._last_db = db[:, -1].copy()


def onset_envelope(samples: np.ndarray | Iterable[np.ndarray], sample_rate: int) -> np.ndarray:
    """The onset strength envelope of one array or an iterable of blocks."""
    tracker = OnsetTracker(sample_rate)
    for block in [samples] if isinstance(samples, np.ndarray) else samples:
        tracker.feed(block)
    return tracker.finish()


def estimate_tempo(envelope: np.ndarray, sample_rate: int) -> float:
    """librosa's tempo estimate (beats per minute) from the mean of blockwise tempograms."""
    librosa = _librosa()
    total = None
    count = 0
    for begin in range(0, max(len(envelope), 1), _TEMPO_BLOCK_FRAMES):
        part = envelope[begin : begin + _TEMPO_BLOCK_FRAMES]
        if len(part) == 0:
            break
        tg = librosa.feature.tempogram(onset_envelope=part, sr=sample_rate, hop_length=ONSET_HOP)
        total = tg.sum(axis=1) if total is None else total + tg.sum(axis=1)
        count += tg.shape[1]
    if total is None or count == 0:
        return 120.0
    mean = (total / count)[:, None]
    tempo = librosa.feature.tempo(tg=mean, sr=sample_rate, hop_length=ONSET_HOP, aggregate=None)
    return float(np.ravel(tempo)[0])


def beat_times(envelope: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times in seconds from librosa's beat tracker on the onset envelope (empty for silence)."""
    librosa = _librosa()
    if len(envelope) < 2 or not np.any(envelope > 0):
        return np.zeros(0)
    bpm = estimate_tempo(envelope, sample_rate)
    _, frames = librosa.beat.beat_track(
        onset_envelope=envelope, sr=sample_rate, hop_length=ONSET_HOP, bpm=bpm, units="frames"
    )
    return librosa.frames_to_time(np.asarray(frames), sr=sample_rate, hop_length=ONSET_HOP)


def hpss_blocks(blocks: Iterable[np.ndarray], sample_rate: int, part: str) -> Iterator[np.ndarray]:
    """The harmonic or percussive part of a stream of mono blocks, as a stream of blocks.

    Each call separates `_HPSS_BLOCK_S` seconds with `_HPSS_CONTEXT_S` seconds of context on
    both sides and keeps the middle, so memory stays flat and the seams fall outside the
    kept audio. The output has exactly as many samples as the input.
    """
    if part not in ("harmonic", "percussive"):
        raise ValueError(f"part must be harmonic or percussive, got {part!r}")
    librosa = _librosa()
    # Whole hops (librosa's STFT hop is n_fft / 4 = 512): every block's frames then fall on the
    # whole song's frame grid, and the kept middle equals the whole song's separation.
    hop = ONSET_HOP
    step = max(1, round(_HPSS_BLOCK_S * sample_rate / hop)) * hop
    # Context: at least the median filter's half-width (15 frames) plus a window's overlap (4).
    context = max(24, round(_HPSS_CONTEXT_S * sample_rate / hop)) * hop
    buffer = np.zeros(0, dtype=np.float32)
    emitted = 0  # samples yielded so far
    offset = 0  # sample index of buffer[0]

    def separate(segment: np.ndarray) -> np.ndarray:
        harmonic, percussive = librosa.effects.hpss(segment)
        return harmonic if part == "harmonic" else percussive

    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        while offset + len(buffer) >= emitted + step + context:
            begin = max(emitted - context, offset)
            end = emitted + step + context
            separated = separate(buffer[begin - offset : end - offset])
            yield separated[emitted - begin : emitted - begin + step]
            emitted += step
            keep_from = max(emitted - context, offset)
            buffer = buffer[keep_from - offset :]
            offset = keep_from
    if offset + len(buffer) > emitted:
        begin = max(emitted - context, offset)
        separated = separate(buffer[begin - offset :])
        yield separated[emitted - begin :]


def snap_points(points: np.ndarray, beat_columns: np.ndarray) -> np.ndarray:
    """Inflection points (column indices) moved to the nearest beat column.

    The first and last points stay. Each beat takes at most one point: when several points
    share their nearest beat, the one nearest to it keeps it and the others are dropped. A
    beat on the first or last point is taken by it.
    """
    points = np.asarray(points, dtype=np.int64)
    beats = np.unique(np.asarray(beat_columns, dtype=np.int64))
    if len(points) <= 2 or len(beats) == 0:
        return points.copy()
    first, last = int(points[0]), int(points[-1])
    beats = beats[(beats > first) & (beats < last)]
    if len(beats) == 0:
        return np.array([first, last], dtype=np.int64)
    interior = points[1:-1]
    right = np.clip(np.searchsorted(beats, interior), 0, len(beats) - 1)
    left = np.clip(right - 1, 0, len(beats) - 1)
    nearest = np.where(np.abs(beats[left] - interior) <= np.abs(beats[right] - interior), beats[left], beats[right])
    distance = np.abs(nearest - interior)
    best: dict[int, int] = {}
    for beat, d in zip(nearest.tolist(), distance.tolist()):
        if beat not in best or d < best[beat]:
            best[beat] = d
    dropped = len(interior) - len(best)
    if dropped:
        log.info("snap to beats: %d inflection point%s shared a beat and were merged", dropped, "s"[: dropped != 1])
    return np.array([first, *sorted(best), last], dtype=np.int64)


def pulse_curve(envelope: np.ndarray, hop_s: float, *, decay_s: float = 0.15) -> np.ndarray:
    """The onset envelope as a peak-and-decay curve in [0, 1]: it jumps on each onset and
    relaxes exponentially (time constant `decay_s`) until the next.

    p[i] = max over j <= i of e[j] * exp(-(i - j) * hop_s / decay_s), with e the envelope
    divided by its 99th-percentile peak (clipped at 1), computed without a loop as a running
    maximum in the log domain.
    """
    e = np.asarray(envelope, dtype=np.float64)
    if len(e) == 0:
        return e
    peak = float(np.percentile(e, 99.5)) if np.any(e > 0) else 0.0
    if peak <= 0:
        return np.zeros_like(e)
    e = np.minimum(e / peak, 1.0)
    rate = hop_s / decay_s
    index = np.arange(len(e), dtype=np.float64)
    with np.errstate(divide="ignore"):
        logs = np.log(e) + index * rate
    return np.exp(np.maximum.accumulate(logs) - index * rate)
