"""What the page's events do: each handler turns the controls' values into option objects (whose
rules check them, naming the control) and calls `ui.actions`.

Handlers return what Gradio puts back into the page; `app.build` wires them to the controls.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.audio.excerpt import Excerpt
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.path import PathOptions
from ganterp_fast.engine.options import ModelOptions, OutputOptions
from ganterp_fast.ui import actions
from ganterp_fast.ui.session import Workspace

MODEL_SIZE = "the model's"  # the size box's choice for no --size
NO_LAYOUT = "none"  # the layout's choice for no --layout
NO_AUDIO = "no audio yet: upload an audio or video file, or use the example music"
NO_CUES = "no cues yet: upload an audio or video file, or use the example music"


def model_options(
    base: ModelOptions,
    model: str | None,
    model_inputs: str | None,
    model_range: str,
    upscaler: str | None,
    upscaler_tile: Any,
    upscaler_overlap: Any,
) -> ModelOptions:
    """The server's model options with the advanced model accordion's values (an empty model box: the server's)."""

    def text(value: str | None) -> str | None:
        return str(value).strip() or None if value is not None else None

    return replace(
        base,
        model=text(model) or base.model,
        model_inputs=text(model_inputs),
        model_range=model_range,
        upscaler=text(upscaler),
        upscaler_tile=upscaler_tile,
        upscaler_overlap=upscaler_overlap,
    )


def picture(size: str | None, fit: str, layout: str | None, preview: bool) -> OutputOptions:
    """The output options of the page's size, fit, layout and preview controls."""
    size = str(size).strip() if size and size != MODEL_SIZE else None
    return OutputOptions(size=size, fit=fit, layout=None if layout in (None, NO_LAYOUT) else layout, preview=preview)


class Events:
    """The page's handlers over one workspace, with the model every render uses."""

    def __init__(self, model: ModelOptions, workspace: Workspace) -> None:
        self.model = model
        self.workspace = workspace
        self.generators = actions.GeneratorCache()

    def analysed(self, session: str, input_path: str, controls: tuple) -> tuple:
        """(sheet, plot, summary, table rows) of the analysis the controls ask for."""
        start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode = controls
        excerpt = Excerpt(start=start, duration=actions.number_or_none(duration))
        analysis = AnalysisOptions(
            threshold=threshold,
            inflection_type=inflection,
            smoothing=smoothing,
            analysis_source=source,
            snap_to_beats=bool(snap),
        )
        result = actions.analyse(
            input_path,
            analysis,
            PathOptions(seed=seed, z_mode=z_mode),
            self.workspace.new_file(session, "analysis", ".png"),
            start=excerpt.start,
            duration=excerpt.duration,
        )
        return result.sheet, str(result.plot), result.summary, result.rows

    def upload(
        self, file, start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode, request: gr.Request
    ) -> tuple:
        if not file:
            return (gr.skip(),) * 5
        session = request.session_hash
        path = str(self.workspace.adopt_upload(session, file))
        controls = (start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode)
        return (path, *self.analysed(session, path, controls))

    def example(
        self, start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode, request: gr.Request
    ) -> tuple:
        from ganterp_fast.engine.audio.example import write_example

        session = request.session_hash
        path = str(write_example(self.workspace.new_file(session, "example-music", ".wav")))
        controls = (start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode)
        return (path, *self.analysed(session, path, controls))

    def controls(
        self,
        input_path,
        start,
        duration,
        threshold,
        inflection,
        smoothing,
        source,
        snap,
        seed,
        z_mode,
        request: gr.Request,
    ) -> tuple:
        if not input_path:
            return (gr.skip(),) * 4
        controls = (start, duration, threshold, inflection, smoothing, source, snap, seed, z_mode)
        return self.analysed(request.session_hash, input_path, controls)

    def select(self, rows: Any, event: gr.SelectData) -> tuple:
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        table = actions.table_cells(rows)
        label = table[row][1] if 0 <= row < len(table) else None
        return row + 1, (label if label in actions.class_choices() else gr.skip())

    def set_class(self, rows: Any, number: Any, label: str | None) -> list:
        return actions.set_class(rows, number, label)

    def add(self, rows: Any, number: Any, sheet: Any) -> list:
        if sheet is None:
            raise InputError(NO_CUES)
        return actions.add_cue(rows, number, float(sheet.duration_s or 0.0))

    def delete(self, rows: Any, number: Any) -> list:
        return actions.delete_cue(rows, number)

    def save_sheet(self, sheet: Any, rows: Any, truncation: float, request: gr.Request) -> Any:
        if sheet is None:
            raise InputError(NO_CUES)
        path = self.workspace.new_file(request.session_hash, "cues", ".csv")
        actions.write_table_sheet(sheet, rows, path, truncation=float(truncation))
        actions.check_sheet(path)
        return gr.update(value=str(path), visible=True)

    def render(
        self,
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
        model: str | None,
        interpolation: str,
        model_inputs: str | None,
        model_range: str,
        upscaler: str | None,
        upscaler_tile: Any,
        upscaler_overlap: Any,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple:
        if not input_path or sheet is None:
            raise InputError(NO_AUDIO)
        session = request.session_hash
        output = picture(size, fit, layout, preview)
        chosen = model_options(self.model, model, model_inputs, model_range, upscaler, upscaler_tile, upscaler_overlap)
        sheet_path = self.workspace.new_file(session, "cues", ".csv")
        actions.write_table_sheet(sheet, rows, sheet_path, truncation=float(truncation))
        stem = f"{Path(input_path).stem}-{'preview' if preview else 'ganterp'}"
        video = self.workspace.new_file(session, stem, ".mp4")

        def report(done: int | None, total: int | None, text: str) -> None:
            progress((done, total) if total else None, desc=text, unit="frames")

        result = actions.render_sheet(
            input_path,
            sheet_path,
            video,
            model=chosen,
            fps=str(fps or ""),
            pulse=pulse,
            interpolation=interpolation,
            picture=output,
            generators=self.generators,
            progress=actions.ProgressText(report),
        )
        shown = str(result.output)
        return shown, gr.update(value=shown, visible=True), actions.render_summary(result)

    def unload(self, request: gr.Request) -> None:
        self.workspace.close_session(request.session_hash)
