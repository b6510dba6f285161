"""The reservation pattern's contract in code: stream, subjects, headers, msg ids, event bodies.

Stream ``RESERVATIONS`` (file storage, message schedules allowed); one subject per reservation:

* ``events.reservation.<id>``, ``<id>`` matching ``[A-Za-z0-9_-]{1,64}``, with the JSON bodies
  ``{"type": "tickets-reserved", "id", "timeout", "timer": "client"|"server", "request"}``,
  ``{"type": "tickets-purchased", "id", "request"}`` and
  ``{"type": "reservation-timeout", "id", "deadline", "by"}``;
* a timeout carries ``Nats-Msg-Id: <id>-reservation-timeout``; timeout and purchase carry
  ``Nats-Expected-Last-Subject-Sequence: <reservation seq>``, so whichever lands second is
  refused, forever (long after ``duplicate_window``);
* the deadline is the stream timestamp of the ``tickets-reserved`` event plus its ``timeout``; a
  reader supplies the default for an event without one (the service's ``--timeout``), explicitly:
  :meth:`Event.timeout_or`;
* ``schedules.reservation.<id>`` holds the server-side variant's ``@at`` schedule.

:func:`parse_event` is the one reader: every consumer of the stream validates events with it.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from nats.js.api import StorageType, StreamConfig

from natsdemo.core.errors import UsageError
from natsdemo.core.jsonbody import json_object
from natsdemo.core.names import ack_fields, check_token, is_token
from natsdemo.core.publish import WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_CODES, refused_by_guard  # noqa: F401 (part of this contract)

STREAM = "RESERVATIONS"
EVENTS = "events.reservation"
SCHEDULES = "schedules.reservation"


RESERVED, PURCHASED, TIMED_OUT = "tickets-reserved", "tickets-purchased", "reservation-timeout"


TYPES = (RESERVED, PURCHASED, TIMED_OUT)


ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the wire contract; checked by natsdemo.core.names.check_token


DEFAULT_TIMEOUT = 600.0  # the seed's 10 minutes


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def check_id(rid: str) -> str:
    """Return ``rid`` if it is a valid reservation id, else raise :class:`UsageError`.

    The id becomes one token of the subject ``events.reservation.<id>``.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    return check_token(rid, "reservation id", 64, "r-42")


def check_timeout(seconds: float) -> float:
    """Return ``seconds`` as a float if it is a usable timeout, else raise :class:`UsageError`.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise UsageError(f"bad timeout {seconds!r}: give a number of seconds, e.g. 600") from None
    if not math.isfinite(value) or value <= 0 or value > 366 * 86400:
        raise UsageError(f"bad timeout {seconds!r}: give a number of seconds greater than 0 and at most a year")
    return value


def subject(rid: str) -> str:
    """The subject of one reservation: ``events.reservation.<id>``.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    return f"{EVENTS}.{rid}"


def schedule_subject(rid: str) -> str:
    """Where the server-side variant's ``@at`` schedule lives: ``schedules.reservation.<id>``.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    return f"{SCHEDULES}.{rid}"


def timeout_msg_id(rid: str) -> str:
    """The ``Nats-Msg-Id`` of a reservation's timeout: ``<id>-reservation-timeout``.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    return f"{rid}-reservation-timeout"


def iso(ts_ns: int) -> str:
    """RFC 3339 UTC with milliseconds, rounded up (an ``@at`` must never be early).

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    ms = -(-ts_ns // 1_000_000)
    t = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).replace(microsecond=(ms % 1000) * 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def js_meta(reply: str) -> tuple[int, int, int]:
    """``(stream sequence, timestamp in ns, pending)`` from a JetStream delivery's reply subject.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    fields = ack_fields(reply)
    if fields is None:
        raise ValueError(f"not a JetStream delivery: {reply!r}")
    return fields.stream_seq, fields.timestamp_ns, fields.pending


