"""The client-side reservation timeout service (its command: :mod:`natsdemo.reservations.cli`).

One :class:`~natsdemo.core.timers.Scheduler` holds every pending timer with its absolute deadline (the
stream timestamp of ``tickets-reserved`` plus its timeout). On start the service loads the newest
snapshot of the pending set (:mod:`natsdemo.reservations.snapshot`) and replays the events after it
(or, with none, the whole stream), so a crashed or restarted instance loses no timer, fires overdue
ones at once, and starts in time bounded by the live work rather than the history; any number of
instances store exactly one timeout per reservation, because every timeout is published with
``Nats-Msg-Id`` and ``Nats-Expected-Last-Subject-Sequence``. The wire contract is
:mod:`natsdemo.reservations.wire`; connecting, logging, signals and shutdown are
:mod:`natsdemo.core.service`'s.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

from natsdemo.core.errors import Unavailable
from natsdemo.core.names import check_token
from natsdemo.core.publish import backoff, publish_acked
from natsdemo.core.servertime import ServerClock
from natsdemo.core.streams import retrying
from natsdemo.core.timers import Scheduler
from natsdemo.reservations.client import ensure_stream
from natsdemo.reservations.snapshot import CHUNK_ENTRIES, SNAPSHOT_EVENTS, SNAPSHOT_EVERY, Entry, Snapshot, Snapshotter
from natsdemo.reservations.wire import (
    DEFAULT_TIMEOUT,
    EVENTS,
    RESERVED,
    SCHEDULES,
    STREAM,
    Event,
    check_timeout,
    js_meta,
    parse_event,
    refused_by_guard,
    subject,
    timeout_body,
    timeout_headers,
)

log = logging.getLogger("natsdemo.reservations")

RETRY_CAP = 30.0  # seconds: the longest wait before trying a failed timeout again
SERVER_GRACE = 5.0  # seconds past a server-side deadline before this service fires it itself
PROBE_EVERY = 30.0  # seconds between measurements of the server's clock


class TimeoutService:
    """The client-side timer service: one :class:`~natsdemo.core.timers.Scheduler` for every reservation.

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
        replicas: int | None = None,
        clock: Callable[[], float] = time.time,
        server_grace: float = SERVER_GRACE,
        snapshot_every: float | None = SNAPSHOT_EVERY,
        snapshot_events: int = SNAPSHOT_EVENTS,
        snapshot_chunk: int = CHUNK_ENTRIES,
    ) -> None:
        self.js = js
        self.default_timeout = check_timeout(default_timeout)
        self.name = name
        self.publish_timeout = publish_timeout
        self.replicas = replicas  # of RESERVATIONS, if this service creates it
        # deadlines are server timestamps: compare them with the server's clock, never this host's
        self.clock = ServerClock(js, STREAM, f"{SCHEDULES}._clock.{check_token(name, 'name', 64)}", clock=clock)
        self.server_grace = server_grace
        self.timers = scheduler(self._fire, clock=self.clock.now, max_in_flight=max_in_flight)
        self.stats = dict.fromkeys(("replayed", "events", "stored", "refused", "duplicate", "retried", "skipped"), 0)
        self.lateness: collections.deque[float] = collections.deque(maxlen=200_000)  # seconds, at fire time
        self.caught_up = asyncio.Event()
        self.replay_seconds: float | None = None
        self._sub: Any = None
        self._t0 = 0.0
        self._retry_deadline: dict[str, float] = {}
        self._attempts: dict[str, int] = {}  # failed tries per pending timeout
        self._prober: asyncio.Task[None] | None = None
        # snapshots (natsdemo.reservations.snapshot): None turns them off (every start replays it all)
        self.snapshot_every = snapshot_every
        self.snapshots = Snapshotter(
            js, self.name, lambda: self._applied, lambda: (self._applied, self.pending_entries()),
            every=snapshot_every or SNAPSHOT_EVERY, events=snapshot_events, chunk=snapshot_chunk,
            timeout=publish_timeout,
        )
        self._applied = 0  # stream seq of the last event applied: what a snapshot taken now covers
        self._firing: dict[str, tuple[int, float]] = {}  # fired, not yet decided in the stream

    async def start(self, wait: bool = True) -> None:
        """Ensure the streams, load the newest snapshot, replay the events after it, and (by
        default) wait until the replay caught up."""
        info = await retrying(
            "creating stream RESERVATIONS", lambda: ensure_stream(self.js, replicas=self.replicas)
        )  # cluster may be electing
        self._t0 = time.perf_counter()
        start_at = 1
        if self.snapshot_every is not None and (snap := await self.snapshots.load(self.replicas)) is not None:
            for rid, seq, deadline in snap.entries:
                self.timers.add(rid, deadline, seq)
            self._applied = snap.covers
            start_at = snap.covers + 1
        log.info("%s: %s; replaying from seq %d", self.name, "no snapshot" if start_at == 1 else
                 f"loaded a snapshot of {len(self.timers)} pending reservations", start_at)
        policy = {"deliver_policy": api.DeliverPolicy.ALL} if start_at == 1 else {
            "deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
            "config": api.ConsumerConfig(opt_start_seq=start_at),
        }
        self._sub = await retrying(
            "subscribing to the reservation events",
            lambda: self.js.subscribe(
                f"{EVENTS}.>", stream=STREAM, ordered_consumer=True, cb=self._on_msg, pending_msgs_limit=-1,
                **policy,
            ),
        )
        info = await retrying("reading the replay position", self._sub.consumer_info)
        await self._probe()
        self._prober = asyncio.ensure_future(self._probe_every(PROBE_EVERY))
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:  # nothing to replay
            self._caught_up()
        if wait:
            await self.caught_up.wait()

    def _caught_up(self) -> None:
        if not self.caught_up.is_set():
            self.replay_seconds = time.perf_counter() - self._t0
            self.caught_up.set()
            self.timers.start()
            if self.snapshot_every is not None:
                self.snapshots.start()

    # ------------------------------------------------------------------ snapshots
    def pending_entries(self) -> list[Entry]:
        """Every reservation undecided by the events applied so far, with its reserved seq and
        deadline: the pending timers plus those fired whose outcome is not in the stream yet.
        Synchronous, so it matches what was applied exactly."""
        entries = {rid: (rid, seq, deadline) for deadline, rid, seq in self.timers.entries()}
        for rid, (seq, deadline) in self._firing.items():
            entries[rid] = (rid, seq, deadline)  # its first deadline, not a retry's
        return list(entries.values())

    @property
    def snapshot_loaded(self) -> Snapshot | None:
        """The snapshot this service started from (None: it replayed the whole stream)."""
        return self.snapshots.loaded

    async def snapshot(self) -> bool:
        """Write a snapshot of what is pending now; True if it was stored (and is the newest)."""
        return await self.snapshots.write_now()

    async def _probe(self) -> None:
        try:
            offset = await self.clock.probe()
        except Exception as exc:  # keep going with the last estimate (the host's clock at first), and say so
            log.warning("%s: could not measure the server's clock (%r)", self.name, exc)
            return
        if abs(offset) > 1.0:
            log.warning("%s: this host's clock is %+.1f s off the server's; timers follow the server",
                        self.name, offset)

    async def _probe_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._probe()

    async def stop(self) -> None:
        """Stop consuming and firing; timeouts already being published finish (bounded); then a
        last snapshot, so the next start replays little."""
        if self._prober is not None:
            self._prober.cancel()
            self._prober = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        await self.timers.stop()
        await self.snapshots.stop(final=self.snapshot_every is not None)

    async def _on_msg(self, msg: Any) -> None:
        seq, ts_ns, pending = js_meta(msg.reply)
        self.stats["events"] += 1
        try:
            self.apply(parse_event(msg.subject, msg.data, seq, ts_ns))
        except ValueError as exc:
            self.stats["skipped"] += 1
            log.warning("%s: skipping seq %d on %s: %s", self.name, seq, msg.subject, exc)
        self._applied = seq
        if not self.caught_up.is_set():
            self.stats["replayed"] += 1
            if pending == 0:
                self._caught_up()

    def apply(self, ev: Event) -> None:
        """Update the timers for one event (raises ``ValueError`` for a bad timeout)."""
        if ev.type == RESERVED:
            deadline = ev.deadline_ns(self.default_timeout) / 1e9
            if ev.timer == "server":
                # the server's @at fires it; this is the backstop for one whose writer died between
                # the event and its schedule (the guard refuses it if the server's timeout landed)
                deadline += self.server_grace
            self.timers.add(ev.id, deadline, ev.seq)
            self._firing.pop(ev.id, None)
        else:
            self.timers.cancel(ev.id)
            self._firing.pop(ev.id, None)

    async def _fire(self, rid: str, seq: int, deadline: float) -> None:
        deadline = self._retry_deadline.pop(rid, deadline)
        self._firing[rid] = (seq, deadline)  # pending until its outcome is applied from the stream
        late = self.clock.now() - deadline
        self.lateness.append(late)
        try:  # rides out a leader election; msg id and guard make every retry safe
            ack = await publish_acked(
                self.js, subject(rid), timeout_body(rid, int(deadline * 1e9), self.name),
                headers=timeout_headers(rid, seq), timeout=self.publish_timeout, retry_for=self.publish_timeout,
            )
        except nats.js.errors.BadRequestError as exc:
            if not refused_by_guard(exc):
                self.stats["skipped"] += 1
                log.warning("%s: timeout %s refused: %s", self.name, rid, exc)
                return
            self.stats["refused"] += 1
            log.info("%s: timeout %s already decided (a purchase or another instance came first)", self.name, rid)
            return
        except (Unavailable, nats.errors.Error, OSError, TimeoutError) as exc:  # server away: try again later
            self.stats["retried"] += 1
            attempt = self._attempts[rid] = self._attempts.get(rid, 0) + 1
            wait = backoff(attempt, first=1.0, cap=RETRY_CAP)  # exponential with jitter: no thundering herd
            self._retry_deadline[rid] = deadline
            log.warning("%s: timeout %s not published (%s); try %d again in %.1f s", self.name, rid,
                        type(exc).__name__, attempt + 1, wait)
            if rid in self._firing:  # not decided meanwhile
                self.timers.add(rid, self.clock.now() + wait, seq)
            return
        self._attempts.pop(rid, None)
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
