"""Reserving and purchasing: the writes of the reservation pattern, and reading its events back.

:func:`reserve` and :func:`purchase` publish through :func:`~natsdemo.core.publish.publish_acked`
with the expected-sequence guard, so a retry after an ambiguous timeout can never store a second
copy, and a random ``request`` nonce read back tells our own earlier attempt from somebody else's.
The contract is :mod:`natsdemo.reservations.wire`; the client-side timer service is
:mod:`natsdemo.reservations.service`.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js.api import StorageType

from natsdemo.core.publish import CLIENT_RETRY_FOR, publish_acked
from natsdemo.core.streams import create_stream_if_missing, replicas_for
from natsdemo.reservations.wire import (
    DEFAULT_TIMEOUT,
    EPOCH,
    EVENTS,
    PURCHASED,
    RESERVED,
    STREAM,
    TIMED_OUT,
    Event,
    check_id,
    check_timeout,
    iso,
    js_meta,
    parse_event,
    purchased_body,
    refused_by_guard,
    reserved_body,
    schedule_subject,
    stream_config,
    subject,
    timeout_body,
    timeout_msg_id,
)


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


async def ensure_stream(
    js: Any, *, storage: StorageType = StorageType.FILE, duplicate_window: float = 120.0, replicas: int | None = None
) -> Any:
    """Create the ``RESERVATIONS`` stream if missing (idempotent, safe to race) and return its info.

    ``allow_msg_schedules`` is on so both variants share one stream (it cannot be turned off later).
    ``replicas=None`` means ``$NATS_REPLICAS``, else 3 on a cluster and 1 on a single server.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    config = stream_config(storage=storage, duplicate_window=duplicate_window, replicas=replicas_for(js, replicas))
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
    js: Any, rid: str, timeout: float = DEFAULT_TIMEOUT, *, server_side: bool = False,
    retry_for: float = CLIENT_RETRY_FOR,
) -> Reservation:
    """Publish ``tickets-reserved`` for a new id; with ``server_side`` also an ``@at`` schedule.

    The reservation event expects the subject to be empty, so an id can be reserved once only
    (:class:`DuplicateReservationError`). The server-side variant reads the event's stream timestamp
    back and schedules the timeout at timestamp + timeout, rounded up to the millisecond. Without a
    stream leader (most cluster nodes down) it retries for ``retry_for`` seconds, then raises
    :class:`natsdemo.core.errors.Unavailable`: never a reservation that was not acknowledged.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    check_id(rid)
    timeout = check_timeout(timeout)
    request = uuid.uuid4().hex  # tells our own earlier attempt apart from somebody else's reservation
    try:  # rides out a leader election; the guard makes a retry unable to store a second copy
        ack = await publish_acked(
            js,
            subject(rid),
            reserved_body(rid, timeout, server_side=server_side, request=request),
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
    await publish_acked(
        js,
        schedule_subject(rid),
        timeout_body(rid, deadline_ns, "server"),
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


async def purchase(js: Any, rid: str, *, retry_for: float = CLIENT_RETRY_FOR) -> int:
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
        "Nats-Scheduler": schedule_subject(rid),
    }
    request = uuid.uuid4().hex
    body = purchased_body(rid, request=request)
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
