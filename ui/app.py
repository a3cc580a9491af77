"""The page itself (Gradio Blocks): upload, analysis plot and controls, cue table, render, video.

Every handler calls `ui.actions`, which calls the engine; errors become one line on the
page (`gr.Error` with the library's message), never a traceback. Renders are queued one at
a time (the server drives one device); each tab has its own progress and its own folder.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.analysis.beats import SOURCES
from ganterp_fast.engine.analysis.inflection import INFLECTION_TYPES
from ganterp_fast.engine.errors import GanterpError, InputError
from ganterp_fast.engine.latent.path import Z_MODES, PathOptions
from ganterp_fast.engine.options import ModelOptions, OutputOptions
from ganterp_fast.engine.video.compose import FITS, LAYOUTS, SIZE_PRESETS
from ganterp_fast.ui import actions
from ganterp_fast.ui.session import Workspace

log = logging.getLogger(__name__)

_ANALYSIS = AnalysisOptions()
_PATH = PathOptions()
_OUTPUT = OutputOptions()
MODEL_SIZE = "the model's"
NO_LAYOUT = "none"
SIZE_CHOICES = [MODEL_SIZE, *SIZE_PRESETS]
FPS_CHOICES = ["24", "25", "30", "30000/1001", "60", "native"]
AUDIO_VIDEO_TYPES = [
    *(f".{s}" for s in ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aac")),
    *(f".{s}" for s in ("mp4", "mkv", "mov", "webm", "m4v")),
]


@dataclass(frozen=True)
class PageOptions:
    """What the server was started with: the model every render uses, and the upload limit."""

    model: ModelOptions = field(default_factory=ModelOptions)
    max_file_size: str | int = "1gb"
    title: str = "ganterp-fast"


def _size(limit: str | int) -> str:
    """An upload limit as the page states it ('1 GB')."""
    if isinstance(limit, str):
        return limit
    for unit, scale in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if limit >= scale:
            return f"{limit / scale:g} {unit}"
    return f"{limit} bytes"


def page_errors(fn: Callable[..., Any], shorten: Callable[[str], str] = str) -> Callable[..., Any]:
    """Run a handler; a library error (or any other) reaches the page as one readable line.

    `shorten` rewrites the line (the workspace's paths to the names the user knows).
    """

    def error(text: str) -> gr.Error:
        return gr.Error(shorten(text), print_exception=False)

    @functools.wraps(fn)
    def handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except GanterpError as exc:
            raise error(str(exc)) from None
        except MemoryError:
            raise error("out of memory: try a shorter excerpt") from None
        except OSError as exc:
            reason = " ".join(str(exc.strerror or exc).split())
            raise error(f"{reason}: {exc.filename}" if exc.filename else reason) from None
        except Exception as exc:  # a fault: logged with its traceback on the server, one line on the page
            log.exception("%s failed", fn.__name__)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise error(f"unexpected error ({type(exc).__name__}): {reason}") from None

    return handler


def build(options: PageOptions, workspace: Workspace) -> gr.Blocks:
    """The Blocks app over `workspace` (uploads, plots, sheets and videos live in its session folders)."""
    generators = actions.GeneratorCache()

    def on_page(fn: Callable[..., Any]) -> Callable[..., Any]:
        return page_errors(fn, workspace.shorten)

    model = options.model
    weights = " (seeded random weights)" if model.weights == "random" else ""

    def analysis_options(threshold, inflection, smoothing, source, snap) -> AnalysisOptions:
        try:
            smoothing = int(smoothing)
        except (TypeError, ValueError):
            raise InputError(f"smoothing must be a whole number of columns >= 0 (0: none), got {smoothing!r}") from None
        return AnalysisOptions(
            threshold=float(threshold if threshold is not None else _ANALYSIS.threshold),
            inflection_type=inflection,
            smoothing=smoothing,
            analysis_source=source,
            snap_to_beats=bool(snap),
        )

    def path_options(seed, z_mode) -> PathOptions:
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise InputError(f"seed must be a whole number >= 0, got {seed!r}") from None
        return PathOptions(seed=seed, z_mode=z_mode)

    def analysed(session: str, input_path: str, controls: tuple) -> tuple:
        start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode = controls
        result = actions.analyse(
            input_path,
            analysis_options(threshold, inflection, smoothing, source, snap),
            path_options(seed, z_mode),
            workspace.new_file(session, "analysis", ".png"),
            start=float(start or 0.0),
            duration=actions.number_or_none(duration),
        )
        return result.sheet, str(result.plot), result.summary, result.rows

    @on_page
    def on_upload(
        file, start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode, request: gr.Request
    ) -> tuple:
        if not file:
            return (gr.skip(),) * 5
        session = request.session_hash
        path = str(workspace.adopt_upload(session, file))
        controls = (start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode)
        return (path, *analysed(session, path, controls))

    @on_page
    def on_example(
        start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode, request: gr.Request
    ) -> tuple:
        from ganterp_fast.engine.audio.example import write_example

        session = request.session_hash
        path = str(write_example(workspace.new_file(session, "example-music", ".wav")))
        controls = (start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode)
        return (path, *analysed(session, path, controls))

    @on_page
    def on_controls(
        input_path, start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode, request: gr.Request
    ) -> tuple:
        if not input_path:
            return (gr.skip(),) * 4
        controls = (start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode)
        return analysed(request.session_hash, input_path, controls)

    @on_page
    def on_select(rows: Any, event: gr.SelectData) -> tuple:
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        table = actions.table_cells(rows)
        label = table[row][1] if 0 <= row < len(table) else None
        choices = actions.class_choices()
        return row + 1, (label if label in choices else gr.skip())

    @on_page
    def on_set_class(rows: Any, number: Any, label: str | None) -> list:
        return actions.set_class(rows, number, label)

    @on_page
    def on_add(rows: Any, number: Any, sheet: Any) -> list:
        if sheet is None:
            raise InputError("no cues yet: upload an audio or video file, or use the example music")
        return actions.add_cue(rows, number, float(sheet.duration_s or 0.0))

    @on_page
    def on_delete(rows: Any, number: Any) -> list:
        return actions.delete_cue(rows, number)

    @on_page
    def on_save_sheet(sheet: Any, rows: Any, truncation: float, request: gr.Request) -> Any:
        if sheet is None:
            raise InputError("no cues yet: upload an audio or video file, or use the example music")
        path = workspace.new_file(request.session_hash, "cues", ".csv")
        actions.write_table_sheet(sheet, rows, path, truncation=float(truncation))
        actions.check_sheet(path)
        return gr.update(value=str(path), visible=True)

    @on_page
    def on_render(
        input_path: str | None,
        sheet: Any,
        rows: Any,
        truncation: float,
        fps: str,
        pulse: float,
        size: str | None,
        fit: str,
        layout: str,
        preview: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple:
        if not input_path or sheet is None:
            raise InputError("no audio yet: upload an audio or video file, or use the example music")
        session = request.session_hash
        output_flags = ["--fit", fit]
        if size and size != MODEL_SIZE:
            output_flags += ["--size", str(size).strip()]
        if layout and layout != NO_LAYOUT:
            output_flags += ["--layout", layout]
        if preview:
            output_flags.append("--preview")
        sheet_path = workspace.new_file(session, "cues", ".csv")
        actions.write_table_sheet(sheet, rows, sheet_path, truncation=float(truncation))
        stem = f"{Path(input_path).stem}-{'preview' if preview else 'ganterp'}"
        output = workspace.new_file(session, stem, ".mp4")

        def report(done: int | None, total: int | None, text: str) -> None:
            progress((done, total) if total else None, desc=text, unit="frames")

        result = actions.render_sheet(
            input_path,
            sheet_path,
            output,
            model=model,
            fps=str(fps or "30"),
            pulse=float(pulse or 0.0),
            output_flags=output_flags,
            generators=generators,
            progress=actions.ProgressText(report),
        )
        video = str(result.output)
        return video, gr.update(value=video, visible=True), actions.render_summary(result)

    def on_unload(request: gr.Request) -> None:
        workspace.close_session(request.session_hash)

    with gr.Blocks(title=options.title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {options.title}\n"
            "Drop a song or a video: the analysis finds where the sound changes, each change gets an "
            "ImageNet class, and BigGAN draws the path between them.  \n"
            f"Model: `{model.model}`{weights}, device `{model.device}`, precision `{model.precision}`."
        )
        input_state = gr.State(None)
        sheet_state = gr.State(None)
        with gr.Row(equal_height=True):
            upload = gr.File(
                label=f"Audio or video file (up to {_size(options.max_file_size)})",
                file_types=AUDIO_VIDEO_TYPES,
                type="filepath",
                height=150,
                elem_id="upload",
                scale=3,
            )
            with gr.Column(scale=1):
                example = gr.Button("Use the example music", elem_id="example")
                with gr.Row():
                    start = gr.Number(0.0, label="start (s)", minimum=0, elem_id="start")
                    duration = gr.Number(0.0, label="duration (s; 0: to the end)", minimum=0, elem_id="duration")
        with gr.Row():
            threshold = gr.Number(_ANALYSIS.threshold, label="threshold", minimum=0, step=0.001, elem_id="threshold")
            inflection = gr.Radio(
                list(INFLECTION_TYPES), value=_ANALYSIS.inflection_type, label="inflection type", elem_id="inflection"
            )
            smoothing = gr.Number(
                _ANALYSIS.smoothing, label="smoothing (columns; 0: none)", minimum=0, precision=0, elem_id="smoothing"
            )
            source = gr.Radio(list(SOURCES), value=_ANALYSIS.analysis_source, label="analysis source")
            snap = gr.Checkbox(False, label="snap to beats")
        summary = gr.Markdown("Upload a file, or use the example music, to see its analysis.", elem_id="summary")
        plot = gr.Image(
            label="Analysis", type="filepath", interactive=False, buttons=["download", "fullscreen"], elem_id="plot"
        )
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    seed = gr.Number(_PATH.seed, label="seed", minimum=0, precision=0, elem_id="seed")
                    z_mode = gr.Radio(list(Z_MODES), value=_PATH.z_mode, label="z mode")
                truncation = gr.Slider(
                    0.02, 1.0, value=_PATH.truncation, step=0.01, label="truncation", elem_id="truncation"
                )
                with gr.Row():
                    fps = gr.Dropdown(FPS_CHOICES, value="30", allow_custom_value=True, label="fps", elem_id="fps")
                    pulse = gr.Number(0.0, label="pulse (0: off)", minimum=0, step=0.1, elem_id="pulse")
                with gr.Row():
                    size = gr.Dropdown(
                        SIZE_CHOICES, value=MODEL_SIZE, allow_custom_value=True, label="size (or WxH)", elem_id="size"
                    )
                    fit = gr.Radio(list(FITS), value=_OUTPUT.fit, label="fit", elem_id="fit")
                layout = gr.Radio([NO_LAYOUT, *LAYOUTS], value=NO_LAYOUT, label="layout with the input's video")
                preview = gr.Checkbox(
                    False, label=f"preview: {_OUTPUT.preview_fps} fps, at most 512 px, fast", elem_id="preview"
                )
            with gr.Column(scale=2):
                table = gr.Dataframe(
                    headers=actions.TABLE_HEADERS,
                    datatype=["number", "str", "number", "str"],
                    type="array",
                    interactive=True,
                    label="Cues: one row per change (time in seconds, class, z number, smooth or cut); "
                    "changing the analysis or the seed draws them again",
                    elem_id="cues",
                )
                with gr.Row():
                    cue_number = gr.Number(1, label="cue", minimum=1, precision=0, elem_id="cue-number", scale=1)
                    picker = gr.Dropdown(
                        actions.class_choices(),
                        value=None,
                        filterable=True,
                        label="class (type to search the 1000 names)",
                        elem_id="class-picker",
                        scale=3,
                    )
                with gr.Row():
                    set_class = gr.Button("Set the cue's class", elem_id="set-class")
                    add = gr.Button("Add a cue after it", elem_id="add-cue")
                    delete = gr.Button("Delete it", elem_id="delete-cue")
                    save_sheet = gr.Button("Save the cue sheet", elem_id="save-sheet")
                sheet_file = gr.File(label="Cue sheet", interactive=False, visible=False, elem_id="sheet-file")
        render = gr.Button("Render", variant="primary", elem_id="render")
        status = gr.Markdown(elem_id="render-status")
        video = gr.Video(label="Music video", interactive=False, height=420, elem_id="video")
        download = gr.DownloadButton("Download the video", visible=False, elem_id="download")

        controls = [start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode]
        analysis_outputs = [sheet_state, plot, summary, table]
        upload.upload(on_upload, [upload, *controls], [input_state, *analysis_outputs])
        example.click(on_example, controls, [input_state, *analysis_outputs])
        for control in controls:
            control.change(
                on_controls,
                [input_state, *controls],
                analysis_outputs,
                trigger_mode="always_last",
                show_progress="minimal",
            )
        table.select(on_select, [table], [cue_number, picker])
        set_class.click(on_set_class, [table, cue_number, picker], [table])
        add.click(on_add, [table, cue_number, sheet_state], [table])
        delete.click(on_delete, [table, cue_number], [table])
        save_sheet.click(on_save_sheet, [sheet_state, table, truncation], [sheet_file])
        render.click(
            on_render,
            [input_state, sheet_state, table, truncation, fps, pulse, size, fit, layout, preview],
            [video, download, status],
            concurrency_limit=1,
            concurrency_id="render",
        )
        demo.unload(on_unload)
    return demo


def serve(
    options: PageOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    workspace: Workspace | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the page until interrupted (KeyboardInterrupt); the workspace is removed when it stops.

    `ready` is called with the page's address once it answers. Gradio reads its cache folder
    and analytics switch from the environment: set them first (`session.gradio_environment`).
    """
    workspace = workspace or Workspace()
    try:
        demo = build(options, workspace)
        demo.queue(default_concurrency_limit=4)
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            max_file_size=options.max_file_size,
            allowed_paths=[str(workspace.root)],
            prevent_thread_lock=True,
            quiet=True,
            share=False,
            inbrowser=False,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            footer_links=[],
        )
        if ready is not None:
            ready(url)
        try:
            while True:  # until Ctrl-C or SIGTERM (a KeyboardInterrupt here)
                time.sleep(0.5)
        finally:
            demo.close()
    finally:
        workspace.close()
