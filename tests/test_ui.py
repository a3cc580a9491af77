"""The local web page in a real browser: `ganterp-fast ui` served in its own process and driven
by Playwright through Debian's headless Chromium (nothing downloaded at test time).

One server (the tiny model, fp32) serves every test; the last one stops it and checks that
its files are gone. Screenshots of each step go to $GANTERP_UI_SCREENSHOTS (default: a
temporary folder, printed).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from browser import CHROMIUM, skip_reason
from media import Song, write_random_bytes
from reliability_helpers import default_sigint

from ganterp_fast.cli.main import main
from ganterp_fast.engine.analysis.analyze import AnalysisOptions, analyze
from ganterp_fast.engine.audio.example import EXAMPLE_SECONDS
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.path import frame_count

SECONDS = 4.0
RATE = 22050
FPS = 12  # typed into the page's fps box: 48 frames for the 4 s song
START_TIMEOUT = 120.0


_REASON = skip_reason({"gradio": "ui", "playwright": "test"})
if _REASON:
    print(f"tests/test_ui.py: browser tests skipped: {_REASON}", file=sys.stderr)
needs_browser = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ganterp-fast ui` in a subprocess; its stdout and stderr lines collected by threads."""

    def __init__(self, args: list[str], temp: Path) -> None:
        self.temp = temp
        env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ganterp_fast", "ui", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=default_sigint,  # stop(SIGINT) is Ctrl-C, however the suite was started
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()
        self.url = self._wait_for_address()

    def _read(self, stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line)
            self.lines.put(line)

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if "the page is at " in line:
                return line.split("the page is at ", 1)[1].split()[0]
        self.stop()
        raise AssertionError(f"the server did not start: {''.join(self.stdout + self.stderr)[-3000:]}")

    def sessions(self) -> list[Path]:
        return [p for root in self.temp.glob("ganterp-ui-*") for p in (root / "sessions").glob("*")]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


SONG = Song(rate=RATE, seconds=SECONDS)  # conftest's `song`


@pytest.fixture(scope="module")
def server(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory):  # -> Server
    if _REASON:
        pytest.skip(_REASON)
    temp = tmp_path_factory.mktemp("ui-server")
    args = ["--port", str(_free_port()), "--model", str(tiny_onnx), "--precision", "fp32", "--max-file-size", "1mb"]
    started = time.monotonic()
    server = Server(args, temp)
    print(f"ui server up in {time.monotonic() - started:.1f} s at {server.url}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():  # -> playwright Browser
    if _REASON:
        pytest.skip(_REASON)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("GANTERP_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"ui screenshots in {folder}")
    return folder


def _open(browser, server: Server, requests: list[str] | None = None):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 1600}, accept_downloads=True)
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    page.goto(server.url)
    page.wait_for_selector("#upload input[type=file]", state="attached")
    return page


