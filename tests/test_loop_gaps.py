"""Widget handlers never block the kernel's event loop: a heartbeat task measures the loop while
the cluster dashboard restarts a node and a service, and the reservation lab scales its instances."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from natsdemo.core.connect import connect
from natsdemo.drain import enqueue
from natsdemo.ticks import publish_tick
from natsdemo.workbook.cluster import LocalCluster
from natsdemo.workbook.labs.production import ClusterDashboard
from natsdemo.workbook.labs.reservations import Instances
from natsdemo.workbook.services import ServiceProcess, stop_all

pytestmark = pytest.mark.slow
MAX_GAP = 0.25  # seconds


class Heartbeat:
    """Wakes every 10 ms and records the longest time the loop kept it waiting."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest = max(self.longest, now - last - 0.01)
            last = now

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.ensure_future(self._beat())
        await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_dashboard_restarts_do_not_block_the_loop(tmp_path: Path):
    """The restarted worker is busy with a slow item (600 ms), so its graceful stop takes that long:
    a handler that waited for it synchronously would freeze the loop (and every live plot) for it."""
    cluster = await LocalCluster(nodes=3, certs=tmp_path / "certs").astart()
    worker = ServiceProcess("drain-w", ["drain", "--name", "gap", "--work-ms", "600", "--batch", "1"],
                            cluster.env(), ready=r"^draining ")
    services = {"drain-w": worker}
    nc = None
    dash = None
    try:
        worker.start()
        await worker.await_ready(60)
        nc = await connect(cluster.url, ca=cluster.ca)
        js = nc.jetstream()
        await enqueue(js, "gap", 5)
        await publish_tick(js, "gap")
        await asyncio.sleep(1.0)  # the worker is in the middle of an item
        dash = ClusterDashboard(cluster, js, services, interval=0.5)
        dash.kill_node("n3")
        async with Heartbeat() as beat:
            await dash.restart_node("n3")
            await cluster.await_ready(60)
            await dash.restart_service("drain-w")
            await worker.await_ready(60)
        print(f"longest loop gap while restarting a node and a busy service: {beat.longest * 1000:.0f} ms")
        assert beat.longest < MAX_GAP
        assert "n3" in cluster.running() and worker.starts == 2
    finally:
        if dash is not None:
            dash.panel.stop()
        stop_all(services)
        if nc is not None:
            await nc.close()
        await cluster.astop()


async def test_scaling_the_reservation_instances_does_not_block_the_loop(nats_server):
    instances = Instances(nats_server.url)
    try:
        async with Heartbeat() as beat:
            assert await instances.ascale(2) == ["i1", "i2"]
            await instances.wait_ready(30)
            assert await instances.ascale(1) == ["i1"]  # i2 shuts down gracefully meanwhile
            assert instances.alive() == ["i1"]
            await instances.ascale(2)
            await instances.wait_ready(30)
        print(f"longest loop gap while scaling 2 -> 1 -> 2: {beat.longest * 1000:.0f} ms")
        assert beat.longest < MAX_GAP
    finally:
        await instances.astop()
