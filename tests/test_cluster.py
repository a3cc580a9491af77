"""Scale-out on a real multi-node Ray cluster on this machine: frames equal to one process,
placement, faults (a worker killed, a node removed, every worker dead), several inputs with
one corrupt, Ctrl-C and --resume, and --ray without the [ray] extra.

One cluster per test session (`ray.cluster_utils.Cluster`: a head with one CPU and three
nodes with one CPU and one logical GPU each); the tiny model, 3 s of 8 kHz music at 8 fps
and 1 s segments keep every render to a few segments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import media
import numpy as np
import pytest
from reliability_helpers import assert_error, cli, default_sigint

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed: pip install 'ganterp-fast[ray]'")

from media import render_options  # noqa: E402

from ganterp_fast.engine.job import prepare  # noqa: E402
from ganterp_fast.engine.scale.cluster import Cluster  # noqa: E402
from ganterp_fast.engine.scale.resume import segments_folder  # noqa: E402
from ganterp_fast.engine.scale.worker import Fault  # noqa: E402

FPS = "8"
SEGMENT = 1.0
FLAGS = ["--fps", FPS, "--precision", "fp32", "--crf", "0", "--preset", "ultrafast", "--segment-seconds", str(SEGMENT)]


@pytest.fixture(scope="session")
def ray_cluster():
    from ray.cluster_utils import Cluster as RayCluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # Short: Ray's socket paths live under it (a unix socket path has at most 107 bytes).
        patch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="gf-ray-", dir="/tmp"))
        cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        nodes = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(3)]
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        cluster.gpu_nodes = nodes
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def options(model: Path, **flat):
    flat = {"model": str(model), "fps": FPS, "precision": "fp32", "crf": 0, "preset": "ultrafast", **flat}
    return render_options(**flat)


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(os.fspath(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def assert_same_frames(a: Path, b: Path) -> None:
    first, second = frames_of(a), frames_of(b)
    assert len(first) == len(second) > 0
    for index, (x, y) in enumerate(zip(first, second)):
        assert np.array_equal(x, y), f"frame {index} differs"


def audio_of(path: Path) -> tuple[np.ndarray, float, float]:
    """The decoded soundtrack, its duration and the video's (seconds)."""
    with av.open(os.fspath(path)) as container:
        audio, video = container.streams.audio[0], container.streams.video[0]
        durations = float(audio.duration * audio.time_base), float(video.duration * video.time_base)
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return samples, *durations


@pytest.fixture(scope="module")
def reference(song: Path, tiny_onnx: Path, tmp_path_factory) -> dict[int, Path]:
    """The single-process renders (job.run) at crf 0 and crf 18."""
    folder = tmp_path_factory.mktemp("reference")
    outputs = {}
    for crf in (0, 18):
        job = prepare(song, folder / f"crf{crf}.mp4", options(tiny_onnx, crf=crf))
        outputs[crf] = job.run().output
    return outputs


def test_pool_equals_one_process(ray_cluster, song, tiny_onnx, reference, tmp_path) -> None:
    """2 and 3 workers: crf 0 decodes to the same bytes as one process; crf 18 has its frame
    count, soundtrack and sync; the workers sit on distinct nodes and logical GPUs."""
    for workers in (2, 3):
        jobs = [prepare(song, tmp_path / f"w{workers}-crf{crf}.mp4", options(tiny_onnx, crf=crf)) for crf in (0, 18)]
        with Cluster.connect(ray_cluster.address, workers=workers) as pool:
            outcomes = pool.render(jobs, segment_seconds=SEGMENT)
            reports = pool.reports
        assert [o.error for o in outcomes] == [None, None]
        assert len({r.node for r in reports}) == workers
        assert len({(r.node, tuple(r.gpus)) for r in reports}) == workers and all(r.gpus for r in reports)
        assert sum(r.segments for r in reports) == 2 * len(jobs[0].segments(SEGMENT, workers=workers))
        assert sum(1 for r in reports if r.segments) >= 2  # the work was spread
        assert_same_frames(outcomes[0].output, reference[0])
        pooled, single = audio_of(outcomes[1].output), audio_of(reference[18])
        assert len(frames_of(outcomes[1].output)) == len(frames_of(reference[18]))
        assert np.array_equal(pooled[0], single[0])  # the soundtrack, encoded once on the driver
        assert abs(pooled[1] - pooled[2]) < 0.15 and pooled[1:] == pytest.approx(single[1:], abs=1e-6)
        assert not segments_folder(outcomes[0].output).exists()


