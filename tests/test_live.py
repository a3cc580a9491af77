"""The live session without a browser: the frame loop against a clock (frames dropped evenly,
never queued), the microphone's keyframes, the recorder, OSC out, and the command's errors."""

from __future__ import annotations

import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest
from reliability_helpers import cli

from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
from ganterp_fast.engine.latent.path import LatentPath, PathOptions
from ganterp_fast.engine.live.feeds import FileFeed, MicFeed
from ganterp_fast.engine.live.path import LivePath
from ganterp_fast.engine.live.producer import SETTLE_S, FileClock, Frames, Producer
from ganterp_fast.engine.live.recorder import Recorder

SONG = media.Song(rate=22050, seconds=6.0)
FPS = Fraction(30)


def _file_feed(song: Path, fps: Fraction = FPS) -> FileFeed:
    analysis = analyze(song)
    return FileFeed(analysis, LatentPath(analysis, PathOptions(), fps))


def _stand_in(seconds_per_frame: float):
    """A generator that takes `seconds_per_frame` per frame and paints the frame's z[0] as grey."""

    def generate(z: np.ndarray, classes: np.ndarray, truncations) -> np.ndarray:
        time.sleep(seconds_per_frame * len(z))
        grey = np.clip((z[:, 0] + 2) * 60, 0, 255).astype(np.uint8)
        return np.broadcast_to(grey[:, None, None, None], (len(z), 8, 8, 3)).copy()

    return generate


def _run_file(feed: FileFeed, seconds_per_frame: float, *, batch: int, run_s: float) -> tuple[list, Producer, list]:
    sent: list[tuple[int, float, float]] = []  # (slot, frame time, clock when sent)
    clock = FileClock()

    def send(frames: Frames) -> bool:
        now = clock.now()[0]
        sent.extend((frames.first + i, float(t), now) for i, t in enumerate(frames.times))
        return True

    producer = Producer(feed, _stand_in(seconds_per_frame), send, batch_size=batch, clock=clock)
    clock.report(0.0, True)
    producer.start()
    time.sleep(run_s)
    producer.stop()
    return sent, producer, []


def test_a_fast_generator_makes_every_frame_in_time(song: Path) -> None:
    feed = _file_feed(song)
    sent, producer, _ = _run_file(feed, 0.002, batch=4, run_s=2.0)
    slots = [slot for slot, _, _ in sent]
    assert slots == list(range(slots[0], slots[-1] + 1)), "every slot made, in order"
    assert slots[0] <= 3 and slots[-1] >= 50, slots[:3] + slots[-3:]
    assert producer.stats.dropped == 0
    late = [(slot, t, now) for slot, t, now in sent[8:] if now > t]
    assert not late, f"frames sent after their time: {late[:5]}"
    # Never far ahead either: at most a batch and the margin in front of the clock.
    assert max(t - now for _, t, now in sent) < 0.4


def test_a_slow_generator_drops_frames_evenly_and_never_queues(song: Path) -> None:
    feed = _file_feed(song)
    sent, producer, _ = _run_file(feed, 1 / 12, batch=1, run_s=3.0)  # 12 frames/s for 30 fps
    slots = np.array([slot for slot, _, _ in sent])
    gaps = np.diff(slots)
    # Drops are counted from a second after playback starts (a player's first clock reports are coarse).
    settled = slots[1:] / 30 > SETTLE_S  # give or take the batch planned ahead: two gaps
    assert abs(producer.stats.dropped - int((gaps[settled] - 1).sum())) <= 6 and producer.stats.dropped > 0
    share = int((gaps - 1).sum()) / (slots[-1] - slots[0])
    assert 0.45 < share < 0.75, f"about 60% of the slots dropped at 12 of 30 fps, got {share:.2f}"
    assert gaps[3:].max() <= 4, f"drops spread evenly, not in bursts: {gaps.tolist()}"
    lateness = [now - t for _, t, now in sent[3:]]
    assert max(lateness) < 0.15, f"latency stays at one frame's work, never grows: {max(lateness):.3f} s"


