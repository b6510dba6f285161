"""Cron expressions in a time zone: parsing, the workbook's cron convention and its DST policy.

Pure computation: no NATS here. :mod:`natsdemo.ticks` turns these slots into messages.

Cron convention of the whole workbook: **six fields, seconds first** (``sec min hour dom mon dow``),
like robfig/cron ``WithSeconds()`` and NATS server message schedules. croniter's default puts a
sixth field *last*; this module always passes ``second_at_beginning=True``.
Five-field expressions (``min hour dom mon dow``) and ``@daily``-style names are accepted too.

Time zones (IANA, zoneinfo): slots are found on the zone's wall clock and kept as UTC instants. When
clocks go forward, a wall time that does not exist fires at the jump; when they go back, a wall
time that happens twice fires on its first occurrence only (see :func:`wall_to_instant`).

Instants travel as RFC 3339 UTC strings (:func:`rfc3339`, :func:`parse_rfc3339`).

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from natsdemo.core.errors import UsageError


# ===================================================================== instants
def now_utc() -> datetime:
    """The current instant as an aware UTC datetime (the default clock of tickers and previews).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    return datetime.now(UTC)


def rfc3339(ts: datetime) -> str:
    """An aware datetime as RFC 3339 UTC: ``2026-11-27T07:30:00Z`` (milliseconds only if non-zero).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    if ts.tzinfo is None:
        raise ValueError("rfc3339() needs an aware datetime")
    ts = ts.astimezone(UTC)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """Inverse of :func:`rfc3339` (accepts any ISO 8601 offset, returns UTC).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ===================================================================== cron expressions and zones
