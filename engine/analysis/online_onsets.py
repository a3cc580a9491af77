"""Onsets, the onset pulse and beats on a stream, for the live analysis (`online`).

librosa's onset strength (log-power mel spectrogram, positive first difference, mean over
bands) on 2048-sample windows every 512 samples (librosa's mel filters made once and numpy's
FFT: within 2e-6 dB of `librosa.feature.melspectrogram`, 2.5 times quicker in small blocks),
each frame normalised by a peak hold that releases over 20 s; a causal peak pick with one frame of look-ahead (librosa's
`onset_detect` windows: 30 ms before for the maximum, 100 ms for the mean, delta 0.07, 30 ms
wait) gives "onset" events; the pulse jumps with the strength and decays with 0.15 s as
`beats.pulse_curve`. Beats: librosa has no online tracker, so every second the tempo of the
last 8 s of strength (librosa's estimate) and the phase whose comb of beats collects the most
strength predict the next beats; each "beat" is announced when the audio reaches its time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ganterp_fast.engine.analysis.beats import ONSET_HOP, ONSET_N_FFT
from ganterp_fast.engine.errors import MissingExtraError

_PULSE_DECAY_S = 0.15  # as beats.pulse_curve
_ONSET_RELEASE_S = 20.0  # release of the onset strength's peak hold
_ONSET_DELTA = 0.07  # librosa.onset.onset_detect's delta, on the normalised strength
_TEMPO_WINDOW_S = 8.0
_TEMPO_EVERY_S = 1.0


@dataclass(frozen=True)
class LiveEvent:
    """Something the stream found: an inflection point, an onset or a beat."""

    kind: str  # "inflection", "onset" or "beat"
    time_s: float
    detected_at_s: float
    index: int  # point index for inflections, running count for onsets and beats
    strength: float = 1.0


def _librosa():  # type: ignore[no-untyped-def]
    try:
        import librosa
    except ImportError:
        raise MissingExtraError("live onsets and beats", "cpu") from None
    return librosa


class Ring:
    """The last `size` values of a sequence, addressed by their index in the whole sequence."""

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size)
        self.count = 0

    def append(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def __getitem__(self, i: int) -> float:
        return float(self.values[i % len(self.values)])

    def span(self, begin: int, end: int) -> np.ndarray:
        """Values begin..end-1 in order (all within the last `size`)."""
        return self.values[np.arange(begin, end) % len(self.values)]

    def at(self, x: float) -> float:
        """Linear interpolation at fractional index x, clamped to the values kept."""
        if self.count == 0:
            return 0.0
        lo = max(0.0, self.count - len(self.values))
        x = min(max(x, lo), self.count - 1)
        i = int(x)
        frac = x - i
        return self[i] if frac == 0 else self[i] * (1 - frac) + self[i + 1] * frac


class OnsetStream:
    """librosa's onset strength per 512 samples, a causal peak pick, the pulse and a beat estimate."""

    def __init__(self, sample_rate: int, *, history_s: float = 10.0) -> None:
        # librosa's melspectrogram(center=False) with its filters and periodic Hann window made once.
        self._mel = _librosa().filters.mel(sr=sample_rate, n_fft=ONSET_N_FFT, n_mels=128).astype(np.float32)
        self._window = np.hanning(ONSET_N_FFT + 1)[:-1].astype(np.float32)

        self.sample_rate = sample_rate
        self._hop_s = ONSET_HOP / sample_rate
        self._pending = np.zeros(ONSET_N_FFT // 2, dtype=np.float32)  # windows centred on sample t * 512
        self._last_db: np.ndarray | None = None
        self._frames = 0
        self._level = 0.0
        self._release = math.exp(-self._hop_s / _ONSET_RELEASE_S)
        self._decay = math.exp(-self._hop_s / _PULSE_DECAY_S)
        self._pre_max = max(1, round(0.03 / self._hop_s))
        self._pre_avg = max(1, round(0.1 / self._hop_s))
        self._wait = max(1, round(0.03 / self._hop_s))
        self._recent = Ring(max(2 * self._pre_avg, round(_TEMPO_WINDOW_S / self._hop_s)))
        self._pulse = Ring(max(2, round(history_s / self._hop_s)))
        self._last_onset = -(10**9)
        self._onset_count = 0
        self._beat_count = 0
        self._period = 0.0  # seconds; 0: no tempo yet
        self._next_beat = math.inf
        self._last_beat = -math.inf
        self._next_tempo = _TEMPO_WINDOW_S / 2

    def buffer_sizes(self) -> dict[str, int]:
        return {
            "onset_pending": len(self._pending),
            "onset_recent": len(self._recent.values),
            "pulse_history": len(self._pulse.values),
        }

    def pulse(self, t: float) -> float:
        newest = (self._pulse.count - 1) * self._hop_s
        if self._pulse.count and t > newest:
            return self._pulse[self._pulse.count - 1] * math.exp(-(t - newest) / _PULSE_DECAY_S)
        return self._pulse.at(t / self._hop_s)

    def feed(self, block: np.ndarray, now: float) -> list[LiveEvent]:
        self._pending = np.concatenate([self._pending, block.astype(np.float32)])
        usable = (len(self._pending) - ONSET_N_FFT) // ONSET_HOP + 1 if len(self._pending) >= ONSET_N_FFT else 0
        events: list[LiveEvent] = []
        if usable:
            samples = self._pending[: (usable - 1) * ONSET_HOP + ONSET_N_FFT]
            frames = np.lib.stride_tricks.sliding_window_view(samples, ONSET_N_FFT)[::ONSET_HOP]
            spectrum = np.fft.rfft(frames * self._window, axis=1)
            power = self._mel @ (spectrum.real**2 + spectrum.imag**2).T.astype(np.float32)
            db = 10.0 * np.log10(np.maximum(power, 1e-10))  # librosa.power_to_db(top_db=None)
            previous = db[:, :1] if self._last_db is None else self._last_db[:, None]
            strength = np.maximum(0.0, np.diff(np.concatenate([previous, db], axis=1), axis=1)).mean(axis=0)
            self._last_db = db[:, -1].copy()
            self._pending = self._pending[usable * ONSET_HOP :]
            for value in strength:
                events.extend(self._frame(float(value), now))
        events.extend(self._beats(now))
        return events

    def _frame(self, value: float, now: float) -> list[LiveEvent]:
        """One onset frame: its pulse, and an onset at the previous frame if that was a peak."""
        self._level = max(value, self._level * self._release)
        e = min(value / self._level, 1.0) if self._level > 0 else 0.0
        self._recent.append(e)
        previous_pulse = self._pulse[self._pulse.count - 1] if self._pulse.count else 0.0
        self._pulse.append(max(e, previous_pulse * self._decay))
        self._frames += 1
        n = self._recent.count - 2  # the candidate: one frame of look-ahead
        if n < self._pre_avg:
            return []
        x = self._recent[n]
        window = self._recent.span(n - self._pre_max, n + 2)
        average = float(np.mean(self._recent.span(n - self._pre_avg, n + 1)))
        if x < window.max() or x < average + _ONSET_DELTA or n - self._last_onset <= self._wait:
            return []
        self._last_onset = n
        self._onset_count += 1
        return [LiveEvent("onset", n * self._hop_s, now, self._onset_count, x)]

    def _beats(self, now: float) -> list[LiveEvent]:
        """Beats whose predicted time the audio has reached; re-estimate tempo and phase every second."""
        events = []
        while self._next_beat <= now:
            self._beat_count += 1
            events.append(LiveEvent("beat", self._next_beat, now, self._beat_count))
            self._last_beat = self._next_beat
            self._next_beat += self._period
        if now >= self._next_tempo:
            self._next_tempo = now + _TEMPO_EVERY_S
            self._estimate(now)
        return events

    def _estimate(self, now: float) -> None:
        kept = min(self._recent.count, len(self._recent.values))
        envelope = self._recent.span(self._recent.count - kept, self._recent.count)
        if kept < 4 * self._pre_avg or not np.any(envelope > 0):
            return
        tempo = _librosa().feature.tempo(onset_envelope=envelope, sr=self.sample_rate, hop_length=ONSET_HOP)
        bpm = float(np.ravel(tempo)[0])
        if not 30 <= bpm <= 300:
            return
        period = 60.0 / bpm / self._hop_s  # in onset frames
        # The phase: the comb of beats over the window that collects the most onset strength.
        offsets = np.arange(int(period) + 1)
        beats = np.arange(0, kept - offsets[-1], period)
        scores = [envelope[np.minimum((beats + o).astype(int), kept - 1)].sum() for o in offsets]
        first = self._recent.count - kept + int(offsets[int(np.argmax(scores))])
        last = first + period * int((self._recent.count - 1 - first) / period)
        self._period = period * self._hop_s
        following = last * self._hop_s + self._period
        while following <= now or following < self._last_beat + 0.5 * self._period:
            following += self._period
        self._next_beat = following
