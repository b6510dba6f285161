"""``python -m natsdemo coupons issue|redeem|watch``: coupons from the command line.

Usage::

    python -m natsdemo coupons issue WELCOME-10 --ttl 30   # prints "issued WELCOME-10 seq N expires <UTC>"
    python -m natsdemo coupons redeem WELCOME-10           # exit 0 once redeemed; 1 and one line if not
    python -m natsdemo coupons watch                       # one line per redemption or expiry, as they happen

Each subcommand creates the ``COUPONS`` stream when it is missing, so ``watch`` may start before
any coupon exists. Ids and TTLs are checked before connecting. Connecting, logging, signals and
shutdown are :mod:`natsdemo.core.service`'s.

Defined in notebooks/06_coupons_ttl.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt

from natsdemo.core.cron import rfc3339
from natsdemo.core.service import Service, add_service_arguments, run_service
from natsdemo.core.streams import retrying
from natsdemo.coupons.client import CouponError, ensure_stream, issue, redeem, watch
from natsdemo.coupons.wire import check_id, check_ttl, event_line

__all__ = ["configure_cli", "run_cli"]


def _ttl(value: str) -> int:
    try:
        return check_ttl(float(value))
    except ValueError as exc:  # UsageError is a ValueError; float('x') too
        raise argparse.ArgumentTypeError(str(exc) if "--ttl" in str(exc) else f"--ttl {value!r}: give whole seconds"
                                         ) from None


def _id(value: str) -> str:
    try:
        return check_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """``coupons issue ID --ttl SECONDS``, ``coupons redeem ID``, ``coupons watch``.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    p = sub.add_parser("issue", help="issue a coupon that expires after --ttl seconds")
    p.add_argument("id", type=_id, help="coupon id (letters, digits, - and _)")
    p.add_argument("--ttl", type=_ttl, required=True, help="whole seconds until the server removes it")
    add_service_arguments(p)
    p = sub.add_parser("redeem", help="redeem a coupon; exit 1 if it is unknown, expired or redeemed")
    p.add_argument("id", type=_id, help="coupon id")
    add_service_arguments(p)
    p = sub.add_parser("watch", help="print one line per redemption or expiry as it happens")
    p.add_argument("--issued", action="store_true", help="also print a line per issued coupon")
    add_service_arguments(p)


async def _serve(svc: Service) -> int:
    args, js = svc.args, svc.js
    await retrying("creating stream COUPONS", lambda: ensure_stream(js, replicas=args.replicas))
    try:
        if args.action == "issue":
            coupon = await issue(js, args.id, args.ttl)
            when = rfc3339(_utc(coupon.expires_ns))
            svc.say(f"issued {coupon.id} seq {coupon.seq} expires {when}")
            return 0
        if args.action == "redeem":
            seq = await redeem(js, args.id)
            svc.say(f"redeemed {args.id} seq {seq}")
            return 0
    except CouponError as exc:
        svc.log.error("%s", exc)
        return 1
    return await _watch(svc)


async def _watch(svc: Service) -> int:
    kinds = ("coupon-redeemed", "coupon-expired") + (("coupon-issued",) if svc.args.issued else ())
    svc.ready("watching coupons.> for " + ", ".join(k.removeprefix("coupon-") for k in kinds))

    async def follow() -> None:
        async for ev in watch(svc.js, kinds=kinds):
            svc.say(event_line(ev))

    task = asyncio.ensure_future(follow())
    stopping = asyncio.ensure_future(svc.stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopping):
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    return 0


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 1000 / 1e6, dt.UTC)


def run_cli(args: argparse.Namespace) -> int:
    """Run one coupon action (ids and TTLs were checked by the parser).

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    return run_service(args, f"natsdemo-coupons-{args.action}", _serve)