def test_worker_killed_in_its_first_segment(ray_cluster, song, tiny_onnx, reference, tmp_path) -> None:
    """A worker process dies (os._exit) after its first frame: Ray restarts it, the segment is
    rendered again, and the video is the same."""
    marker = tmp_path / "died"
    job = prepare(song, tmp_path / "killed.mp4", options(tiny_onnx))
    with Cluster.connect(ray_cluster.address, workers=2, fault=Fault(after_frames=1, marker=str(marker))) as pool:
        [outcome] = pool.render([job], segment_seconds=SEGMENT)
    assert marker.exists(), "no worker died: the fault was not injected"
    assert outcome.error is None
    assert_same_frames(outcome.output, reference[0])


def test_every_worker_dead(ray_cluster, song, tiny_onnx, tmp_path) -> None:
    """Every worker dies in every segment and its restarts are spent: exit 1, one line, no files."""
    folder = tmp_path / "out"
    folder.mkdir()
    env = {**os.environ, "GANTERP_WORKER_FAULT": "frames=1,restarts=0"}
    result = cli(
        "render", song, "-o", folder / "dead.mp4", "--model", tiny_onnx, *FLAGS, "-q",
        "--ray", ray_cluster.address, "--workers", "2", env=env, timeout=240,
    )  # fmt: skip
    assert_error(result, 1, "no worker is left")
    assert sorted(os.listdir(folder)) == []


