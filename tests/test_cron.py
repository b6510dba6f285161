"""natsdemo.core.cron, pure computation (no server): the seconds-first convention and croniter's trap,
normalisation and plain-words errors, the DST policy in two zones, RFC 3339 instants, and no NATS import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from natsdemo.core.cron import normalize_cron, parse_cron, parse_rfc3339, rfc3339, wall_to_instant
from natsdemo.core.errors import UsageError
from tests.conftest import ROOT

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


def test_wall_to_instant_is_the_policy_on_its_own():
    berlin = ZoneInfo("Europe/Berlin")
    assert wall_to_instant(datetime(2026, 3, 29, 2, 30), berlin) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # the jump
    assert wall_to_instant(datetime(2026, 10, 25, 2, 30), berlin) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # CEST
    assert wall_to_instant(datetime(2026, 7, 1, 20, 0), berlin) == datetime(2026, 7, 1, 18, 0, tzinfo=UTC)  # ordinary


# ------------------------------------------------------------------ instants on the wire
def test_rfc3339_is_utc_with_milliseconds_only_when_needed_and_round_trips():
    assert rfc3339(datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)) == "2026-01-01T00:00:00.250Z"
    berlin_eight_pm = datetime(2026, 11, 27, 20, 0, tzinfo=ZoneInfo(BERLIN))
    assert rfc3339(berlin_eight_pm) == "2026-11-27T19:00:00Z"
    assert parse_rfc3339("2026-11-27T19:00:00Z") == berlin_eight_pm
    assert parse_rfc3339("2026-11-27T20:00:00+01:00").tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        rfc3339(datetime(2026, 1, 1))


def test_the_cron_module_imports_no_nats():
    code = "import sys, natsdemo.core.cron; print(sorted(m for m in sys.modules if m.split('.')[0] == 'nats'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


MONTH_END = "0 0 18 L * *"  # 18:00 on the last day of every month (croniter reads L)
SERVER_MONTH_END = "0 0 18 28-31 * *"  # nats-server refuses L: fire on 28-31, keep the last day


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York"])
def test_month_end_falls_on_the_last_day_for_24_months(tz):
    """Across two Februaries (one in a leap year) and four DST changes, without waiting a month."""
    from natsdemo.core.cron import is_last_day_of_month

    start = datetime(2027, 1, 10, tzinfo=UTC)
    client = parse_cron(MONTH_END, tz).next_times(24, start)
    server = [t for t in parse_cron(SERVER_MONTH_END, tz).next_times(24 * 4, start) if is_last_day_of_month(t, tz)]
    for slots in (client, server[:24]):
        local = [t.astimezone(ZoneInfo(tz)) for t in slots]
        assert all(lt.hour == 18 and lt.minute == 0 and (lt + timedelta(days=1)).day == 1 for lt in local)
        assert [(lt.year, lt.month) for lt in local] == [(2027 + (m // 12), m % 12 + 1) for m in range(24)]
        assert {lt.day for lt in local if lt.month == 2} == {28, 29}  # 2027 and the leap year 2028
        assert len({lt.utcoffset() for lt in local}) == 2  # both sides of DST: the wall clock holds
    assert server[:24] == client  # the work-around picks exactly the client's slots


def test_month_end_preview_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "natsdemo", "tick", "--cron", MONTH_END, "--tz", "Europe/Berlin",
                          "--preview", "3"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 3, out.stderr
    local, utc = lines[0].split()
    assert local.endswith(("+01:00", "+02:00")) and "T18:00:00" in local and utc.endswith("Z")
    assert datetime.fromisoformat(local) == datetime.fromisoformat(utc.replace("Z", "+00:00"))
