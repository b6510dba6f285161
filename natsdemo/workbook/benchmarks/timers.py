"""Reservation timers: one scheduler vs a task per timer, replay rate, fire lateness, and @at schedules.

* memory: a child process replays N pending reservations from the stream into the service, once
  with the single heap :class:`~natsdemo.core.timers.Scheduler` and once with the task-per-timer
  baseline; RSS is measured in each child against its own idle RSS (after imports and connect);
* replay rate: events/s from subscribe until the ordered consumer caught up (the scheduler child);
* fire lateness: a ``python -m natsdemo reservations`` child fires timeouts whose deadlines are
  spread at a fixed rate; lateness = stream timestamp of the timeout - (stream timestamp of the
  reservation + its timeout), so it includes the publish round trip;
* server-side: P pending ``@at`` schedules (server RSS growth), then K schedules spread at the same
  rate; lateness = stream timestamp of the produced timeout - its ``@at`` time;
* start-up: seconds from starting a ``reservations`` process to its ready line, with P pending
  reservations and no history, and with the same P pending after H finished ones (reserved, then
  purchased or timed out) that a running service saw and snapshotted; and, for contrast, the same
  history with snapshots off (``--snapshot-every 0``: a replay of everything).

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

import psutil

from natsdemo import reservations as R
from natsdemo.reservations.service import TimeoutService
from natsdemo.workbook.bench import Figure, percentile
from natsdemo.workbook.benchmarks._startup import _preload, _startup_figures
from natsdemo.workbook.server import NatsServer


def _child(kind: str, url: str) -> dict[str, float]:
    """Run this module as a child process that replays the stream and reports JSON."""
    out = subprocess.run(
        [sys.executable, "-m", "natsdemo.workbook.benchmarks.timers", kind, url],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} failed: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def _child_main(kind: str, url: str) -> dict[str, float]:
    from natsdemo.core.connect import connect
    from natsdemo.core.timers import Scheduler, TaskPerTimer

    nc = await connect(url)
    gc.collect()
    proc = psutil.Process()
    idle = proc.memory_info().rss
    # snapshots off: each child replays the whole stream (the replay-rate figure), neither loads the other's
    svc = TimeoutService(nc.jetstream(), scheduler=Scheduler if kind == "scheduler" else TaskPerTimer,
                         snapshot_every=None)
    await svc.start()
    await asyncio.sleep(0.5)  # let the tasks of the baseline reach their sleep
    gc.collect()
    rss = proc.memory_info().rss
    result = {"idle_mb": idle / 1e6, "rss_mb": rss / 1e6, "pending": len(svc.timers), "replay_s": svc.replay_seconds}
    result["events"] = svc.stats["replayed"]
    await svc.stop()
    await nc.close()
    return result


async def _read_all(js: Any, filter_subject: str, count: int, timeout: float = 60) -> list[Any]:
    sub = await js.subscribe(filter_subject, stream=R.STREAM, ordered_consumer=True, pending_msgs_limit=-1)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(await sub.next_msg(timeout=max(0.1, deadline - time.monotonic())))
        except Exception:
            break
    await sub.unsubscribe()
    return got


async def _client_lateness(srv: NatsServer, js: Any, rate: float, count: int, lead: float) -> list[float]:
    """Lateness (ms) of `count` client-side timeouts whose deadlines are spread at `rate` per second."""
    svc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "reservations", "--server", srv.url, "--quiet", "--name", "bench"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert svc.stdout is not None
        ready = await asyncio.to_thread(svc.stdout.readline)
        if "watching" not in ready:
            raise RuntimeError(f"reservations service did not start: {ready!r}")
        t0 = time.time() + lead + count / 5_000  # every reservation is published before its deadline
        for k in range(count):
            rid = f"late-{k:07d}"
            timeout = t0 + k / rate - time.time()
            body = R.reserved_body(rid, timeout, server_side=False, request="bench")
            await js.publish_async(R.subject(rid), body)
        await js.publish_async_completed()
        msgs = await _read_all(js, f"{R.EVENTS}.>", 2 * count, timeout=count / rate + 30)
    finally:
        svc.terminate()
        svc.wait(10)
    reserved: dict[str, float] = {}
    late: list[float] = []
    for m in msgs:
        seq, ts_ns, _ = R.js_meta(m.reply)
        ev = R.parse_event(m.subject, m.data, seq, ts_ns)
        if ev.type == R.RESERVED:
            reserved[ev.id] = ev.deadline_ns(R.DEFAULT_TIMEOUT) / 1e6
        elif ev.type == R.TIMED_OUT:
            late.append(ts_ns / 1e6 - reserved[ev.id])
    return late


async def _server_side(pending: int, rate: float, count: int, lead: float) -> tuple[float, float, list]:
    """A fresh server (a clean RSS baseline): hold `pending` far-off @at schedules, then fire `count`."""
    async with NatsServer(name="bench-schedules") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        await R.ensure_stream(js)
        try:
            return await _schedules(srv, js, pending, rate, count, lead)
        finally:
            await nc.close()


async def _schedules(srv: NatsServer, js: Any, pending: int, rate: float, count: int, lead: float) -> tuple:
    server = psutil.Process(srv.pid)
    before = server.memory_info().rss
    far = time.time_ns() + 3600 * 10**9
    for k in range(pending):
        hdr = {"Nats-Schedule": f"@at {R.iso(far)}", "Nats-Schedule-Target": R.subject(f"held-{k:07d}")}
        await js.publish_async(R.schedule_subject(f"held-{k:07d}"), R.timeout_body(f"held-{k:07d}", far, "server"),
                               headers=hdr)
    await js.publish_async_completed()
    held = (await js.stream_info(R.STREAM)).state.messages
    await asyncio.sleep(1.0)
    grown = (server.memory_info().rss - before) / 1e6
    t0 = time.time_ns() + int((lead + count / 5_000) * 1e9)
    at: dict[str, int] = {}
    for k in range(count):
        rid = f"fire-{k:07d}"
        at_ns = t0 + int(k / rate * 1e9)
        at[rid] = -(-at_ns // 1_000_000) * 1_000_000
        hdr = {"Nats-Schedule": f"@at {R.iso(at_ns)}", "Nats-Schedule-Target": R.subject(rid)}
        await js.publish_async(R.schedule_subject(rid), R.timeout_body(rid, at_ns, "server"), headers=hdr)
    await js.publish_async_completed()
    msgs = await _read_all(js, f"{R.EVENTS}.>", count, timeout=count / rate + 30)
    late = [(R.js_meta(m.reply)[1] - at[m.subject.rsplit(".", 1)[1]]) / 1e6 for m in msgs]
    return held, grown, late


async def _run(opts: argparse.Namespace) -> list[Figure]:
    n = 20_000 if opts.quick else 1_000_000
    rate, count = (500.0, 500) if opts.quick else (2000.0, 20_000)
    held_n = 2_000 if opts.quick else 1_000_000
    lead = 0.5 if opts.quick else 2.0  # seconds between the last publish and the first deadline
    async with NatsServer(name="bench-timers") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        await R.ensure_stream(js)
        await _preload(nc, js, n, "bench-", 3600.0)
        sched = await asyncio.to_thread(_child, "scheduler", srv.url)
        tasks = await asyncio.to_thread(_child, "tasks", srv.url)
        await js.purge_stream(R.STREAM)
        late = await _client_lateness(srv, js, rate, count, lead)
        await nc.close()
    held, grown, server_late = await _server_side(held_n, rate, count, lead)
    s_mb, t_mb = sched["rss_mb"] - sched["idle_mb"], tasks["rss_mb"] - tasks["idle_mb"]
    each = f"{n:,} pending reservations replayed from the stream, RSS minus the child's idle RSS"
    fire = f"{len(late):,} timeouts due at {rate:,.0f}/s; stream ts of timeout - (reserved ts + timeout)"
    return [
        Figure("RSS, one heap scheduler", s_mb, "MB", each, "<= 300 MB"),
        Figure("RSS, task per timer (baseline)", t_mb, "MB", each),
        Figure("RSS ratio scheduler / baseline", s_mb / t_mb, "x", "same run, separate processes", "<= 0.35x"),
        Figure("start-up replay rate", sched["events"] / sched["replay_s"], "events/s",
               f"{sched['events']:,} events, subscribe to caught up", ">= 20,000/s"),
        Figure("fire lateness p50", percentile(late, 50), "ms", fire),
        Figure("fire lateness p99", percentile(late, 99), "ms", fire, "<= 25 ms"),
        Figure("earliest timeout vs deadline", min(late) if late else float("nan"), "ms", "never negative", ">= 0"),
        Figure("@at schedules held by the server", held, "schedules", "pending, 1 h ahead"),
        Figure("server RSS growth for them", grown, "MB", f"{held_n:,} @at schedules, fresh server"),
        Figure("@at fire lateness p50", percentile(server_late, 50), "ms",
               f"{len(server_late):,} schedules due at {rate:,.0f}/s; stream ts - @at"),
        Figure("@at fire lateness p99", percentile(server_late, 99), "ms", "same"),
    ]


def run(opts: argparse.Namespace) -> list[Figure]:
    if getattr(opts, "part", None) == "startup":
        return _startup_figures(opts)
    return asyncio.run(_run(opts)) + _startup_figures(opts)


if __name__ == "__main__":  # a measurement child: python -m natsdemo.workbook.benchmarks.timers KIND URL
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(asyncio.run(_child_main(sys.argv[1], sys.argv[2]))), flush=True)
