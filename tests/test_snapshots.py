"""Snapshots of the pending reservations (natsdemo.reservations.snapshot): a start loads the newest
one and replays only the events after it, rebuilding exactly what a full replay builds; a SIGKILL
while a snapshot is being written, or while a service starts, breaks none of the invariants
(exactly one timeout per unpurchased reservation, none for purchased ones, none early, none lost)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading

import pytest

from natsdemo import reservations as R
from natsdemo.reservations import snapshot as S
from natsdemo.reservations.service import TimeoutService
from tests.conftest import ROOT, assert_one_line_error, run_cli, until
from tests.test_reservations_chaos import check_invariants, wait_for_timeouts, wait_ready


async def _reserve(js, ids: list[str], purchased: set[str], timeout: float) -> None:
    for i in range(0, len(ids), 50):
        await asyncio.gather(*(R.reserve(js, rid, timeout) for rid in ids[i:i + 50]))
    for rid in sorted(purchased & set(ids)):
        await R.purchase(js, rid)


async def _events_seq(js) -> int:
    """The stream sequence of the last reservation event (the stream also holds clock probes)."""
    return (await js.get_last_msg(R.STREAM, f"{R.EVENTS}.>")).seq


async def test_a_start_from_a_snapshot_rebuilds_what_a_full_replay_builds(nc):
    js = nc.jetstream()
    a = TimeoutService(js, default_timeout=600, name="a", snapshot_every=3600)
    await a.start()
    first = [f"s{i:03d}" for i in range(300)]
    await _reserve(js, first, set(first[::3]), 600)
    last = await _events_seq(js)
    assert await until(lambda: a._applied == last)
    assert await a.snapshot()  # covers every event so far
    covers = a._applied
    later = [f"t{i:03d}" for i in range(20)]
    await _reserve(js, later, set(), 600)
    for rid in first[1:16:3]:  # 5 purchases of reservations that are in the snapshot
        await R.purchase(js, rid)
    last = await _events_seq(js)
    assert await until(lambda: a._applied == last)
    a.snapshot_every = None  # stop without a final snapshot: the next start has a tail to replay
    await a.stop()

    b = TimeoutService(js, default_timeout=600, name="b")
    full = TimeoutService(js, default_timeout=600, name="full", snapshot_every=None)
    await b.start()
    await full.start()
    try:
        assert b.snapshot_loaded is not None and b.snapshot_loaded.covers == covers and b.snapshot_loaded.by == "a"
        assert len(b.snapshot_loaded.entries) == 200
        assert b.stats["replayed"] == 25 and full.stats["replayed"] == 300 + 100 + 25
        # the same timers, deadlines and guard sequences as a replay of everything
        assert sorted(b.timers.entries()) == sorted(full.timers.entries())
        assert len(b.timers) == 200 - 5 + 20
    finally:
        await b.stop()
        await full.stop()
    # b's stop wrote a newer snapshot and purged a's: one head, and only its chunks
    info = await js.stream_info(S.SNAPSHOT_STREAM, subjects_filter=f"{S.SNAPSHOTS}.>")
    head = json.loads((await js.get_last_msg(S.SNAPSHOT_STREAM, S.HEAD)).data)
    assert head["by"] == "b" and head["covers"] == last
    assert set(info.state.subjects) == {S.HEAD, head["subject"]}, info.state.subjects


async def test_a_snapshot_of_another_stream_or_with_missing_chunks_means_a_full_replay(nc):
    js = nc.jetstream()
    a = TimeoutService(js, default_timeout=600, name="a", snapshot_every=3600)
    await a.start()
    await _reserve(js, ["x1", "x2"], set(), 600)
    assert await until(lambda: len(a.timers) == 2)
    assert await a.snapshot()
    await a.stop()
    head = json.loads((await js.get_last_msg(S.SNAPSHOT_STREAM, S.HEAD)).data)
    info = await js.stream_info(R.STREAM)
    assert (await S.load(js, info)) is not None
    await js.purge_stream(S.SNAPSHOT_STREAM, subject=head["subject"])  # chunks gone, head still there
    assert (await S.load(js, info)) is None
    b = TimeoutService(js, default_timeout=600, name="b", snapshot_every=3600)
    await b.start()
    try:
        assert b.snapshot_loaded is None and b.stats["replayed"] == 2 and len(b.timers) == 2
    finally:
        await b.stop()
    # a new incarnation of RESERVATIONS (deleted and created again) never uses the old snapshots
    await js.delete_stream(R.STREAM)
    await R.ensure_stream(js)
    await R.reserve(js, "y1", 600)
    assert (await S.load(js, await js.stream_info(R.STREAM))) is None


def _instance(url: str, name: str, *extra: str, log: list[str] | None = None) -> tuple[subprocess.Popen, list[str]]:
    """A service process; its stdout lines (and, given ``log``, its stderr lines) collected by threads."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "reservations", "--server", url, "--name", name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if log is None else subprocess.PIPE, text=True, cwd=ROOT,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    if log is not None:
        threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    return proc, lines