def test_a_seek_starts_again_without_counting_drops(song: Path) -> None:
    feed = _file_feed(song)
    clock = FileClock()
    sent: list[int] = []

    def send(frames: Frames) -> bool:
        sent.extend(range(frames.first, frames.first + len(frames.times)))
        return True

    producer = Producer(feed, _stand_in(0.002), send, batch_size=2, clock=clock)
    clock.report(0.0, True)
    producer.start()
    time.sleep(0.6)
    clock.report(4.0, True)  # the page seeks forward
    time.sleep(0.5)
    clock.report(4.4, False)  # and pauses: the paused time's frame
    time.sleep(0.3)
    producer.stop()
    assert producer.stats.dropped == 0
    assert any(120 <= slot <= 125 for slot in sent), "frames from the new time on"
    assert sent[-1] == 132, "the paused frame"


def test_the_page_going_away_stops_the_loop(song: Path) -> None:
    feed = _file_feed(song)
    calls = []
    producer = Producer(feed, _stand_in(0.001), lambda frames: calls.append(1) and False, batch_size=1)
    producer.clock.report(0.0, True)
    producer.start()
    deadline = time.monotonic() + 5
    while producer.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not producer.running and len(calls) == 1


def test_a_microphone_moves_the_path_with_the_sound() -> None:
    rate = 22050
    signal = media.music(rate, 8.0)[:, 0].astype(np.float32)
    feed = MicFeed(rate, AnalysisOptions(), PathOptions(seed=2), FPS, z_dim=128, num_classes=1000)
    sent: list[Frames] = []
    producer = Producer(feed, _stand_in(0.0), lambda frames: sent.append(frames) or True, batch_size=1)
    producer.start()
    block = 1024
    for start in range(0, len(signal), block):  # faster than real time: the loop keeps to the newest audio
        feed.feed(signal[start : start + block])
        producer.audio_arrived()
        time.sleep(0.002)
    time.sleep(0.2)
    producer.stop()
    times = np.concatenate([f.times for f in sent])
    assert np.all(np.diff(times) > 0) and times[-1] > 7.5
    assert times.max() <= feed.time_s + 1e-9, "no frame from audio not yet heard"
    points = feed.analysis.points
    assert len(points) >= 2, "the music has changes"
    z, classes, _ = feed.at(np.arange(0, 8, 0.5))
    assert z.shape == (16, 128) and classes.shape == (16, 1000)
    np.testing.assert_allclose(classes.sum(axis=1), 1.0, atol=1e-5)


def test_live_keyframes_follow_the_given_classes_then_the_seed() -> None:
    path = LivePath(PathOptions(classes=("jellyfish", "volcano"), seed=1), z_dim=16, num_classes=1000)
    assert [path.class_id(k) for k in range(2)] == [107, 980]
    again = LivePath(PathOptions(classes=("jellyfish", "volcano"), seed=1), z_dim=16, num_classes=1000)
    assert [path.class_id(k) for k in range(2, 40)] == [again.class_id(k) for k in range(2, 40)]
    z, classes = path.latents(np.array([0.0, 0.5, 1.0, 1.999, 2.0]))
    np.testing.assert_allclose(classes[1, [107, 980]], [0.5, 0.5])
    np.testing.assert_allclose(z[2], path.z(1))
    assert np.abs(z[3] - z[4]).max() < 0.01, "continuous across a keyframe"
    for k in range(1000):  # a long session keeps a bounded cache
        path.z(k)
        path.class_id(k)
    assert len(path._z_cache) < 10 and len(path._class_cache) < 10
    unconditional = LivePath(PathOptions(interpolation="slerp"), z_dim=16, num_classes=0)
    z, classes = unconditional.latents(np.array([0.25, 3.5]))
    assert classes.shape == (2, 0) and np.isfinite(z).all()


