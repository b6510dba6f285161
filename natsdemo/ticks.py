"""Cron ticks: business time ("end of day") as events on ``schedule.<name>``.

Wire contract (every tick, whoever produced it):

* stream ``SCHEDULE`` captures ``schedule.>``; ticks live on ``schedule.<name>`` (one subject token);
* client ticks carry ``Nats-Msg-Id: schedule.<name>@<scheduled instant, RFC 3339 UTC>``, so any
  number of ticker replicas store **one** tick per slot (inside the stream's duplicate window);
* the body is JSON ``{"schedule", "cron", "tz", "scheduled_at", "published_at"}`` (RFC 3339 UTC).

When a tick is due comes from :mod:`natsdemo.cron` (six fields, seconds first, in an IANA zone,
with its DST policy); its public names are re-exported here, so ``from natsdemo.ticks import
parse_cron`` keeps working.

Read ticks through :class:`TickConsumer` (a JetStream consumer), never a core subscription:
de-duplication protects the stream, not core subscribers. :mod:`natsdemo.schedules` lets
nats-server (2.14+) produce the same ticks from a cron message schedule instead; the command line
is :mod:`natsdemo.tick_service`.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

from natsdemo.conn import create_stream_if_missing, retrying
from natsdemo.cron import (  # all but now_utc are re-exported (see __all__): they used to live here
    CRON_NAMES,
    CronSpec,
    normalize_cron,
    now_utc,
    parse_cron,
    parse_rfc3339,
    parse_zone,
    rfc3339,
    wall_to_instant,
)
from natsdemo.errors import UsageError
from natsdemo.names import check_token

__all__ = [  # the NATS side, defined here
    "CATCH_UP", "DUPLICATE_WINDOW", "MAX_TICKS_PER_SUBJECT", "SCHEDULE_STREAM", "SUBJECT_PREFIX", "Fired", "Tick",
    "TickConsumer", "Ticker", "ensure_schedule_stream", "publish_tick", "tick_msg_id", "tick_subject",
    "validate_name",
]
__all__ += [  # re-exported from natsdemo.cron
    "CRON_NAMES", "CronSpec", "normalize_cron", "parse_cron", "parse_rfc3339", "parse_zone", "rfc3339",
    "wall_to_instant",
]

log = logging.getLogger("natsdemo.ticks")

SCHEDULE_STREAM = "SCHEDULE"
SUBJECT_PREFIX = "schedule."
DUPLICATE_WINDOW = 300.0  # seconds: covers replica skew and a "latest missed slot" catch-up
MAX_TICKS_PER_SUBJECT = 100_000  # bounds growth without an age limit that could expire a schedule


# ===================================================================== names and times
def validate_name(name: str) -> str:
    """A schedule name must be one subject token: letters, digits, ``-`` and ``_``.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    return check_token(name, "schedule name", 64, "end-of-day")


def tick_subject(name: str) -> str:
    """``schedule.<name>``.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    return SUBJECT_PREFIX + validate_name(name)



def tick_msg_id(name: str, scheduled_at: datetime) -> str:
    """``schedule.<name>@<scheduled instant, RFC 3339 UTC>``: equal for every replica firing the same slot.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    return f"{tick_subject(name)}@{rfc3339(scheduled_at)}"



