"""The spectrogram and its total-variation distances, as matplotlib's `specgram` computes them.

The conventions are those the original code ran with: `specgram`'s defaults (NFFT 256,
overlap 128, symmetric Hann window, one-sided PSD, linear power) on channel 0 at the file's
own sample rate, and `tv[i] = mean(|S[:, i+1] - S[:, i]|)` divided by its maximum.
`StreamingTV` computes the distances block by block, so memory does not grow with the audio.
"""

from __future__ import annotations

import math

import numpy as np

N_FFT = 256  # matplotlib.mlab.specgram's default NFFT
HOP_LENGTH = 128  # NFFT - noverlap, with specgram's default noverlap of 128
NUM_BINS = N_FFT // 2 + 1  # one-sided spectrum: 129 bins

# Spectrogram columns computed per FFT call: bounds the working memory (about 16 MB of
# float64 frames) whatever the length of the audio.
_COLUMNS_PER_CHUNK = 8192


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


class StreamingTV:
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


def normalized_tv(raw_tv: np.ndarray) -> np.ndarray:
    """TV distances divided by their maximum; all zeros (silence) stay zeros, never NaN."""
    tv = np.asarray(raw_tv, dtype=np.float64)
    peak = tv.max() if len(tv) else 0.0
    return tv / peak if peak > 0 and math.isfinite(peak) else np.zeros_like(tv)
