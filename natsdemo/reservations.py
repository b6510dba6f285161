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

The client-side service is :class:`TimeoutService`; its single scheduler is :mod:`natsdemo.timers`.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js.api import StorageType, StreamConfig

from natsdemo.errors import UsageError
from natsdemo.timers import Scheduler

log = logging.getLogger("natsdemo.reservations")

STREAM = "RESERVATIONS"
EVENTS = "events.reservation"
SCHEDULES = "schedules.reservation"
RESERVED, PURCHASED, TIMED_OUT = "tickets-reserved", "tickets-purchased", "reservation-timeout"
TYPES = (RESERVED, PURCHASED, TIMED_OUT)
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_TIMEOUT = 600.0  # the seed's 10 minutes
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
WRONG_LAST_SEQUENCE = 10071  # server error code for a failed Nats-Expected-Last-Subject-Sequence


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

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    if not isinstance(rid, str) or not ID_RE.fullmatch(rid):
        raise UsageError(
            f"bad reservation id {rid!r}: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-' "
            "(it becomes one token of the subject events.reservation.<id>)"
        )
    return rid


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
    t = reply.split(".")
    if len(t) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(t[5]), int(t[7]), int(t[8])
    return int(t[7]), int(t[9]), int(t[10])  # v2: with domain and account hash


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
    if not ID_RE.fullmatch(rid):
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


