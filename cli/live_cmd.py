"""`ganterp-fast live [INPUT | --mic]`: the video drawn in step with a song or a microphone, in a page."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading

from ganterp_fast.cli.direct import add_direction_args, add_path_args
from ganterp_fast.cli.flags import add_options, from_args
from ganterp_fast.cli.options import add_analysis_args, add_example_flag
from ganterp_fast.cli.ui_cmd import LOCAL_HOSTS, listen
from ganterp_fast.engine.backends.preparation import ModelProgress
from ganterp_fast.engine.errors import InputError, MissingExtraError
from ganterp_fast.engine.live.session import LiveOptions
from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions
from ganterp_fast.engine.video.encode import EncodeOptions

#: Seconds between the terminal's status lines.
STATUS_EVERY_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "live",
        help="draw the video live, in step with a song the page plays or with a microphone, in a full-screen page",
        description=(
            "Serve a page on this machine that fills the screen with the video as it is made. With INPUT the "
            "page plays the file and shows, at each moment of its audio, the frame made for that moment (the "
            "render's own path); with --mic (or no INPUT) it listens to the browser's microphone or line-in and "
            "the online analysis moves the picture with the sound. When the generator is slower than the frame "
            "rate, frames are dropped evenly, never queued. Needs the [live] extra. Ctrl-C (or the page's stop "
            "control) ends the session and writes --record."
        ),
        epilog=(
            "examples:\n"
            "  ganterp-fast live song.mp3 --precision bf16              # open the address it prints\n"
            "  ganterp-fast live --mic --classes 'jellyfish, volcano' --record set.mp4\n"
            "  ganterp-fast live song.mp3 --osc 127.0.0.1:9000          # TouchDesigner, Resolume ...\n"
            "  ganterp-fast live --example --weights random             # offline try-out"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        nargs="?",
        help="audio or video file the page plays (wav, flac, mp3, ogg, opus, m4a, mp4, mkv, mov, webm); "
        "leave it out to listen to a microphone",
    )
    add_example_flag(parser)
    live = parser.add_argument_group("the live page")
    add_options(live, LiveOptions, ("mic", "host", "port", "record", "osc", "live_batch"))
    add_options(live, RenderOptions, ("overwrite",))
    path = add_path_args(parser, "the path through latent space")
    add_direction_args(
        path,
        cues_help="a cue sheet (from 'analyze --cues'): with INPUT, its cues; with --mic, its "
        "classes in order, one per inflection point",
    )
    video = parser.add_argument_group("video")
    add_options(video, RenderOptions, ("fps",))
    add_options(video, OutputOptions, ("size", "fit"))
    add_options(video, EncodeOptions, ("crf", "preset"))
    add_options(
        parser.add_argument_group("model and hardware"),
        ModelOptions,
        (
            "model",
            "weights",
            "device",
            "precision",
            "threads",
            "model_inputs",
            "model_range",
            "upscaler",
            "upscaler_tile",
            "upscaler_overlap",
        ),
    )
    add_analysis_args(parser)
    add_common_flags(parser)
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace) -> tuple[RenderOptions, LiveOptions]:
    from ganterp_fast.cli.render_cmd import options_from_args  # the flags live has, as render reads them

    return options_from_args(args), from_args(LiveOptions, args)


def run(args: argparse.Namespace) -> int:
    options, live = _options(args)
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("starlette") is None:
        raise MissingExtraError("ganterp-fast live", "live")
    source = None
    if args.example:
        if args.input:
            raise InputError(f"give either INPUT ({args.input}) or --example, not both")
        from ganterp_fast.engine.audio.example import write_example

        source = str(write_example())
    elif args.input:
        source = args.input
    if source is not None and live.mic:
        raise InputError(f"give either INPUT ({source}) or --mic, not both")
    audio = None
    if source is not None:  # no audio, or not a file: one line before any work (probed once, kept)
        from ganterp_fast.engine.audio.source import open_source

        audio = open_source(source)
    if live.record is not None:
        from ganterp_fast.engine.files import check_output
        from ganterp_fast.engine.video.encode import container_for

        container_for(check_output(live.record, overwrite=options.overwrite))
    from ganterp_fast.live.server import LiveServer

    sock = listen(live.host, live.port)  # a port in use: exit 2 before the model is prepared
    say = (
        (lambda text: None)
        if args.quiet
        else (lambda text: print(f"ganterp-fast live: {text}", file=sys.stderr, flush=True))
    )

    def progress(update) -> None:  # type: ignore[no-untyped-def]
        if not args.quiet and isinstance(update, ModelProgress):
            print(update.line(), file=sys.stderr, flush=True)

    from ganterp_fast.engine.live.session import LiveSession

    try:
        say(f"preparing model {options.model.model}" + (f" and analysing {source}" if source else ""))
        session = LiveSession(
            audio,
            options,
            live,
            progress=progress,
            notify=lambda text: print(f"ganterp-fast live: warning: {text}", file=sys.stderr, flush=True),
        )
    except BaseException:
        sock.close()
        raise
    server = LiveServer(session, sock, title=f"ganterp-fast live{f': {source}' if source else ''}")
    if live.host not in LOCAL_HOSTS:
        print(
            f"ganterp-fast live: warning: listening on {live.host}: anyone who can reach this machine on port "
            f"{live.port} can open the page and use this machine's generator; browsers give a microphone only to "
            "pages on localhost or https",
            file=sys.stderr,
            flush=True,
        )
    what = f"plays {source}" if source else "listens to the microphone or line-in"
    print(  # even with -q: the address is what the command is for
        f"ganterp-fast live: the page is at {server.url} ({what}; {float(session.fps):g} fps, "
        f"{session.width}x{session.height}, {session.generator.device} "
        f"{getattr(session.generator, 'precision', '')}); Ctrl-C ends the session",
        file=sys.stderr,
        flush=True,
    )
    done = threading.Event()
    status = threading.Thread(target=_status, args=(session, say, done), daemon=True)
    status.start()
    interrupted = False
    try:
        server.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        done.set()
        try:
            written = session.close()
        except BaseException:
            session.abort()
            raise
    how = "stopped from the page" if server.stopped_by_page.is_set() else "stopped" if interrupted else "ended"
    if live.record is not None:
        say(f"{how}; " + (f"recorded {written}" if written else "nothing was heard, so no recording was written"))
    else:
        say(how)
    return 0


def _status(session, say, done: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """A line every few seconds with what each page measures."""
    while not done.wait(STATUS_EVERY_S):
        for page in list(session.pages):
            s = page.stats
            if not s.get("shown"):
                continue
            latency = s.get("latency_ms")
            say(
                f"page {s.get('page', '?')}: {s.get('shown_fps', 0):.1f} fps shown of {float(page.feed.fps):g}, "
                f"latency {latency:.0f} ms, {s.get('dropped', 0)} dropped"
                if latency is not None
                else f"page {s.get('page', '?')}: {s.get('shown_fps', 0):.1f} fps shown, {s.get('dropped', 0)} dropped"
            )