def test_the_recorder_keeps_what_was_shown_with_what_was_heard(tmp_path: Path) -> None:
    out = tmp_path / "set.mp4"
    recorder = Recorder(out, fps=Fraction(10), width=16, height=16)
    owner = object()
    assert recorder.claim(owner) and not recorder.claim(object())
    rate = 8000
    audio = (media.music(rate, 3.0, channels=2) * 32767).astype(np.int16)
    for k in range(30):  # a frame per 0.1 s, audio in 0.1 s blocks: frame k is shown from k/10 s
        recorder.shown(owner, k / 10, np.full((16, 16, 3), 8 * k, np.uint8))
        recorder.heard(owner, audio[k * 800 : (k + 1) * 800], rate, clock_s=(k + 1) / 10 - 0.01)
    assert recorder.finish() == out
    assert not [p for p in tmp_path.iterdir() if p.name != "set.mp4"], "nothing left beside the output"
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert container.streams.audio[0].duration * container.streams.audio[0].time_base == pytest.approx(
            3.0, abs=0.06
        )
    assert len(frames) == 30
    levels = [int(np.median(f)) for f in frames]
    assert all(abs(level - 8 * k) <= 3 for k, level in enumerate(levels)), levels


def test_the_recorder_never_clobbers(tmp_path: Path) -> None:
    from ganterp_fast.engine.errors import InputError

    out = tmp_path / "taken.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists"):
        Recorder(out, fps=Fraction(10), width=16, height=16)
    recorder = Recorder(out, fps=Fraction(10), width=16, height=16, overwrite=True)
    recorder.claim(1)
    recorder.heard(1, np.zeros((800, 1), np.int16), 8000, clock_s=0.1)
    recorder.abort()
    assert out.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4"]
    silent = Recorder(tmp_path / "never.mp4", fps=Fraction(10), width=16, height=16)
    assert silent.finish() is None and sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4"]