@dataclass
class Event:
    """One decoded, validated event from ``events.reservation.<id>``.

    ``timeout`` is the reservation's own timeout in seconds (None when a ``tickets-reserved`` event
    carries none, and for other types); ``timer`` is ``"client"`` or ``"server"``.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    type: str
    id: str
    seq: int
    ts_ns: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    timeout: float | None = None
    timer: str = "client"

    def timeout_or(self, default: float) -> float:
        """This reservation's timeout, or ``default`` (the reader's ``--timeout``) when it has none."""
        return self.timeout if self.timeout is not None else default

    def deadline_ns(self, default: float) -> int:
        """Stream timestamp plus timeout: when the reservation times out."""
        return self.ts_ns + round(self.timeout_or(default) * 1e9)


def parse_event(subj: str, data: bytes, seq: int, ts_ns: int) -> Event:
    """Decode and validate an event; raises ``ValueError`` saying what is wrong with it.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    rid = subj[len(EVENTS) + 1 :] if subj.startswith(EVENTS + ".") else ""
    if not is_token(rid):
        raise ValueError(f"bad id in subject {subj!r}")
    body = json_object(data)  # the log line names the subject and sequence already
    if body.get("type") not in TYPES:
        raise ValueError(f"unknown type {body.get('type')!r}")
    if body.get("id") != rid:
        raise ValueError(f"id {body.get('id')!r} does not match the subject's {rid!r}")
    ev = Event(body["type"], rid, seq, ts_ns, body)
    if ev.type == RESERVED:
        if body.get("timeout") is not None:
            try:
                ev.timeout = check_timeout(body["timeout"])
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        ev.timer = body.get("timer", "client")
        if ev.timer not in ("client", "server"):
            raise ValueError(f"unknown timer {ev.timer!r} (client or server)")
    return ev


def reserved_body(rid: str, timeout: float, *, server_side: bool, request: str) -> bytes:
    """``tickets-reserved``, published with ``Nats-Expected-Last-Subject-Sequence: 0``."""
    timer = "server" if server_side else "client"
    return json.dumps({"type": RESERVED, "id": rid, "timeout": timeout, "timer": timer, "request": request}).encode()


def purchased_body(rid: str, *, request: str) -> bytes:
    """``tickets-purchased``, published with the expected-sequence guard on the reservation."""
    return json.dumps({"type": PURCHASED, "id": rid, "request": request}).encode()


def timeout_body(rid: str, deadline_ns: int, by: str) -> bytes:
    """``reservation-timeout``: ``deadline`` in RFC 3339 UTC, ``by`` who decided it."""
    return json.dumps({"type": TIMED_OUT, "id": rid, "deadline": iso(deadline_ns), "by": by}).encode()


def timeout_headers(rid: str, reservation_seq: int) -> dict[str, str]:
    """A client timer's headers: the msg id and the guard that makes first-writer-wins hold forever."""
    return {"Nats-Msg-Id": timeout_msg_id(rid), "Nats-Expected-Last-Subject-Sequence": str(reservation_seq)}


RETENTION_DAYS = 400  # longer than the longest allowed timeout (366 days): see stream_config
MAX_PER_SUBJECT = 3  # a reservation has 2 events (reserved, then purchased or timed out); 1 spare


def stream_config(
    *, storage: StorageType = StorageType.FILE, duplicate_window: float = 120.0, replicas: int = 1
) -> StreamConfig:
    """``RESERVATIONS`` on both subject trees; schedules allowed (the flag cannot be turned off later).

    Retention is explicit, and safe for the guards:
    * events are kept :data:`RETENTION_DAYS` days, more than the longest timeout a reservation may
      have, so every reservation is decided while its event is still there (the guard compares
      sequences, which never expire), and an ``@at`` schedule never ages out before it fires;
    * a subject keeps at most :data:`MAX_PER_SUBJECT` messages: a reservation writes two, and the
      guards refuse a third, so the limit bounds the stream without ever dropping an event;
    * an id stays taken while its events are kept (``reserve`` expects an empty subject); after
      they age out it may be reused.
    """
    return StreamConfig(
        name=STREAM,
        subjects=[f"{EVENTS}.>", f"{SCHEDULES}.>"],
        storage=storage,
        duplicate_window=duplicate_window,
        allow_msg_schedules=True,
        num_replicas=replicas,
        max_age=RETENTION_DAYS * 86400.0,
        max_msgs_per_subject=MAX_PER_SUBJECT,
    )
