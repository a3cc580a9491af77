"""The video writer with real PyAV encoding: what comes back out of the file it writes
(streams, timing, every frame, the soundtrack's length and sync) and that failures leave
nothing behind."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest

from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.video.encode import AudioClip, EncodeOptions, VideoWriter, choose_h264_encoder

FAST = EncodeOptions(preset="ultrafast")


@dataclass
class Decoded:
    container: str
    video_codec: str
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    frames: np.ndarray  # uint8 [N, H, W, 3]
    frame_times: list[Fraction]
    audio_codec: str | None = None
    audio_rate: int = 0
    audio_layout: str = ""
    audio: np.ndarray | None = None  # float32 [channels, n]
    audio_start: float | None = None
    audio_duration: float | None = None  # the container's (edit list) duration, where it has one


def decode(path: Path) -> Decoded:
    with av.open(os.fspath(path)) as container:
        video = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(video):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(frame.pts * frame.time_base)
        result = Decoded(
            container=container.format.name,
            video_codec=video.codec_context.name,
            pix_fmt=video.codec_context.pix_fmt,
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=video.average_rate,
            frames=np.stack(frames),
            frame_times=times,
        )
    with av.open(os.fspath(path)) as container:
        if container.streams.audio:
            audio = container.streams.audio[0]
            decoded = list(container.decode(audio))
            result.audio_codec = audio.codec_context.name
            result.audio_rate = audio.codec_context.sample_rate
            result.audio_layout = audio.codec_context.layout.name
            result.audio = np.concatenate([f.to_ndarray() for f in decoded], 1)
            result.audio_start = float(decoded[0].pts * decoded[0].time_base)
            if audio.duration:
                result.audio_duration = float(audio.duration * audio.time_base)
    return result


def envelope_ms(samples: np.ndarray, rate: int) -> np.ndarray:
    """Peak level per millisecond: rate-independent, sharp at the bursts' edges."""
    edges = np.round(np.arange(int(len(samples) * 1000 / rate)) * rate / 1000).astype(int)
    return np.maximum.reduceat(np.abs(samples), edges)[:-1] if len(edges) > 1 else np.zeros(0)


def lag_ms(decoded: np.ndarray, reference: np.ndarray, *, search: int = 300) -> int:
    """Milliseconds by which `decoded` is late against `reference`."""
    n = min(len(decoded), len(reference))
    a, b = decoded[:n] - decoded[:n].mean(), reference[:n] - reference[:n].mean()
    lags = range(-search, search + 1)
    scores = [np.dot(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)]) for k in lags]
    return lags[int(np.argmax(scores))]


