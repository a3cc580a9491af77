"""Reaching Ray: a local instance started here, or a running cluster joined within a deadline.

Ray retries an address with nothing listening for minutes, deaf to Ctrl-C and SIGTERM while
its core waits. So joining first probes the address with a plain TCP connection (a few
seconds at most, and any signal ends it), then runs `ray.init` on a helper thread while
this one waits: Ctrl-C and SIGTERM end the wait at any moment, and a cluster that does
not answer within CONNECT_TIMEOUT_S is an InputError naming the address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from ganterp_fast.engine.errors import InputError, MissingExtraError

log = logging.getLogger(__name__)

# Seconds a TCP connection to the cluster's address may take before it counts as no answer.
PROBE_TIMEOUT_S = 5.0
# Seconds `ray.init` may take to join a cluster whose address accepts connections.
CONNECT_TIMEOUT_S = 20.0
# Environment variables the workers need from the driver (Ray does not pass the environment on).
FORWARDED_ENV = ("GANTERP_CACHE_DIR", "GANTERP_CPUINFO", "PYTORCH_PRETRAINED_BIGGAN_CACHE")
# What to tell a user whose address has no cluster.
START_HINT = "start one with 'ray start --head' and pass the address it prints, or use --ray local"


def import_ray():  # -> module
    try:
        import ray
    except ImportError:
        raise MissingExtraError("--ray (rendering on a Ray cluster)", "ray") from None
    return ray


def start_local(ray) -> None:
    """Start a Ray instance on this machine (its CPUs and GPUs), keeping the caller's SIGTERM handler."""
    quiet_ray_environment()
    with keeping_sigterm():
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env(), configure_logging=False)


def join_cluster(ray, address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Join the running cluster at `address` ("auto" or HOST:PORT): probed first, then joined
    within `timeout` seconds; InputError naming the address when nothing answers there."""
    quiet_ray_environment()
    target = bootstrap_address(address)
    if target is not None:
        probe(address, *target)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env(),
                configure_logging=False,
            )
            outcome.append(None)
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    thread = threading.Thread(target=connect, name="ganterp-ray-connect", daemon=True)
    deadline = time.monotonic() + timeout
    with keeping_sigterm() as restore, _without_ray_thread_warning():
        thread.start()
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.1)  # a signal's handler runs here (Ctrl-C, SIGTERM: the caller's)
            restore()  # Ray's core installs its own SIGTERM handler while it connects
    if not outcome:
        raise InputError(
            f"--ray {address}: something listens there, but no Ray cluster answered within {timeout:.0f} s; "
            + START_HINT
        )
    error = outcome[0]
    if isinstance(error, (ConnectionError, ValueError, RuntimeError)):
        reason = " ".join(str(error).split())[:200]
        raise InputError(f"--ray {address}: no Ray cluster answers there ({reason}); {START_HINT}") from None
    if error is not None:
        raise error


def bootstrap_address(address: str) -> tuple[str, int] | None:
    """The host and port Ray would connect to for `address` ("auto": RAY_ADDRESS or the last
    `ray start` here); None where Ray's lookup is not available (then Ray's own answer counts)."""
    if "://" in address:  # a Ray Client address, ray://HOST:PORT
        host, _, port = address.split("://", 1)[1].rpartition(":")
        return (host, int(port)) if host and port.isdigit() else None
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        canonical = canonicalize_bootstrap_address(address)
    except ConnectionError:
        raise InputError(f"--ray {address}: no running Ray cluster found here; {START_HINT}") from None
    except ValueError:
        raise InputError(f"--ray {address}: give local, auto or HOST:PORT (e.g. 10.0.0.5:6379)") from None
    if canonical is None:
        return None
    host, _, port = canonical.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def probe(address: str, host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A TCP connection to HOST:PORT within `timeout` seconds, else InputError naming `address`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        if isinstance(exc, (TimeoutError, socket.timeout)):
            reason = f"no answer from {host}:{port} within {timeout:g} s"
        else:
            reason = f"{exc.strerror or exc} at {host}:{port}"
        raise InputError(f"--ray {address}: no Ray cluster answers there ({reason}); {START_HINT}") from None


def describe_resources(ray) -> str:
    total = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return f"{nodes} nodes, {int(total.get('CPU', 0))} CPUs, {int(total.get('GPU', 0))} GPUs"


@contextlib.contextmanager
def keeping_sigterm() -> Iterator[Any]:
    """Ray's core installs its own SIGTERM handler (a stack dump and exit 1); keep the caller's,
    so SIGTERM unwinds the render like Ctrl-C (the CLI: no output, exit 143). Yields a function
    that puts the caller's back at once."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None

    def restore() -> None:
        if previous is not None and signal.getsignal(signal.SIGTERM) is not previous:
            signal.signal(signal.SIGTERM, previous)

    try:
        yield restore
    finally:
        restore()


@contextlib.contextmanager
def _without_ray_thread_warning() -> Iterator[None]:
    """`ray.init` off the main thread warns that it set no SIGTERM handler: that is the point here."""

    def drop(record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()

    logger = logging.getLogger("ray._private.worker")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def quiet_ray_environment() -> None:
    """Local use without token files or usage reports; Ray's files under RAY_TMPDIR if set."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def runtime_env() -> dict[str, Any]:
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    return {"env_vars": env} if env else {}


class SignalWatch:
    """Notes a SIGTERM during a render: Ray's waits turn any signal's exception into a plain
    KeyboardInterrupt, so the caller's SIGTERM handler is called again afterwards, outside Ray."""

    def __init__(self) -> None:
        self.seen = False
        self.previous: Any = None
        if threading.current_thread() is not threading.main_thread():
            return
        self.previous = signal.getsignal(signal.SIGTERM)
        if callable(self.previous):
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        self.previous(signum, frame)

    def restore(self) -> None:
        if callable(self.previous):
            signal.signal(signal.SIGTERM, self.previous)

    def reraise(self, exc: BaseException) -> None:
        if self.seen and type(exc) is KeyboardInterrupt:
            self.restore()
            self.previous(signal.SIGTERM, None)
