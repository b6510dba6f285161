"""Reservation timeouts: publisher helpers, the timer service, the duplicate_window pitfall, the CLI.

The crash/restart runs with 1,000 reservations are in test_reservations_chaos.py."""

from __future__ import annotations

import asyncio
import json
import re
import time

import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from natsdemo import reservations as R
from natsdemo.core.errors import UsageError
from natsdemo.core.timers import Scheduler
from natsdemo.reservations.service import TimeoutService
from tests.conftest import assert_one_line_error, run_cli, wait_for


@pytest.fixture
async def svc(nc):
    """A timer service called ``t`` on the test's server, stopped after the test."""
    service = TimeoutService(nc.jetstream(), name="t")
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def test_ids_are_checked():
    assert R.check_id("r-1_A") == "r-1_A"
    for bad in ("", "a.b", "a b", "x" * 65, "é", "*", ">"):
        with pytest.raises(UsageError, match=r"reservation id .* is not subject-safe"):
            R.check_id(bad)
    with pytest.raises(UsageError, match="bad timeout"):
        R.check_timeout(0)
    assert R.iso(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.001Z"  # rounded up, never early


async def test_scheduler_fires_in_deadline_order_never_early_and_cancels():
    fired: list[tuple[str, float, float]] = []

    async def fire(key, token, deadline):
        fired.append((key, deadline, time.time()))

    s = Scheduler(fire)
    now = time.time()
    s.add("late", now + 0.30, 1)
    s.add("early", now + 0.10, 2)
    s.add("gone", now + 0.05, 3)
    s.add("overdue", now - 5.0, 4)  # a deadline passed while we were down: fires at once
    assert s.cancel("gone") and not s.cancel("gone")
    s.start()
    await asyncio.sleep(0.5)
    await s.stop()
    assert [k for k, _, _ in fired] == ["overdue", "early", "late"]
    assert all(at >= deadline for _, deadline, at in fired)
    assert len(s) == 0


async def test_late_purchase_is_refused_client_side(nc, svc):
    js = nc.jetstream()
    await R.reserve(js, "late-1", timeout=0.3)
    await R.reserve(js, "paid-1", timeout=0.3)
    assert await R.purchase(js, "paid-1") > 0
    with pytest.raises(R.AlreadyPurchasedError):
        await R.purchase(js, "paid-1")
    await wait_for(lambda: _last_type(js, "late-1", R.TIMED_OUT))
    with pytest.raises(R.LatePurchaseError, match="too late"):
        await R.purchase(js, "late-1")
    with pytest.raises(R.UnknownReservationError, match="reserve it first"):
        await R.purchase(js, "never-reserved")
    with pytest.raises(R.DuplicateReservationError):
        await R.reserve(js, "late-1")
    with pytest.raises(UsageError):
        await R.reserve(js, "bad.id")
    await asyncio.sleep(0.4)
    types = {ev.id: [e.type for e in await R.read_events(js) if e.id == ev.id] for ev in await R.read_events(js)}
    assert types == {"late-1": [R.RESERVED, R.TIMED_OUT], "paid-1": [R.RESERVED, R.PURCHASED]}


async def test_server_guard_refuses_a_stale_purchase_and_without_it_both_outcomes_land(nc, svc):
    """What notebook 04 shows: the server's guard, not only purchase()'s read, stops a late purchase."""
    js = nc.jetstream()
    reserved = await R.reserve(js, "stale-1", timeout=0.3)
    await wait_for(lambda: _last_type(js, "stale-1", R.TIMED_OUT))
    body = json.dumps({"type": R.PURCHASED, "id": "stale-1"}).encode()
    stale = {"Nats-Expected-Last-Subject-Sequence": str(reserved.seq)}
    with pytest.raises(nats.js.errors.BadRequestError) as refused:
        await js.publish(R.subject("stale-1"), body, headers=stale)
    assert refused.value.err_code in R.WRONG_LAST_SEQUENCE_CODES
    await js.publish(R.subject("stale-1"), body)  # the exercise: no guard, so the late purchase lands
    kinds = [e.type for e in await R.read_events(js) if e.id == "stale-1"]
    assert kinds == [R.RESERVED, R.TIMED_OUT, R.PURCHASED]


async def test_a_purchase_racing_its_timeout_has_exactly_one_winner(nc, svc):
    js = nc.jetstream()

    async def buy_near_deadline(rid: str, offset: float) -> bool:
        reserved_at = time.time()
        await R.reserve(js, rid, timeout=0.5)
        await asyncio.sleep(max(0.0, reserved_at + 0.5 + offset - time.time()))
        try:
            await R.purchase(js, rid)
            return True
        except R.LatePurchaseError:
            return False

    ids = [f"race-{i}" for i in range(60)]
    offsets = [(i % 13 - 6) * 0.004 for i in range(60)]  # -24 ms .. +24 ms around the deadline
    won = dict(zip(ids, await asyncio.gather(*map(buy_near_deadline, ids, offsets)), strict=True))
    await asyncio.sleep(0.3)
    events = await R.read_events(js)
    for rid in ids:
        kinds = [e.type for e in events if e.id == rid]
        assert kinds == [R.RESERVED, R.PURCHASED if won[rid] else R.TIMED_OUT], (rid, kinds)


async def _last_type(js, rid: str, kind: str) -> bool:
    msg = await js.get_msg(R.STREAM, subject=R.subject(rid))
    return json.loads(msg.data)["type"] == kind


async def test_server_side_timer_and_late_purchase(nc):
    js = nc.jetstream()
    await R.ensure_stream(js)
    res = await R.reserve(js, "srv-1", timeout=0.5, server_side=True)
    await R.reserve(js, "srv-2", timeout=0.5, server_side=True)
    await R.purchase(js, "srv-2")  # cancels srv-2's @at in the same write
    await wait_for(lambda: _last_type(js, "srv-1", R.TIMED_OUT))
    with pytest.raises(R.LatePurchaseError):
        await R.purchase(js, "srv-1")
    await asyncio.sleep(0.6)
    events = await R.read_events(js)
    by_id = {rid: [e for e in events if e.id == rid] for rid in ("srv-1", "srv-2")}
    assert [e.type for e in by_id["srv-2"]] == [R.RESERVED, R.PURCHASED]
    reserved, timeout = by_id["srv-1"]
    assert timeout.type == R.TIMED_OUT and timeout.headers["Nats-Scheduler"] == "schedules.reservation.srv-1"
    assert "Nats-Msg-Id" not in timeout.headers  # stripped from scheduled messages: dedupe by id
    assert timeout.ts_ns >= reserved.ts_ns + 0.5e9 and timeout.ts_ns >= res.deadline_ns


async def test_bad_events_are_logged_and_skipped(nc, svc, caplog):
    js = nc.jetstream()
    await js.publish("events.reservation.x1", b"{not json")
    await js.publish("events.reservation.x2", b'{"type": "tickets-refunded", "id": "x2"}')
    await js.publish("events.reservation.bad.id", b'{"type": "tickets-reserved", "id": "bad.id"}')
    await js.publish("events.reservation.x3", b'{"type": "tickets-reserved", "id": "other"}')
    await js.publish("events.reservation.x4", b'{"type": "tickets-reserved", "id": "x4", "timeout": -1}')
    await R.reserve(js, "ok-1", timeout=0.2)
    await wait_for(lambda: _last_type(js, "ok-1", R.TIMED_OUT))
    assert svc.stats["skipped"] == 5
    assert svc.stats["stored"] == 1
    # (sequence numbers also count the service's clock probes, so only the subject is fixed)
    assert re.search(r"skipping seq \d+ on events\.reservation\.x1: not JSON", caplog.text), caplog.text


class RelativeTimers(TimeoutService):
    """The seed's design, for comparison: every event replayed gets a fresh timer from *now*."""

    def apply(self, ev: R.Event) -> None:
        if ev.type == R.RESERVED:
            self.timers.add(ev.id, time.time() + ev.timeout_or(self.default_timeout), ev.seq)
        else:
            super().apply(ev)


async def _fired_after_restart(js, service: type[TimeoutService], tag: str,
                               snapshots: bool = False) -> tuple[float, TimeoutService]:
    """Reserve with a 0.6 s timeout, stop the only instance, restart after 1 s: seconds from the
    restart to the stored timeout (and the restarted service, still running). Without
    ``snapshots`` the restart replays the whole stream; with them it loads the first one's."""
    every = 3600.0 if snapshots else None
    first = service(js, name=f"{tag}-first", snapshot_every=every)
    await first.start()
    await R.reserve(js, f"{tag}-done", timeout=0.1)
    await wait_for(lambda: _last_type(js, f"{tag}-done", R.TIMED_OUT))
    await R.reserve(js, f"{tag}-open", timeout=0.6)
    await wait_for(lambda: f"{tag}-open" in first.timers)  # applied, so a snapshot taken at stop holds it
    await first.stop()  # the only instance goes away before the deadline
    await asyncio.sleep(1.0)
    second = service(js, name=f"{tag}-second", snapshot_every=every)
    restarted = time.time()
    await second.start()
    await wait_for(lambda: _last_type(js, f"{tag}-open", R.TIMED_OUT))
    events = {(e.id, e.type): e for e in await R.read_events(js)}
    reserved, fired = events[(f"{tag}-open", R.RESERVED)], events[(f"{tag}-open", R.TIMED_OUT)]
    assert fired.ts_ns >= reserved.ts_ns + 0.6e9  # never early
    return fired.ts_ns / 1e9 - restarted, second


async def test_restart_fires_overdue_timeouts_at_once_and_never_twice(nc):
    after_restart, second = await _fired_after_restart(nc.jetstream(), TimeoutService, "abs")
    try:
        # fired as soon as the replay caught up, not a whole timeout (0.6 s) after the restart
        assert after_restart < 0.3, f"fired {after_restart:.2f} s after the restart"
        assert second.stats["replayed"] == 3 and second.stats["stored"] == 1 and second.stats["refused"] == 0
    finally:
        await second.stop()


async def test_a_restart_from_a_snapshot_fires_overdue_timeouts_at_once_too(nc):
    after_restart, second = await _fired_after_restart(nc.jetstream(), TimeoutService, "snap", snapshots=True)
    try:
        assert after_restart < 0.3, f"fired {after_restart:.2f} s after the restart"
        assert second.snapshot_loaded is not None and len(second.snapshot_loaded.entries) == 1
        assert second.stats["replayed"] == 0 and second.stats["stored"] == 1 and second.stats["refused"] == 0
    finally:
        await second.stop()


async def test_the_restart_check_catches_relative_timers(nc):
    """The check above can fail: with the seed's relative timers the same timeout fires late."""
    after_restart, second = await _fired_after_restart(nc.jetstream(), RelativeTimers, "rel")
    await second.stop()
    assert after_restart >= 0.5, f"the relative-timer variant fired {after_restart:.2f} s after the restart"


async def test_duplicate_window_pitfall_and_core_subscribers(nc):
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="DEDUP", subjects=["dedup.>"], duplicate_window=1.0))
    core: list[bytes] = []

    async def on_core(msg):
        core.append(msg.data)

    await nc.subscribe("dedup.>", cb=on_core)
    reservation = await js.publish("dedup.r1", b"tickets-reserved")
    hdr = {"Nats-Msg-Id": "r1-reservation-timeout"}
    guard = {**hdr, "Nats-Expected-Last-Subject-Sequence": str(reservation.seq)}  # as the timer service sends it
    first = await js.publish("dedup.r1", b"timeout", headers=guard)
    again = await js.publish("dedup.r1", b"timeout", headers=hdr)
    assert again.duplicate and again.seq == first.seq
    await asyncio.sleep(1.3)  # past the duplicate window
    with pytest.raises(nats.js.errors.BadRequestError) as refused:  # nothing else landed in between:
        await js.publish("dedup.r1", b"timeout", headers=guard)  # the guard alone refuses the late copy
    assert refused.value.err_code == R.WRONG_LAST_SEQUENCE
    own = {**hdr, "Nats-Expected-Last-Subject-Sequence": str(first.seq)}  # naming its own first copy
    assert not (await js.publish("dedup.r1", b"timeout", headers=own)).duplicate  # ...is accepted: a trap
    await asyncio.sleep(1.3)
    later = await js.publish("dedup.r1", b"timeout", headers=hdr)  # the msg id alone, past the window
    assert not later.duplicate and later.seq == first.seq + 2
    await nc.flush()
    await asyncio.sleep(0.2)  # core callbacks run on their own task
    assert len(core) == 6  # a core subscriber saw every publish, even the de-duplicated and the refused one
    assert (await js.stream_info("DEDUP")).state.messages == 4


def test_cli_rejects_bad_timeout_in_one_line():
    proc = run_cli("reservations", "--timeout", "-3", timeout=30)
    assert_one_line_error(proc, "natsdemo reservations: error: bad timeout")
    assert proc.returncode == 2