def _upload(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    page.locator("#upload input[type=file]").set_input_files(str(path))


def _points(page) -> int:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect(page.locator("#summary")).to_contain_text("inflection point", timeout=60_000)
    return int(page.locator("#summary").inner_text().split()[0])


def _set_fps(page, fps: int) -> None:  # type: ignore[no-untyped-def]
    box = page.locator("#fps input")
    box.click()
    box.fill("")
    box.press_sequentially(str(fps))
    box.press("Enter")


def _watch_progress(page) -> None:  # type: ignore[no-untyped-def]
    """Record every progress line the page shows from now on (window.progressSeen)."""
    page.evaluate(
        """() => {
        window.progressSeen = [];
        const note = () => {
            const text = document.querySelector('#video')?.innerText || '';
            if (text.includes('frames/s') || text.includes('ETA')) window.progressSeen.push(text);
        };
        new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
    }"""
    )


def _wait_for_video(page, server: Server, timeout_ms: int = 120_000) -> float:  # type: ignore[no-untyped-def]
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "() => { const v = document.querySelector('#video video');"
            " return v && v.readyState >= 1 && isFinite(v.duration) && v.duration > 0; }",
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:
        text = page.locator("body").inner_text()[-1500:]
        log = "".join(server.stderr)[-2000:]
        raise AssertionError(
            f"no video after {timeout_ms / 1000:.0f} s; the page says: {text}\nserver: {log}"
        ) from None
    return float(page.evaluate("document.querySelector('#video video').duration"))


def _download(page, selector: str, destination: Path) -> Path:  # type: ignore[no-untyped-def]
    with page.expect_download() as download:
        page.locator(selector).click()
    download.value.save_as(destination)
    return destination


def _decode(path: Path) -> tuple[np.ndarray, float, float]:
    """(video frames [N, H, W, 3], soundtrack seconds, soundtrack peak) of a file."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        samples = [f.to_ndarray() for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    audio = np.concatenate(samples, axis=-1)
    return frames, audio.shape[-1] / rate, float(np.abs(audio).max())


# --------------------------------------------------------------------------- the page


@needs_browser
def test_upload_tune_pick_render_watch_download(server, browser, song, tiny_onnx, shots, tmp_path) -> None:
    requests: list[str] = []
    page = _open(browser, server, requests)
    _upload(page, song)
    page.wait_for_selector("#plot img", timeout=60_000)
    default = _points(page)
    assert default == len(analyze(song, AnalysisOptions()).inflection_points)
    page.screenshot(path=shots / "1-analysis.png", full_page=True)

    # A threshold the engine gives another number of points for: the page redraws with that number.
    threshold, expected = next(
        (t, n)
        for t in (0.0005, 0.02, 0.002, 0.05)
        if (n := len(analyze(song, AnalysisOptions(threshold=t)).inflection_points)) != default
    )
    old_plot = page.locator("#plot img").get_attribute("src")
    page.locator("#threshold input").fill(str(threshold))
    page.locator("#threshold input").press("Enter")
    page.wait_for_function(
        f"() => document.querySelector('#summary').innerText.trim().startsWith('{expected} ')", timeout=60_000
    )
    assert page.locator("#plot img").get_attribute("src") != old_plot  # the plot was drawn again
    assert page.locator("#cues .virtual-row").count() == expected
    page.screenshot(path=shots / "2-threshold.png", full_page=True)

    # Cue 2 (picked by clicking its row) becomes a jellyfish through the searchable picker.
    page.locator('#cues [data-testid="cell-1-1"]').click()
    page.wait_for_function("() => document.querySelector('#cue-number input').value === '2'", timeout=20_000)
    picker = page.locator("#class-picker input")
    page.wait_for_function("() => document.querySelector('#class-picker input').value.includes('(')", timeout=20_000)
    picker.click()
    picker.fill("")
    picker.press_sequentially("jellyf")
    page.locator('#class-picker li[aria-label="jellyfish (107)"]').click()
    page.locator("#set-class").click()
    page.wait_for_function(
        "() => document.querySelector('#cues [data-testid=\"cell-1-1\"]').innerText.includes('jellyfish (107)')",
        timeout=20_000,
    )
    _set_fps(page, FPS)
    page.screenshot(path=shots / "3-cues.png", full_page=True)

    _watch_progress(page)
    page.locator("#render").click()
    duration = _wait_for_video(page, server)
    seen = page.evaluate("window.progressSeen")
    assert any(f"/{frame_count(SECONDS, FPS)} frames" in t and "frames/s" in t and "ETA" in t for t in seen), seen
    assert duration == pytest.approx(SECONDS, abs=0.1)
    status = page.locator("#render-status").inner_text()
    assert "jellyfish" in status.split("cues:")[1].split(",")[1]  # cue 2, as rendered
    page.locator("#video").scroll_into_view_if_needed()
    page.screenshot(path=shots / "4-video.png", full_page=True)

    video = _download(page, "#download", tmp_path / "page.mp4")
    frames, audio_seconds, peak = _decode(video)
    assert len(frames) == frame_count(SECONDS, FPS) == 48
    assert frames.shape[1:] == (128, 128, 3)
    assert audio_seconds == pytest.approx(SECONDS, abs=0.05)
    assert peak > 0.05  # the song, not silence

    # The table is a cue sheet: saved from the page and rendered by the CLI, it gives the same frames.
    page.locator("#save-sheet").click()
    page.wait_for_selector("#sheet-file a", timeout=20_000)
    sheet = _download(page, "#sheet-file a", tmp_path / "cues.csv")
    assert "jellyfish" in sheet.read_text()
    cli_video = tmp_path / "cli.mp4"
    argv = ["render", str(song), "--cues", str(sheet), "--model", str(tiny_onnx), "--precision", "fp32"]
    assert main([*argv, "--fps", str(FPS), "-o", str(cli_video), "-q"]) == 0
    cli_frames, _, _ = _decode(cli_video)
    assert np.array_equal(cli_frames, frames)

    outside = [url for url in requests if not url.startswith((server.url.rstrip("/"), "data:", "blob:"))]
    assert not outside, f"the page fetched from elsewhere: {outside[:5]}"
    page.close()


@needs_browser
def test_bad_uploads_are_refused_on_the_page_and_the_server_goes_on(server, browser, song, shots, tmp_path) -> None:
    page = _open(browser, server)
    broken = write_random_bytes(tmp_path / "broken.mp3", 20_000)
    _upload(page, broken)
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=60_000)
    message = toast.inner_text()
    assert "broken.mp3: not an audio or video file" in message, message
    assert str(server.temp) not in message  # the name the user knows, not the server's folders
    assert "Traceback" not in page.locator("body").inner_text()
    page.screenshot(path=shots / "5-error.png", full_page=True)

    # Over the upload limit (1 MB for this server): refused with a message, nothing analysed.
    big = write_random_bytes(tmp_path / "big.wav", 1_500_000)
    page.locator('#upload button[aria-label="Clear"]').click()
    _upload(page, big)
    page.wait_for_function("() => document.body.innerText.includes('exceed the maximum allowed size')", timeout=30_000)
    page.screenshot(path=shots / "6-too-large.png", full_page=True)

    # The same page and server go on: the example music analyses.
    page.locator("#example").click()
    assert _points(page) >= 1
    assert f"in {EXAMPLE_SECONDS:.2f} s of audio" in page.locator("#summary").inner_text()
    page.close()


@needs_browser
def test_two_pages_render_at_once_each_with_its_own_files(server, browser, song, shots) -> None:
    pages = [_open(browser, server) for _ in range(2)]
    for page in pages:
        _upload(page, song)
        _points(page)
        _set_fps(page, FPS)
    before = server.sessions()
    for page in pages:
        page.locator("#render").click()
    pages[1].screenshot(path=shots / "7-second-tab-waiting.png", full_page=True)
    durations = [_wait_for_video(page, server, 180_000) for page in pages]
    assert durations == pytest.approx([SECONDS, SECONDS], abs=0.1)
    sources = [page.locator("#video video").get_attribute("src") for page in pages]
    assert sources[0] != sources[1]  # each session its own folder
    pages[1].screenshot(path=shots / "8-second-tab-done.png", full_page=True)

    # Closing a tab removes its folder (and its upload) on the server.
    count = len(server.sessions())
    assert count >= 2 and len(before) >= 2
    pages[0].close()
    deadline = time.monotonic() + 30
    while len(server.sessions()) >= count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(server.sessions()) == count - 1
    pages[1].close()


@needs_browser
def test_advanced_model_renders_a_foreign_generator_slerp_and_an_upscaler(server, browser, song, shots, tmp_path):
    """The advanced model accordion: a foreign .onnx in the model box, slerp between the cues and an
    x2 upscaler give the page's video the CLI's frames for the same cue sheet and flags."""
    torch = pytest.importorskip("torch")
    from foreign_models import stylegan_like

    foreign = stylegan_like(tmp_path / "foreign.onnx", seed=5)  # 32 x 32, z [N, 16], no classes
    sr = tmp_path / "x2.onnx"
    torch.manual_seed(0)
    shuffle = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2), torch.nn.Sigmoid())
    axes = {"image": {0: "n", 2: "h", 3: "w"}, "up": {0: "n", 2: "h2", 3: "w2"}}
    torch.onnx.export(
        shuffle.eval(), (torch.rand(1, 3, 32, 32),), str(sr), input_names=["image"], output_names=["up"],
        dynamic_axes=axes, opset_version=17, dynamo=False,
    )  # fmt: skip
    page = _open(browser, server)
    _upload(page, song)
    _points(page)
    _set_fps(page, FPS)
    page.get_by_role("button", name="Advanced model").click()
    model_box = page.locator("#model").locator("input, textarea").first
    model_box.wait_for(timeout=20_000)
    assert model_box.input_value().endswith(".onnx")  # the server's model until changed
    model_box.fill(str(foreign))
    page.locator("#interpolation label", has_text="slerp").click()
    page.locator("#upscaler").locator("input, textarea").first.fill(str(sr))
    page.screenshot(path=shots / "9-advanced-model.png", full_page=True)
    page.locator("#render").click()
    _wait_for_video(page, server)
    status = page.locator("#render-status").inner_text()
    assert "64x64" in status and "keyframes:" in status, status
    frames, _, _ = _decode(_download(page, "#download", tmp_path / "page.mp4"))
    assert frames.shape == (frame_count(SECONDS, FPS), 64, 64, 3)

    page.locator("#save-sheet").click()
    page.wait_for_selector("#sheet-file a", timeout=20_000)
    sheet = _download(page, "#sheet-file a", tmp_path / "cues.csv")
    page.close()
    argv = ["render", str(song), "--cues", str(sheet), "--model", str(foreign), "--precision", "fp32"]
    argv += ["--fps", str(FPS), "--upscaler", str(sr), "-q"]
    assert main([*argv, "--interpolation", "slerp", "-o", str(tmp_path / "slerp.mp4")]) == 0
    assert np.array_equal(_decode(tmp_path / "slerp.mp4")[0], frames)
    assert main([*argv, "-o", str(tmp_path / "lerp.mp4")]) == 0  # the control made the difference
    assert not np.array_equal(_decode(tmp_path / "lerp.mp4")[0], frames)


# ------------------------------------------------------------- the table (no browser)


def test_the_cue_table_is_the_cue_sheet_and_its_mistakes_name_the_cue(song, tmp_path) -> None:
    from ganterp_fast.engine.latent.cue_files import read_sheet
    from ganterp_fast.engine.latent.path import PathOptions
    from ganterp_fast.ui import actions

    page = actions.analyse(song, AnalysisOptions(threshold=0.0005), PathOptions(seed=3), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert len(page.rows) == len(page.analysis.inflection_points)
    # Unedited, the table reads back as the sheet `analyze --cues` writes (same classes, z, columns).
    unedited = read_sheet(actions.write_table_sheet(page.sheet, page.rows, tmp_path / "a.csv", truncation=0.4))
    rate = page.analysis.sample_rate / page.analysis.hop_length
    assert [(c.class_id, c.z, c.transition) for c in unedited.cues] == [
        (c.class_id, c.z, c.transition) for c in page.sheet.cues
    ]
    assert [round(c.time_s * rate) for c in unedited.cues] == [round(c.time_s * rate) for c in page.sheet.cues]
    assert unedited.seed == 3 and unedited.analysis == page.sheet.analysis

    rows = actions.set_class(page.rows, 2, actions.class_label(107))
    rows = actions.add_cue(rows, 2, page.analysis.duration_s)
    rows = actions.delete_cue(rows, 1)
    edited = read_sheet(actions.write_table_sheet(page.sheet, rows, tmp_path / "b.csv", truncation=0.4))
    assert edited.cues[0].class_id == 107 and edited.cues[1].class_id == 107  # the added cue copies its class
    assert edited.cues[1].z == max(c.z for c in page.sheet.cues) + 1  # and has a z of its own

    for cells, text in (
        ({1: "jelyfish"}, "cue 2: unknown class 'jelyfish'; did you mean 'jellyfish'"),
        ({1: "volcano (107)"}, "cue 2: class 107 is 'jellyfish' but name says 'volcano'"),
        ({0: 0.0}, "cue 2: time 0.000 s is not after the cue before it"),
        ({3: "fade"}, "cue 2: transition 'fade' must be smooth or cut"),
    ):
        broken = [list(r) for r in rows]
        for column, value in cells.items():
            broken[1][column] = value
        path = actions.write_table_sheet(page.sheet, broken, tmp_path / "c.csv", truncation=0.4)
        with pytest.raises(InputError) as error:
            actions.check_sheet(path)
        assert text in str(error.value) and str(path) not in str(error.value), str(error.value)
    with pytest.raises(InputError, match="cue 9 does not exist: the table has cues 1 to"):
        actions.set_class(rows, 9, "volcano")


@pytest.mark.skipif(_REASON is not None and "gradio" in (_REASON or ""), reason=_REASON or "")
def test_the_page_checks_its_controls_by_the_options_rules_and_names_the_control(song, tmp_path) -> None:
    """The page builds the same option objects as the command line; a refused value names the
    control by the label the page shows (from the same declaration)."""
    import gradio as gr

    from ganterp_fast.engine.errors import OptionError
    from ganterp_fast.engine.options import ModelOptions
    from ganterp_fast.ui.app import page_errors
    from ganterp_fast.ui.events import Events, picture
    from ganterp_fast.ui.session import Workspace

    events = Events(ModelOptions(), Workspace(tmp_path / "workspace"))
    controls = {"start": 0.0, "duration": 0.0, "threshold": 0.01, "inflection": "min", "smoothing": 256}
    controls |= {"source": "mix", "snap": False, "seed": 0, "z_mode": "per-point"}
    for name, value, text in (
        ("smoothing", -1, "smoothing (columns; 0: none) must be an integer >= 0 (0: none), got -1"),
        ("smoothing", None, "smoothing (columns; 0: none) must be an integer >= 0 (0: none), got None"),
        ("seed", 1.5, "seed must be an integer >= 0, got 1.5"),
        ("start", -2.0, "start (s) must be a number of seconds >= 0, got -2.0"),
        ("threshold", float("nan"), "threshold must be a finite number >= 0, got nan"),
    ):
        values = tuple({**controls, name: value}.values())
        handler = page_errors(lambda values=values: events.analysed("s", str(song), values))
        with pytest.raises(gr.Error) as caught:
            handler()
        assert caught.value.message == text
    with pytest.raises(OptionError) as refused:
        picture("255x144", "blur", "none", False)
    assert refused.value.named(refused.value.label).startswith("size (or WxH) 255x144 has an odd side")
    assert picture("the model's", "pad", "none", True) == picture(None, "pad", None, True)
    from ganterp_fast.ui.events import model_options

    base = ModelOptions(model="biggan-deep-128", precision="fp32")
    assert model_options(base, "  ", "", "-1,1", None, 512, 16) == base  # empty boxes: the server's model
    (tmp_path / "sr.onnx").write_bytes(b"")  # read when a render plans it
    chosen = model_options(base, "hf:someone/gan/g.onnx", "latent=z", "0,1", str(tmp_path / "sr.onnx"), 256, 8)
    assert (chosen.model, chosen.model_inputs, chosen.model_range, chosen.upscaler_tile) == (
        "hf:someone/gan/g.onnx",
        "latent=z",
        "0,1",
        256,
    )
    with pytest.raises(OptionError) as refused:
        model_options(base, "", "", "-1,1", None, -1, 16)
    named = refused.value.named(refused.value.label)
    assert named.startswith("upscaler tile"), named  # the control's label
    assert not list((tmp_path / "workspace" / "sessions").rglob("*.png"))  # refused before any analysis


def test_the_page_without_the_ui_extra_says_how_to_install_it(tiny_onnx) -> None:
    python = os.environ.get("GANTERP_RUNTIME_PYTHON")
    if not python:
        pytest.skip("GANTERP_RUNTIME_PYTHON is not set: scripts/test.sh builds a runtime-only environment and sets it")
    done = subprocess.run(
        [python, "-m", "ganterp_fast", "ui", "--model", str(tiny_onnx), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "ganterp-fast ui: error: ganterp-fast ui needs the [ui] extra: pip install 'ganterp-fast[ui]' "
        "(in a clone: pip install '.[ui]')"
    )


# ---------------------------------------------------------------------- the command


def test_ui_refuses_bad_options_in_one_line(tiny_onnx, tmp_path, capsys) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [
            (["--max-file-size", "lots"], "--max-file-size 'lots' is not a size"),
            (["--port", "70000"], "--port 70000 is not a port"),
            (["--port", str(busy.getsockname()[1])], "choose another --port"),
            (["--model", str(tmp_path / "missing.onnx")], "does not exist"),
        ]
        for extra, text in cases:
            model = [] if "--model" in extra else ["--model", str(tiny_onnx)]
            assert main(["ui", *model, *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("ganterp-fast ui: error:") and text in err[0], err
    finally:
        busy.close()
    assert not list(tmp_path.iterdir())  # nothing written


@needs_browser
def test_stopping_the_server_removes_its_files(server) -> None:
    """Last in this file: it stops the module's server."""
    roots = list(server.temp.glob("ganterp-ui-*"))
    assert len(roots) == 1 and (roots[0] / "sessions").is_dir()
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in "".join(server.stderr)
    assert not list(server.temp.glob("ganterp-ui-*"))


@needs_browser
def test_any_host_but_this_machine_is_warned_about(tiny_onnx, tmp_path) -> None:
    args = ["--host", "0.0.0.0", "--port", str(_free_port()), "--model", str(tiny_onnx), "--precision", "fp32"]
    server = Server(args, tmp_path)
    try:
        warning = "".join(server.stderr)
        assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in warning
    finally:
        assert server.stop(signal.SIGINT) == 0
