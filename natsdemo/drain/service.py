"""``python -m natsdemo drain``: a drain worker as a service, with a demo handler.

One process is one :class:`natsdemo.drain.Drainer` on its own connection; run as many as you like
on as many machines, they share the queue's durable consumer. ``--enqueue N`` publishes demo items
and exits, ``--once`` drains now without waiting for a tick. The demo handler can simulate work
(``--work-ms``), failures (``--fail-rate``, ``--fail-match``) and log every item it processes
(``--processed-log``), so tests and notebook 03 can count what a killed worker did. Connecting,
logging, signals and shutdown are :mod:`natsdemo.core.service`'s.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket

from nats.aio.msg import Msg

from natsdemo.core.errors import UsageError
from natsdemo.core.names import ack_fields, check_token
from natsdemo.core.service import Service, add_service_arguments, run_service
from natsdemo.core.streams import retrying
from natsdemo.drain.deadletter import deliveries_of
from natsdemo.drain.drainer import Drainer, Handler
from natsdemo.drain.queue import DrainSettings, enqueue, ensure_queue
from natsdemo.drain.wire import queue_names


def demo_handler(
    *,
    worker: str,
    fail_rate: float = 0.0,
    fail_match: str | None = None,
    crash_match: str | None = None,
    work_ms: float = 0.0,
    processed_log: str | None = None,
    seed: int | None = None,
) -> Handler:
    """The CLI's handler: optional simulated work and failures, and a log of processed items.

    Each processed item is written to ``processed_log`` (one unbuffered line per item, at the start
    of its work and so before its ack: ``<worker> <stream seq> <deliveries> <subject>``), so a test
    can count what a killed worker did, including the item it died holding.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    rng = random.Random(seed)
    fd = os.open(processed_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if processed_log else None
    needle = fail_match.encode() if fail_match else None
    crash = crash_match.encode() if crash_match else None

    async def handle(msg: Msg) -> None:
        if crash is not None and crash in msg.data:
            os._exit(3)  # the worker dies holding the item: no nak, no dead letter, nothing
        if needle is not None and needle in msg.data:
            raise ValueError(f"poison item (payload contains {fail_match!r})")
        if fail_rate > 0 and rng.random() < fail_rate:
            raise RuntimeError("simulated failure (--fail-rate)")
        if fd is not None:  # the side effect happens first, then the rest of the work, then the ack
            fields = ack_fields(msg.reply)
            seq = fields.stream_seq if fields else 0
            os.write(fd, f"{worker} {seq} {deliveries_of(msg)} {msg.subject}\n".encode())
        if work_ms > 0:
            await asyncio.sleep(work_ms / 1000)

    return handle


# ===================================================================== CLI
def configure_cli(parser: argparse.ArgumentParser) -> None:
    d = DrainSettings()
    parser.add_argument("--name", default="end-of-day", help="queue name (default end-of-day): "
                        "stream NAME_QUEUE on NAME-queue.>, consumer NAME, ticks on schedule.NAME")
    parser.add_argument("--batch", type=int, default=d.batch, help=f"items per fetch (default {d.batch})")
    parser.add_argument("--ack-wait", type=float, default=d.ack_wait, help=f"seconds (default {d.ack_wait:g})")
    parser.add_argument("--max-deliver", type=int, default=d.max_deliver, help=f"default {d.max_deliver}")
    parser.add_argument("--max-ack-pending", type=int, default=d.max_ack_pending, help=f"default {d.max_ack_pending}")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, metavar="N",
                        help=f"handler calls at once in this worker (default {d.concurrency}; at most --batch "
                             "and --max-ack-pending)")
    parser.add_argument("--nak-delay", type=float, default=d.nak_delay, help="first retry delay in s, doubled per try")
    parser.add_argument("--fetch-timeout", type=float, default=d.fetch_timeout, help=argparse.SUPPRESS)
    parser.add_argument("--probe-timeout", type=float, default=d.probe_timeout, help=argparse.SUPPRESS)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="demo: fail this fraction of items (0..1)")
    parser.add_argument("--fail-match", default=None, help="demo: always fail items whose payload contains TEXT")
    parser.add_argument("--crash-match", default=None, help="demo: exit at once on an item whose payload contains TEXT")
    parser.add_argument("--work-ms", type=float, default=0.0, help="demo: simulated work per item in ms")
    parser.add_argument("--processed-log", default=None, help="append one line per processed item to FILE")
    parser.add_argument("--worker", default=None, help="worker id (default HOST-PID)")
    parser.add_argument("--tick-durable", default=None, help="durable tick consumer name (unique per worker)")
    parser.add_argument("--enqueue", type=int, default=None, metavar="N", help="publish N demo items and exit")
    parser.add_argument("--once", action="store_true", help="drain now, without waiting for a tick, and exit")
    add_service_arguments(parser)


