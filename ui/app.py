"""The page itself (Gradio Blocks): upload, analysis plot and controls, cue table, render, video.

The controls come from the option declarations (`ui.controls`); every handler
(`ui.events`) builds the option objects and calls `ui.actions`, which calls the engine;
errors become one line on the page (`gr.Error` with the library's message, an option's
naming its control), never a traceback. Renders are queued one at
a time (the server drives one device); each tab has its own progress and its own folder.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.audio.excerpt import Excerpt
from ganterp_fast.engine.errors import GanterpError, OptionError
from ganterp_fast.engine.latent.path import PathOptions
from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions
from ganterp_fast.engine.video.compose import SIZE_PRESETS
from ganterp_fast.ui import actions, controls
from ganterp_fast.ui.events import MODEL_SIZE, NO_LAYOUT, Events
from ganterp_fast.ui.session import Workspace

log = logging.getLogger(__name__)

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
        except OptionError as exc:  # a control's value: named by the control's label
            raise error(exc.named(exc.label) if exc.label else str(exc)) from None
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


@dataclass
class Page:
    """The page's components, as the layout functions make them, for the wiring."""

    input_state: Any = None
    sheet_state: Any = None
    upload: Any = None
    example: Any = None
    analysis_controls: list[Any] = field(default_factory=list)
    summary: Any = None
    plot: Any = None
    render_controls: list[Any] = field(default_factory=list)
    model_controls: list[Any] = field(default_factory=list)  # the advanced model accordion's
    table: Any = None
    cue_number: Any = None
    picker: Any = None
    buttons: dict[str, Any] = field(default_factory=dict)
    sheet_file: Any = None
    outputs: list[Any] = field(default_factory=list)  # video, download, status


def build(options: PageOptions, workspace: Workspace) -> gr.Blocks:
    """The Blocks app over `workspace` (uploads, plots, sheets and videos live in its session folders)."""
    events = Events(options.model, workspace)
    page = Page()
    with gr.Blocks(title=options.title, analytics_enabled=False) as demo:
        gr.Markdown(_heading(options))
        page.input_state, page.sheet_state = gr.State(None), gr.State(None)
        start, duration = _input_row(page, options)
        page.analysis_controls = [start, duration, *_analysis_row()]
        page.summary = gr.Markdown("Upload a file, or use the example music, to see its analysis.", elem_id="summary")
        page.plot = gr.Image(
            label="Analysis", type="filepath", interactive=False, buttons=["download", "fullscreen"], elem_id="plot"
        )
        with gr.Row():
            with gr.Column(scale=1):
                seed_and_mode = _render_settings(page)
                _model_settings(page, options.model)
            with gr.Column(scale=2):
                _cue_editor(page)
        page.analysis_controls += seed_and_mode
        page.buttons["render"] = gr.Button("Render", variant="primary", elem_id="render")
        status = gr.Markdown(elem_id="render-status")
        video = gr.Video(label="Music video", interactive=False, height=420, elem_id="video")
        download = gr.DownloadButton("Download the video", visible=False, elem_id="download")
        page.outputs = [video, download, status]
        _wire(page, events, lambda fn: page_errors(fn, workspace.shorten))
        demo.unload(events.unload)
    return demo


def _heading(options: PageOptions) -> str:
    model = options.model
    weights = " (seeded random weights)" if model.weights == "random" else ""
    return (
        f"# {options.title}\n"
        "Drop a song or a video: the analysis finds where the sound changes, each change gets an "
        "ImageNet class, and BigGAN draws the path between them.  \n"
        f"Model: `{model.model}`{weights}, device `{model.device}`, precision `{model.precision}` "
        "(another model, any ONNX generator or upscaler: under Advanced model)."
    )


def _input_row(page: Page, options: PageOptions) -> tuple[Any, Any]:
    """The upload, the example button and the excerpt; returns the start and duration boxes."""
    with gr.Row(equal_height=True):
        page.upload = gr.File(
            label=f"Audio or video file (up to {_size(options.max_file_size)})",
            file_types=AUDIO_VIDEO_TYPES,
            type="filepath",
            height=150,
            elem_id="upload",
            scale=3,
        )
        with gr.Column(scale=1):
            page.example = gr.Button("Use the example music", elem_id="example")
            with gr.Row():
                start = controls.number(Excerpt, "start", minimum=0, elem_id="start")
                duration = controls.number(Excerpt, "duration", value=0.0, minimum=0, elem_id="duration")
    return start, duration


def _analysis_row() -> list[Any]:
    """threshold, inflection type, smoothing, analysis source, snap to beats."""
    with gr.Row():
        return [
            controls.number(AnalysisOptions, "threshold", minimum=0, step=0.001, elem_id="threshold"),
            controls.radio(AnalysisOptions, "inflection_type", elem_id="inflection"),
            controls.number(AnalysisOptions, "smoothing", minimum=0, precision=0, elem_id="smoothing"),
            controls.radio(AnalysisOptions, "analysis_source"),
            controls.checkbox(AnalysisOptions, "snap_to_beats"),
        ]


