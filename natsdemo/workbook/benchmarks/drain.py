"""Drain throughput (items/s) of one worker emptying a work queue, three ways, in one run:

* the :class:`natsdemo.drain.Drainer` (handler call, acks, metrics, empty confirmed by the consumer);
* a hand-tuned nats-py loop: ``fetch(BATCH, short timeout)`` + ``ack()`` per item, stop on timeout;
* the same loop on :class:`natsdemo.drain.puller.Puller` (the Drainer's fetch, no task per message),
  so the Drainer's own cost shows apart from its faster fetch;
* the seed's loop: ``Fetch(10)`` + ack per item (given the exit on timeout the seed lacks).

Each contender drains its own freshly filled queue (same size, same server, no-op handler), so the
figures compare the machinery, not the work. Timing starts at the first fetch and ends when the
contender has decided the queue is empty (its final empty probe included).

Then a handler that waits on I/O (``await asyncio.sleep(0.005)``, a 5 ms database call) at
``concurrency`` 1, 16 and 64: at 1 a worker cannot pass 200 items/s whatever its batch.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from natsdemo.drain import Drainer, DrainSettings, enqueue, ensure_queue, queue_names
from natsdemo.drain.puller import Puller
from natsdemo.workbook.bench import Figure, median
from natsdemo.workbook.server import NatsServer

TUNED_BATCH = 1000  # best of 10..2000 on the reference machine (500-2000 are within noise)
PROBE = 0.1  # every contender's final empty probe


async def _fill(js, name: str, n: int, settings: DrainSettings) -> None:
    await ensure_queue(js, name, settings)
    await enqueue(js, name, n)


async def _manual(js, name: str, batch: int, *, puller: bool = False) -> tuple[int, float]:
    names = queue_names(name)
    if puller:
        psub = await Puller(js, names.stream, names.durable).start()
    else:
        psub = await js.pull_subscribe_bind(names.durable, stream=names.stream)
    done = 0
    t0 = time.perf_counter()
    while True:
        try:
            msgs = await psub.fetch(batch, timeout=PROBE)
        except TimeoutError:
            break
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    elapsed = time.perf_counter() - t0
    await (psub.stop() if puller else psub.unsubscribe())
    return done, elapsed


async def _drainer(js, name: str, settings: DrainSettings, handler=lambda msg: None) -> tuple[int, float]:
    d = await Drainer(js, name, handler, settings, listen_for_ticks=False).start()
    t0 = time.perf_counter()
    report = await d.drain_once()
    elapsed = time.perf_counter() - t0
    await d.stop()
    return report.items, elapsed


async def _run(n: int, runs: int) -> dict[str, list[float]]:
    settings = DrainSettings(batch=TUNED_BATCH, fetch_timeout=PROBE, probe_timeout=PROBE)
    rates: dict[str, list[float]] = {"drainer": [], "manual": [], "puller": [], "seed": []}
    async with NatsServer(name="bench-drain") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        try:
            for r in range(runs):
                for kind in ("manual", "drainer", "puller", "seed"):  # interleaved, so drift hits all
                    name = f"bench-{kind}-{r}"
                    await _fill(js, name, n, settings)
                    if kind == "drainer":
                        done, elapsed = await _drainer(js, name, settings)
                    else:
                        done, elapsed = await _manual(js, name, 10 if kind == "seed" else TUNED_BATCH,
                                                      puller=kind == "puller")
                    if done != n:
                        raise RuntimeError(f"{kind} drained {done} of {n} items")
                    rates[kind].append(done / elapsed)
                    await js.delete_stream(queue_names(name).stream)
        finally:
            await nc.drain()
    return rates


IO_MS = 5.0
CONCURRENCY = (1, 16, 64)


async def _io_handler(msg) -> None:
    await asyncio.sleep(IO_MS / 1000)


async def _concurrent(quick: bool) -> dict[int, tuple[int, float]]:
    """items/s with a 5 ms handler at each concurrency (about 3 s of work each, less with --quick)."""
    out: dict[int, tuple[int, float]] = {}
    async with NatsServer(name="bench-drain-io") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        try:
            for c in CONCURRENCY:
                n = (100 if quick else 600) * (c if c == 1 else c // 2)
                settings = DrainSettings(batch=TUNED_BATCH, fetch_timeout=PROBE, probe_timeout=PROBE, concurrency=c)
                name = f"bench-io-{c}"
                await _fill(js, name, n, settings)
                done, elapsed = await _drainer(js, name, settings, _io_handler)
                if done != n:
                    raise RuntimeError(f"concurrency {c} drained {done} of {n} items")
                out[c] = (n, done / elapsed)
                await js.delete_stream(queue_names(name).stream)
        finally:
            await nc.drain()
    return out


def _paired(rates: dict[str, list[float]], baseline: str) -> float:
    """Runs are interleaved, so compare each run with its own baseline (robust to machine drift)."""
    return median([d / b for d, b in zip(rates["drainer"], rates[baseline], strict=True)])


def run(opts: argparse.Namespace) -> list[Figure]:
    n = 2_000 if opts.quick else 50_000
    runs = 1 if opts.quick else opts.runs
    rates = asyncio.run(_run(n, runs))
    io = asyncio.run(_concurrent(opts.quick))
    drainer, manual, bare, seed = (median(rates[k]) for k in ("drainer", "manual", "puller", "seed"))
    how = f"median of {runs}, {n:,} items, 1 worker, no-op handler, final {PROBE:g} s probe included"
    one = io[1][1]
    return [
        Figure("Drainer", drainer, "items/s", f"batch {TUNED_BATCH}, {how}"),
        Figure("hand-tuned fetch+ack loop", manual, "items/s", f"batch {TUNED_BATCH}, {how}"),
        Figure("the same loop on the Puller", bare, "items/s", f"batch {TUNED_BATCH}, {how}"),
        Figure("seed's Fetch(10) loop", seed, "items/s", f"batch 10, {how}"),
        Figure("Drainer / hand-tuned", _paired(rates, "manual"), "x", "median of per-run ratios", ">= 1.0x"),
        Figure("Drainer / loop on the Puller", _paired(rates, "puller"), "x",
               "median of per-run ratios: the Drainer's own cost"),
        Figure("Drainer / seed Fetch(10)", _paired(rates, "seed"), "x", "median of per-run ratios"),
        *(Figure(f"{IO_MS:g} ms handler, concurrency {c}", rate, "items/s",
                 f"{n:,} items, batch {TUNED_BATCH}, 1 worker") for c, (n, rate) in io.items()),
        Figure(f"concurrency {CONCURRENCY[-1]} / concurrency 1", io[CONCURRENCY[-1]][1] / one, "x",
               f"{IO_MS:g} ms handler, same run", ">= 30x"),
    ]