async def ensure_stream(js: Any, *, storage: StorageType = StorageType.FILE, duplicate_window: float = 120.0) -> Any:
    """Create the ``RESERVATIONS`` stream if missing (idempotent, safe to race) and return its info.

    ``allow_msg_schedules`` is on so both variants share one stream (it cannot be turned off later).

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    config = StreamConfig(
        name=STREAM,
        subjects=[f"{EVENTS}.>", f"{SCHEDULES}.>"],
        storage=storage,
        duplicate_window=duplicate_window,
        allow_msg_schedules=True,
    )
    try:
        return await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        pass
    try:
        return await js.add_stream(config)
    except nats.js.errors.BadRequestError:  # another instance created it first
        return await js.stream_info(STREAM)


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


async def reserve(js: Any, rid: str, timeout: float = DEFAULT_TIMEOUT, *, server_side: bool = False) -> Reservation:
    """Publish ``tickets-reserved`` for a new id; with ``server_side`` also an ``@at`` schedule.

    The reservation event expects the subject to be empty, so an id can be reserved once only
    (:class:`DuplicateReservationError`). The server-side variant reads the event's stream timestamp
    back and schedules the timeout at timestamp + timeout, rounded up to the millisecond.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """
    check_id(rid)
    timeout = check_timeout(timeout)
    body = {"type": RESERVED, "id": rid, "timeout": timeout, "timer": "server" if server_side else "client"}
    try:
        ack = await js.publish(
            subject(rid), json.dumps(body).encode(), headers={"Nats-Expected-Last-Subject-Sequence": "0"}
        )
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            raise DuplicateReservationError(f"reservation id {rid!r} was used before: pick a new id") from None
        raise
    if not server_side:
        return Reservation(rid, ack.seq, timeout)
    stored = await js.get_msg(STREAM, ack.seq)
    # the API reports the timestamp in microseconds: round up, so the @at is never early
    ts_ns = (stored.time - EPOCH) // dt.timedelta(microseconds=1) * 1000 + 1000
    deadline_ns = ts_ns + round(timeout * 1e9)
    fire = {"type": TIMED_OUT, "id": rid, "deadline": iso(deadline_ns), "by": "server"}
    await js.publish(
        f"{SCHEDULES}.{rid}",
        json.dumps(fire).encode(),
        headers={
            "Nats-Schedule": f"@at {iso(deadline_ns)}",
            "Nats-Schedule-Target": subject(rid),
            "Nats-Msg-Id": timeout_msg_id(rid),  # the server strips it from the message it produces
        },
    )
    return Reservation(rid, ack.seq, timeout, deadline_ns)


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


def _refusal(rid: str, kind: str) -> ReservationError:
    if kind == TIMED_OUT:
        return LatePurchaseError(
            f"too late: reservation {rid!r} timed out before this purchase arrived, "
            "so its tickets went back on sale; reserve again"
        )
    if kind == PURCHASED:
        return AlreadyPurchasedError(f"reservation {rid!r} is already purchased")
    return ReservationError(f"reservation {rid!r} cannot be purchased (last event: {kind})")


async def purchase(js: Any, rid: str) -> int:
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
    try:
        ack = await js.publish(subject(rid), json.dumps({"type": PURCHASED, "id": rid}).encode(), headers=headers)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != WRONG_LAST_SEQUENCE:
            raise
        raise _refusal(rid, (await _last(js, rid))[1]) from None
    return ack.seq


# ------------------------------------------------------------------------------ timer service
class TimeoutService:
    """The client-side timer service: one :class:`~natsdemo.timers.Scheduler` for every reservation.

    On :meth:`start` it replays ``events.reservation.>`` from the first message through an ordered
    consumer (which then keeps delivering live events), so every timer is rebuilt with its absolute
    deadline: a restarted instance fires overdue timeouts at once instead of restarting them.
    Timers start firing once the replay has caught up. Every timeout is published with the msg id
    and ``Nats-Expected-Last-Subject-Sequence``, so any number of instances store one timeout per
    reservation, and none after a purchase. Bad events are logged and skipped.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    def __init__(
        self,
        js: Any,
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        name: str = "reservations",
        scheduler: type = Scheduler,
        publish_timeout: float = 5.0,
        max_in_flight: int = 256,
    ) -> None:
        self.js = js
        self.default_timeout = check_timeout(default_timeout)
        self.name = name
        self.publish_timeout = publish_timeout
        self.timers = scheduler(self._fire, max_in_flight=max_in_flight)
        self.stats = dict.fromkeys(("replayed", "events", "stored", "refused", "duplicate", "retried", "skipped"), 0)
        self.lateness: collections.deque[float] = collections.deque(maxlen=200_000)  # seconds, at fire time
        self.caught_up = asyncio.Event()
        self.replay_seconds: float | None = None
        self._sub: Any = None
        self._t0 = 0.0
        self._retry_deadline: dict[str, float] = {}

    async def start(self, wait: bool = True) -> None:
        """Ensure the stream, start replaying, and (by default) wait until the replay caught up."""
        await ensure_stream(self.js)
        self._t0 = time.perf_counter()
        self._sub = await self.js.subscribe(
            f"{EVENTS}.>", stream=STREAM, ordered_consumer=True, cb=self._on_msg, pending_msgs_limit=-1
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:  # nothing to replay
            self._caught_up()
        if wait:
            await self.caught_up.wait()

    def _caught_up(self) -> None:
        if not self.caught_up.is_set():
            self.replay_seconds = time.perf_counter() - self._t0
            self.caught_up.set()
            self.timers.start()

    async def stop(self) -> None:
        """Stop consuming and firing; timeouts already being published finish (bounded)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        await self.timers.stop()

    async def _on_msg(self, msg: Any) -> None:
        seq, ts_ns, pending = js_meta(msg.reply)
        self.stats["events"] += 1
        try:
            self.apply(parse_event(msg.subject, msg.data, seq, ts_ns))
        except ValueError as exc:
            self.stats["skipped"] += 1
            log.warning("%s: skipping seq %d on %s: %s", self.name, seq, msg.subject, exc)
        if not self.caught_up.is_set():
            self.stats["replayed"] += 1
            if pending == 0:
                self._caught_up()

    def apply(self, ev: Event) -> None:
        """Update the timers for one event (raises ``ValueError`` for a bad timeout)."""
        if ev.type == RESERVED:
            if ev.body.get("timer") == "server":
                return  # the server holds this one (an @at schedule)
            try:
                timeout = check_timeout(ev.body.get("timeout", self.default_timeout))
            except UsageError as exc:
                raise ValueError(str(exc)) from None
            self.timers.add(ev.id, ev.ts_ns / 1e9 + timeout, ev.seq)
        else:
            self.timers.cancel(ev.id)

    async def _fire(self, rid: str, seq: int, deadline: float) -> None:
        deadline = self._retry_deadline.pop(rid, deadline)
        late = time.time() - deadline
        self.lateness.append(late)
        body = {"type": TIMED_OUT, "id": rid, "deadline": iso(int(deadline * 1e9)), "by": self.name}
        headers = {"Nats-Msg-Id": timeout_msg_id(rid), "Nats-Expected-Last-Subject-Sequence": str(seq)}
        try:
            ack = await self.js.publish(
                subject(rid), json.dumps(body).encode(), headers=headers, timeout=self.publish_timeout
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                self.stats["skipped"] += 1
                log.warning("%s: timeout %s refused: %s", self.name, rid, exc)
                return
            self.stats["refused"] += 1
            log.info("%s: timeout %s already decided (a purchase or another instance came first)", self.name, rid)
            return
        except (nats.errors.Error, OSError, TimeoutError) as exc:  # server away: try again shortly
            self.stats["retried"] += 1
            self._retry_deadline[rid] = deadline
            log.warning("%s: timeout %s not published (%s); retrying in 1 s", self.name, rid, type(exc).__name__)
            self.timers.add(rid, time.time() + 1.0, seq)
            return
        if ack.duplicate:
            self.stats["duplicate"] += 1
            log.info("%s: timeout %s de-duplicated by msg id", self.name, rid)
        else:
            self.stats["stored"] += 1
            log.info("%s: timeout %s stored as seq %d, %.1f ms after its deadline", self.name, rid, ack.seq, late * 1e3)

    def summary(self) -> str:
        s = self.stats
        return (
            f"{s['stored']} timeouts stored, {s['refused'] + s['duplicate']} already decided, "
            f"{s['skipped']} bad events skipped, {len(self.timers)} pending"
        )


# ------------------------------------------------------------------------------------------- CLI
def configure_cli(parser: argparse.ArgumentParser) -> None:
    from natsdemo.conn import add_connection_arguments

    parser.add_argument(
        "--timeout",
        default=str(DEFAULT_TIMEOUT),
        help="seconds, for tickets-reserved events that carry no timeout (default 600)",
    )
    parser.add_argument("--name", default=None, help="instance name in logs and timeout events (default: host-pid)")
    parser.add_argument("--quiet", action="store_true", help="log problems only, not every timeout")
    add_connection_arguments(parser)


def run_cli(args: argparse.Namespace) -> int:
    import os
    import socket

    timeout = check_timeout(args.timeout)  # before connecting
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    if not ID_RE.fullmatch(name):
        raise UsageError(f"bad --name {name!r}: use letters, digits, '_' and '-'")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    return asyncio.run(_serve(args, timeout, name))


async def _serve(args: argparse.Namespace, timeout: float, name: str) -> int:
    from natsdemo.cli import stop_event
    from natsdemo.conn import connect_from_args

    stop = stop_event()
    nc = await connect_from_args(args, f"reservations-{name}")
    service = TimeoutService(nc.jetstream(), default_timeout=timeout, name=name)
    try:
        starting = asyncio.ensure_future(service.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # raises if the start failed
            print(
                f"reservations: {name} watching {EVENTS}.> in stream {STREAM}: replayed "
                f"{service.stats['replayed']} events, {len(service.timers)} pending (default timeout {timeout:g} s)",
                flush=True,
            )
        await stopping
        starting.cancel()
    finally:
        # bounded: a service whose server is gone must still exit on SIGTERM
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.stop(), 5)
        try:
            await asyncio.wait_for(nc.drain(), 5)
        except Exception:  # fall back to closing
            await nc.close()
    print(f"reservations: {name} stopped ({service.summary()})", flush=True)
    return 0