@pytest.mark.slow
async def test_sigkill_while_writing_a_snapshot_and_while_starting_keeps_the_invariants(nats_server, nc):
    js = nc.jetstream()
    timeout = 10.0
    ids = [f"k{i:04d}" for i in range(1350)]
    purchased = set(ids[::3])
    # one entry per snapshot message, so writing one takes long enough to be interrupted
    a, a_lines = _instance(nats_server.url, "a", "--snapshot-every", "0.2", "--snapshot-chunk", "1")
    procs = [a]
    try:
        await wait_ready(a_lines)
        await _reserve(js, ids[:150], purchased, timeout)

        async def a_head() -> bool:
            msg = await js.get_last_msg(S.SNAPSHOT_STREAM, S.HEAD)
            return json.loads(msg.data)["covers"] == await _events_seq(js)

        assert await until(a_head, timeout=20, tolerate=(Exception,)), "no first snapshot"
        reserving = asyncio.ensure_future(_reserve(js, ids[150:], purchased, timeout))

        async def writing() -> tuple[int, dict] | None:
            """(seq, body) of the newest head while a newer snapshot's chunks are being written."""
            info = await js.stream_info(S.SNAPSHOT_STREAM, subjects_filter=f"{S.SNAPSHOTS}.chunk.>")
            head = await js.get_last_msg(S.SNAPSHOT_STREAM, S.HEAD)  # read after: never older than info
            body = json.loads(head.data)
            chunks = (info.state.subjects or {}).items()
            newer = [n for subj, n in chunks if int(subj.rsplit(".", 1)[1]) > body["covers"]]
            return (head.seq, body) if newer and max(newer) >= 5 else None

        found = await until(writing, timeout=20, every=0.005)
        a.send_signal(signal.SIGKILL)
        a.wait(5)
        await reserving
        assert found, "never caught a snapshot being written"
        old_seq, old_head = found
        after = await js.get_last_msg(S.SNAPSHOT_STREAM, S.HEAD)
        assert after.seq == old_seq, "the interrupted snapshot's head landed anyway"
        loaded = await S.load(js, await js.stream_info(R.STREAM))
        assert loaded is not None and loaded.covers == old_head["covers"]  # the previous one still loads

        # an instance killed while it replays the events after that snapshot (before its ready line)
        for attempt in range(3):
            log: list[str] = []
            b, b_lines = _instance(nats_server.url, f"b{attempt}", log=log)
            procs.append(b)
            replaying = lambda log=log: any("replaying from seq" in ln for ln in log)  # noqa: E731
            assert await until(replaying, timeout=15, every=0.001), log
            b.send_signal(signal.SIGKILL)
            b.wait(5)
            if not any("watching" in ln for ln in b_lines):
                break
        else:
            raise AssertionError("every instance was ready before its SIGKILL: never killed one while starting")

        c, c_lines = _instance(nats_server.url, "c")
        procs.append(c)
        ready = await wait_ready(c_lines)
        assert f"after seq {old_head['covers']} (a snapshot of {old_head['entries']} by a)" in ready, ready
        events = await wait_for_timeouts(js, len(ids) - len(purchased), timeout=40)
        check_invariants(events, ids, purchased, timeout)
        c.send_signal(signal.SIGTERM)
        assert c.wait(15) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_bad_snapshot_settings_are_refused_in_one_line():
    for args, fragment in ((["--snapshot-every", "-1"], "--snapshot-every -1"),
                           (["--snapshot-every", "soon"], "--snapshot-every soon"),
                           (["--snapshot-chunk", "0"], "--snapshot-chunk 0")):
        proc = run_cli("reservations", *args, "--server", "nats://127.0.0.1:1", timeout=20)
        assert proc.returncode == 2, proc.stderr
        assert_one_line_error(proc, fragment)


