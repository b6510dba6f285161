"""Two ``python -m natsdemo drain`` worker processes share one consumer: one tick drains 10,000
items exactly once; a worker killed with SIGKILL mid-drain loses nothing, and the only duplicates
are the items it had processed but not yet acknowledged."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from natsdemo.drain import DrainSettings, dead_letters, enqueue, ensure_queue, queue_names, queue_state
from natsdemo.ticks import publish_tick
from natsdemo.workbook.labs.drain import read_processed_log
from natsdemo.workbook.services import ServiceProcess
from tests.conftest import ARTIFACTS, ROOT, wait_for

N = 10_000


def start_worker(url: str, worker: str, log: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "drain", "--name", "eod", "--server", url, "--worker", worker,
         "--processed-log", str(log), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    line = proc.stdout.readline()  # the ready line (blocks until printed or the process exits)
    assert line.startswith("draining eod-queue.> with consumer eod"), (line, proc.stderr.read() if proc.poll() else "")
    return proc


def stop(procs: list[subprocess.Popen[str]]) -> list[str]:
    outs = []
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            out, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        outs.append(out)
    return outs


async def drained(js, timeout: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await queue_state(js, "eod")
        if st["pending"] == 0 and st["ack_pending"] == 0:
            return st
        await asyncio.sleep(0.1)
    raise AssertionError(f"queue not drained: {await queue_state(js, 'eod')}")


@pytest.mark.slow
async def test_two_workers_one_tick_each_item_once(nats_server, nc, tmp_path):
    js = nc.jetstream()
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    flags = ["--batch", "100", "--work-ms", "0.1"]
    procs = [start_worker(nats_server.url, w, log, *flags) for w, log in zip("ab", logs, strict=True)]
    try:
        await enqueue(js, "eod", N)
        await publish_tick(js, "eod")
        st = await drained(js)
        assert st["stored"] == 0  # work-queue stream: every item was acked (and so deleted)
    finally:
        outs = stop(procs)
    rows = read_processed_log(logs[0]) + read_processed_log(logs[1])
    seqs = collections.Counter(seq for _, seq, _ in rows)
    assert set(seqs) == set(range(1, N + 1))
    assert max(seqs.values()) == 1, "an item was processed twice"
    per_worker = collections.Counter(w for w, _, _ in rows)
    assert per_worker["a"] > 0 and per_worker["b"] > 0, per_worker  # both shared the work
    for out in outs:  # each worker drained once for the one tick, then stopped gracefully
        assert out.count(": drained") == 1, out
        assert "stopped after 1 ticks, 1 drains" in out, out


@pytest.mark.slow
async def test_sigkill_mid_drain_loses_nothing(nats_server, nc, tmp_path):
    js = nc.jetstream()
    logs = {"victim": tmp_path / "victim.log", "survivor": tmp_path / "survivor.log"}
    batch = 100
    flags = ["--batch", str(batch), "--work-ms", "0.3", "--ack-wait", "2"]
    procs = {w: start_worker(nats_server.url, w, log, *flags) for w, log in logs.items()}
    try:
        await enqueue(js, "eod", N)
        await publish_tick(js, "eod")
        deadline = time.monotonic() + 30
        while len(read_processed_log(logs["victim"])) < 1550:  # mid-batch, most likely
            assert time.monotonic() < deadline, "the victim never got going"
            await asyncio.sleep(0.01)
        procs["victim"].kill()  # SIGKILL: no graceful anything
        procs["victim"].wait(5)
        killed_at = len(read_processed_log(logs["victim"]))
        st = await drained(js)
        assert st["stored"] == 0
    finally:
        stop(list(procs.values()))
    victim, survivor = read_processed_log(logs["victim"]), read_processed_log(logs["survivor"])
    seqs = collections.Counter(seq for _, seq, _ in victim + survivor)
    assert set(seqs) == set(range(1, N + 1)), "an item was lost"
    dups = sorted(seq for seq, c in seqs.items() if c > 1)
    victim_seqs = {seq for _, seq, _ in victim}
    survivor_counts = collections.Counter(seq for _, seq, _ in survivor)
    redelivered = {seq for _, seq, d in survivor if d > 1}
    # the only duplicates: items the victim processed but whose ack never left it (at most one batch),
    # each processed once more by the survivor, as a redelivery
    assert max(survivor_counts.values()) == 1 and len(victim_seqs) == len(victim)
    assert set(dups) <= victim_seqs and set(dups) <= redelivered
    assert len(dups) <= batch
    report = {
        "items": N, "victim_processed_before_kill": killed_at, "survivor_processed": len(survivor),
        "redelivered_to_survivor": len(redelivered), "duplicates_caused_by_kill": len(dups),
    }
    (ARTIFACTS / "drain_sigkill.json").write_text(json.dumps(report, indent=2))
    print("\nSIGKILL mid-drain:", report)
    assert os.path.getsize(logs["survivor"]) > 0


async def test_an_item_that_kills_its_worker_every_time_still_reaches_the_dead_letters(nats_server, nc, tmp_path):
    """Each delivery of the item crashes the worker (no nak, no dead letter); after max_deliver the
    server gives up and says so in a MAX_DELIVERIES advisory, which a live worker turns into a
    dead letter, deleting the item from the work stream."""
    js = nc.jetstream()
    name = "crashy"
    flags = ["drain", "--name", name, "--server", nats_server.url, "--max-deliver", "3", "--ack-wait", "1.5"]
    await ensure_queue(js, name, DrainSettings(max_deliver=3, ack_wait=1.5))
    await js.publish(queue_names(name).item_subject("orders.9"), b'{"id": "crash-me"}')
    for attempt in range(3):  # a supervisor restarting a worker that keeps dying on the same item
        worker = ServiceProcess(f"crashy-{attempt}", [*flags, "--crash-match", "crash-me", "--once"])
        worker.start()
        code = await asyncio.to_thread(worker.proc.wait, 30)
        assert code == 3, worker.log_text()[-1500:]
        worker.remove_log()
    healthy = ServiceProcess("crashy-ok", [*flags, "--quiet"], ready=r"^draining ")
    try:
        healthy.start()
        await healthy.await_ready(30)
        await publish_tick(js, name)  # its drain asks for items: the server finds this one exhausted
        dead = await wait_for(lambda: dead_letters(js, name), timeout=20)
        assert dead[0]["subject"] == f"{name}-queue.orders.9" and dead[0]["deliveries"] == 3
        assert "max_deliver reached after 3 deliveries" in dead[0]["reason"]
        assert (await js.stream_info(queue_names(name).stream)).state.messages == 0  # deleted once dead-lettered
    finally:
        await healthy.astop()
        healthy.remove_log()
