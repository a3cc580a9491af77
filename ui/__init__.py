"""The local web page (`ganterp-fast ui`, the [ui] extra): a thin Gradio layer over the engine.

`session` keeps the files (no Gradio), `actions` turns page values into engine calls (no
Gradio), `controls` makes the page's controls from the option declarations, `events` holds
the handlers, `app` lays out the page and wires the events to the handlers. Import `app`
only after setting `session.gradio_environment(...)`: Gradio reads those variables when it
is imported.
"""
