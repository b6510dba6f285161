"""The start-up part of ``bench timers`` (``--part startup``): seconds from starting a
``python -m natsdemo reservations`` process to its ready line, with P pending reservations and no
history, and with the same P pending after H finished ones (reserved, then purchased or timed out)
that a running service saw and snapshotted; and, for contrast, the same history with snapshots off.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

from natsdemo import reservations as R
from natsdemo.workbook.bench import Figure, median
from natsdemo.workbook.server import NatsServer


async def _preload(nc: Any, js: Any, n: int, prefix: str, timeout: float) -> None:
    """Core-publish n tickets-reserved events (the fastest way in), then wait until all are stored."""
    before = (await js.stream_info(R.STREAM)).state.messages
    for i in range(n):
        rid = f"{prefix}{i:07d}"
        await nc.publish(R.subject(rid), R.reserved_body(rid, timeout, server_side=False, request="bench"))
        if i % 5000 == 4999:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + 60 + n / 2000  # the server stores them at its own pace
    while (await js.stream_info(R.STREAM)).state.messages < before + n:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not store every preloaded event")
        await asyncio.sleep(0.05)


async def _preload_finished(nc: Any, js: Any, n: int) -> None:
    """Core-publish n finished reservations (reserved, then purchased or timed out: half each)."""
    before = (await js.stream_info(R.STREAM)).state.messages
    for i in range(n):
        rid = f"done-{i:07d}"
        await nc.publish(R.subject(rid), R.reserved_body(rid, 600.0, server_side=False, request="bench"))
        decided = (R.purchased_body(rid, request="bench") if i % 2 else
                   R.timeout_body(rid, time.time_ns(), "bench"))
        await nc.publish(R.subject(rid), decided)
        if i % 5000 == 4999:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + 120 + n / 1000
    while (await js.stream_info(R.STREAM)).state.messages < before + 2 * n:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not store every finished reservation")
        await asyncio.sleep(0.1)


def _service(url: str, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "reservations", "--server", url, "--quiet", "--name", name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


async def _time_to_ready(url: str, name: str, *extra: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = _service(url, name, *extra)
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        elapsed = time.perf_counter() - t0
        if "watching" not in line:
            raise RuntimeError(f"reservations service did not start: {line!r}")
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    return elapsed, line


async def _startup(pending: int, finished: int, runs: int) -> dict[str, Any]:
    """Start-up to the ready line: no history; after `finished` (snapshots on); the same, snapshots off."""
    out: dict[str, Any] = {}
    async with NatsServer(name="bench-startup-fresh") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        await R.ensure_stream(js)
        await _preload(nc, js, pending, "pend-", 3600.0)
        out["fresh"] = [(await _time_to_ready(srv.url, f"fresh{k}", "--snapshot-every", "0"))[0] for k in range(runs)]
        await nc.close()
    async with NatsServer(name="bench-startup-history") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        await R.ensure_stream(js)
        runner = _service(srv.url, "runner")  # sees the history as it happens, and snapshots it
        try:
            assert runner.stdout is not None
            if "watching" not in await asyncio.to_thread(runner.stdout.readline):
                raise RuntimeError("the running reservations service did not start")
            await _preload_finished(nc, js, finished)
            await _preload(nc, js, pending, "pend-", 3600.0)
            await asyncio.sleep(2.0)  # let it apply the last events
        finally:
            runner.terminate()  # its last snapshot covers everything it applied
            await asyncio.to_thread(runner.wait, 120)
        lines = [await _time_to_ready(srv.url, f"after{k}") for k in range(runs)]
        out["history"] = [t for t, _ in lines]
        out["history_line"] = lines[-1][1].strip()
        out["replay_all"] = [(await _time_to_ready(srv.url, "all", "--snapshot-every", "0"))[0]]
        out["events"] = (await js.stream_info(R.STREAM)).state.messages
        await nc.close()
    return out


def _startup_figures(opts: argparse.Namespace) -> list[Figure]:
    pending, finished = (1_000, 20_000) if opts.quick else (10_000, 1_000_000)
    runs = 1 if opts.quick else min(opts.runs, 3)
    got = asyncio.run(_startup(pending, finished, runs))
    fresh, history = median(got["fresh"]), median(got["history"])
    how = f"python -m natsdemo reservations, start to ready line, median of {runs}"
    return [
        Figure("start-up, no history", fresh, "s", f"{pending:,} pending; {how}", "< 2 s"),
        Figure("start-up after finished ones", history, "s",
               f"{pending:,} pending after {finished:,} finished ({got['events']:,} messages); {how}", "< 2 s"),
        Figure("start-up ratio history / none", history / fresh, "x", "same machine, same run", "<= 2x"),
        Figure("start-up, history, snapshots off", median(got["replay_all"]), "s",
               "the same stream replayed from its first message (--snapshot-every 0)"),
    ]