class TimersOnly(TimeoutService):
    """The tempting snapshot: the timers still waiting in the scheduler's heap, forgetting a timeout
    whose publish is in flight (or published, but not yet read back from the stream)."""

    def pending_entries(self) -> list[S.Entry]:
        return [(rid, seq, deadline) for deadline, rid, seq in self.timers.entries() if rid in self.timers]


@pytest.mark.parametrize(("service", "fires"), [(TimeoutService, True), (TimersOnly, False)])
async def test_a_timeout_still_being_published_is_in_the_snapshot(nats_server, nc, service, fires):
    """Instance a fires a timeout whose publish hangs (its network stalls), a snapshot is taken, and a
    dies. b starts from that snapshot: the reservation must still be pending there. The variant that
    snapshots only the scheduler's timers loses it: nothing ever times it out."""
    from natsdemo.core.connect import connect
    from tests.faultproxy import FaultProxy

    js = nc.jetstream()
    await R.ensure_stream(js)
    await S.ensure_snapshot_stream(js)
    proxy = await FaultProxy("127.0.0.1", int(nats_server.url.rsplit(":", 1)[1])).start()
    a_nc = await connect(proxy.url, name="a", max_reconnect_attempts=0)
    a = service(a_nc.jetstream(), name="a", snapshot_every=3600, publish_timeout=2.0)
    try:
        await a.start()
        await R.reserve(js, "f1", 0.3)
        assert await until(lambda: "f1" in a.timers)
        proxy.stall(30)  # a's publish of the timeout goes nowhere
        assert await until(lambda: "f1" not in a.timers, timeout=5)  # fired: the publish is in flight
        info = await js.stream_info(R.STREAM)
        assert await S.write(js, covers=a._applied, entries=a.pending_entries(), stream_created=str(info.created),
                             writer="a")
        a.snapshot_every = None  # a dies now: no retry, no last snapshot
        await proxy.stop()
        await a.stop()
    finally:
        await a_nc.close()
        await proxy.stop()
    b = TimeoutService(js, name="b", snapshot_every=3600)
    await b.start()
    try:
        assert b.snapshot_loaded is not None and b.stats["replayed"] == 0
        timed_out = await until(lambda: _timed_out(js, "f1"), timeout=4)
        assert bool(timed_out) is fires
    finally:
        await b.stop()


async def _timed_out(js, rid: str) -> bool:
    msg = await js.get_msg(R.STREAM, subject=R.subject(rid))
    return json.loads(msg.data)["type"] == R.TIMED_OUT


async def test_a_timer_between_the_heap_and_its_fire_is_still_pending_work():
    """The scheduler takes a due timer off its heap a moment before the fire coroutine starts; a
    snapshot taken in that moment must still see it (else a crash right then loses the timeout)."""
    from natsdemo.core.timers import Scheduler

    started: list[str] = []

    async def fire(key, token, deadline):
        started.append(key)

    sched = Scheduler(fire)
    sched.add("due", 0.0, 7)  # long overdue
    sched.start()
    await asyncio.sleep(0)  # the loop pops "due" and schedules its fire, which has not run yet
    assert "due" not in sched and not started
    assert [(k, t) for _, k, t in sched.entries()] == [("due", 7)]
    await asyncio.sleep(0.05)
    assert started == ["due"] and sched.entries() == []  # fired: no longer pending here
    await sched.stop()