def test_osc_messages_reach_a_listener(song: Path) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    from ganterp_fast.engine.live.osc import OscOut

    received: list[tuple] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: received.append((address, *args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        feed = _file_feed(song)
        out = OscOut(f"127.0.0.1:{server.server_address[1]}")
        out.send(feed.cues_between(-1.0, 10.0))
        deadline = time.monotonic() + 5
        while len(received) < len(feed.cues) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.shutdown()
    addresses = [r[0] for r in received]
    points = len(feed.path.schedule())
    assert addresses.count("/ganterp/class") == points and addresses.count("/ganterp/inflection") == points - 1
    first_class = next(r for r in received if r[0] == "/ganterp/class")
    assert first_class[1] == 0 and isinstance(first_class[3], str) and first_class[3]


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.parametrize(
    "case",
    ["port in use", "no audio", "bad osc", "record exists", "mic and input", "bad fps", "no such input"],
)
def test_bad_input_is_one_line_and_exit_2(case: str, song: Path, tmp_path: Path, tiny_onnx: Path) -> None:
    busy = _busy_port()
    port = str(busy.getsockname()[1])
    free = ["--port", "0"]
    model = ["--model", str(tiny_onnx)]
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep")
    silent_video = media.write_video(tmp_path / "silent.mp4", None, 8000, seconds=1.0)
    args = {
        "port in use": [song, "--port", port, *model],
        "no audio": [silent_video, *free, *model],
        "bad osc": [song, "--osc", "localhost", *free, *model],
        "record exists": [song, "--record", taken, *free, *model],
        "mic and input": [song, "--mic", *free, *model],
        "bad fps": [song, "--fps", "0", *free, *model],
        "no such input": [tmp_path / "missing.wav", *free, *model],
    }[case]
    try:
        result = cli("live", *args, timeout=120)
    finally:
        busy.close()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ganterp-fast live: error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert taken.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silent.mp4", "taken.mp4"]


def test_a_session_serves_a_page_at_the_asked_size_and_records_it(song: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    from ganterp_fast.engine.live.session import LiveOptions, LiveSession
    from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions

    options = RenderOptions(
        model=ModelOptions(model=str(tiny_onnx), precision="fp32"),
        output=OutputOptions(size="320x180", fit="pad"),
        fps=24,
    )
    record = tmp_path / "out.mp4"
    session = LiveSession(song, options, LiveOptions(record=str(record)))
    got: list[Frames] = []
    page = session.connect(lambda frames: got.append(frames) or True, sample_rate=8000)
    page.report_clock(0.0, True)
    audio = (media.music(8000, 2.0) * 32767).astype(np.int16)
    began = time.monotonic()
    for k in range(20):  # 2 s of audio heard in 0.1 s blocks, at its own pace
        time.sleep(max(0.0, began + (k + 1) * 0.1 - time.monotonic()))
        page.audio(audio[k * 800 : (k + 1) * 800], clock_s=page.clock.now()[0])
    assert session.close() == record
    assert got and got[0].images.shape[1:] == (180, 320, 3)
    assert not session.pages and not page.producer.running
    # The frames are the render path's: frame k here is LatentPath's frame k through the generator.
    z, classes, _ = session.feed.frames(got[0].first, got[0].first + 1)
    assert np.array_equal(session.generate(z, classes, None)[0], got[0].images[0])
    with av.open(str(record)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (320, 180)
        assert abs(float(stream.duration * stream.time_base) - 2.0) < 0.1
        assert container.streams.audio
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_a_session_runs_the_upscaler_before_the_size(song: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime

    from ganterp_fast.engine.live.session import LiveSession
    from ganterp_fast.engine.options import ModelOptions, RenderOptions

    class Double(torch.nn.Module):  # a x2 "super-resolution": nearest upscaling and a tint
        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.clamp(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * 0.9, 0, 1)

    sr = tmp_path / "x2.onnx"
    axes = {"image": {0: "n", 2: "h", 3: "w"}, "up": {0: "n", 2: "h2", 3: "w2"}}
    torch.onnx.export(
        Double(),
        (torch.rand(1, 3, 16, 16),),
        str(sr),
        input_names=["image"],
        output_names=["up"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    options = RenderOptions(model=ModelOptions(model=str(tiny_onnx), precision="fp32", upscaler=str(sr)))
    session = LiveSession(song, options)
    try:
        assert (session.width, session.height) == (256, 256)
        z, classes, _ = session.feed.frames(3, 5)
        images = session.generate(z, classes, None)
        plain = session.generator(z, classes, truncation=options.path.truncation)
        run = onnxruntime.InferenceSession(str(sr), providers=["CPUExecutionProvider"])
        expected = run.run(None, {"image": plain.transpose(0, 3, 1, 2).astype(np.float32) / 255})[0]
        expected = np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        assert images.shape == (2, 256, 256, 3) and np.abs(images.astype(int) - expected).max() <= 1
    finally:
        session.close()


def test_a_session_that_cannot_start_leaves_nothing_behind(song: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    import tempfile

    from ganterp_fast.engine.live.session import LiveOptions, LiveSession
    from ganterp_fast.engine.options import ModelOptions, RenderOptions

    class Broken:  # a generator that fails on its first call (the session's warm-up)
        device, providers, resolution = "cpu", ["CPUExecutionProvider"], 128

        def __call__(self, z, classes, truncation=0.4):  # type: ignore[no-untyped-def]
            raise RuntimeError("out of order")

    before = {p.name for p in Path(tempfile.gettempdir()).glob("ganterp-live-*")}
    options = RenderOptions(model=ModelOptions(model=str(tiny_onnx), precision="fp32"))
    with pytest.raises(RuntimeError, match="out of order"):
        LiveSession(song, options, LiveOptions(record=str(tmp_path / "set.mp4")), generator=Broken())
    assert list(tmp_path.iterdir()) == [], "no recording folder beside the output"
    assert {p.name for p in Path(tempfile.gettempdir()).glob("ganterp-live-*")} == before, "no soundtrack copy"