def test_three_inputs_one_corrupt(ray_cluster, song, tiny_onnx, tmp_path) -> None:
    """One pool, three inputs, the second corrupt: two videos, one clear error naming it, exit 1."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    first = media.write_soundfile(inputs / "first.wav", media.music(8000, 2.0, seed=3), 8000)
    broken = media.write_random_bytes(inputs / "broken.mp3")
    third = media.write_soundfile(inputs / "third.wav", media.music(8000, 2.5, seed=4), 8000)
    out = tmp_path / "videos"
    out.mkdir()
    result = cli(
        "render", first, broken, third, "-o", out, "--model", tiny_onnx, *FLAGS, "-q",
        "--ray", ray_cluster.address, "--workers", "2", timeout=240,
    )  # fmt: skip
    line = assert_error(result, 1, "1 of 3 inputs failed", "broken.mp3")
    assert "first.wav" not in line and "third.wav" not in line
    assert sorted(os.listdir(out)) == ["first.mp4", "third.mp4"]
    for name, seconds in (("first.mp4", 2.0), ("third.mp4", 2.5)):
        assert len(frames_of(out / name)) == round(seconds * 8)


def test_ctrl_c_then_resume(ray_cluster, song, tiny_onnx, reference, tmp_path) -> None:
    """Ctrl-C on the driver leaves no video and the finished segments; --resume with another
    seed is refused naming it; --resume (here without Ray: one process is one worker)
    finishes with the frames of an uninterrupted render."""
    output = tmp_path / "stopped.mp4"
    kept = segments_folder(output)
    env = {**os.environ, "GANTERP_WORKER_FAULT": "frames=none,sleep=0.4"}  # slow workers: time to interrupt
    command = [sys.executable, "-m", "ganterp_fast", "render", str(song), "-o", str(output), "--model", str(tiny_onnx)]
    command += [*FLAGS, "-q", "--ray", ray_cluster.address, "--workers", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    deadline = time.monotonic() + 180
    while not list(kept.glob("*.mp4")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted; nothing was written" in stderr and "Traceback" not in stderr
    assert not output.exists()
    done = sorted(p.name for p in kept.glob("*.mp4"))
    assert 1 <= len(done) < 3, done
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]

    refused = cli("render", song, "-o", output, "--model", tiny_onnx, *FLAGS, "-q", "--resume", "--seed", "5")
    assert_error(refused, 2, "--resume", "seed")
    assert sorted(p.name for p in kept.glob("*.mp4")) == done

    resumed = cli("render", song, "-o", output, "--model", tiny_onnx, *FLAGS, "-q", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_frames(output, reference[0])
    assert not kept.exists()


def test_node_removed_mid_render(ray_cluster, tiny_onnx, tmp_path) -> None:
    """A node leaves while its worker renders: its segments go to the other workers. (6 s of
    music: two rounds of segments for three workers, so the worker is busy when it goes.)"""
    song = media.write_soundfile(tmp_path / "long.wav", media.music(8000, 6.0, seed=5), 8000)
    single = prepare(song, tmp_path / "single.mp4", options(tiny_onnx)).run().output
    job = prepare(song, tmp_path / "node.mp4", options(tiny_onnx))
    assert len(job.segments(0.5, workers=3)) == 6
    kept = segments_folder(job.output)
    outcome: list = []
    with Cluster.connect(ray_cluster.address, workers=3, fault=Fault(after_frames=None, sleep_s=0.3)) as pool:
        pool.start()
        victim = next(node for node in ray_cluster.gpu_nodes if node.node_id == pool.reports[1].node)
        thread = threading.Thread(target=lambda: outcome.append(pool.render([job], segment_seconds=0.5)[0]))
        thread.start()
        deadline = time.monotonic() + 120
        while not list(kept.glob("*.mp4")) and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
        ray_cluster.remove_node(victim)
        ray_cluster.gpu_nodes.remove(victim)
        thread.join(timeout=180)
        reports = pool.reports
    ray_cluster.gpu_nodes.append(ray_cluster.add_node(num_cpus=1, num_gpus=1))
    assert outcome and outcome[0].error is None
    assert not reports[1].alive
    assert_same_frames(outcome[0].output, single)


def test_ray_without_the_extra(song, tmp_path) -> None:
    """--ray where Ray is not installed: one line naming the [ray] extra, exit 2, nothing written."""
    python = os.environ.get("GANTERP_RUNTIME_PYTHON")
    if not python:
        pytest.skip("GANTERP_RUNTIME_PYTHON is not set: scripts/test.sh builds a runtime-only environment and sets it")
    if subprocess.run([python, "-c", "import ray"], capture_output=True).returncode == 0:
        pytest.skip(f"{python} has ray installed: this test needs an environment without the [ray] extra")
    result = subprocess.run(
        [python, "-m", "ganterp_fast", "render", str(song), "-o", str(tmp_path / "x.mp4"), "-q", "--ray", "local"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert_error(result, 2, "[ray]", "pip install")
    assert os.listdir(tmp_path) == []


def test_an_aac_soundtrack_is_copied(song, tiny_onnx, tmp_path) -> None:
    """An mp4 input with AAC audio, no excerpt: the segmented render copies its audio packets
    (the same bytes as the input's), in sync with the video; the frames are one process's."""
    clip = media.write_video(tmp_path / "clip.mp4", media.music(8000, 3.0), 8000, fps=8)
    job = prepare(clip, tmp_path / "copied.mp4", options(tiny_onnx))
    from ganterp_fast.engine.scale.resume import copyable_soundtrack
    from ganterp_fast.engine.scale.scheduler import render_segmented

    assert copyable_soundtrack(job) == clip
    copied = render_segmented(job, segment_seconds=SEGMENT).output
    single = prepare(clip, tmp_path / "single.mp4", options(tiny_onnx)).run().output
    assert_same_frames(copied, single)

    def packets(path: Path) -> list[bytes]:
        with av.open(os.fspath(path)) as container:
            return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]

    assert packets(copied) == packets(clip)
    audio, audio_s, video_s = audio_of(copied)
    assert abs(audio_s - video_s) < 0.15 and audio.shape[1] >= 8000 * 3
    excerpt = prepare(clip, tmp_path / "cut.mp4", options(tiny_onnx), start=0.5)
    assert copyable_soundtrack(excerpt) is None


def test_sigterm_on_the_driver(ray_cluster, song, tiny_onnx, tmp_path) -> None:
    """SIGTERM while the workers render: exit 143, one line, no video (Ray's own handler kept out)."""
    output = tmp_path / "terminated.mp4"
    env = {**os.environ, "GANTERP_WORKER_FAULT": "frames=none,sleep=0.4"}
    command = [sys.executable, "-m", "ganterp_fast", "render", str(song), "-o", str(output), "--model", str(tiny_onnx)]
    command += [*FLAGS, "-q", "--ray", ray_cluster.address, "--workers", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    while not list(segments_folder(output).glob("*.mp4")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip() == "ganterp-fast render: terminated; nothing was written"
    assert not output.exists()


def _own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ganterp-fast render: ")]


def _with_default_sigint() -> None:
    """In the child: Ctrl-C's default back (a process started in the background inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_address_with_nothing_listening(song, tiny_onnx, tmp_path) -> None:
    """--ray HOST:PORT where nothing listens: one line naming the address and how to start a
    cluster, exit 2, well within 30 s, nothing written."""
    folder = tmp_path / "out"
    folder.mkdir()
    began = time.monotonic()
    result = cli(
        "render", song, "-o", folder / "x.mp4", "--model", tiny_onnx, *FLAGS, "-q", "--ray", "127.0.0.1:1", timeout=60
    )  # fmt: skip
    assert time.monotonic() - began < 30
    assert_error(result, 2, "--ray 127.0.0.1:1", "ray start --head")
    assert os.listdir(folder) == []


def test_signals_while_connecting(song, tiny_onnx, tmp_path) -> None:
    """An address that accepts connections but is no Ray cluster: Ctrl-C and SIGTERM while
    connecting end the command at once (130, 143), and without a signal it gives up within
    30 s (exit 2, naming the address); nothing is written."""
    import socket

    listener = socket.create_server(("", 0))  # all interfaces: Ray dials this host's address for 127.0.0.1
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    processes = {}
    began = time.monotonic()
    for name in ("SIGINT", "SIGTERM", "none"):
        folder = tmp_path / name
        folder.mkdir()
        command = [sys.executable, "-m", "ganterp_fast", "render", str(song), "-o", str(folder / "x.mp4")]
        command += ["--model", str(tiny_onnx), *FLAGS, "--ray", address]
        processes[name] = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, preexec_fn=_with_default_sigint
        )  # fmt: skip
    try:
        for name in ("SIGINT", "SIGTERM"):
            process = processes[name]
            for line in process.stderr:  # the line before the connection
                if line.startswith("starting Ray workers"):
                    break
            time.sleep(2.0)  # into ray.init's retries
            assert process.poll() is None
            sent = time.monotonic()
            process.send_signal(getattr(signal, name))
            _, stderr = process.communicate(timeout=30)
            assert time.monotonic() - sent < 10, f"{name} took {time.monotonic() - sent:.1f} s"
            word = "interrupted" if name == "SIGINT" else "terminated"
            assert process.returncode == (130 if name == "SIGINT" else 143), stderr
            assert _own_lines(stderr) == [f"ganterp-fast render: {word}; nothing was written"], stderr
            assert "Traceback" not in stderr
        _, stderr = processes["none"].communicate(timeout=60)
        assert time.monotonic() - began < 60
        assert processes["none"].returncode == 2, stderr
        [line] = _own_lines(stderr)  # beside Ray's own warnings while it tried
        assert line.startswith(f"ganterp-fast render: error: --ray {address}: ") and "ray start --head" in line
    finally:
        listener.close()
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name in processes:
        assert os.listdir(tmp_path / name) == []
