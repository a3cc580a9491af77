"""`ganterp-fast ui`: the local web page (the [ui] extra), served until Ctrl-C."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import socket
import sys

from ganterp_fast.cli.flags import add_options, from_args
from ganterp_fast.engine.errors import InputError, MissingExtraError
from ganterp_fast.engine.options import ModelOptions

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb)?$")
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "ui",
        help="a local web page: drop a song, see where it changes, pick classes, render, watch",
        description=(
            "Serve a web page on this machine over the same engine as the command line: upload an "
            "audio or video file (or use the example music), tune the analysis on its plot, edit the "
            "cues and their classes, render with progress, watch and download the video. Needs the "
            "[ui] extra (Gradio); works with no network."
        ),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 serves every network interface, so anyone who can reach "
        "this machine can use the page (default: %(default)s, this machine only)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--max-file-size",
        default="1gb",
        metavar="SIZE",
        help="largest upload accepted: bytes or a size such as 200mb or 2gb (default: %(default)s)",
    )
    model = parser.add_argument_group("model and hardware (every render on the page uses them)")
    add_options(model, ModelOptions, ("model", "weights", "device", "precision"))
    add_common_flags(parser)
    parser.set_defaults(func=run)


def parse_file_size(text: str) -> int:
    """Bytes from '1gb', '200mb', '5000' (decimal units, as Gradio counts them)."""
    match = _SIZE.match(str(text).strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--max-file-size {text!r} is not a size: give bytes or a size such as 200mb or 2gb")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "b"])


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: any free port) and listening; a port in use or an address
    not of this machine is a one-line error now, not a server's search of other ports."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot listen on {host}:{port} ({reason}): choose another --port or --host") from None
    sock.listen(64)
    return sock


def check_port(host: str, port: int) -> None:
    """The port must be a port and free on the host (Gradio then binds it itself)."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port} is not a port: give a number from 1 to 65535")
    listen(host, port).close()


def run(args: argparse.Namespace) -> int:
    from ganterp_fast.engine.job import plan_model

    model = from_args(ModelOptions, args)
    max_file_size = parse_file_size(args.max_file_size)
    check_port(args.host, args.port)
    plan_model(model)  # a missing model file or an absent device: exit 2 before serving
    if importlib.util.find_spec("gradio") is None:
        raise MissingExtraError("ganterp-fast ui", "ui")
    if args.host not in LOCAL_HOSTS:
        print(
            f"ganterp-fast ui: warning: listening on {args.host}: anyone who can reach this machine on port "
            f"{args.port} can use the page, upload files and run renders",
            file=sys.stderr,
            flush=True,
        )
    from ganterp_fast.ui.session import Workspace, gradio_environment

    workspace = Workspace()
    os.environ.update(gradio_environment(workspace))  # before Gradio is imported
    from ganterp_fast.ui.app import PageOptions, serve

    def ready(url: str) -> None:
        print(f"ganterp-fast ui: the page is at {url} (Ctrl-C stops it)", flush=True)

    try:
        serve(
            PageOptions(model=model, max_file_size=max_file_size),
            host=args.host,
            port=args.port,
            workspace=workspace,
            ready=ready,
        )
    except KeyboardInterrupt:
        print("ganterp-fast ui: stopped; its temporary files are removed", file=sys.stderr, flush=True)
    return 0
