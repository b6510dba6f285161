"""The one service runtime behind ``tick``, ``drain`` and ``reservations``.

A service module keeps only what is particular to its pattern: it adds its own flags, validates
them, and writes one ``serve(svc)`` coroutine. :func:`run_service` does the rest, the same way for
every service:

* logging through :mod:`logging` to stderr (``-v`` for debug, ``--quiet`` for problems only);
* a bounded first connect (``--server/--ca/--cert/--key`` or ``NATS_*``) that a stop signal also
  interrupts, then unlimited reconnects, with every disconnect, reconnect and async error logged;
* SIGINT/SIGTERM set :attr:`Service.stop`; the graceful shutdown gets ``grace`` seconds, and a
  second signal exits at once, so a service never outlives a stop request;
* :meth:`Service.ready` prints the one readiness line (stdout, flushed) that scripts wait for;
* on the way out the connection is drained (bounded), then closed.

Usage::

    def configure_cli(parser):
        add_service_arguments(parser)
        parser.add_argument("--name", ...)

    def run_cli(args):
        check_everything(args)                       # before connecting: one line and exit 2
        return run_service(args, f"natsdemo-x-{args.name}", serve)

    async def serve(svc: Service) -> int:
        ...; svc.ready("watching ..."); await svc.stop.wait(); ...; return 0

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext

from natsdemo.core.connect import (
    DEFAULT_URL,
    add_connection_arguments,
    check_servers,
    client_tls_context,
    connect_from_args,
    split_servers,
)
from natsdemo.core.errors import UsageError
from natsdemo.core.streams import REPLICAS_ENV, check_replicas

log = logging.getLogger("natsdemo.service")

GRACE = 30.0  # seconds a graceful shutdown may take before the process exits anyway
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class Service:
    """What :func:`run_service` hands to a service's ``serve`` coroutine."""

    name: str
    nc: Client
    js: JetStreamContext
    stop: asyncio.Event
    args: argparse.Namespace
    log: logging.Logger = field(default=log)

    def ready(self, line: str) -> None:
        """Print the readiness line (once the service really serves)."""
        print(line, flush=True)

    def say(self, line: str) -> None:
        """Print a result line on stdout (what a user or a test reads), flushed."""
        print(line, flush=True)


Serve = Callable[[Service], Awaitable[int | None]]


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every service shares: connection, ``--replicas``, ``-v/--verbose`` and ``--quiet``."""
    add_connection_arguments(parser)
    parser.add_argument(
        "--replicas", type=_replicas, default=None, metavar="N",
        help="replicas of the streams it creates (default: $NATS_REPLICAS, else 3 on a cluster, 1 on one server)",
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="log debug detail (connection events, retries)")
    noise.add_argument("-q", "--quiet", action="store_true", help="log problems only, print no per-event lines")


def _replicas(value: str) -> int:
    try:
        return check_replicas(value)
    except UsageError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of replicas: use 1 to 5") from None


def configure_logging(args: argparse.Namespace) -> None:
    """INFO by default, DEBUG with ``-v``, WARNING with ``--quiet``; to stderr."""
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING if getattr(args, "quiet", False) \
        else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT, force=True)
    if level > logging.DEBUG:
        logging.getLogger("nats").setLevel(logging.WARNING)  # nats-py's own chatter
        logging.getLogger("asyncio").setLevel(logging.ERROR)  # "eof_received() has no effect when using ssl"


def stop_event(grace: float = GRACE) -> asyncio.Event:
    """An event set on SIGINT or SIGTERM, for services that shut down gracefully.

    Call it from inside the running loop. The graceful shutdown gets ``grace`` seconds: if
    something hangs (a library task that ignores cancellation), the process exits anyway, and a
    second signal exits at once.
    """
    event = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if event.is_set():
            print("second stop signal: exiting now", file=sys.stderr, flush=True)
            os._exit(130)
        event.set()
        timer = threading.Timer(grace, _exit_after_grace, args=(grace,))
        timer.daemon = True  # a clean exit does not wait for it
        timer.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return event


def _exit_after_grace(grace: float) -> None:
    print(f"graceful shutdown took longer than {grace:g} s: exiting", file=sys.stderr, flush=True)
    os._exit(1)


async def _connect_or_stop(args: argparse.Namespace, name: str, stop: asyncio.Event) -> Client | None:
    """Connect (bounded by :func:`natsdemo.core.connect.connect`); None if a stop signal came first."""
    connecting = asyncio.ensure_future(connect_from_args(args, name))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()  # raises ConnectionError (one line in the CLI) if nobody answered
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    return None


async def close(nc: Client, timeout: float = 5.0) -> None:
    """Drain the connection (pending publishes and acks go out), bounded; close it if that fails."""
    try:
        await asyncio.wait_for(nc.drain(), timeout)
    except Exception:
        with contextlib.suppress(Exception):
            await nc.close()


async def _main(args: argparse.Namespace, name: str, serve: Serve, grace: float) -> int:
    stop = stop_event(grace)
    nc = await _connect_or_stop(args, name, stop)
    if nc is None:
        return 0
    svc = Service(name=name, nc=nc, js=nc.jetstream(), stop=stop, args=args)
    try:
        return int(await serve(svc) or 0)
    finally:
        await close(nc)


def run_service(args: argparse.Namespace, name: str, serve: Serve, *, grace: float = GRACE) -> int:
    """Run ``serve`` inside the runtime (see the module docstring); returns the exit status."""
    if getattr(args, "replicas", None) is None and os.environ.get(REPLICAS_ENV, "").strip():
        check_replicas(os.environ[REPLICAS_ENV], REPLICAS_ENV)  # bad input is refused before connecting
    raw = getattr(args, "server", None) or os.environ.get("NATS_URL") or DEFAULT_URL
    check_servers(split_servers(raw) or [raw])
    ca = getattr(args, "ca", None) or os.environ.get("NATS_CA")
    cert = getattr(args, "cert", None) or os.environ.get("NATS_CERT")
    key = getattr(args, "key", None) or os.environ.get("NATS_KEY")
    if ca or cert:
        client_tls_context(ca, cert, key)  # a missing or unreadable file: one line, before connecting
    configure_logging(args)
    return asyncio.run(_main(args, name, serve, grace))
