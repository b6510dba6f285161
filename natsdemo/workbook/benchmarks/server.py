"""Server start-to-ready time: from spawning nats-server to its "Server is ready" log line,
and to a first JetStream publish acknowledged."""

from __future__ import annotations

import argparse
import asyncio
import time

from natsdemo.workbook.bench import Figure, median
from natsdemo.workbook.server import NatsServer


async def _one() -> tuple[float, float]:
    t0 = time.perf_counter()
    async with NatsServer(name="bench-server") as srv:
        ready = time.perf_counter() - t0
        nc = await srv.connect()
        js = nc.jetstream()
        await js.add_stream(name="BENCH", subjects=["bench.>"])
        await js.publish("bench.x", b"x")
        first_ack = time.perf_counter() - t0
        await nc.close()
    return ready, first_ack


def run(opts: argparse.Namespace) -> list[Figure]:
    runs = 3 if opts.quick else opts.runs
    samples = [asyncio.run(_one()) for _ in range(runs)]
    ready = [s[0] * 1000 for s in samples]
    acked = [s[1] * 1000 for s in samples]
    how = f"median of {runs} starts, JetStream on, temporary store"
    return [
        Figure("start to ready", median(ready), "ms", how, "< 2000 ms"),
        Figure("start to first JetStream ack", median(acked), "ms", how + ", stream created"),
        Figure("slowest start to ready", max(ready), "ms", f"max of {runs}"),
    ]
