"""Reservations that time out unless purchased: client timers (dedup + expected-sequence guard)
and server-side ``@at`` schedules.

Lift this folder and :mod:`natsdemo.core`; nothing here needs Jupyter or a local nats-server.

* :mod:`~natsdemo.reservations.wire`: the contract (stream, subjects, headers, msg ids, bodies);
* :mod:`~natsdemo.reservations.client`: :func:`reserve`, :func:`purchase`, :func:`read_events`;
* :mod:`~natsdemo.reservations.service`: :class:`TimeoutService` and ``python -m natsdemo reservations``.

Its one scheduler for every pending timer is :class:`natsdemo.core.timers.Scheduler`.
"""

from natsdemo.reservations.client import (
    AlreadyPurchasedError,
    DuplicateReservationError,
    LatePurchaseError,
    Reservation,
    ReservationError,
    UnknownReservationError,
    ensure_stream,
    purchase,
    read_events,
    reserve,
)
from natsdemo.reservations.service import (
    TimeoutService,
)
from natsdemo.reservations.wire import (
    DEFAULT_TIMEOUT,
    EPOCH,
    EVENTS,
    ID_RE,
    MAX_PER_SUBJECT,
    PURCHASED,
    RESERVED,
    RETENTION_DAYS,
    SCHEDULES,
    STREAM,
    TIMED_OUT,
    TYPES,
    WRONG_LAST_SEQUENCE,
    WRONG_LAST_SEQUENCE_CODES,
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
    timeout_headers,
    timeout_msg_id,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "EPOCH",
    "EVENTS",
    "ID_RE",
    "MAX_PER_SUBJECT",
    "PURCHASED",
    "RESERVED",
    "RETENTION_DAYS",
    "SCHEDULES",
    "STREAM",
    "TIMED_OUT",
    "TYPES",
    "WRONG_LAST_SEQUENCE",
    "WRONG_LAST_SEQUENCE_CODES",
    "AlreadyPurchasedError",
    "DuplicateReservationError",
    "Event",
    "LatePurchaseError",
    "Reservation",
    "ReservationError",
    "TimeoutService",
    "UnknownReservationError",
    "check_id",
    "check_timeout",
    "ensure_stream",
    "iso",
    "js_meta",
    "parse_event",
    "purchase",
    "purchased_body",
    "read_events",
    "refused_by_guard",
    "reserve",
    "reserved_body",
    "schedule_subject",
    "stream_config",
    "subject",
    "timeout_body",
    "timeout_headers",
    "timeout_msg_id",
]
