"""The tick pattern's contract in code: stream, subjects, msg ids and JSON bodies.

* stream ``SCHEDULE`` captures ``schedule.>`` (file storage, 5-minute duplicate window, at most
  100,000 ticks per subject, no age limit, message schedules allowed);
* ticks live on ``schedule.<name>``, ``<name>`` one subject token (``[A-Za-z0-9_-]{1,64}``);
* a client tick carries ``Nats-Msg-Id: schedule.<name>@<slot, RFC 3339 UTC>``, so any number of
  ticker replicas store one tick per slot (inside the duplicate window), and the body
  :class:`TickBody` ``{"schedule", "cron", "tz", "scheduled_at", "published_at"}``;
* a server-side cron schedule lives on ``schedule._cron.<name>`` (three tokens, so a consumer of
  ``schedule.*`` never sees it); its ticks carry :class:`ServerTickBody`
  ``{"schedule", "cron", "tz", "source": "server"}``, ``Nats-Scheduler`` and ``Nats-Schedule-Next``,
  and no msg id.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.js import api

from natsdemo.core.cron import parse_rfc3339, rfc3339
from natsdemo.core.jsonbody import json_object
from natsdemo.core.names import check_token

SCHEDULE_STREAM = "SCHEDULE"
SUBJECT_PREFIX = "schedule."
SERVER_SCHEDULE_PREFIX = "schedule._cron."  # where server-side cron schedules live (3 tokens, not a tick)
DUPLICATE_WINDOW = 300.0  # seconds: covers replica skew and a "latest missed slot" catch-up
MAX_TICKS_PER_SUBJECT = 100_000  # bounds growth without an age limit that could expire a schedule
MSG_ID = "Nats-Msg-Id"


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


def server_schedule_subject(name: str) -> str:
    """``schedule._cron.<name>``: where the message schedule producing ``schedule.<name>`` lives.

    Defined in notebooks/02_cron_ticks.ipynb
    """
    return SERVER_SCHEDULE_PREFIX + validate_name(name)


def schedule_stream_config(replicas: int) -> api.StreamConfig:
    """The ``SCHEDULE`` stream as the contract describes it."""
    return api.StreamConfig(
        name=SCHEDULE_STREAM,
        subjects=[f"{SUBJECT_PREFIX}>"],
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW,
        max_msgs_per_subject=MAX_TICKS_PER_SUBJECT,
        allow_msg_schedules=True,
    )


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"tick body: {name!r} is missing or not a string")
    return value


@dataclass(frozen=True)
class TickBody:
    """The JSON body of a client tick; every field is required.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    schedule: str
    cron: str
    tz: str
    scheduled_at: datetime
    published_at: datetime

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "schedule": self.schedule,
                "cron": self.cron,
                "tz": self.tz,
                "scheduled_at": rfc3339(self.scheduled_at),
                "published_at": rfc3339(self.published_at),
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TickBody:
        """Parse and validate; raises ``ValueError`` naming what is wrong."""
        body = json_object(data, "tick body")
        try:
            scheduled_at = parse_rfc3339(_field(body, "scheduled_at"))
            published_at = parse_rfc3339(_field(body, "published_at"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tick body: bad instant ({exc})") from None
        return cls(_field(body, "schedule"), _field(body, "cron"), _field(body, "tz"), scheduled_at, published_at)


@dataclass(frozen=True)
class ServerTickBody:
    """The static body of a server-side schedule, copied by nats-server into every tick it produces.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    schedule: str
    cron: str
    tz: str
    source: str = "server"

    def to_json(self) -> bytes:
        return json.dumps({"schedule": self.schedule, "cron": self.cron, "tz": self.tz, "source": self.source}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ServerTickBody:
        """Parse and validate; raises ``ValueError`` naming what is wrong."""
        body = json_object(data, "tick body")
        if body.get("source") != "server":
            raise ValueError("not a server tick body (no \"source\": \"server\")")
        return cls(_field(body, "schedule"), _field(body, "cron"), _field(body, "tz"))


__all__ = [
    "DUPLICATE_WINDOW", "MAX_TICKS_PER_SUBJECT", "MSG_ID", "SCHEDULE_STREAM", "SERVER_SCHEDULE_PREFIX",
    "SUBJECT_PREFIX", "ServerTickBody", "TickBody", "schedule_stream_config", "server_schedule_subject",
    "tick_msg_id", "tick_subject", "validate_name",
]
