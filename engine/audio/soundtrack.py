"""The soundtrack of a video: the input's audio excerpt encoded to AAC as the video is written.

The excerpt is decoded lazily (`audio.iter_audio_frames`), resampled only where AAC lacks the
rate or the layout, and encoded in whole 1024-sample frames up to the video time written so
far (`mux_until`), so memory stays flat and the file is interleaved as it goes. Audio pts
count samples from 0; the encoder's priming becomes the mp4/mov edit list (see `encode`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterable
from fractions import Fraction

from ganterp_fast.engine.audio.decode import AudioInfo, iter_audio_frames

log = logging.getLogger(__name__)

# Rates the AAC encoder accepts (its sampling-frequency table).
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AAC_FRAME_SAMPLES = 1024
# AAC allows at most 6144 bits per channel per 1024-sample frame: 6 bits/sample, 48 kb/s at 8 kHz.
_AAC_MAX_BITS_PER_SAMPLE = 6144 / AAC_FRAME_SAMPLES
_AAC_BITRATE_PER_CHANNEL = 96_000


class Soundtrack:
    """The AAC stream: decodes the excerpt lazily and encodes it in 1024-sample frames up to a time.

    `bitrate`: AAC bits/s, 0 for 96 kb/s per channel within AAC's ceiling at low rates.
    """

    def __init__(
        self, container, info: AudioInfo, *, start: float = 0.0, duration: float | None = None, bitrate: int = 0
    ) -> None:
        import av

        self.rate = info.sample_rate if info.sample_rate in AAC_RATES else _aac_rate(info.sample_rate)
        self.layout = _aac_layout(info)
        self.container = container
        self.stream = container.add_stream("aac", rate=self.rate, layout=self.layout)
        channels = av.AudioLayout(self.layout).nb_channels
        ceiling = int(_AAC_MAX_BITS_PER_SAMPLE * self.rate * channels)
        self.stream.bit_rate = min(bitrate or _AAC_BITRATE_PER_CHANNEL * channels, ceiling)
        self.time_base = Fraction(1, self.rate)
        self.stream.time_base = self.time_base
        self.stream.codec_context.time_base = self.time_base
        needs_resampling = self.rate != info.sample_rate or self.layout != info.layout
        self.resampler = (
            av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate) if needs_resampling else None
        )
        self.fifo = av.AudioFifo()
        self.source: Generator | None = iter_audio_frames(info, start=start, duration=duration)
        self.sent = 0  # samples given to the encoder
        if needs_resampling:
            log.info(
                "soundtrack: %s at %d Hz re-encoded as %s at %d Hz",
                info.layout,
                info.sample_rate,
                self.layout,
                self.rate,
            )

    def _pull(self) -> bool:
        """Move one source frame into the FIFO; False once the source is exhausted (and flushed)."""
        if self.source is None:
            return False
        frame = next(self.source, None)
        if frame is None:
            self.source = None
            converted: Iterable = self.resampler.resample(None) if self.resampler else ()
        else:
            frame.pts = None  # the FIFO keeps the count; pts are set on the way out
            converted = self.resampler.resample(frame) if self.resampler else (frame,)
        for piece in converted:
            piece.pts = None
            self.fifo.write(piece)
        return True

    def _encode(self, frame) -> None:
        frame.pts = self.sent
        frame.time_base = self.time_base
        frame.sample_rate = self.rate
        self.sent += frame.samples
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        """Close the source file now rather than when the generator is collected."""
        if self.source is not None:
            self.source.close()
            self.source = None

    def mux_until(self, seconds: float | None) -> None:
        """Encode whole AAC frames until `seconds` of audio are in (None: all of it, and flush)."""
        limit = math.inf if seconds is None else seconds * self.rate
        while self.sent < limit:
            if self.fifo.samples >= AAC_FRAME_SAMPLES:
                self._encode(self.fifo.read(AAC_FRAME_SAMPLES))
            elif not self._pull():
                break
        if seconds is None:
            if self.fifo.samples:
                self._encode(self.fifo.read())
            self.container.mux(self.stream.encode(None))


def _aac_rate(rate: int) -> int:
    """The AAC rate nearest above `rate` (resampling up loses nothing), or 96 kHz above that."""
    return next((r for r in AAC_RATES if r >= rate), AAC_RATES[-1])


def _aac_layout(info: AudioInfo) -> str:
    """Mono and stereo as they are; 5.1 kept (AAC carries it); anything else mixed to stereo."""
    if info.channels == 1:
        return "mono"
    if info.channels == 6:
        return info.layout if info.layout in ("5.1", "5.1(side)") else "5.1"
    if info.channels != 2:
        log.info("soundtrack: %d channels (%s) mixed down to stereo for AAC", info.channels, info.layout)
    return "stereo"
