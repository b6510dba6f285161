"""The client ticker: a tick on ``schedule.<name>`` at every slot of a cron expression in a zone.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors

from natsdemo.core.cron import now_utc, parse_cron, rfc3339
from natsdemo.core.errors import Unavailable, UsageError
from natsdemo.core.streams import retrying
from natsdemo.ticks.tick import Tick, ensure_schedule_stream, publish_tick
from natsdemo.ticks.wire import DUPLICATE_WINDOW, SCHEDULE_STREAM, tick_subject, validate_name

log = logging.getLogger("natsdemo.ticks")


@dataclass(frozen=True)
class Fired:
    """One publish by a :class:`Ticker`: ``duplicate`` means another replica had already stored the slot.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    scheduled_at: datetime
    published_at: datetime
    seq: int
    duplicate: bool
    replica: str = ""

    @property
    def lateness(self) -> float:
        return (self.published_at - self.scheduled_at).total_seconds()


CATCH_UP = ("skip", "latest")


class Ticker:
    """Publish a tick on ``schedule.<name>`` at every slot of a cron expression in a time zone.

    * **drift-free**: every sleep is computed from the wall clock to the next scheduled instant,
      never by adding an interval to the previous wake-up, so lateness does not accumulate;
    * **replica-safe**: the msg id is ``schedule.<name>@<slot>``, so N replicas store one tick per
      slot (the others get ``duplicate=True`` acks, counted in :attr:`duplicates`);
    * **missed slots** (a late start, a paused process, a slow publish): a slot more than ``grace``
      seconds overdue is skipped (``catch_up="skip"``, the default); ``catch_up="latest"`` publishes
      only the most recent missed slot, never a burst. On start, "missed" means: later than the last
      tick stored in the stream.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    def __init__(
        self,
        js: Any,
        name: str,
        cron: str,
        tz: str = "UTC",
        *,
        catch_up: str = "skip",
        grace: float = 1.0,
        replica: str = "",
        on_fire: Callable[[Fired], Any] | None = None,
        clock: Callable[[], datetime] = now_utc,
        replicas: int | None = None,
    ) -> None:
        if catch_up not in CATCH_UP:
            raise UsageError(f"catch_up must be one of {', '.join(CATCH_UP)}, not {catch_up!r}")
        self.js = js
        self.name = validate_name(name)
        self.spec = parse_cron(cron, tz)
        self.catch_up = catch_up
        self.grace = grace
        self.replica = replica
        self.on_fire = on_fire
        self.clock = clock
        self.replicas = replicas  # of the SCHEDULE stream, if this ticker creates it
        self.history: deque[Fired] = deque(maxlen=2000)
        self.published = 0
        self.duplicates = 0
        self.errors = 0
        self.next_slot: datetime | None = None

    async def fire(self, slot: datetime) -> Fired | None:
        """Publish the tick for ``slot`` now, retrying (its msg id makes that safe) until shortly
        before the next slot, but never longer than half the duplicate window (later, a replica
        that stored it first would no longer de-duplicate ours). A tick that still fails is
        counted and logged, not raised."""
        published_at = self.clock()
        until_next = (self.spec.next_after(slot) - published_at).total_seconds() - 0.5
        retry_for = max(1.0, min(DUPLICATE_WINDOW / 2, until_next))
        try:
            ack = await publish_tick(
                self.js, self.name, cron=self.spec.expr, tz=self.spec.tz, scheduled_at=slot,
                published_at=published_at, retry_for=retry_for,
            )
        except (Unavailable, nats.errors.Error, TimeoutError, OSError) as exc:
            self.errors += 1
            log.warning("tick %s@%s not published: %s", self.name, rfc3339(slot), exc)
            return None
        fired = Fired(slot, published_at, ack.seq, bool(ack.duplicate), self.replica)
        self.history.append(fired)
        if fired.duplicate:
            self.duplicates += 1
        else:
            self.published += 1
        if self.on_fire is not None:
            self.on_fire(fired)
        return fired

    async def last_stored_slot(self) -> datetime | None:
        """The scheduled instant of the newest tick stored on ``schedule.<name>`` (None if there is none)."""
        try:
            raw = await self.js.get_last_msg(SCHEDULE_STREAM, tick_subject(self.name))
        except nats.js.errors.NotFoundError:
            return None
        return Tick.from_msg(raw).scheduled_at

    async def _sleep_until(self, slot: datetime, stop: asyncio.Event) -> bool:
        """Sleep until ``slot`` by the wall clock (re-measured each round); False if ``stop`` was set."""
        while not stop.is_set():
            delay = (slot - self.clock()).total_seconds()
            if delay <= 0:
                return True
            # at most 30 s per wait, so a wall-clock jump (NTP, laptop sleep) is noticed soon
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: a cancellation is never swallowed
                async with asyncio.timeout(min(delay, 30.0)):
                    await stop.wait()
        return False

    def _resume_after(self, done: datetime) -> tuple[datetime | None, datetime]:
        """(latest missed slot or None, next slot to wait for) after ``done`` was handled."""
        now = self.clock()
        nxt = self.spec.next_after(done)
        cutoff = now - timedelta(seconds=self.grace)
        if nxt >= cutoff:
            return None, nxt  # on time, or late by less than the grace: fire it
        missed = self.spec.prev_at_or_before(cutoff)
        return missed, self.spec.next_after(cutoff)

    async def run(self, stop: asyncio.Event | None = None, *, max_ticks: int | None = None) -> None:
        """Tick until ``stop`` is set (or ``max_ticks`` slots were handled)."""
        stop = stop or asyncio.Event()
        await retrying("creating stream SCHEDULE", lambda: ensure_schedule_stream(self.js, replicas=self.replicas))
        now = self.clock()
        if self.catch_up == "latest":
            last = await self.last_stored_slot()
            missed = self.spec.prev_at_or_before(now)
            if last is not None and missed > last:
                await self.fire(missed)
        slot = self.spec.next_after(now)
        handled = 0
        while max_ticks is None or handled < max_ticks:
            self.next_slot = slot
            if not await self._sleep_until(slot, stop):
                break
            await self.fire(slot)
            handled += 1
            overdue, slot = self._resume_after(slot)
            if overdue is not None and self.catch_up == "latest":
                await self.fire(overdue)
        self.next_slot = None