def _settings_from_args(args: argparse.Namespace) -> DrainSettings:
    queue_names(args.name)
    if not 0 <= args.fail_rate <= 1:
        raise UsageError("--fail-rate must be between 0 and 1 (e.g. 0.1 fails one item in ten)")
    if not 0 <= args.work_ms <= 60_000:  # NaN and infinity fail this too
        raise UsageError("--work-ms must be between 0 and 60000 (a minute of simulated work per item)")
    if args.worker is not None:
        check_token(args.worker, "--worker", 64, "--worker w1")
    if args.tick_durable is not None:
        check_token(args.tick_durable, "--tick-durable", 64, "--tick-durable eod-w1")
    if args.enqueue is not None and args.enqueue < 0:
        raise UsageError("--enqueue must be 0 or more")
    if args.processed_log:
        try:  # can we write it? (an unwritable path is bad input, not a network problem)
            os.close(os.open(args.processed_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        except OSError as exc:
            raise UsageError(f"cannot write --processed-log {args.processed_log}: {exc.strerror}") from None
    return DrainSettings(
        batch=args.batch,
        ack_wait=args.ack_wait,
        max_deliver=args.max_deliver,
        max_ack_pending=args.max_ack_pending,
        nak_delay=args.nak_delay,
        max_nak_delay=max(args.nak_delay, min(30.0, args.nak_delay * 16)),
        fetch_timeout=args.fetch_timeout,
        probe_timeout=args.probe_timeout,
        concurrency=args.concurrency,
    ).validate()


async def _serve(svc: Service) -> int:
    args, js = svc.args, svc.js
    settings = _settings_from_args(args)
    worker = args.worker or f"{socket.gethostname()}-{os.getpid()}"
    names = queue_names(args.name)
    if args.enqueue is not None:
        await retrying(f"creating queue {args.name}", lambda: ensure_queue(js, args.name, settings,
                                                                          replicas=args.replicas))
        await enqueue(js, args.name, args.enqueue)
        svc.say(f"enqueued {args.enqueue} items on {names.item_subject()}")
        return 0
    handler = demo_handler(
        worker=worker, fail_rate=args.fail_rate, fail_match=args.fail_match, crash_match=args.crash_match,
        work_ms=args.work_ms, processed_log=args.processed_log,
    )
    drainer = Drainer(
        js, args.name, handler, settings, worker=worker, listen_for_ticks=not args.once,
        tick_durable=args.tick_durable, on_drain=None if args.quiet else lambda r: svc.say(f"{worker}: {r.line()}"),
        replicas=args.replicas,
    )
    await drainer.start()
    if args.once:
        report = await drainer.drain_once()
        svc.say(f"{worker}: {report.line()}")
        await drainer.stop()
        return 0
    svc.ready(
        f"draining {names.subjects} with consumer {names.durable} on every tick of {names.tick_subject} "
        f"(worker {worker}, batch {settings.batch}, concurrency {settings.concurrency})"
    )
    await svc.stop.wait()
    await drainer.stop()
    m = drainer.metrics
    svc.say(f"{worker}: stopped after {m.ticks} ticks, {m.drains} drains, {m.items} items, "
            f"{m.redeliveries} redelivered, {m.dead_lettered} dead-lettered")
    return 0


def run_cli(args: argparse.Namespace) -> int:
    _settings_from_args(args)  # validate before connecting
    worker = args.worker or f"{socket.gethostname()}-{os.getpid()}"
    return run_service(args, f"natsdemo-drain-{worker}", _serve)


__all__ = ["configure_cli", "demo_handler", "run_cli"]
