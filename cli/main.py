"""Entry point of the `ganterp-fast` command: subcommands, logging, error -> exit code.

Each subcommand lives in its own module with `register(subparsers)`, which adds its parser
and sets `func` to a `run(args) -> int` function. Library errors become one-line messages
and their exit codes here, and only here; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from ganterp_fast import __version__
from ganterp_fast.engine.errors import GanterpError, OptionError

SUBCOMMANDS = ("analyze", "render", "export", "inspect", "classes", "bench", "ui", "live")
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

log = logging.getLogger("ganterp_fast")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganterp-fast",
        description=(
            "Music videos from audio: find the moments where the sound changes and follow "
            "them with a path through BigGAN's latent space."
        ),
        epilog="Run 'ganterp-fast COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"ganterp_fast.cli.{name}_cmd")
        module.register(subparsers)
    return parser


def describe(exc: GanterpError) -> str:
    """A library error as the command line says it: an option's error names its flag."""
    if isinstance(exc, OptionError) and exc.flag:
        return exc.named(exc.flag)
    return str(exc)


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ganterp_fast")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _raise_keyboard_interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary files are cleaned up the same way."""

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a library user's worker)
        pass


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as a KeyboardInterrupt."""


def _describe_os_error(exc: OSError) -> str:
    """One line: what failed and on which file ("No space left on device: out.mp4")."""
    reason = " ".join(str(exc.strerror or exc).split())
    return f"{reason}: {exc.filename}" if exc.filename else reason


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args)
    _raise_keyboard_interrupt_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except GanterpError as exc:
        if args.debug:
            raise
        print(f"ganterp-fast {args.command}: error: {describe(exc)}", file=sys.stderr)
        return exc.exit_code
    except _Terminated:
        print(f"ganterp-fast {args.command}: terminated; nothing was written", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"ganterp-fast {args.command}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except OSError as exc:  # a fault of the disk or the system while working (disk full, I/O error)
        if args.debug:
            raise
        print(f"ganterp-fast {args.command}: error: {_describe_os_error(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        if args.debug:
            raise
        print(f"ganterp-fast {args.command}: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 1