CRON_NAMES = {  # the seconds-first expansions NATS documents for its predefined schedules
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_FIELDS = (
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-6 or sun-sat"),
)
_FIELD_CHARS = re.compile(r"^[0-9A-Za-z*?,/-]+$")
_CRON_HELP = (
    "use 6 fields, seconds first: 'sec min hour day month weekday' (e.g. '0 0 20 * * *' is 20:00 every day), "
    "5 fields without seconds, or a name such as @daily or @hourly"
)


def _croniter(fields: str, start: datetime) -> croniter:
    """croniter over six seconds-first ``fields``, from the naive wall time ``start``.

    ``second_at_beginning=True`` is the workbook's convention: croniter's default would read the
    sixth field as seconds *last* (``"0 20 * * * *"`` would be every second of 8 pm).
    """
    return croniter(fields, start, second_at_beginning=True)


def parse_zone(tz: str) -> ZoneInfo:
    """An IANA time zone (``UTC``, ``Europe/Berlin``...) or a :class:`UsageError` that says what to type.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    try:
        if not tz or tz.strip() != tz:
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise UsageError(
            f"unknown time zone {tz!r}: use an IANA name such as UTC, Europe/Berlin or America/New_York"
        ) from None


def normalize_cron(expr: str) -> str:
    """The 6-field, seconds-first form of ``expr`` (5 fields get second 0; ``@daily`` etc. expand).

    Raises :class:`UsageError` naming the offending field. This is the workbook's one convention;
    croniter's own default would read a sixth field as *seconds last*.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    text = " ".join(str(expr).split())
    if text.lower() in CRON_NAMES:
        return CRON_NAMES[text.lower()]
    if text.startswith("@"):
        raise UsageError(f"unknown cron name {text!r}: use one of {', '.join(CRON_NAMES)}")
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        n = len(fields)
        raise UsageError(f"cron {text!r} has {n} field{'' if n == 1 else 's'}; {_CRON_HELP}")
    for i, f in enumerate(fields):
        probe = ["*"] * 6
        probe[i] = f
        if not _FIELD_CHARS.match(f) or not croniter.is_valid(" ".join(probe), second_at_beginning=True):
            name, allowed = _FIELDS[i]
            raise UsageError(
                f"cron {text!r}: the {name} field {f!r} is not valid (allowed: {allowed}, with * , - /); "
                "fields are seconds first: 'sec min hour day month weekday'"
            )
    return " ".join(fields)


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant the wall clock jumps over ``naive`` (a local time that does not exist)."""
    lo = int(naive.replace(tzinfo=zone, fold=1).timestamp())  # read with the offset after the jump: before it
    hi = int(naive.replace(tzinfo=zone, fold=0).timestamp())  # read with the offset before the jump: after it
    lo, hi = min(lo, hi), max(lo, hi)
    before = datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:  # transitions fall on whole seconds: bisect for the first second with the new offset
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, zone)


def wall_to_instant(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a cron slot labelled with local wall time ``naive`` fires (the DST policy).

    * a wall time that happens twice (clocks go back) fires once, at its **first** occurrence;
    * a wall time that never happens (clocks go forward) fires at the **end of the gap**, the moment
      the clock jumps, so a daily job is never silently skipped (slots collapse there into one tick).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    return _gap_end(naive, zone).astimezone(UTC)


@dataclass(frozen=True)
class CronSpec:
    """A validated cron expression in a time zone, with the workbook's DST policy.

    Slots are computed on the local wall clock (croniter on naive times, seconds first) and mapped
    to instants with :func:`wall_to_instant`. Every slot is returned as an aware datetime **in UTC**:
    Python compares and subtracts two datetimes that share a ``ZoneInfo`` by wall clock, which is
    wrong across a DST change. Show a slot to people with :meth:`local`.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    expr: str
    fields: str
    tz: str
    zone: ZoneInfo

    def next_after(self, after: datetime) -> datetime:
        """The first slot strictly after the instant ``after``."""
        after = after.astimezone(UTC)
        start = after.astimezone(self.zone).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1)
        it = _croniter(self.fields, start)
        for _ in range(_SEARCH_LIMIT):
            slot = wall_to_instant(it.get_next(datetime), self.zone)
            if slot > after:
                return slot
        raise UsageError(f"cron {self.expr!r} has no slot after {after:%Y-%m-%d %H:%M:%S %Z}")

    def prev_at_or_before(self, at: datetime) -> datetime:
        """The latest slot at or before the instant ``at``."""
        at = at.astimezone(UTC)
        start = at.astimezone(self.zone).replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
        it = _croniter(self.fields, start)
        for _ in range(_SEARCH_LIMIT):
            slot = wall_to_instant(it.get_prev(datetime), self.zone)
            if slot <= at:
                return slot
        raise UsageError(f"cron {self.expr!r} has no slot before {at:%Y-%m-%d %H:%M:%S %Z}")

    def local(self, instant: datetime) -> datetime:
        """``instant`` on this schedule's wall clock, for display."""
        return instant.astimezone(self.zone)

    def next_times(self, count: int = 5, after: datetime | None = None) -> list[datetime]:
        """The next ``count`` slots after ``after`` (default: now)."""
        out: list[datetime] = []
        t = after or now_utc()
        for _ in range(count):
            t = self.next_after(t)
            out.append(t)
        return out


def is_last_day_of_month(instant: datetime, tz: str) -> bool:
    """True if ``instant`` falls on the last day of its month on the wall clock of zone ``tz``.

    The filter behind the server-side month end: nats-server (2.15) refuses cron's ``L``, so a
    schedule fires on days 28-31 (``0 0 18 28-31 * *``) and the reader keeps the last one.
    """
    local = instant.astimezone(parse_zone(tz))
    return (local + timedelta(days=1)).month != local.month


_SEARCH_LIMIT = 10_000  # croniter steps per search: covers a repeated DST hour of a per-second cron


def parse_cron(expr: str, tz: str = "UTC") -> CronSpec:
    """Validate a cron expression and a zone together; raises :class:`UsageError` in plain words.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    zone = parse_zone(tz)
    fields = normalize_cron(expr)
    spec = CronSpec(expr=" ".join(str(expr).split()), fields=fields, tz=tz, zone=zone)
    try:
        spec.next_after(now_utc())
    except (CroniterBadDateError, CroniterBadCronError):
        raise UsageError(f"cron {spec.expr!r} never fires (no such date); check the day and month fields") from None
    return spec
