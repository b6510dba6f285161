"""Coupons held by the server: RSS growth and disk for N pending TTL messages, and expiry lateness.

* hold: a fresh server (a clean RSS baseline) stores N coupons with a one-hour ``Nats-TTL``;
  figures: messages held, server RSS growth, store size on disk, publish rate;
* expiry: K more coupons are issued at R per second with a 3 s TTL, so they expire at R per
  second on top of the N held ones; an ordered consumer started before them sees each issue and
  each delete marker; lateness = marker's stream timestamp - (coupon's stream timestamp + TTL),
  all server timestamps. For comparison, ``bench timers`` measures the same for ``@at`` schedules.

Defined in notebooks/06_coupons_ttl.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
from nats.js.api import DeliverPolicy

from natsdemo import coupons as C
from natsdemo.core.names import ack_fields
from natsdemo.workbook.bench import Figure, percentile
from natsdemo.workbook.server import NatsServer

TTL = 3  # seconds, for the coupons whose expiry is timed


def _du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


async def _hold(js: Any, n: int) -> float:
    """Issue n one-hour coupons as fast as the server acks them; returns the publish rate."""
    started = time.monotonic()
    for k in range(n):
        cid = f"held-{k:07d}"
        await js.publish_async(C.subject(cid), C.wire.issued_body(cid, 3600, "bench"), headers={"Nats-TTL": "3600"})
        if k % 10_000 == 9_999:
            await js.publish_async_completed()
    await js.publish_async_completed()
    return n / (time.monotonic() - started)


async def _expiries(nc: Any, js: Any, count: int, rate: float) -> list[float]:
    issued: dict[str, int] = {}
    late: list[float] = []
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        fields = ack_fields(msg.reply)
        if fields is None:
            return
        cid = msg.subject.rsplit(".", 1)[1]
        if not cid.startswith("fire-"):
            return
        if C.is_marker(msg.headers):
            if cid in issued:
                late.append((fields.timestamp_ns - issued[cid] - TTL * 10**9) / 1e6)
                if len(late) == count:
                    done.set()
        else:
            issued[cid] = fields.timestamp_ns

    sub = await js.subscribe(f"{C.PREFIX}.>", stream=C.STREAM, ordered_consumer=True, cb=on_msg,
                             deliver_policy=DeliverPolicy.NEW, pending_msgs_limit=-1)
    t0 = time.monotonic()
    for k in range(count):
        cid = f"fire-{k:07d}"
        wait = t0 + k / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await js.publish_async(C.subject(cid), C.wire.issued_body(cid, TTL, "bench"), headers={"Nats-TTL": str(TTL)})
    await js.publish_async_completed()
    try:
        await asyncio.wait_for(done.wait(), TTL + count / rate + 60)
    finally:
        await sub.unsubscribe()
    return late


async def _run(opts: argparse.Namespace) -> list[Figure]:
    held_n = 2_000 if opts.quick else 1_000_000
    rate, count = (500.0, 500) if opts.quick else (2000.0, 20_000)
    async with NatsServer(name="bench-coupons") as srv:
        nc = await srv.connect()
        js = nc.jetstream(timeout=30)
        await C.ensure_stream(js)
        server = psutil.Process(srv.pid)
        await asyncio.sleep(0.5)
        before = server.memory_info().rss
        publish_rate = await _hold(js, held_n)
        held = (await js.stream_info(C.STREAM)).state.messages
        await asyncio.sleep(1.0)
        grown = (server.memory_info().rss - before) / 1e6
        disk = _du(srv.run_dir / "store") if srv.run_dir else float("nan")
        late = await _expiries(nc, js, count, rate)
        await nc.close()
    each = f"{held_n:,} coupons, 1 h TTL, fresh server"
    fire = f"{len(late):,} coupons expiring at {rate:,.0f}/s on top; marker ts - (coupon ts + {TTL} s)"
    return [
        Figure("coupons held by the server", held, "messages", "pending, 1 h TTL"),
        Figure("server RSS growth for them", grown, "MB", each),
        Figure("store on disk", disk, "MB", each),
        Figure("issue rate (publish_async, acked)", publish_rate, "coupons/s", each),
        Figure("expiry lateness p50", percentile(late, 50), "ms", fire),
        Figure("expiry lateness p99", percentile(late, 99), "ms", fire),
        Figure("earliest expiry vs TTL", min(late) if late else float("nan"), "ms", "never before its TTL", ">= 0"),
    ]


def run(opts: argparse.Namespace) -> list[Figure]:
    return asyncio.run(_run(opts))
