"""A built-in input: a few seconds of generated music, so every command can be tried at once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

EXAMPLE_RATE = 22050
EXAMPLE_SECONDS = 12.0
# Part of the cached file name: bump it whenever example_music changes.
EXAMPLE_VERSION = 2

# A four-chord progression (A minor, F, C, G) in Hz: one chord per bar of 1.5 s.
_CHORDS = [(220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (261.6, 329.6, 392.0), (196.0, 246.9, 293.7)]


def example_music(seconds: float = EXAMPLE_SECONDS, sample_rate: int = EXAMPLE_RATE, *, seed: int = 0) -> np.ndarray:
    """Stereo float32 [2, n] music in sections of 2 s: busy bars (chords, bass, drums)
    alternate with calm ones (a soft held chord), so the analysis finds several changes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    left = np.zeros(n)
    section = 2.0
    beat = 0.25
    for k, start in enumerate(np.arange(0.0, seconds, beat)):
        index = int(start // section)
        chord = _CHORDS[index % len(_CHORDS)]
        if index % 2 == 1:  # calm section: one soft held chord at its start
            if start % section == 0:
                mask = (t >= start) & (t < start + section)
                local = t[mask] - start
                swell = np.minimum(1.0, local * 4) * np.exp(-local * 0.8)
                for f in chord:
                    left[mask] += 0.05 * swell * np.sin(2 * np.pi * f * local)
            continue
        mask = (t >= start) & (t < start + beat * 2)
        local = t[mask] - start
        pluck = np.exp(-local * 6.0) * np.minimum(1.0, local * 300)
        for f in chord:
            left[mask] += 0.18 * pluck * np.sin(2 * np.pi * f * (1 + (k % 3)) * local)
        left[mask] += 0.3 * pluck * np.sin(2 * np.pi * chord[0] / 2 * local)  # bass
        hit = mask & (t < start + 0.08)  # kick and noise snare, alternating
        decay = np.exp(-(t[hit] - start) * 40)
        left[hit] += (
            0.6 * decay * (np.sin(2 * np.pi * 60 * (t[hit] - start)) if k % 2 == 0 else rng.normal(0, 0.7, hit.sum()))
        )
    left /= max(1e-9, np.abs(left).max()) / 0.8
    right = np.roll(left, int(0.01 * sample_rate)) * 0.9  # a little width
    return np.stack([left, right]).astype(np.float32)


def write_example(path: str | os.PathLike[str] | None = None, *, seconds: float = EXAMPLE_SECONDS) -> Path:
    """Write `seconds` of the example music as a 16-bit WAV, unless `path` already exists
    (default: a file in the temporary folder, named for the music's version)."""
    import soundfile

    if path is None:
        folder = Path(tempfile.gettempdir()) / "ganterp-fast"
        folder.mkdir(exist_ok=True)
        path = folder / f"example-music-v{EXAMPLE_VERSION}.wav"
    path = Path(path)
    if not path.exists():
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial.wav")
        soundfile.write(partial, example_music(seconds).T, EXAMPLE_RATE, subtype="PCM_16")
        os.replace(partial, path)
    return path
