"""``python -m natsdemo tick``: a cron ticker as a service, or ``--server-side`` to install a schedule.

Usage::

    python -m natsdemo tick --cron "0 0 20 * * *" --name end-of-day --tz Europe/Berlin [--catch-up latest]
    python -m natsdemo tick --cron @daily --name end-of-day --server-side   # nats-server owns the clock

One process is one :class:`natsdemo.ticks.ticker.Ticker` on its own connection; run as many
replicas as you like, the msg id stores one tick per slot. The name and cron are checked before
connecting; the ready line (``ticking schedule.<name> ...``) is printed once the stream exists.
Connecting, logging, signals and shutdown are :mod:`natsdemo.core.service`'s.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import argparse

from natsdemo.core.cron import normalize_cron, now_utc, parse_cron, rfc3339
from natsdemo.core.errors import UsageError
from natsdemo.core.service import Service, add_service_arguments, run_service
from natsdemo.core.streams import retrying
from natsdemo.ticks.schedules import install_server_schedule
from natsdemo.ticks.tick import ensure_schedule_stream
from natsdemo.ticks.ticker import CATCH_UP, Fired, Ticker
from natsdemo.ticks.wire import server_schedule_subject, tick_subject, validate_name

__all__ = ["configure_cli", "preview", "run_cli"]


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """``python -m natsdemo tick --cron EXPR --name NAME [--tz ZONE] [--catch-up skip|latest]``.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    parser.add_argument(
        "--cron", required=True, help="6 fields, seconds first ('0 0 20 * * *' = 20:00 daily), 5 fields, or @daily"
    )
    parser.add_argument("--name", default=None, help="ticks go to schedule.<name> (letters, digits, - and _)")
    parser.add_argument("--tz", default="UTC", help="IANA time zone the cron is read in (default UTC)")
    parser.add_argument(
        "--catch-up", choices=CATCH_UP, default="skip", help="missed slots: skip (default) or fire only the latest"
    )
    parser.add_argument(
        "--server-side", action="store_true", help="install a nats-server cron schedule instead of ticking, then exit"
    )
    parser.add_argument(
        "--preview", type=int, default=None, metavar="N",
        help="print the next N fire times (local with offset, and UTC) and exit, without connecting",
    )
    add_service_arguments(parser)


def _print_fired(fired: Fired) -> None:
    what = f"duplicate of seq {fired.seq}" if fired.duplicate else f"stored seq {fired.seq}"
    print(f"tick {rfc3339(fired.scheduled_at)} {what} late {fired.lateness * 1000:.1f} ms", flush=True)


async def _serve(svc: Service) -> int:
    args, js = svc.args, svc.js
    if args.server_side:
        ack = await install_server_schedule(js, args.name, args.cron, args.tz, replicas=args.replicas)
        svc.ready(
            f"installed server-side schedule {server_schedule_subject(args.name)} (seq {ack.seq}): "
            f"{normalize_cron(args.cron)!r} in {args.tz} -> {tick_subject(args.name)}"
        )
        return 0
    ticker = Ticker(js, args.name, args.cron, args.tz, catch_up=args.catch_up,
                    on_fire=None if args.quiet else _print_fired, replicas=args.replicas)
    await retrying("creating stream SCHEDULE", lambda: ensure_schedule_stream(js, replicas=args.replicas))
    nxt = ticker.spec.next_after(now_utc())
    svc.ready(
        f"ticking {tick_subject(args.name)} cron {ticker.spec.fields!r} tz {args.tz} "
        f"catch-up {args.catch_up}; next {rfc3339(nxt)}"
    )
    await ticker.run(svc.stop)
    svc.say(f"stopped: {ticker.published} stored, {ticker.duplicates} duplicates")
    return 0


def preview(expr: str, tz: str, count: int) -> list[str]:
    """The next ``count`` fire times, one line each: local time with its offset, then the UTC instant.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    if not 1 <= count <= 1000:
        raise UsageError(f"--preview {count}: give 1 to 1000 fire times")
    spec = parse_cron(expr, tz)
    return [f"{spec.local(t).isoformat()}  {rfc3339(t)}" for t in spec.next_times(count)]


def run_cli(args: argparse.Namespace) -> int:
    """Validate everything before connecting, then tick until SIGINT/SIGTERM (or just preview).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    if args.preview is not None:  # an instructor checking an expression: no name, no server
        for line in preview(args.cron, args.tz, args.preview):
            print(line)
        return 0
    if args.name is None:
        raise UsageError("--name is required (ticks go to schedule.<name>), unless you only --preview")
    validate_name(args.name)
    parse_cron(args.cron, args.tz)
    return run_service(args, f"natsdemo-tick-{args.name}", _serve)
