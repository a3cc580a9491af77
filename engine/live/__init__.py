"""The live session: audio in (a file the page plays, or a microphone), frames out in step with it.

`feeds` turns audio time into latents (the offline path for a file, the online analysis for a
microphone), `producer` runs the generator against the audio clock and drops frames evenly
when it falls behind, `recorder` writes what was shown with what was heard, `osc` sends the
music's events to other programs, and `session` holds one model for every connected page.
The web page and its server are `ganterp_fast.live`.
"""
