"""Reservation timeouts that survive crashes, restarts and races.

Wire contract (stream ``RESERVATIONS``; one subject per reservation):

* ``events.reservation.<id>``, ``<id>`` matching ``[A-Za-z0-9_-]{1,64}``, JSON bodies
  ``{"type": "tickets-reserved", "id": ID, "timeout": SECONDS, "timer": "client"|"server"}``,
  ``{"type": "tickets-purchased", "id": ID}`` and
  ``{"type": "reservation-timeout", "id": ID, "deadline": ISO-8601, "by": WHO}``;
* a timeout carries ``Nats-Msg-Id: <id>-reservation-timeout``;
* the deadline is the stream timestamp of the ``tickets-reserved`` event plus its ``timeout``
  (the service's ``--timeout`` applies only to events without one);
* ``schedules.reservation.<id>`` holds the server-side variant's ``@at`` schedule.

First writer wins, forever: the timeout and the purchase are both published with
``Nats-Expected-Last-Subject-Sequence`` set to the reservation event's sequence, so whichever
lands second is refused by the server, long after ``duplicate_window`` has passed.

The client-side service is :class:`natsdemo.reservation_service.TimeoutService` (``python -m natsdemo
reservations``); its single scheduler is :mod:`natsdemo.timers`.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js.api import StorageType, StreamConfig

from natsdemo.conn import create_stream_if_missing, publish_acked, replicas_for
from natsdemo.errors import UsageError
from natsdemo.names import ack_fields, check_token, is_token

log = logging.getLogger("natsdemo.reservations")

STREAM = "RESERVATIONS"
EVENTS = "events.reservation"
SCHEDULES = "schedules.reservation"
RESERVED, PURCHASED, TIMED_OUT = "tickets-reserved", "tickets-purchased", "reservation-timeout"
TYPES = (RESERVED, PURCHASED, TIMED_OUT)
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the wire contract; checked by natsdemo.names.check_token
DEFAULT_TIMEOUT = 600.0  # the seed's 10 minutes
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
WRONG_LAST_SEQUENCE = 10071  # server error code for a failed Nats-Expected-Last-Subject-Sequence
# measured on 2.15.1: a clustered (R3) stream may answer the same refusal with 10164 instead
WRONG_LAST_SEQUENCE_CODES = frozenset({WRONG_LAST_SEQUENCE, 10164})


def refused_by_guard(exc: Exception) -> bool:
    """True if the server refused a publish because its expected last subject sequence was wrong.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    return getattr(exc, "err_code", None) in WRONG_LAST_SEQUENCE_CODES


class ReservationError(RuntimeError):
    """A reservation request the current state of the stream does not allow.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """


class LatePurchaseError(ReservationError):
    """The purchase arrived after the reservation's timeout was recorded: it is refused.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """


class AlreadyPurchasedError(ReservationError):
    """The reservation was purchased already.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """


class UnknownReservationError(ReservationError):
    """No ``tickets-reserved`` event exists for this id.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """


class DuplicateReservationError(ReservationError):
    """The id was used before; reservation ids are single-use.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """


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
    """One decoded event from ``events.reservation.<id>``.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    type: str
    id: str
    seq: int
    ts_ns: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


def parse_event(subj: str, data: bytes, seq: int, ts_ns: int) -> Event:
    """Decode and validate an event; raises ``ValueError`` saying what is wrong with it.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    rid = subj[len(EVENTS) + 1 :]
    if not is_token(rid):
        raise ValueError(f"bad id in subject {subj!r}")
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    if body.get("type") not in TYPES:
        raise ValueError(f"unknown type {body.get('type')!r}")
    if body.get("id") != rid:
        raise ValueError(f"id {body.get('id')!r} does not match the subject's {rid!r}")
    return Event(body["type"], rid, seq, ts_ns, body)


async def ensure_stream(
    js: Any, *, storage: StorageType = StorageType.FILE, duplicate_window: float = 120.0, replicas: int | None = None
) -> Any:
    """Create the ``RESERVATIONS`` stream if missing (idempotent, safe to race) and return its info.

    ``allow_msg_schedules`` is on so both variants share one stream (it cannot be turned off later).
    ``replicas=None`` means 3 on a cluster, 1 on a single server.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    config = StreamConfig(
        name=STREAM,
        subjects=[f"{EVENTS}.>", f"{SCHEDULES}.>"],
        storage=storage,
        duplicate_window=duplicate_window,
        allow_msg_schedules=True,
        num_replicas=replicas or replicas_for(js),
    )
    return await create_stream_if_missing(js, config)


async def read_events(js: Any, *, timeout: float = 30.0) -> list[Event]:
    """Every valid event in ``events.reservation.>``, in stream order (bad ones are left out).

    An ordered consumer reads until the server says nothing is pending; tests, the notebook and
    the benchmark use it to check what actually landed in the stream.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    sub = await js.subscribe(f"{EVENTS}.>", stream=STREAM, ordered_consumer=True, pending_msgs_limit=-1)
    out: list[Event] = []
    try:
        info = await sub.consumer_info()
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:
            return out
        deadline = time.monotonic() + timeout
        while True:
            msg = await sub.next_msg(timeout=max(0.05, deadline - time.monotonic()))
            seq, ts_ns, pending = js_meta(msg.reply)
            with contextlib.suppress(ValueError):
                ev = parse_event(msg.subject, msg.data, seq, ts_ns)
                ev.headers = msg.headers
                out.append(ev)
            if pending == 0:
                return out
    finally:
        await sub.unsubscribe()


