"""natsdemo.ticks in one process against a real server: the wire contract, subject-safe names,
replicas and consumers, missed slots, and server-side schedules (cron and DST logic: tests/test_cron.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import nats.js.errors
import pytest
from nats.js import api

from natsdemo.core.errors import UsageError
from natsdemo.ticks import (
    SCHEDULE_STREAM,
    TickConsumer,
    Ticker,
    ensure_schedule_stream,
    install_server_schedule,
    publish_tick,
    remove_server_schedule,
    tick_msg_id,
)
from natsdemo.workbook.server import NatsServer

BERLIN = "Europe/Berlin"


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["a.b", "a b", "*", ">", "", "x" * 65])
def test_subject_unsafe_names_are_refused(name):
    with pytest.raises(UsageError, match="not subject-safe"):
        tick_msg_id(name, datetime(2026, 1, 1, tzinfo=UTC))


# ------------------------------------------------------------------ wire contract
def test_msg_id_names_the_slot_in_rfc3339_utc():
    slot = datetime(2026, 11, 27, 20, 0, tzinfo=ZoneInfo(BERLIN))
    assert tick_msg_id("end-of-day", slot) == "schedule.end-of-day@2026-11-27T19:00:00Z"
    assert tick_msg_id("end-of-day", slot.astimezone(UTC)) == tick_msg_id("end-of-day", slot)  # an instant, not a label


async def test_stream_creation_is_idempotent_and_race_safe(nats_server):
    conns = [await nats_server.connect() for _ in range(4)]
    try:
        await asyncio.gather(*(ensure_schedule_stream(c.jetstream()) for c in conns))
        await ensure_schedule_stream(conns[0].jetstream())
        info = await conns[0].jetstream().stream_info(SCHEDULE_STREAM)
        assert info.config.subjects == ["schedule.>"]
        assert info.config.allow_msg_schedules is True
        assert info.config.duplicate_window == 300  # five minutes: the notebook's table says so
        # the rest of the README's contract: file storage, bounded per subject, no age limit
        assert info.config.storage == api.StorageType.FILE and info.config.max_msgs_per_subject == 100_000
        assert not info.config.max_age
    finally:
        for c in conns:
            await c.drain()


async def test_a_tick_body_and_a_duplicate_publish(nc):
    js = nc.jetstream()
    await ensure_schedule_stream(js)
    slot = datetime(2026, 11, 27, 19, 0, tzinfo=UTC)
    first = await publish_tick(js, "eod", cron="0 0 20 * * *", tz=BERLIN, scheduled_at=slot)
    again = await publish_tick(js, "eod", cron="0 0 20 * * *", tz=BERLIN, scheduled_at=slot)
    assert again.duplicate and again.seq == first.seq
    raw = await js.get_msg(SCHEDULE_STREAM, first.seq)
    body = json.loads(raw.data)
    assert set(body) == {"schedule", "cron", "tz", "scheduled_at", "published_at"}
    assert body["scheduled_at"] == "2026-11-27T19:00:00Z"
    assert raw.headers["Nats-Msg-Id"] == "schedule.eod@2026-11-27T19:00:00Z"


# ------------------------------------------------------------------ consumers
async def test_core_subscriber_sees_duplicates_the_consumer_does_not(nc):
    js = nc.jetstream()
    await ensure_schedule_stream(js)
    core = await nc.subscribe("schedule.dup")
    ticks = TickConsumer(js, "dup")
    await ticks.start()
    replicas = [Ticker(js, "dup", "* * * * * *", replica=r) for r in ("a", "b")]
    await asyncio.gather(*(t.run(max_ticks=2) for t in replicas))
    got = []
    with pytest.raises(TimeoutError):
        while True:
            got.append(await ticks.next(timeout=0.5))
    core_msgs = []
    with pytest.raises(asyncio.TimeoutError):
        while True:
            core_msgs.append(await core.next_msg(timeout=0.3))
    assert len(got) == 2 and len({t.scheduled_at for t in got}) == 2  # each slot once
    assert len(core_msgs) == 4  # each slot twice: msg-id de-duplication does not reach core subscribers
    assert sum(t.duplicates for t in replicas) == 2
    await ticks.stop()


async def test_a_durable_consumer_gets_ticks_published_while_it_was_down(nc):
    js = nc.jetstream()
    first = TickConsumer(js, "eom", durable="books")
    await first.start()
    await publish_tick(js, "eom", scheduled_at=datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    assert (await first.next(timeout=2)).scheduled_at.day == 30
    await first.stop()
    await publish_tick(js, "eom", scheduled_at=datetime(2026, 12, 31, 23, 0, tzinfo=UTC))  # nobody listening
    again = TickConsumer(js, "eom", durable="books")
    tick = await again.next(timeout=2)
    assert tick.scheduled_at.month == 12
    with pytest.raises(TimeoutError):
        await again.next(timeout=0.3)  # the November tick was acknowledged, not redelivered
    await again.stop()


# ------------------------------------------------------------------ the ticker
async def test_ticker_is_drift_free_whole_second_slots_in_a_row(nc):
    ticker = Ticker(nc.jetstream(), "drift", "* * * * * *")
    await ticker.run(max_ticks=3)
    slots = [f.scheduled_at for f in ticker.history]
    assert [s.microsecond for s in slots] == [0, 0, 0]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(slots)] == [1.0, 1.0]
    assert all(f.lateness >= 0 for f in ticker.history)


class FakeClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def test_a_slot_overdue_beyond_the_grace_is_missed_and_only_the_latest_is_offered():
    clock = FakeClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    ticker = Ticker(None, "pause", "0 * * * * *", catch_up="latest", clock=clock)
    clock.t = datetime(2026, 1, 1, 12, 9, 30, tzinfo=UTC)  # the process slept through 12:01 ... 12:09
    missed, nxt = ticker._resume_after(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert missed == datetime(2026, 1, 1, 12, 9, tzinfo=UTC)  # one slot offered, not nine
    assert nxt == datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    clock.t = datetime(2026, 1, 1, 12, 1, 0, 500_000, tzinfo=UTC)  # half a second late: within the grace
    missed, nxt = ticker._resume_after(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert missed is None and nxt == datetime(2026, 1, 1, 12, 1, tzinfo=UTC)


def test_catch_up_policy_is_validated():
    with pytest.raises(UsageError, match="catch_up"):
        Ticker(None, "x", "@daily", catch_up="all")


async def test_on_restart_latest_fires_one_missed_slot_and_skip_fires_none(nc):
    js = nc.jetstream()
    await ensure_schedule_stream(js)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    await publish_tick(js, "restart", cron="0 * * * * *", scheduled_at=minute - timedelta(minutes=10))
    skipper = Ticker(js, "restart", "0 * * * * *", catch_up="skip")
    await skipper.run(max_ticks=0)
    assert skipper.published == 0
    catcher = Ticker(js, "restart", "0 * * * * *", catch_up="latest")
    await catcher.run(max_ticks=0)
    assert catcher.published == 1  # one tick for nine missed slots: never a burst
    assert catcher.history[0].scheduled_at == minute
    again = Ticker(js, "restart", "0 * * * * *", catch_up="latest")
    await again.run(max_ticks=0)
    assert again.published == 0  # nothing missed any more


# ------------------------------------------------------------------ server-side ticks
async def test_server_schedule_ticks_reach_consumers_but_not_core_subscribers(nc):
    js = nc.jetstream()
    core = await nc.subscribe("schedule.srv")
    ticks = TickConsumer(js, "srv")
    await ticks.start()
    await install_server_schedule(js, "srv", "* * * * * *", BERLIN)
    got = [await ticks.next(timeout=3) for _ in range(2)]
    await remove_server_schedule(js, "srv")
    assert all(t.source == "server" and t.tz == BERLIN and t.cron == "* * * * * *" for t in got)
    assert got[1].scheduled_at - got[0].scheduled_at == timedelta(seconds=1)
    assert all(0 <= t.lateness < 1 for t in got)
    raw = await js.get_msg(SCHEDULE_STREAM, got[0].seq)
    assert raw.headers["Nats-Scheduler"] == "schedule._cron.srv"
    assert "Nats-Schedule-Next" in raw.headers and "Nats-Msg-Id" not in raw.headers
    with pytest.raises(asyncio.TimeoutError):
        await core.next_msg(timeout=0.2)  # measured on 2.15.1: scheduled messages skip core subscribers
    await asyncio.sleep(0.5)
    before = (await js.stream_info(SCHEDULE_STREAM)).state.last_seq
    await asyncio.sleep(1.5)
    assert (await js.stream_info(SCHEDULE_STREAM)).state.last_seq == before  # the schedule is gone
    await ticks.stop()



async def test_the_server_reads_six_fields_seconds_first_and_a_new_install_replaces_the_schedule(nc):
    js = nc.jetstream()
    ticks = TickConsumer(js, "sec")
    await ticks.start()
    try:
        await install_server_schedule(js, "sec", "* * * * * *")
        await ticks.next(timeout=3)
        # seconds first: '*/2' in field one is every other second (seconds last it would be every second)
        await install_server_schedule(js, "sec", "*/2 * * * * *")  # same subject: replaces, does not add
        await asyncio.sleep(0.1)  # let a tick of the old schedule that was already on its way land first
        with contextlib.suppress(TimeoutError):
            while True:
                await ticks.next(timeout=0.05)
        got = [await ticks.next(timeout=3) for _ in range(2)]
        await remove_server_schedule(js, "sec")
        stored = [t.stored_at for t in got]
        assert all(t.second % 2 == 0 for t in stored), stored
        assert round((stored[1] - stored[0]).total_seconds()) == 2  # no tick of the old every-second schedule between
    finally:
        await ticks.stop()


async def test_the_server_strips_the_msg_id_of_a_schedule_from_its_ticks(nc):
    js = nc.jetstream()
    await ensure_schedule_stream(js)
    ticks = TickConsumer(js, "msgid")
    await ticks.start()
    headers = {"Nats-Schedule": "* * * * * *", "Nats-Schedule-Target": "schedule.msgid", "Nats-Msg-Id": "sched-1"}
    await js.publish("schedule._cron.msgid", b"{}", stream=SCHEDULE_STREAM, headers=headers)
    tick = await ticks.next(timeout=3)
    await remove_server_schedule(js, "msgid")
    await ticks.stop()
    raw = await js.get_msg(SCHEDULE_STREAM, tick.seq)
    assert "Nats-Msg-Id" not in raw.headers and raw.headers["Nats-Scheduler"] == "schedule._cron.msgid"


async def test_an_age_limit_on_the_stream_expires_the_schedule_itself(nc):
    """Why ``SCHEDULE`` has no ``max_age``: the schedule is a message, and it ages out like one."""
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name="AGED", subjects=["aged.>"], max_age=1.5, allow_msg_schedules=True))
    headers = {"Nats-Schedule": "* * * * * *", "Nats-Schedule-Target": "aged.tick"}
    await js.publish("aged.schedule", b"{}", stream="AGED", headers=headers)
    await asyncio.sleep(3)  # the schedule message is older than max_age by now
    before = (await js.stream_info("AGED")).state.last_seq
    assert before >= 2  # it did fire while it lived
    await asyncio.sleep(1.5)
    assert (await js.stream_info("AGED")).state.last_seq == before  # and fires no more


@pytest.mark.slow
async def test_a_server_schedule_survives_a_restart_and_an_overdue_slot_fires_once(tmp_path):
    srv = await NatsServer(name="test-restart", store_dir=tmp_path / "store").astart()
    try:
        nc = await srv.connect()
        js = nc.jetstream()
        await ensure_schedule_stream(js)
        now = datetime.now(UTC)
        s1, s2, s3 = ((now + timedelta(seconds=k)).second for k in (2, 4, 5))  # then nothing for ~55 s
        ticks = TickConsumer(js, "restart", durable="probe")
        await ticks.start()
        await install_server_schedule(js, "restart", f"{s1},{s2},{s3} * * * * *")
        first = await ticks.next(timeout=5)
        assert first.stored_at.second == s1
        await ticks.stop()
        await nc.close()
        await srv.astop()  # down while the slots s2 and s3 pass
        await asyncio.sleep(max(0.0, (now + timedelta(seconds=6.5) - datetime.now(UTC)).total_seconds()))
        await srv.astart()
        nc = await srv.connect()
        ticks = TickConsumer(nc.jetstream(), "restart", durable="probe")
        after = [await ticks.next(timeout=3)]
        with pytest.raises(TimeoutError):
            after.append(await ticks.next(timeout=1.5))  # one catch-up tick for two missed slots, not a burst
        await ticks.stop()
        await nc.drain()
        assert after[0].source == "server" and after[0].stored_at > first.stored_at + timedelta(seconds=4)
    finally:
        await srv.astop()

async def test_async_iteration_ends_when_the_consumer_stops(nc):
    js = nc.jetstream()
    ticks = TickConsumer(js, "iter")
    await ticks.start()
    for i in range(2):
        await publish_tick(js, "iter", scheduled_at=datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC))
    seen = []

    async def read() -> None:
        async for tick in ticks:
            seen.append(tick.scheduled_at.second)
            if len(seen) == 2:
                await ticks.stop()

    await asyncio.wait_for(read(), 5)
    assert seen == [0, 1]


async def test_an_existing_schedule_stream_gets_message_schedules_switched_on(nc):
    js = nc.jetstream()
    await js.add_stream(name=SCHEDULE_STREAM, subjects=["schedule.>"])  # made elsewhere, without schedules
    await ensure_schedule_stream(js)
    assert (await js.stream_info(SCHEDULE_STREAM)).config.allow_msg_schedules is True


async def test_nats_server_refuses_cron_L_and_takes_the_month_end_work_around(nc):
    """Measured on 2.15.1: `L` (last day of month) is refused with 10189; days 28-31 are accepted."""
    js = nc.jetstream()
    await ensure_schedule_stream(js)
    headers = {"Nats-Schedule-Target": "schedule.monthend", "Nats-Schedule-Time-Zone": "Europe/Berlin"}
    with pytest.raises(nats.js.errors.BadRequestError) as refused:
        await js.publish("schedule._cron.monthend", b"{}", stream=SCHEDULE_STREAM,
                         headers={**headers, "Nats-Schedule": "0 0 18 L * *"})
    assert refused.value.err_code == 10189
    ack = await js.publish("schedule._cron.monthend", b"{}", stream=SCHEDULE_STREAM,
                           headers={**headers, "Nats-Schedule": "0 0 18 28-31 * *"})
    assert ack.seq > 0
    await remove_server_schedule(js, "monthend")
