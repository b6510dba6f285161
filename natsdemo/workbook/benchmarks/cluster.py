"""What replication costs and what a leader's crash costs, on a local 3-node cluster (mutual-TLS routes):

* throughput: acked publishes/s to an R3 stream against an R1 stream on the same cluster, through
  the same connection, interleaved over ``--runs`` (publish_async with the default window, so both
  are limited by the same pipeline, not by one round trip per message);
* the publish gap: one publisher sends acked publishes one after another to an R3 stream, the
  stream leader is SIGKILLed, and the gap is the time from the first publish that failed to the
  next one that was acked; the node is restarted and caught up before the next of ``--runs`` kills
  (5 by default). The gap is what a producer without retries sees; ``publish_acked`` rides it out.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

from natsdemo.core.connect import connect
from natsdemo.workbook.bench import Figure, median, percentile
from natsdemo.workbook.cluster import LocalCluster

PUBLISH_TIMEOUT = 0.5  # seconds per attempt during a failover (short, to see the gap finely)


async def _throughput(js: Any, stream: str, n: int) -> float:
    payload = b"x" * 128
    t0 = time.perf_counter()
    for i in range(n):
        await js.publish_async(f"{stream.lower()}.{i % 16}", payload)
    await js.publish_async_completed()
    return n / (time.perf_counter() - t0)


async def _leader(js: Any, stream: str) -> str:
    info = await js.stream_info(stream)
    return info.cluster.leader


async def _caught_up(js: Any, stream: str, timeout: float = 60) -> None:
    """Every replica current and a leader elected (after a restart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = await js.stream_info(stream)
            replicas = info.cluster.replicas or []
            if info.cluster.leader and len(replicas) == 2 and all(r.current for r in replicas):
                return
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"stream {stream} did not catch up within {timeout:.0f} s")


async def _gap(cluster: LocalCluster, js: Any, stream: str) -> float:
    """Seconds from the first failed publish after the leader's SIGKILL to the next acked one."""
    leader = await _leader(js, stream)
    failed_at: float | None = None
    killed = False
    i = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        i += 1
        if i == 20 and not killed:
            await asyncio.to_thread(cluster.kill, leader)
            killed = True
        t = time.monotonic()
        try:
            await js.publish(f"{stream.lower()}.gap", b"x", timeout=PUBLISH_TIMEOUT)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            if killed and failed_at is None:
                failed_at = t
            await asyncio.sleep(0.01)
            continue
        if failed_at is not None:
            gap = time.monotonic() - failed_at
            await cluster.arestart(leader)
            await _caught_up(js, stream)
            return gap
        if killed and i > 2000:  # the kill never showed: a leader change with no failed publish
            await cluster.arestart(leader)
            await _caught_up(js, stream)
            return 0.0
    raise RuntimeError("publishes did not recover within 120 s of the leader's SIGKILL")


async def _run(opts: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if opts.quick else 20_000
    runs = 1 if opts.quick else opts.runs
    with tempfile.TemporaryDirectory(prefix="natsdemo-bench-cluster-") as tmp:
        cluster = LocalCluster(nodes=3, certs=Path(tmp) / "certs")
        await cluster.astart()
        try:
            nc = await connect(cluster.url, ca=cluster.ca, name="bench-cluster")
            js = nc.jetstream(timeout=PUBLISH_TIMEOUT * 4)
            for name, r in (("R1", 1), ("R3", 3)):
                await js.add_stream(api.StreamConfig(name=name, subjects=[f"{name.lower()}.>"], num_replicas=r,
                                                     storage=api.StorageType.FILE))
            rates: dict[str, list[float]] = {"R1": [], "R3": []}
            for _ in range(runs):
                for name in ("R1", "R3"):  # interleaved, so drift hits both
                    rates[name].append(await _throughput(js, name, n))
            await _caught_up(js, "R3")
            gaps = [await _gap(cluster, js, "R3") for _ in range(runs)]
            await nc.close()
        finally:
            await cluster.astop()
    return {"n": n, "runs": runs, "rates": rates, "gaps": gaps}


def run(opts: argparse.Namespace) -> list[Figure]:
    out = asyncio.run(_run(opts))
    r1, r3 = median(out["rates"]["R1"]), median(out["rates"]["R3"])
    gaps_ms = [g * 1000 for g in out["gaps"]]
    how = f"median of {out['runs']}, {out['n']:,} acked publishes of 128 B, publish_async, 3 local nodes"
    kills = f"{len(gaps_ms)} SIGKILLs of the R3 stream leader, {PUBLISH_TIMEOUT:g} s publish timeout"
    return [
        Figure("publish rate, R1 stream", r1, "msgs/s", how),
        Figure("publish rate, R3 stream", r3, "msgs/s", how),
        Figure("R3 / R1", r3 / r1, "x", "same cluster, same connection"),
        Figure("publish gap after a leader SIGKILL, p50", percentile(gaps_ms, 50), "ms", kills),
        Figure("publish gap after a leader SIGKILL, max", max(gaps_ms), "ms", kills),
    ]
