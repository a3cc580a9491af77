"""The live page (`ganterp-fast live`): a local web server and the page it serves.

`server` serves the page, the input's audio and a WebSocket per page over the engine's live
session (`engine.live`); `page/` is the page itself (plain HTML and JavaScript, nothing
fetched from elsewhere).
"""
