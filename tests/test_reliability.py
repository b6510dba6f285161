"""Work is not lost when a publish fails, a connection is not silently plain text, and the server
registry survives what other processes do to it."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime

import pytest

from natsdemo.core.connect import connect
from natsdemo.core.errors import PlaintextRefused, Unavailable
from natsdemo.core.publish import backoff, publish_acked
from natsdemo.ticks import SCHEDULE_STREAM, Ticker, schedule_stream_config
from natsdemo.workbook.binary import pdeathsig_hook, set_pdeathsig
from natsdemo.workbook.registry import entries, reset, state_dir


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(7)
    waits = [backoff(n, first=0.1, cap=2.0, rng=rng) for n in range(1, 12)]
    assert all(0.05 <= w <= 0.1 for w in waits[:1]) and all(w <= 2.0 for w in waits)
    assert min(waits[6:]) >= 1.0  # capped at 2 s, never below half of it
    assert len({round(w, 6) for w in waits[6:]}) > 1  # jittered: many publishers do not retry in step


async def test_publish_acked_gives_up_with_one_log_line(nc, caplog):
    js = nc.jetstream()
    caplog.set_level(logging.INFO, logger="natsdemo.publish")
    with pytest.raises(Unavailable, match="nothing was stored"):
        await publish_acked(js, "nowhere.x", b"1", retry_for=1.0, timeout=0.3)
    lines = [r.getMessage() for r in caplog.records if r.name == "natsdemo.publish"]
    assert len(lines) == 1 and lines[0].startswith("giving up on nowhere.x after")


async def test_a_tick_whose_publish_fails_is_retried_within_its_slot(nc):
    """No stream answers for a second (as in a leader election): the tick lands once it is back."""
    js = nc.jetstream()
    await js.add_stream(schedule_stream_config(1))
    await js.delete_stream(SCHEDULE_STREAM)
    # one slot a year (this year's, just passed): the retry window is the next slot away, capped at half
    # the duplicate window, whatever the second the test runs at (a minute's slot at xx:59 left 1 s)
    ticker = Ticker(js, "retried", "0 0 0 1 1 *")
    slot = datetime.now(UTC).replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)

    async def bring_the_stream_back() -> None:
        await asyncio.sleep(1.0)
        await js.add_stream(schedule_stream_config(1))

    back = asyncio.ensure_future(bring_the_stream_back())
    fired = await ticker.fire(slot)
    await back
    assert fired is not None and not fired.duplicate and ticker.errors == 0
    stored = await js.get_last_msg(SCHEDULE_STREAM, "schedule.retried")
    assert json.loads(stored.data)["scheduled_at"].startswith(slot.strftime("%Y-%m-%dT%H:%M"))


async def test_tls_asked_for_but_not_offered_is_refused(nats_server, tmp_path):
    """nats-py alone connects in plain text to a tls:// URL when the server has no TLS."""
    import ssl

    import nats

    url = nats_server.url.replace("nats://", "tls://")
    raw = await nats.connect(url, tls=ssl.create_default_context(), connect_timeout=2, max_reconnect_attempts=0)
    try:
        assert raw.is_connected and not raw._server_info.get("tls_required")  # the trap: plain text
    finally:
        await raw.close()
    with pytest.raises(PlaintextRefused, match="offers no TLS"):
        await connect(url)
    from natsdemo import tls

    tls.ensure_certs(tmp_path)
    with pytest.raises(PlaintextRefused):  # a nats:// URL with a CA: TLS was asked for all the same
        await connect(nats_server.url, ca=tmp_path / "ca.pem")


def test_the_parent_death_signal_is_only_set_from_the_main_thread():
    assert pdeathsig_hook() is set_pdeathsig
    seen = []
    t = threading.Thread(target=lambda: seen.append(pdeathsig_hook()))
    t.start()
    t.join()
    assert seen == [None]  # the signal would fire when that thread ends, not when we exit


def test_registry_skips_an_entry_it_cannot_read_and_reset_clears_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NATSDEMO_STATE_DIR", str(tmp_path))  # a registry of its own: reset() clears it all
    folder = state_dir() / "servers"
    folder.mkdir(parents=True, exist_ok=True)
    half = folder / "999999.json"
    half.write_text('{"pid": 9999')  # another process, mid-write (or a hand edit)
    odd = folder / "999998.json"
    odd.write_text('["not", "an", "entry"]')
    try:
        assert all(e.get("pid") not in (9999, 999998) for e in entries())
        assert half.exists() and odd.exists()  # left alone: not ours to delete
        reset(keep_owned_by_live=True)
        assert half.exists()
    finally:
        reset()
    assert not half.exists() and not odd.exists()


