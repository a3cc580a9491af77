"""`--osc HOST:PORT`: the music's moments as OSC messages (python-osc), for TouchDesigner, Resolume
and the like.

Messages (UDP, one per moment, sent when the session learns of it):
  /ganterp/inflection  index (int), time_s (float)        a change in the sound (the path's next keyframe)
  /ganterp/class       index (int), class (int), name (str)  the keyframe the picture moves to
  /ganterp/onset       index (int), time_s (float), strength (float)
  /ganterp/beat        index (int), time_s (float)
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

from ganterp_fast.engine.errors import InputError, MissingExtraError
from ganterp_fast.engine.live.feeds import Cue

log = logging.getLogger(__name__)

PREFIX = "/ganterp"


def parse_target(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port); a ValueError with the rule otherwise."""
    value = str(text).strip()
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:9000, got {text!r}")
    return host, int(port)


def check_target(text: str) -> str:
    """The option's check: the target as given, once it parses."""
    parse_target(text)
    return str(text).strip()


class OscOut:
    """Sends cues to one OSC listener over UDP (nothing waits: a listener may be absent)."""

    def __init__(self, target: str) -> None:
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError:
            raise MissingExtraError("--osc", "live") from None
        host, port = parse_target(target)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise InputError(f"--osc {target}: cannot resolve {host} ({exc.strerror or exc})") from None
        self.target = f"{host}:{port}"
        self._client = SimpleUDPClient(host, port, allow_broadcast=True)
        self.sent = 0

    def send(self, cues: Iterable[Cue]) -> None:
        for cue in cues:
            if cue.kind == "class":
                args = [cue.index, int(cue.value), cue.name]
            elif cue.kind == "onset":
                args = [cue.index, float(cue.time_s), float(cue.value)]
            else:
                args = [cue.index, float(cue.time_s)]
            try:
                self._client.send_message(f"{PREFIX}/{cue.kind}", args)
                self.sent += 1
            except OSError as exc:  # a listener that went away must not stop the show
                log.debug("OSC to %s failed: %s", self.target, exc)