@dataclass
class Reservation:
    """What :func:`reserve` recorded: the event's sequence and the absolute deadline.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    id: str
    seq: int
    timeout: float
    deadline_ns: int | None = None  # known for server-side timers (their @at)


async def reserve(
    js: Any, rid: str, timeout: float = DEFAULT_TIMEOUT, *, server_side: bool = False, retry_for: float = 10.0
) -> Reservation:
    """Publish ``tickets-reserved`` for a new id; with ``server_side`` also an ``@at`` schedule.

    The reservation event expects the subject to be empty, so an id can be reserved once only
    (:class:`DuplicateReservationError`). The server-side variant reads the event's stream timestamp
    back and schedules the timeout at timestamp + timeout, rounded up to the millisecond. Without a
    stream leader (most cluster nodes down) it retries for ``retry_for`` seconds, then raises
    :class:`natsdemo.errors.Unavailable`: never a reservation that was not acknowledged.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    check_id(rid)
    timeout = check_timeout(timeout)
    request = uuid.uuid4().hex  # tells our own earlier attempt apart from somebody else's reservation
    body = {"type": RESERVED, "id": rid, "timeout": timeout, "timer": "server" if server_side else "client"}
    body["request"] = request
    try:  # rides out a leader election; the guard makes a retry unable to store a second copy
        ack = await publish_acked(
            js,
            subject(rid),
            json.dumps(body).encode(),
            headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            retry_for=retry_for,
            idempotent=True,
        )
        seq = ack.seq
    except nats.js.errors.BadRequestError as exc:
        if not refused_by_guard(exc):
            raise
        mine = await _ours(js, rid, request)  # a retry after a timeout: did our first attempt land?
        if mine is None:
            raise DuplicateReservationError(f"reservation id {rid!r} was used before: pick a new id") from None
        seq = mine
    if not server_side:
        return Reservation(rid, seq, timeout)
    stored = await js.get_msg(STREAM, seq)
    # the API reports the timestamp in microseconds: round up, so the @at is never early
    ts_ns = (stored.time - EPOCH) // dt.timedelta(microseconds=1) * 1000 + 1000
    deadline_ns = ts_ns + round(timeout * 1e9)
    fire = {"type": TIMED_OUT, "id": rid, "deadline": iso(deadline_ns), "by": "server"}
    await publish_acked(
        js,
        f"{SCHEDULES}.{rid}",
        json.dumps(fire).encode(),
        retry_for=retry_for,
        headers={
            "Nats-Schedule": f"@at {iso(deadline_ns)}",
            "Nats-Schedule-Target": subject(rid),
            "Nats-Msg-Id": timeout_msg_id(rid),  # the server strips it from the message it produces
        },
    )
    return Reservation(rid, seq, timeout, deadline_ns)


async def _last(js: Any, rid: str) -> tuple[int, str]:
    try:
        msg = await js.get_msg(STREAM, subject=subject(rid))
    except nats.js.errors.NotFoundError:
        raise UnknownReservationError(f"no reservation {rid!r}: reserve it first") from None
    try:
        kind = json.loads(msg.data or b"{}").get("type", "?")
    except ValueError:
        kind = "?"
    return msg.seq, kind


async def _ours(js: Any, rid: str, request: str) -> int | None:
    """The sequence of the subject's last event if it carries our ``request`` nonce, else None."""
    try:
        msg = await js.get_msg(STREAM, subject=subject(rid))
        return msg.seq if json.loads(msg.data or b"{}").get("request") == request else None
    except (nats.js.errors.NotFoundError, ValueError):
        return None


def _refusal(rid: str, kind: str) -> ReservationError:
    if kind == TIMED_OUT:
        return LatePurchaseError(
            f"too late: reservation {rid!r} timed out before this purchase arrived, "
            "so its tickets went back on sale; reserve again"
        )
    if kind == PURCHASED:
        return AlreadyPurchasedError(f"reservation {rid!r} is already purchased")
    return ReservationError(f"reservation {rid!r} cannot be purchased (last event: {kind})")


async def purchase(js: Any, rid: str, *, retry_for: float = 10.0) -> int:
    """Publish ``tickets-purchased`` if the reservation is still open; returns its sequence.

    The purchase expects the reservation event to be the subject's last message: if a timeout
    landed first the server refuses it and :class:`LatePurchaseError` says so. It also carries
    ``Nats-Schedule-Next: purge`` + ``Nats-Scheduler``, which cancel a server-side ``@at`` timer in
    the same write (harmless when there is none).

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    check_id(rid)
    seq, kind = await _last(js, rid)
    if kind != RESERVED:
        raise _refusal(rid, kind)
    headers = {
        "Nats-Expected-Last-Subject-Sequence": str(seq),
        "Nats-Schedule-Next": "purge",
        "Nats-Scheduler": f"{SCHEDULES}.{rid}",
    }
    request = uuid.uuid4().hex
    body = json.dumps({"type": PURCHASED, "id": rid, "request": request}).encode()
    try:
        ack = await publish_acked(js, subject(rid), body, headers=headers, retry_for=retry_for, idempotent=True)
    except nats.js.errors.BadRequestError as exc:
        if not refused_by_guard(exc):
            raise
        mine = await _ours(js, rid, request)  # a retry after a timeout: did our first attempt land?
        if mine is not None:
            return mine
        raise _refusal(rid, (await _last(js, rid))[1]) from None
    return ack.seq
