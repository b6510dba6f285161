"""One tick: the ``SCHEDULE`` stream, publishing a tick, and reading one back as a :class:`Tick`.

When a tick is due comes from :mod:`natsdemo.core.cron`; the wire contract is
:mod:`natsdemo.ticks.wire`. Read ticks through :class:`natsdemo.ticks.consumer.TickConsumer` (a
JetStream consumer), never a core subscription: de-duplication protects the stream, not core
subscribers.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js import api

from natsdemo.core.cron import now_utc, parse_cron, rfc3339
from natsdemo.core.errors import UsageError
from natsdemo.core.publish import publish_acked
from natsdemo.core.streams import create_stream_if_missing, replicas_for
from natsdemo.ticks.wire import (
    MSG_ID,
    SCHEDULE_STREAM,
    SUBJECT_PREFIX,
    TickBody,
    schedule_stream_config,
    tick_msg_id,
    tick_subject,
)


async def ensure_schedule_stream(js: Any, *, replicas: int | None = None) -> None:
    """Create stream ``SCHEDULE`` (``schedule.>``, message schedules allowed) if it is missing.

    Idempotent and safe when several processes race to create it: the loser of the race finds the
    winner's stream. An existing stream without ``allow_msg_schedules`` is updated to allow them
    (the flag can be switched on later, never off). No age limit: an age limit would also expire
    the server-side schedule messages that live in this stream. ``replicas=None`` means
    ``$NATS_REPLICAS``, else 3 on a cluster and 1 on a single server
    (:func:`natsdemo.core.streams.default_replicas`).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    info = await create_stream_if_missing(js, schedule_stream_config(replicas_for(js, replicas)))
    if not info.config.allow_msg_schedules:  # made before schedules were wanted: they can be switched on
        info.config.allow_msg_schedules = True
        await js.update_stream(info.config)


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
        published on the schedule subject (see :func:`natsdemo.ticks.schedules.install_server_schedule`):
        it names the schedule, cron and zone but cannot know the instant, so ``published_at`` is
        the stream timestamp and ``scheduled_at`` the latest slot of that cron at or before it.
        """
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
        server = "Nats-Scheduler" in headers
        try:  # a client tick: the whole body is there
            tb = TickBody.from_json(msg.data or b"")
            return cls(tb.schedule, tb.cron, tb.tz, tb.scheduled_at, tb.published_at, seq,
                       "server" if server else "client", stored_at)
        except ValueError:
            pass
        # a server tick (or a body we do not know): the stream timestamp and the cron give the slot
        try:
            body = json.loads(msg.data or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = {}
        if not isinstance(body, dict):
            body = {}
        published_at = stored_at or now_utc()
        try:
            scheduled_at = parse_cron(body.get("cron", ""), body.get("tz", "UTC")).prev_at_or_before(published_at)
        except UsageError:
            scheduled_at = published_at.replace(microsecond=0)
        return cls(
            schedule=str(body.get("schedule") or msg.subject.removeprefix(SUBJECT_PREFIX)),
            cron=str(body.get("cron", "")),
            tz=str(body.get("tz", "UTC")),
            scheduled_at=scheduled_at,
            published_at=published_at,
            seq=seq,
            source="server" if server or body.get("source") == "server" else "client",
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
    retry_for: float = 5.0,
) -> api.PubAck:
    """Publish one tick of ``schedule.<name>`` now (the "fire a tick" button, and the ticker's own path).

    Same msg id and JSON body as the ticker, so a tick published twice for the same
    ``scheduled_at`` is stored once (``ack.duplicate`` is True the second time). Without
    ``scheduled_at`` the slot is *now* to the millisecond. Published with
    :func:`~natsdemo.core.publish.publish_acked`: retried for ``retry_for`` seconds through a
    leader election (the msg id makes that safe), then :class:`~natsdemo.core.errors.Unavailable`.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    published_at = published_at or now_utc()
    scheduled_at = scheduled_at or published_at
    body = TickBody(name, cron, tz, scheduled_at, published_at)
    return await publish_acked(
        js,
        tick_subject(name),
        body.to_json(),
        timeout=timeout,
        retry_for=retry_for,
        stream=SCHEDULE_STREAM,
        headers={MSG_ID: tick_msg_id(name, scheduled_at)},  # a retry cannot store a second copy
    )
