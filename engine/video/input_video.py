"""The input's own picture: probed once on the driver, decoded by timestamp wherever frames are made.

`probe_video` finds the first video stream that is a moving picture (cover art in an mp3 is an
attached picture, not a video) and returns `VideoInfo`, plain data. `VideoFrames` opens the
decoder lazily, seeks to the first time asked for (so a segment [start, stop) decodes from its
own first frame's time, exactly as one pass over the whole range would) and returns, for each
increasing time, the frame on screen then: the last one whose timestamp is at or before it.
That works for any frame rate, variable ones included. Only the current and the next decoded
frame are held, so memory is flat.

Times are the soundtrack's: t = 0 is the first sample of the audio stream, so the container
time asked of the video is `audio_origin + t`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ganterp_fast.engine.errors import InputError, RenderError

log = logging.getLogger(__name__)

# A frame whose timestamp is this close after the time asked for counts as on screen then
# (times are computed in floating point; one video tick is far coarser than this).
TOLERANCE_S = 1e-6
# Seeking lands on a keyframe at or before the target; where a demuxer lands after it, these
# earlier targets (seconds before) are tried in turn.
_SEEK_BACKOFF_S = (0.0, 1.0, 5.0, 30.0)


@dataclass(frozen=True)
class VideoInfo:
    """A video stream of the input: where it is and its picture's size and aspect."""

    path: Path
    stream_index: int
    width: int
    height: int
    aspect: float  # display width / height (sample aspect ratio applied)
    audio_origin: float  # container time (s) of the soundtrack's first sample
    codec: str

    @property
    def display_size(self) -> tuple[int, int]:
        """The picture's size as shown: the height kept, the width stretched by the sample aspect."""
        return max(1, round(self.height * self.aspect)), self.height


def probe_video(path: str | os.PathLike[str]) -> VideoInfo | None:
    """The input's first moving video stream, or None where it has none (audio files, cover art)."""
    import av

    file = Path(path)
    try:
        container = av.open(os.fspath(file))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read the video of {file}: {exc}") from exc
    with container:
        streams = [
            s
            for s in container.streams.video
            if not (s.disposition & av.stream.Disposition.attached_pic) and s.codec_context.width > 0
        ]
        if not streams:
            return None
        stream = streams[0]
        context = stream.codec_context
        width, height = int(context.width), int(context.height)
        sar = stream.sample_aspect_ratio or context.sample_aspect_ratio
        aspect = width / height * (float(sar) if sar and sar > 0 else 1.0)
        audio = container.streams.audio[0] if container.streams.audio else None
        origin = 0.0
        if audio is not None and audio.start_time is not None and audio.time_base is not None:
            origin = float(audio.start_time * audio.time_base)
        return VideoInfo(
            path=file,
            stream_index=stream.index,
            width=width,
            height=height,
            aspect=aspect,
            audio_origin=origin,
            codec=context.name,
        )


class VideoFrames:
    """The source picture at increasing soundtrack times, decoded from the first one's time on.

    `at(t)` returns an `av.VideoFrame`: the last frame with timestamp <= t (the first frame for
    a t before it, the last one for a t past the end). Close it (or use `with`) when done.
    """

    def __init__(self, info: VideoInfo, offset: float = 0.0) -> None:
        self.info = info
        self.offset = offset  # added to every time asked: the excerpt's start in the soundtrack
        self._container = None
        self._decoder = None
        self._current = None
        self._next = None
        self._ended = False
        self._last_time: float | None = None

    def _open(self, first: float) -> None:
        import av

        try:
            self._container = av.open(os.fspath(self.info.path))
            stream = self._container.streams[self.info.stream_index]
            stream.thread_type = "AUTO"
            self._stream = stream
        except (av.FFmpegError, OSError) as exc:
            raise RenderError(f"cannot decode the video of {self.info.path}: {exc}") from exc
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if first <= start + TOLERANCE_S:
            self._decoder = self._decode()
            return
        for back in _SEEK_BACKOFF_S:
            target = max(first - back, start)
            self._container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
            self._decoder = self._decode()
            self._next = next(self._decoder, None)
            if self._next is None or self._next.time is None or self._next.time <= first + TOLERANCE_S:
                return
            if target <= start:
                return
        log.debug("seeking %s to %.3f s landed after it; decoding from the start", self.info.path, first)
        self._container.seek(0, stream=stream, backward=True)
        self._decoder = self._decode()
        self._next = None

    def _decode(self):  # -> Iterator[av.VideoFrame]
        import av

        try:
            for frame in self._container.decode(self._stream):
                if frame.time is not None:
                    yield frame
        except av.FFmpegError as exc:
            raise RenderError(f"decoding the video of {self.info.path} failed: {exc}") from exc

    def at(self, t: float):  # -> av.VideoFrame
        """The frame on screen at soundtrack time `t` (seconds from the excerpt's start)."""
        when = self.info.audio_origin + self.offset + t
        if self._last_time is not None and when < self._last_time - TOLERANCE_S:
            raise ValueError(f"times must increase: {when} after {self._last_time}")
        self._last_time = when
        if self._decoder is None:
            self._open(when)
        while not self._ended:
            if self._next is None:
                self._next = next(self._decoder, None)
                if self._next is None:
                    self._ended = True
                    break
            if self._current is None or self._next.time <= when + TOLERANCE_S:
                self._current, self._next = self._next, None
                if self._current.time <= when + TOLERANCE_S:
                    continue
            break
        if self._current is None:
            raise RenderError(f"the video of {self.info.path} has no frames to decode")
        return self._current

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        if self._container is not None:
            self._container.close()
        self._container = self._decoder = self._current = self._next = None

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
