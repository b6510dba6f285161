"""natsdemo.ticks in one process: the cron convention, the DST policy in two zones, the wire contract,
missed slots, replicas against a real server, and server-side schedules."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from natsdemo.errors import UsageError
from natsdemo.ticks import (
    SCHEDULE_STREAM,
    TickConsumer,
    Ticker,
    ensure_schedule_stream,
    install_server_schedule,
    normalize_cron,
    parse_cron,
    publish_tick,
    remove_server_schedule,
    rfc3339,
    tick_msg_id,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


# ------------------------------------------------------------------ cron convention
def test_six_fields_are_seconds_first_and_croniter_default_is_the_trap():
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    ours = parse_cron("0 20 * * * *").next_times(2, start)
    assert ours == [datetime(2026, 11, 27, 12, 20, tzinfo=UTC), datetime(2026, 11, 27, 13, 20, tzinfo=UTC)]
    # croniter's default reads the sixth field as seconds *last*: every second of 8pm
    trap = croniter("0 20 * * * *", start)
    assert [trap.get_next(datetime) for _ in range(2)] == [
        datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 27, 20, 0, 1, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("expr", "fields"),
    [
        ("@daily", "0 0 0 * * *"),
        ("@hourly", "0 0 * * * *"),
        ("*/5 * * * *", "0 */5 * * * *"),
        ("0 0 20 * * *", "0 0 20 * * *"),
    ],
)
def test_names_and_five_fields_normalize_to_six(expr, fields):
    assert normalize_cron(expr) == fields


@pytest.mark.parametrize(
    ("expr", "tz", "fragment"),
    [
        ("* * * *", "UTC", "has 4 fields"),
        ("61 * * * * *", "UTC", "second field '61'"),
        ("0 0 25 * * *", "UTC", "hour field '25'"),
        ("0 0 0 30 2 *", "UTC", "never fires"),
        ("@dayly", "UTC", "unknown cron name"),
        ("@daily", "Mars/Olympus", "unknown time zone"),
        ("@daily", "", "unknown time zone"),
    ],
)
def test_bad_cron_or_zone_is_refused_in_plain_words(expr, tz, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_cron(expr, tz)


@pytest.mark.parametrize("name", ["a.b", "a b", "*", ">", "", "x" * 65])
def test_subject_unsafe_names_are_refused(name):
    with pytest.raises(UsageError, match="not subject-safe"):
        tick_msg_id(name, datetime(2026, 1, 1, tzinfo=UTC))


# ------------------------------------------------------------------ DST policy, two zones
@pytest.mark.parametrize(
    ("zone", "day", "jump_utc"),
    [(BERLIN, (2026, 3, 29), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
     (NEW_YORK, (2026, 3, 8), datetime(2026, 3, 8, 7, 0, tzinfo=UTC))],
)
def test_spring_forward_a_missing_wall_time_fires_once_when_the_clock_jumps(zone, day, jump_utc):
    spec = parse_cron("0 30 2 * * *", zone)  # 02:30 does not exist on that day
    first, second = spec.next_times(2, local(zone, *day))
    assert first == jump_utc  # 03:00 local, the end of the gap: not skipped, not shifted to 03:30
    assert first.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "03:00"
    assert second == local(zone, day[0], day[1], day[2] + 1, 2, 30).astimezone(UTC)
    # every 30 minutes: 02:00 and 02:30 collapse into the 03:00 tick, which fires once
    halves = parse_cron("0 */30 * * * *", zone).next_times(4, local(zone, *day, 1, 0))
    assert [t.astimezone(ZoneInfo(zone)).strftime("%H:%M") for t in halves] == ["01:30", "03:00", "03:30", "04:00"]


@pytest.mark.parametrize(
    ("zone", "day", "repeated_hour"),
    [(BERLIN, (2026, 10, 25), 2), (NEW_YORK, (2026, 11, 1), 1)],
)
def test_fall_back_a_repeated_wall_time_fires_once_on_its_first_occurrence(zone, day, repeated_hour):
    z = ZoneInfo(zone)
    spec = parse_cron(f"0 30 {repeated_hour} * * *", zone)
    times = spec.next_times(2, local(zone, *day))
    # (compare in UTC: PEP 495 makes a repeated wall time unequal to every other zone's datetime)
    summer = local(zone, *day, repeated_hour, 30, fold=0).astimezone(UTC)
    winter = local(zone, *day, repeated_hour, 30, fold=1).astimezone(UTC)
    assert winter - summer == timedelta(hours=1)
    assert times[0] == summer  # the first occurrence only
    assert times[1].date() == (times[0] + timedelta(days=1)).date()  # not again an hour later
    # hourly: the repeated label fires once, so two real hours pass between those ticks
    hourly = parse_cron("0 0 * * * *", zone).next_times(3, local(zone, *day, repeated_hour - 1, 30))
    hours = [int(t.astimezone(z).strftime("%H")) for t in hourly]
    assert hours == [repeated_hour, repeated_hour + 1, repeated_hour + 2]
    assert hourly[1] - hourly[0] == timedelta(hours=2)  # slots are UTC instants, so this is real time


def test_slots_are_instants_one_per_slot_across_a_whole_dst_day():
    spec = parse_cron("0 */15 * * * *", BERLIN)
    times = spec.next_times(24 * 4 + 8, local(BERLIN, 2026, 10, 25))
    assert times == sorted(set(times))  # strictly increasing, no slot twice
    # during the second pass of the repeated hour, 02:00 and 02:30 already fired (summer time)
    second_pass = local(BERLIN, 2026, 10, 25, 2, 40, fold=1)
    assert spec.local(spec.next_after(second_pass)).strftime("%H:%M %Z") == "03:00 CET"


# ------------------------------------------------------------------ wire contract
def test_msg_id_names_the_slot_in_rfc3339_utc():
    slot = local(BERLIN, 2026, 11, 27, 20, 0)
    assert tick_msg_id("end-of-day", slot) == "schedule.end-of-day@2026-11-27T19:00:00Z"
    assert rfc3339(datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)) == "2026-01-01T00:00:00.250Z"


async def test_stream_creation_is_idempotent_and_race_safe(nats_server):
    conns = [await nats_server.connect() for _ in range(4)]
    try:
        await asyncio.gather(*(ensure_schedule_stream(c.jetstream()) for c in conns))
        await ensure_schedule_stream(conns[0].jetstream())
        info = await conns[0].jetstream().stream_info(SCHEDULE_STREAM)
        assert info.config.subjects == ["schedule.>"]
        assert info.config.allow_msg_schedules is True
        assert info.config.duplicate_window >= 60
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