def _render_settings(page: Page) -> list[Any]:
    """The path and the picture; returns the seed and z mode (which redraw the analysis's cues)."""
    with gr.Row():
        seed = controls.number(PathOptions, "seed", minimum=0, precision=0, elem_id="seed")
        z_mode = controls.radio(PathOptions, "z_mode")
    truncation = controls.slider(PathOptions, "truncation", 0.02, 1.0, step=0.01, elem_id="truncation")
    with gr.Row():
        fps = controls.dropdown(RenderOptions, "fps", FPS_CHOICES, elem_id="fps")
        pulse = controls.number(PathOptions, "pulse", minimum=0, step=0.1, elem_id="pulse")
    with gr.Row():
        size = controls.dropdown(OutputOptions, "size", SIZE_CHOICES, value=MODEL_SIZE, elem_id="size")
        fit = controls.radio(OutputOptions, "fit", elem_id="fit")
    layout = controls.radio(OutputOptions, "layout", extra=(NO_LAYOUT,), value=NO_LAYOUT)
    preview_fps = OutputOptions().preview_fps
    preview = controls.checkbox(
        OutputOptions, "preview", label=f"preview: {preview_fps} fps, at most 512 px, fast", elem_id="preview"
    )
    page.render_controls = [truncation, fps, pulse, size, fit, layout, preview]
    return [seed, z_mode]


def _model_settings(page: Page, model: ModelOptions) -> None:
    """The advanced model accordion: the model (a name, a checkpoint folder, any generator .onnx or an
    hf: name; the server's by default), how the path moves, a foreign graph's inputs and range, the upscaler."""
    with gr.Accordion("Advanced model", open=False, elem_id="advanced-model"):
        page.model_controls = [
            controls.textbox(ModelOptions, "model", value=model.model, elem_id="model"),
            controls.radio(PathOptions, "interpolation", elem_id="interpolation"),
            controls.textbox(ModelOptions, "model_inputs", value=model.model_inputs, elem_id="model-inputs"),
            controls.radio(ModelOptions, "model_range", value=model.model_range, elem_id="model-range"),
            controls.textbox(ModelOptions, "upscaler", value=model.upscaler, elem_id="upscaler"),
            controls.number(ModelOptions, "upscaler_tile", value=model.upscaler_tile, precision=0, elem_id="tile"),
            controls.number(
                ModelOptions, "upscaler_overlap", value=model.upscaler_overlap, precision=0, elem_id="overlap"
            ),
        ]


def _cue_editor(page: Page) -> None:
    """The cue table, the cue number and class picker, and the buttons that edit and save it."""
    page.table = gr.Dataframe(
        headers=actions.TABLE_HEADERS,
        datatype=["number", "str", "number", "str"],
        type="array",
        interactive=True,
        label="Cues: one row per change (time in seconds, class, z number, smooth or cut); "
        "changing the analysis or the seed draws them again",
        elem_id="cues",
    )
    with gr.Row():
        page.cue_number = gr.Number(1, label="cue", minimum=1, precision=0, elem_id="cue-number", scale=1)
        page.picker = gr.Dropdown(
            actions.class_choices(),
            value=None,
            filterable=True,
            label="class (type to search the 1000 names)",
            elem_id="class-picker",
            scale=3,
        )
    with gr.Row():
        for key, text in (
            ("set-class", "Set the cue's class"),
            ("add-cue", "Add a cue after it"),
            ("delete-cue", "Delete it"),
            ("save-sheet", "Save the cue sheet"),
        ):
            page.buttons[key] = gr.Button(text, elem_id=key)
    page.sheet_file = gr.File(label="Cue sheet", interactive=False, visible=False, elem_id="sheet-file")


def _wire(page: Page, events: Events, on_page: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Each control's event to its handler (errors become one line on the page)."""
    analysis_outputs = [page.sheet_state, page.plot, page.summary, page.table]
    page.upload.upload(
        on_page(events.upload), [page.upload, *page.analysis_controls], [page.input_state, *analysis_outputs]
    )
    page.example.click(on_page(events.example), page.analysis_controls, [page.input_state, *analysis_outputs])
    for control in page.analysis_controls:
        control.change(
            on_page(events.controls),
            [page.input_state, *page.analysis_controls],
            analysis_outputs,
            trigger_mode="always_last",
            show_progress="minimal",
        )
    table, number, buttons = page.table, page.cue_number, page.buttons
    table.select(on_page(events.select), [table], [number, page.picker])
    buttons["set-class"].click(on_page(events.set_class), [table, number, page.picker], [table])
    buttons["add-cue"].click(on_page(events.add), [table, number, page.sheet_state], [table])
    buttons["delete-cue"].click(on_page(events.delete), [table, number], [table])
    truncation = page.render_controls[0]
    buttons["save-sheet"].click(on_page(events.save_sheet), [page.sheet_state, table, truncation], [page.sheet_file])
    buttons["render"].click(
        on_page(events.render),
        [page.input_state, page.sheet_state, table, *page.render_controls, *page.model_controls],
        page.outputs,
        concurrency_limit=1,
        concurrency_id="render",
    )


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
