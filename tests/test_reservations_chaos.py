"""1,000 reservations through crashes and restarts: exactly one timeout per unpurchased reservation,
none for purchased ones, none before its deadline, none lost. Client-side (two service processes,
one SIGKILLed mid-run and restarted) and server-side (@at schedules, nats-server restarted)."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import threading
import time

import pytest

from natsdemo import reservations as R
from natsdemo.workbook.server import NatsServer
from tests.conftest import ROOT

N = 1000


def start_instance(url: str, name: str) -> tuple[subprocess.Popen, list[str]]:
    """A `python -m natsdemo reservations` process; its stdout lines are collected by a thread."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "reservations", "--server", url, "--timeout", "2", "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, lines


async def wait_ready(lines: list[str], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines:
            if "watching events.reservation.>" in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"service not ready: {lines}")


async def reserve_all(js, ids: list[str], purchased: set[str], timeout: float, server_side: bool) -> None:
    async def one(rid: str) -> None:
        await R.reserve(js, rid, timeout, server_side=server_side)
        if rid in purchased:
            await R.purchase(js, rid)  # well before the deadline: must succeed

    for i in range(0, len(ids), 100):
        await asyncio.gather(*(one(rid) for rid in ids[i : i + 100]))


async def wait_for_timeouts(js, expected: int, timeout: float) -> list[R.Event]:
    deadline = time.monotonic() + timeout
    while True:
        events = await R.read_events(js)
        if sum(e.type == R.TIMED_OUT for e in events) >= expected or time.monotonic() > deadline:
            await asyncio.sleep(1.0)  # a duplicate would land now, if there were one
            return await R.read_events(js)
        await asyncio.sleep(0.25)


def check_invariants(events: list[R.Event], ids: list[str], purchased: set[str], timeout: float) -> None:
    by_id: dict[str, list[R.Event]] = collections.defaultdict(list)
    for e in events:
        by_id[e.id].append(e)
    assert set(by_id) == set(ids)
    problems = []
    for rid in ids:
        kinds = [e.type for e in by_id[rid]]
        want = [R.RESERVED, R.PURCHASED] if rid in purchased else [R.RESERVED, R.TIMED_OUT]
        if kinds != want:
            problems.append(f"{rid}: {kinds}")
        elif rid not in purchased:
            reserved, fired = by_id[rid]
            if fired.ts_ns < reserved.ts_ns + timeout * 1e9:  # stream timestamps, both from the server
                problems.append(f"{rid}: timeout {(reserved.ts_ns + timeout * 1e9 - fired.ts_ns) / 1e6:.3f} ms early")
    assert not problems, f"{len(problems)} bad reservations, e.g. {problems[:5]}"


@pytest.mark.slow
async def test_client_side_two_instances_one_killed_and_restarted(nats_server, nc):
    js = nc.jetstream()
    await R.ensure_stream(js)
    ids = [f"c{i:04d}" for i in range(N)]
    purchased = set(ids[::3])
    a, a_lines = start_instance(nats_server.url, "a")
    b, b_lines = start_instance(nats_server.url, "b")
    procs = [a, b]
    try:
        await wait_ready(a_lines)
        await wait_ready(b_lines)
        t0 = time.time()
        await reserve_all(js, ids, purchased, 2.0, server_side=False)
        await asyncio.sleep(max(0.0, t0 + 2.2 - time.time()))  # deadlines are being hit now
        a.send_signal(signal.SIGKILL)
        a.wait(5)
        await asyncio.sleep(0.5)
        a2, a2_lines = start_instance(nats_server.url, "a2")
        procs.append(a2)
        ready = await wait_ready(a2_lines)
        assert "replayed" in ready and int(ready.split("replayed ")[1].split()[0]) >= N
        events = await wait_for_timeouts(js, N - len(purchased), timeout=30)
        check_invariants(events, ids, purchased, 2.0)
        fired_by = collections.Counter(e.body["by"] for e in events if e.type == R.TIMED_OUT)
        assert set(fired_by) <= {"a", "b", "a2"}
        for p in (b, a2):
            p.send_signal(signal.SIGTERM)
            assert p.wait(15) == 0  # graceful shutdown on SIGTERM
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)


@pytest.mark.slow
async def test_server_side_schedules_survive_a_server_restart(tmp_path):
    srv = NatsServer(name="test-resv", store_dir=tmp_path / "store").start()
    nc = None
    try:
        nc = await srv.connect()
        js = nc.jetstream()
        await R.ensure_stream(js)
        ids = [f"s{i:04d}" for i in range(N)]
        purchased = set(ids[::3])
        timeout = 5.0  # long enough that the restart lands before the first deadline on a busy machine
        t0 = time.time()
        await reserve_all(js, ids, purchased, timeout, server_side=True)
        await nc.close()
        await asyncio.to_thread(srv.restart)  # file storage, same port
        assert time.time() < t0 + timeout, "the restart must happen before the first deadline"
        nc = await srv.connect()
        js = nc.jetstream()
        events = await wait_for_timeouts(js, N - len(purchased), timeout=30)
        check_invariants(events, ids, purchased, timeout)
        fired = [e for e in events if e.type == R.TIMED_OUT]
        assert all(e.headers["Nats-Scheduler"] == f"schedules.reservation.{e.id}" for e in fired)
        with pytest.raises(R.LatePurchaseError):
            await R.purchase(js, fired[0].id)
    finally:
        if nc is not None and not nc.is_closed:
            await nc.close()
        srv.stop()
