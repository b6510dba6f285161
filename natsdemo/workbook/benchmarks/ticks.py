"""Tick lateness: how long after its scheduled instant a tick is stored, for the client ticker
(two replicas, msg-id de-duplicated) and a nats-server cron schedule, in the same run on the same
server; plus a naive ``sleep(1)`` loop as the drifting baseline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from datetime import UTC, datetime

from natsdemo.ticks import (
    Tick,
    TickConsumer,
    Ticker,
    ensure_schedule_stream,
    install_server_schedule,
    publish_tick,
    remove_server_schedule,
)
from natsdemo.workbook.bench import Figure, median, percentile
from natsdemo.workbook.server import NatsServer


async def _naive_loop(js, stop: asyncio.Event, lateness: list[float]) -> None:
    """The drifting way: sleep one second after each publish. Slot = first wake-up + n seconds."""
    start = datetime.now(UTC)
    n = 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        n += 1
        now = datetime.now(UTC)
        await publish_tick(js, "bench-naive", cron="sleep(1)", scheduled_at=now)
        lateness.append((now - start).total_seconds() - n)


async def _collect(consumer: TickConsumer, out: list[Tick], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            out.append(await consumer.next(timeout=0.25))


async def _measure(seconds: float) -> dict[str, list[float]]:
    async with NatsServer(name="bench-ticks") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        await ensure_schedule_stream(js)
        consumers = {name: TickConsumer(js, name) for name in ("bench-client", "bench-server")}
        for c in consumers.values():
            await c.start()
        got: dict[str, list[Tick]] = {name: [] for name in consumers}
        naive: list[float] = []
        stop = asyncio.Event()
        replicas = [Ticker(js, "bench-client", "* * * * * *", replica=r) for r in ("a", "b")]
        tasks = [asyncio.ensure_future(t.run(stop)) for t in replicas]
        tasks += [asyncio.ensure_future(_collect(c, got[n], stop)) for n, c in consumers.items()]
        tasks.append(asyncio.ensure_future(_naive_loop(js, stop, naive)))
        await install_server_schedule(js, "bench-server", "* * * * * *")
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=5)
        await remove_server_schedule(js, "bench-server")
        for c in consumers.values():
            await c.stop()
        await nc.drain()
    client = got["bench-client"]
    return {
        "client": [t.stored_lateness * 1000 for t in client],
        "server": [t.stored_lateness * 1000 for t in got["bench-server"]],
        "naive": [x * 1000 for x in naive],
        "slots": [len(client), len({t.scheduled_at for t in client})],
        "dups": [sum(r.duplicates for r in replicas)],
    }


def run(opts: argparse.Namespace) -> list[Figure]:
    seconds = 3.0 if opts.quick else max(10.0, 6.0 * opts.runs)
    t0 = time.perf_counter()
    m = asyncio.run(_measure(seconds))
    took = time.perf_counter() - t0
    how = f"{seconds:.0f} s of '* * * * * *', scheduled instant to stream timestamp"
    naive_drift = m["naive"][-1] / len(m["naive"]) if m["naive"] else float("nan")
    return [
        Figure("client ticker lateness p50", median(m["client"]), "ms", how + ", 2 replicas", "< 50 ms"),
        Figure("client ticker lateness p99", percentile(m["client"], 99), "ms", how + ", 2 replicas"),
        Figure("server schedule lateness p50", median(m["server"]), "ms", how + ", nats-server cron"),
        Figure("server schedule lateness p99", percentile(m["server"], 99), "ms", how + ", nats-server cron"),
        Figure("naive sleep(1) loop drift", naive_drift, "ms/tick", "baseline: lateness grows by this each tick"),
        Figure("ticks stored per slot", m["slots"][0] / max(1, m["slots"][1]), "", "2 replicas", "1.0"),
        Figure("duplicates suppressed", m["dups"][0], "", "PubAcks with duplicate=True"),
        Figure("wall time", took, "s", "whole benchmark incl. server start"),
    ]