# ===================================================================== the stream
async def ensure_schedule_stream(js: Any, *, replicas: int | None = None) -> None:
    """Create stream ``SCHEDULE`` (``schedule.>``, message schedules allowed) if it is missing.

    Idempotent and safe when several processes race to create it: the loser of the race finds the
    winner's stream. An existing stream without ``allow_msg_schedules`` is updated to allow them
    (the flag can be switched on later, never off). No age limit: an age limit would also expire
    the server-side schedule messages that live in this stream. ``replicas=None`` means 3 on a
    cluster, 1 on a single server (:func:`natsdemo.conn.replicas_for`).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    from natsdemo.conn import replicas_for

    replicas = replicas or replicas_for(js)
    config = api.StreamConfig(
        name=SCHEDULE_STREAM,
        subjects=[f"{SUBJECT_PREFIX}>"],
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW,
        max_msgs_per_subject=MAX_TICKS_PER_SUBJECT,
        allow_msg_schedules=True,
    )
    info = await create_stream_if_missing(js, config)
    if not info.config.allow_msg_schedules:  # made before schedules were wanted: they can be switched on
        info.config.allow_msg_schedules = True
        await js.update_stream(info.config)


# ===================================================================== one tick
@dataclass(frozen=True)
class Tick:
    """One tick as a consumer sees it.

    ``scheduled_at`` is the cron slot, ``published_at`` when it was published (client ticks) or
    stored (server-side ticks, whose body cannot know it). ``seq`` is the stream sequence.
    ``source`` is ``"client"`` for the Python ticker or a manual tick and ``"server"`` for a
    nats-server message schedule; ``stored_at`` is the stream's timestamp of the message.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    schedule: str
    cron: str
    tz: str
    scheduled_at: datetime
    published_at: datetime
    seq: int
    source: str = "client"
    stored_at: datetime | None = None

    @property
    def lateness(self) -> float:
        """Seconds from the scheduled instant to publication."""
        return (self.published_at - self.scheduled_at).total_seconds()

    @property
    def stored_lateness(self) -> float:
        """Seconds from the scheduled instant to the stream's timestamp (same clock for every producer)."""
        return ((self.stored_at or self.published_at) - self.scheduled_at).total_seconds()

    @property
    def msg_id(self) -> str:
        return tick_msg_id(self.schedule, self.scheduled_at)

    def body(self) -> dict[str, str]:
        return {
            "schedule": self.schedule,
            "cron": self.cron,
            "tz": self.tz,
            "scheduled_at": rfc3339(self.scheduled_at),
            "published_at": rfc3339(self.published_at),
        }

    @classmethod
    def from_msg(cls, msg: Any) -> Tick:
        """Parse a JetStream message from ``schedule.<name>``.

        Client ticks carry the full JSON body. A server-side schedule delivers the body that was
        published on the schedule subject (see :func:`natsdemo.schedules.install_server_schedule`):
        it names the schedule, cron and zone but cannot know the instant, so ``published_at`` is
        the stream timestamp and ``scheduled_at`` the latest slot of that cron at or before it.
        """
        try:
            body = json.loads(msg.data or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        headers = msg.headers or {}
        seq = 0
        stored_at: datetime | None = None
        with contextlib.suppress(Exception):
            meta = msg.metadata
            seq = meta.sequence.stream
            stored_at = meta.timestamp.astimezone(UTC) if meta.timestamp else None
        if not seq:
            seq = int(getattr(msg, "seq", 0) or 0)
        if stored_at is None and getattr(msg, "time", None) is not None:
            stored_at = msg.time.astimezone(UTC)
        name = body.get("schedule") or msg.subject.removeprefix(SUBJECT_PREFIX)
        server = "Nats-Scheduler" in headers or body.get("source") == "server"
        published = body.get("published_at")
        scheduled = body.get("scheduled_at")
        published_at = parse_rfc3339(published) if published else (stored_at or now_utc())
        if scheduled:
            scheduled_at = parse_rfc3339(scheduled)
        else:  # a server tick: the slot is the latest cron slot at or before the stored time
            try:
                scheduled_at = parse_cron(body.get("cron", ""), body.get("tz", "UTC")).prev_at_or_before(published_at)
            except UsageError:
                scheduled_at = published_at.replace(microsecond=0)
        return cls(
            schedule=name,
            cron=str(body.get("cron", "")),
            tz=str(body.get("tz", "UTC")),
            scheduled_at=scheduled_at,
            published_at=published_at,
            seq=seq,
            source="server" if server else "client",
            stored_at=stored_at,
        )


async def publish_tick(
    js: Any,
    name: str,
    *,
    cron: str = "manual",
    tz: str = "UTC",
    scheduled_at: datetime | None = None,
    published_at: datetime | None = None,
    timeout: float = 5.0,
) -> api.PubAck:
    """Publish one tick of ``schedule.<name>`` now (the "fire a tick" button, and the ticker's own path).

    Same msg id and JSON body as the ticker, so a tick published twice for the same
    ``scheduled_at`` is stored once (``ack.duplicate`` is True the second time). Without
    ``scheduled_at`` the slot is *now* to the millisecond.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    subject = tick_subject(name)
    published_at = published_at or now_utc()
    scheduled_at = scheduled_at or published_at
    body = {
        "schedule": name,
        "cron": cron,
        "tz": tz,
        "scheduled_at": rfc3339(scheduled_at),
        "published_at": rfc3339(published_at),
    }
    return await js.publish(
        subject,
        json.dumps(body).encode(),
        timeout=timeout,
        stream=SCHEDULE_STREAM,
        headers={"Nats-Msg-Id": tick_msg_id(name, scheduled_at)},
    )


# ===================================================================== reading ticks
class TickConsumer:
    """Each tick of ``schedule.<name>`` once, through a JetStream consumer (never a core subscription).

    ``durable=None``: an ordered (ephemeral) consumer that delivers only ticks published after
    :meth:`start`. With a durable name, a pull consumer remembers what was acknowledged, so ticks
    published while the process was down are delivered on restart; several processes sharing one
    durable name split the ticks between them (each tick to one of them).

    Defined in notebooks/02_cron_ticks.ipynb
    """

    def __init__(self, js: Any, name: str, *, durable: str | None = None) -> None:
        self.js = js
        self.name = validate_name(name)
        self.subject = tick_subject(name)
        self.durable = None if durable is None else check_token(durable, "durable name", 64, "worker-1")
        self._sub: Any = None
        self._stopped = False

    async def start(self) -> None:
        """Ensure the stream exists, then create (or bind to) the consumer."""
        self._stopped = False
        if self._sub is not None:
            return
        await retrying("creating stream SCHEDULE", lambda: ensure_schedule_stream(self.js))
        if self.durable is None:
            self._sub = await self.js.subscribe(
                self.subject,
                stream=SCHEDULE_STREAM,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
            )
        else:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.NEW,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=30,
            )
            self._sub = await self.js.pull_subscribe(
                self.subject, durable=self.durable, stream=SCHEDULE_STREAM, config=config
            )

    async def next(self, timeout: float) -> Tick:
        """The next tick; raises the builtin ``TimeoutError`` if none arrives within ``timeout`` s."""
        if self._sub is None:
            await self.start()
        try:
            if self.durable is None:
                msg = await self._sub.next_msg(timeout=timeout)
            else:
                msgs = await self._sub.fetch(1, timeout=timeout)
                msg = msgs[0]
                # acknowledged on delivery and confirmed by the server, so a restart does not replay it
                with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                    await msg.ack_sync(timeout=2.0)
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise TimeoutError(f"no tick on {self.subject} within {timeout} s") from exc
        return Tick.from_msg(msg)

    def __aiter__(self) -> TickConsumer:
        return self

    async def __anext__(self) -> Tick:
        """Wait for the next tick as long as it takes; the iteration ends when :meth:`stop` is called."""
        while not self._stopped:
            try:
                return await self.next(timeout=1.0)
            except TimeoutError:
                continue
            except nats.errors.Error:
                if not self._stopped:
                    raise
        raise StopAsyncIteration

    async def stop(self) -> None:
        """Unsubscribe (a durable consumer stays on the server, remembering its position)."""
        self._stopped = True
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def __aenter__(self) -> TickConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()



# ===================================================================== the client ticker
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
        self.history: deque[Fired] = deque(maxlen=2000)
        self.published = 0
        self.duplicates = 0
        self.errors = 0
        self.next_slot: datetime | None = None

    async def fire(self, slot: datetime) -> Fired | None:
        """Publish the tick for ``slot`` now; a failed publish is counted and logged, not raised."""
        published_at = self.clock()
        try:
            ack = await publish_tick(
                self.js, self.name, cron=self.spec.expr, tz=self.spec.tz, scheduled_at=slot, published_at=published_at
            )
        except (nats.errors.Error, TimeoutError, OSError) as exc:
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(delay, 30.0))
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
        await retrying("creating stream SCHEDULE", lambda: ensure_schedule_stream(self.js))
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
            missed, slot = self._resume_after(slot)
            if missed is not None and self.catch_up == "latest":
                await self.fire(missed)
        self.next_slot = None