async def test_a_tick_is_acknowledged_only_after_it_was_processed(nc):
    """With `processing`, a reader that fails while handling a tick gets it again; with `next`
    (acked on delivery) it would be gone."""
    from natsdemo.ticks import TickConsumer, publish_tick

    js = nc.jetstream()
    ticks = TickConsumer(js, "acked-late", durable="books")
    await ticks.start()
    try:
        ack = await publish_tick(js, "acked-late")
        with pytest.raises(RuntimeError):
            async with ticks.processing(timeout=3) as tick:
                assert tick.seq == ack.seq
                raise RuntimeError("the books could not be closed")
        async with ticks.processing(timeout=3) as again:  # delivered again, handled this time
            assert again.seq == ack.seq
        info = await js.consumer_info(SCHEDULE_STREAM, "books")
        assert info.num_ack_pending == 0 and info.num_pending == 0
        with pytest.raises(TimeoutError):
            await ticks.next(timeout=0.5)  # acknowledged: not delivered a third time
    finally:
        await ticks.stop()


async def test_a_timer_service_with_its_clock_5_s_ahead_fires_nothing_early(nc):
    """Deadlines are server timestamps; a host clock 5 s ahead would fire every timeout 5 s early.
    The service measures the offset (a probe message's stream timestamp) and follows the server."""
    from natsdemo import reservations as R
    from natsdemo.reservations import TimeoutService
    from tests.conftest import wait_for

    js = nc.jetstream()
    svc = TimeoutService(js, name="skewed", clock=lambda: time.time() + 5.0)
    await svc.start()
    try:
        reserved = await R.reserve(js, "skew-1", timeout=1.5)

        async def timed_out():
            return [e for e in await R.read_events(js) if e.id == "skew-1" and e.type == R.TIMED_OUT]

        (fired,) = await wait_for(timed_out, timeout=10)
        stored = {e.seq: e for e in await R.read_events(js)}
        early_by = (stored[reserved.seq].ts_ns + 1.5e9 - fired.ts_ns) / 1e9
        print(f"clock 5 s ahead: measured offset {svc.clock.offset:.3f} s; fired {-early_by * 1000:.0f} ms after")
        assert early_by <= 0, f"fired {early_by:.2f} s before its deadline by the server's clock"
        assert 4.9 < svc.clock.offset < 5.2, svc.clock.offset
    finally:
        await svc.stop()


async def test_a_server_side_reservation_whose_writer_died_still_times_out(nc):
    """The writer stored the reservation event and died before its @at schedule: no schedule, so
    the server will never fire it. The timer service fires it once the grace has passed."""
    from natsdemo import reservations as R
    from natsdemo.reservations import TimeoutService
    from tests.conftest import wait_for

    js = nc.jetstream()
    svc = TimeoutService(js, name="backstop", server_grace=1.0)
    await svc.start()
    try:
        body = R.reserved_body("orphan-1", 1.0, server_side=True, request="died")  # what reserve writes first
        ack = await js.publish(R.subject("orphan-1"), body, headers={"Nats-Expected-Last-Subject-Sequence": "0"})
        with pytest.raises(Exception):  # noqa: B017 (NotFoundError): the schedule never made it
            await js.get_last_msg(R.STREAM, R.schedule_subject("orphan-1"))

        async def outcome():
            return [e for e in await R.read_events(js) if e.id == "orphan-1"]

        events = await wait_for(lambda: _two(outcome), timeout=10)
        assert [e.type for e in events] == [R.RESERVED, R.TIMED_OUT] and events[1].body["by"] == "backstop"
        assert events[1].ts_ns >= events[0].ts_ns + 1e9  # not before the deadline
        assert events[0].seq == ack.seq
        paid = await R.reserve(js, "paid-server-1", timeout=1.0, server_side=True)
        await R.purchase(js, "paid-server-1")  # cancels the @at; the backstop's guard is refused too
        await asyncio.sleep(2.5)
        assert [e.type for e in await R.read_events(js) if e.id == "paid-server-1"] == [R.RESERVED, R.PURCHASED]
        assert paid.deadline_ns is not None
    finally:
        await svc.stop()


async def _two(fetch):
    events = await fetch()
    return events if len(events) >= 2 else None


async def test_the_scheduler_notices_a_clock_step_within_a_second():
    """A wall clock stepped forward (NTP, a laptop waking up) is read again within MAX_SLEEP."""
    from natsdemo.core.timers import Scheduler

    offset = [0.0]
    fired: list[float] = []

    async def record(key, token, deadline):
        fired.append(time.monotonic())

    sched = Scheduler(record, clock=lambda: time.time() + offset[0])
    sched.add("in-an-hour", time.time() + 3600)
    sched.start()
    try:
        await asyncio.sleep(0.2)
        offset[0] = 3600.0  # the clock jumps an hour
        stepped = time.monotonic()
        for _ in range(30):
            if fired:
                break
            await asyncio.sleep(0.1)
        assert fired and fired[0] - stepped < 1.5, fired
    finally:
        await sched.stop()