def render(
    path: Path, *, frames: int, fps, size=(64, 48), audio: AudioClip | None = None, batch: int = 7, **kwargs
) -> Path:
    width, height = size
    with VideoWriter(
        path, width=width, height=height, fps=fps, audio=audio, options=kwargs.pop("options", FAST), **kwargs
    ) as writer:
        for first in range(0, frames, batch):
            writer.write(media.frames_rgb(first, min(batch, frames - first), width, height))
        assert writer.frames_written == frames
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "rate,channels,fps,suffix",
    [
        (8000, 1, Fraction(30), ".mp4"),  # AAC's 1024-sample priming is 128 ms here
        (44100, 2, Fraction(30000, 1001), ".mp4"),
        (48000, 6, Fraction(25), ".mov"),
        (22050, 2, Fraction(24), ".mkv"),
    ],
    ids=["8k-mono-mp4", "44k-stereo-ntsc-mp4", "48k-5.1-mov", "22k-stereo-mkv"],
)
def test_frames_and_soundtrack_come_back(tmp_path, rate, channels, fps, suffix):
    source = media.bursts(rate, 5.0, channels=channels)
    wav = media.write_soundfile(tmp_path / "source.wav", source, rate)
    start, duration = 0.75, 3.5
    count = round(duration * fps)
    out = render(tmp_path / f"out{suffix}", frames=count, fps=fps, audio=AudioClip(wav, start=start, duration=duration))
    assert leftovers(tmp_path) == []
    got = decode(out)

    # Video: H.264 yuv420p at the size and rate asked, every frame where it belongs.
    assert (got.video_codec, got.pix_fmt, got.width, got.height) == ("h264", "yuv420p", 64, 48)
    assert got.fps == fps and len(got.frames) == count
    expected = media.frames_rgb(0, count, 64, 48)
    errors = np.abs(got.frames.astype(int) - expected).mean(axis=(1, 2, 3))
    assert errors.max() < 4, f"frame {errors.argmax()} differs by {errors.max():.1f}"
    colours = np.array([media.frame_colour(i) for i in range(count)])
    flat = got.frames[:, :, -4:].reshape(count, -1, 3).mean(axis=1)  # away from the moving bar
    nearest = np.abs(flat[:, None, :] - colours[None]).sum(axis=2).argmin(axis=1)
    np.testing.assert_array_equal(nearest, np.arange(count))
    if suffix != ".mkv":  # matroska stores milliseconds
        assert got.frame_times == [i / fps for i in range(count)]

    # Audio: AAC at the source's rate and layout, as long as the clip, in sync from t = 0.
    assert got.audio_codec == "aac" and got.audio_rate == rate
    assert got.audio_layout == {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    assert got.audio_start == 0.0
    n = round(duration * rate)
    if got.audio_duration is not None:  # mp4/mov: the edit list trims priming and padding
        assert abs(got.audio_duration - duration) < 1 / fps
        assert got.audio_duration == n / rate
    assert n <= got.audio.shape[1] <= n + 1024  # decoders may keep the last frame's padding
    excerpt = source[round(start * rate) : round(start * rate) + n]
    for channel in range(channels):
        if channels == 6 and channel == 3:
            continue  # the LFE channel: AAC keeps only its lowest frequencies
        heard = envelope_ms(got.audio[channel, :n], rate)
        sent = envelope_ms(excerpt[:, channel], rate)
        assert abs(lag_ms(heard, sent)) <= 1, f"channel {channel} is {lag_ms(heard, sent)} ms off"
        assert np.corrcoef(heard, sent)[0, 1] > 0.95


def test_a_rate_aac_lacks_is_resampled_and_stays_in_sync(tmp_path):
    """37.8 kHz (not an AAC rate) and three channels: 44.1 kHz stereo, the envelope in place."""
    source = media.bursts(37800, 3.0, channels=3)
    wav = media.write_soundfile(tmp_path / "odd.wav", source, 37800)
    out = render(tmp_path / "odd.mp4", frames=75, fps=25, audio=AudioClip(wav, start=0.5))
    got = decode(out)
    assert got.audio_rate == 44100 and got.audio_layout == "stereo"
    assert abs(got.audio_duration - 2.5) < 1 / 25
    heard = envelope_ms(got.audio[0], 44100)
    sent = envelope_ms(source[18900:, 0], 37800)
    assert abs(lag_ms(heard, sent)) <= 1 and np.corrcoef(heard[:2400], sent[:2400])[0, 1] > 0.9


def test_sync_holds_to_the_end_of_a_long_soundtrack(tmp_path):
    """Two minutes at 8 kHz and 5 fps: the last bursts are where they were in the source."""
    rate, seconds, fps = 8000, 120.0, 5
    source = media.bursts(rate, seconds)
    wav = media.write_soundfile(tmp_path / "long.wav", source, rate)
    out = render(
        tmp_path / "long.mp4", frames=int(seconds * fps), fps=fps, size=(16, 16), audio=AudioClip(wav), batch=50
    )
    got = decode(out)
    assert got.audio_duration == seconds and len(got.frames) == seconds * fps
    tail = slice(-10 * rate, None)
    heard, sent = envelope_ms(got.audio[0, : len(source)][tail], rate), envelope_ms(source[tail, 0], rate)
    assert abs(lag_ms(heard, sent)) <= 1


def test_audio_is_interleaved_as_the_video_is_written(tmp_path):
    rate = 44100
    wav = media.write_soundfile(tmp_path / "s.wav", media.music(rate, 6.0, channels=2), rate)
    out = render(tmp_path / "i.mp4", frames=150, fps=25, audio=AudioClip(wav), options=EncodeOptions(preset="medium"))
    latest, worst = -1.0, 0.0
    with av.open(os.fspath(out)) as container:
        kinds = []
        for packet in container.demux():
            if packet.dts is None:
                continue
            t = float(packet.dts * packet.time_base)
            worst = max(worst, latest - t)
            latest = max(latest, t)
            kinds.append(packet.stream.type)
    assert worst < 1.0, f"a packet comes {worst:.2f} s after a later one"
    switches = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert switches > 50  # audio and video alternate through the file, not one after the other
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading


def test_no_soundtrack_a_single_frame_shape_and_a_unicode_path(tmp_path):
    (tmp_path / "mis vídeos").mkdir()
    out = tmp_path / "mis vídeos" / "silent ♪ take 2.mp4"
    with VideoWriter(out, width=32, height=32, fps=12, audio=None, options=FAST) as writer:
        for i in range(10):
            writer.write(media.frames_rgb(i, 1, 32, 32)[0])  # [H, W, 3]
    with av.open(os.fspath(out)) as container:
        assert [s.type for s in container.streams] == ["video"]
    assert len(decode(out).frames) == 10


def test_a_clip_running_past_the_end_is_clipped(tmp_path):
    wav = media.write_soundfile(tmp_path / "short.wav", media.bursts(16000, 2.0), 16000)
    out = render(tmp_path / "c.mp4", frames=30, fps=10, audio=AudioClip(wav, start=1.0, duration=5.0))
    assert decode(out).audio_duration == 1.0


# ---------------------------------------------------------------- refusals and failures


def test_an_existing_output_is_never_overwritten_without_asking(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(InputError) as caught:
        VideoWriter(out, width=32, height=32, fps=30, audio=None)
    assert "keep.mp4" in str(caught.value) and "--overwrite" in str(caught.value) and "-y" in str(caught.value)
    assert out.read_bytes() == b"precious" and leftovers(tmp_path) == []
    render(out, frames=3, fps=30, size=(32, 32), overwrite=True)
    assert len(decode(out).frames) == 3


def test_a_new_video_gets_the_umask_permissions_and_a_replaced_one_keeps_its_own(tmp_path):
    """The temporary file is private while written; the finished video is readable as any new file."""
    previous = os.umask(0o027)
    try:
        fresh = render(tmp_path / "fresh.mp4", frames=2, fps=30, size=(32, 32))
        assert fresh.stat().st_mode & 0o777 == 0o640
        kept = tmp_path / "kept.mp4"
        kept.write_bytes(b"old")
        kept.chmod(0o604)
        render(kept, frames=2, fps=30, size=(32, 32), overwrite=True)
        assert kept.stat().st_mode & 0o777 == 0o604 and len(decode(kept).frames) == 2
    finally:
        os.umask(previous)


def test_abort_leaves_nothing(tmp_path):
    out = tmp_path / "gone.mp4"
    wav = media.write_soundfile(tmp_path / "s.wav", media.bursts(8000, 2.0), 8000)
    writer = VideoWriter(out, width=32, height=32, fps=30, audio=AudioClip(wav), options=FAST)
    writer.write(media.frames_rgb(0, 20, 32, 32))
    assert len(leftovers(tmp_path)) == 1 and leftovers(tmp_path)[0].startswith(".gone.partial-")
    writer.abort()
    writer.abort()  # twice is harmless
    assert not out.exists() and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        writer.write(media.frames_rgb(0, 1, 32, 32))


@pytest.mark.parametrize("exception", [RuntimeError("generator fault"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_an_exception_inside_with_leaves_the_output_as_it_was(tmp_path, exception):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous render")
    with pytest.raises(type(exception)):
        with VideoWriter(out, width=32, height=32, fps=30, audio=None, overwrite=True, options=FAST) as writer:
            writer.write(media.frames_rgb(0, 10, 32, 32))
            raise exception
    assert out.read_bytes() == b"the previous render" and leftovers(tmp_path) == []


def test_a_dropped_writer_leaves_no_temporary_file(tmp_path):
    writer = VideoWriter(tmp_path / "dropped.mp4", width=32, height=32, fps=30, audio=None, options=FAST)
    writer.write(media.frames_rgb(0, 2, 32, 32))
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_output_folder_problems_are_input_errors_before_any_work(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        VideoWriter(tmp_path / "no such folder" / "out.mp4", width=32, height=32, fps=30, audio=None)
    with pytest.raises(InputError, match="directory"):
        VideoWriter(tmp_path, width=32, height=32, fps=30, audio=None)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes")
        with pytest.raises(InputError, match="not writable"):
            VideoWriter(locked / "out.mp4", width=32, height=32, fps=30, audio=None)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"width": 33}, "even"),
        ({"height": 0}, "even"),
        ({"fps": 0}, "fps"),
        ({"fps": -24}, "fps"),
        ({"fps": "fast"}, "fps"),
        ({"output": "out.avi"}, ".mp4"),
        ({"options": "crf"}, "crf"),
        ({"options": "preset"}, "preset"),
    ],
)
def test_bad_settings_are_input_errors(tmp_path, kwargs, fragment):
    settings = {"output": tmp_path / "out.mp4", "width": 32, "height": 32, "fps": 30, "audio": None}
    if kwargs.get("options") == "crf":
        with pytest.raises(InputError, match=fragment):
            EncodeOptions(crf=52)
        return
    if kwargs.get("options") == "preset":
        with pytest.raises(InputError, match=fragment):
            EncodeOptions(preset="warp")
        return
    settings.update(kwargs)
    if isinstance(settings["output"], str):
        settings["output"] = tmp_path / settings["output"]
    with pytest.raises(InputError, match=fragment):
        VideoWriter(**settings)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_soundtrack_is_an_input_error_before_any_work(tmp_path):
    bad = media.write_text(tmp_path / "text.mp3")
    with pytest.raises(InputError, match="text.mp3"):
        VideoWriter(tmp_path / "o.mp4", width=32, height=32, fps=30, audio=AudioClip(bad))
    wav = media.write_soundfile(tmp_path / "s.wav", media.bursts(8000, 1.0), 8000)
    with pytest.raises(InputError, match="past the end"):
        VideoWriter(tmp_path / "o.mp4", width=32, height=32, fps=30, audio=AudioClip(wav, start=3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.wav", "text.mp3"]


def test_frames_of_the_wrong_shape_are_refused(tmp_path):
    with VideoWriter(tmp_path / "o.mp4", width=32, height=32, fps=30, audio=None, options=FAST) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((1, 32, 32, 3), np.float32))
        with pytest.raises(ValueError, match=r"\[B, 32, 32, 3\]"):
            writer.write(np.zeros((1, 16, 32, 3), np.uint8))
        writer.write(np.zeros((2, 32, 32, 3), np.uint8))
    assert len(decode(tmp_path / "o.mp4").frames) == 2


def test_a_full_disk_is_a_render_error_and_leaves_nothing(tmp_path):
    """The file size limit (RLIMIT_FSIZE) makes writes fail with EFBIG, as a full disk does."""
    script = textwrap.dedent(
        """
        import json, resource, signal, sys
        import numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        from ganterp_fast.engine.video.encode import EncodeOptions, VideoWriter
        from ganterp_fast.engine.errors import RenderError
        rng = np.random.default_rng(0)
        try:
            with VideoWriter(sys.argv[1], width=128, height=128, fps=30, audio=None,
                             options=EncodeOptions(preset="ultrafast", crf=0)) as writer:
                for _ in range(100):
                    writer.write(rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8))
            print(json.dumps({"finished": True}))
        except RenderError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )
    out = tmp_path / "full.mp4"
    result = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" in outcome, outcome
    assert "full.mp4" in outcome["error"] and "\n" not in outcome["error"], outcome
    assert list(tmp_path.iterdir()) == []


def test_encoder_choice():
    assert choose_h264_encoder("libx264") == "libx264"
    assert choose_h264_encoder("auto") in ("h264_nvenc", "libx264")
