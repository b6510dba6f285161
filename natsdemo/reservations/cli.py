"""``python -m natsdemo reservations``: the client-side timeout service on the command line.

Prints one ready line once the replay caught up (with the snapshot it started from, if any), and
a summary when it stops on SIGINT or SIGTERM; the service itself is
:class:`natsdemo.reservations.service.TimeoutService`.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket

from natsdemo.core.errors import UsageError
from natsdemo.core.names import check_token
from natsdemo.core.service import Service, add_service_arguments, run_service
from natsdemo.reservations.service import TimeoutService
from natsdemo.reservations.snapshot import CHUNK_ENTRIES, SNAPSHOT_EVENTS, SNAPSHOT_EVERY
from natsdemo.reservations.wire import DEFAULT_TIMEOUT, EVENTS, STREAM, check_timeout


def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        default=str(DEFAULT_TIMEOUT),
        help="seconds, for tickets-reserved events that carry no timeout (default 600)",
    )
    parser.add_argument("--name", default=None, help="instance name in logs and timeout events (default: host-pid)")
    parser.add_argument("--snapshot-every", default=str(SNAPSHOT_EVERY), metavar="SECONDS",
                        help="write a snapshot of the pending reservations at most this often while events arrive "
                             f"(default {SNAPSHOT_EVERY:g}; also after {SNAPSHOT_EVENTS:,} events "
                             "and at stop; "
                             "0 turns snapshots off, and every start replays the whole stream)")
    parser.add_argument("--snapshot-chunk", type=int, default=CHUNK_ENTRIES, metavar="N",
                        help=f"reservations per snapshot message (default {CHUNK_ENTRIES})")
    add_service_arguments(parser)


def run_cli(args: argparse.Namespace) -> int:
    args.timeout = check_timeout(args.timeout)  # before connecting
    try:
        every = float(args.snapshot_every)
    except ValueError:
        every = -1.0
    if not 0 <= every <= 86400:  # NaN fails this too
        raise UsageError(f"--snapshot-every {args.snapshot_every}: give seconds from 0 (off) to 86400")
    args.snapshot_every = every or None
    if not 1 <= args.snapshot_chunk <= 10_000:
        raise UsageError(f"--snapshot-chunk {args.snapshot_chunk}: give 1 to 10000 reservations per message")
    if args.name is None:
        args.name = f"{socket.gethostname()}-{os.getpid()}"
    check_token(args.name, "--name", 64, "--name i1")
    return run_service(args, f"reservations-{args.name}", _serve)


async def _serve(svc: Service) -> int:
    name, timeout = svc.args.name, svc.args.timeout
    service = TimeoutService(svc.js, default_timeout=timeout, name=name, replicas=svc.args.replicas,
                             snapshot_every=svc.args.snapshot_every, snapshot_chunk=svc.args.snapshot_chunk)
    try:
        starting = asyncio.ensure_future(service.start())
        stopping = asyncio.ensure_future(svc.stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # raises if the start failed
            snap = service.snapshot_loaded
            since = "" if snap is None else f" after seq {snap.covers} (a snapshot of {len(snap.entries)} by {snap.by})"
            svc.ready(
                f"reservations: {name} watching {EVENTS}.> in stream {STREAM}: replayed "
                f"{service.stats['replayed']} events{since}, {len(service.timers)} pending "
                f"(default timeout {timeout:g} s)"
            )
        await stopping
        starting.cancel()
    finally:
        # bounded: a service whose server is gone must still exit on SIGTERM
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.stop(), 5)
    svc.say(f"reservations: {name} stopped ({service.summary()})")
    return 0
