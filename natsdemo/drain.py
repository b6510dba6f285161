"""Tick-triggered draining: work piles up all day, and every tick empties the queue.

Wire contract for a queue called ``NAME`` (e.g. ``end-of-day``), see :func:`queue_names`:

* work items are published on ``NAME-queue.<anything>`` and stored by stream ``NAME_QUEUE``
  (upper case, ``-`` -> ``_``), a **work-queue** stream: an acknowledged item is deleted, so the
  stream itself shows what is left;
* all workers pull from one durable pull consumer called ``NAME`` (explicit acks); each item goes
  to one worker at a time;
* every worker reads each tick of ``schedule.NAME`` once through a JetStream consumer
  (:class:`natsdemo.ticks.TickConsumer`), never a core subscription, and drains until empty;
* an item whose handler keeps failing is published, after ``max_deliver`` attempts, to
  ``NAME-dead.<rest of its subject>`` (stream ``NAME_DEAD``) as JSON (:func:`dead_letter_body`)
  and then terminated (``+TERM <reason>``) so the server stops redelivering it.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import inspect
import json
import logging
import os
import random
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from natsdemo.errors import UsageError

log = logging.getLogger("natsdemo.drain")

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
Handler = Callable[[Msg], Awaitable[None] | None]
PREFETCH_BELOW = 0.25  # seconds: prefetch the next batch only while a batch takes less than this


# ===================================================================== names
@dataclass(frozen=True)
class QueueNames:
    """Every name derived from one queue name.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    name: str
    stream: str  # END_OF_DAY_QUEUE
    prefix: str  # end-of-day-queue
    durable: str  # end-of-day
    dead_stream: str  # END_OF_DAY_DEAD
    dead_prefix: str  # end-of-day-dead
    tick_subject: str  # schedule.end-of-day

    @property
    def subjects(self) -> str:
        return f"{self.prefix}.>"

    def item_subject(self, key: str = "item") -> str:
        return f"{self.prefix}.{key}"

    def dead_subject(self, subject: str) -> str:
        """``end-of-day-queue.orders.7`` -> ``end-of-day-dead.orders.7``."""
        rest = subject[len(self.prefix) + 1 :] if subject.startswith(self.prefix + ".") else "item"
        return f"{self.dead_prefix}.{rest}"


def queue_names(name: str) -> QueueNames:
    """Names for queue ``name``: ``end-of-day`` -> stream ``END_OF_DAY_QUEUE`` on ``end-of-day-queue.>``.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UsageError(
            f"queue name {name!r} is not subject-safe: use 1-48 letters, digits, '-' or '_' "
            "(no dots, spaces or wildcards), e.g. --name end-of-day"
        )
    upper = name.upper().replace("-", "_")
    return QueueNames(
        name=name,
        stream=f"{upper}_QUEUE",
        prefix=f"{name}-queue",
        durable=name,
        dead_stream=f"{upper}_DEAD",
        dead_prefix=f"{name}-dead",
        tick_subject=f"schedule.{name}",
    )


# ===================================================================== settings
@dataclass
class DrainSettings:
    """How a worker pulls and how the shared consumer is configured.

    * ``batch`` (500): items per fetch. Bigger batches amortise round trips (``bench drain``: batch 10
      drains at about 0.6x the rate of batch 1000), but each fetched item's ``ack_wait`` starts at
      delivery.
    * ``ack_wait`` (30 s): how long the server waits for an ack before redelivering to another
      worker. Longer than a whole batch takes to process (the clock starts at delivery, for all
      items of a batch at once); the Drainer also sends "in progress" for a slow batch. It is also
      how long a crashed worker's items stay stuck, so not much longer than needed.
    * ``max_deliver`` (5): attempts before an item counts as poison and goes to the dead letters.
    * ``max_ack_pending`` (4096): items out at once over *all* workers: room for four workers with
      two default batches each (one in hand, one prefetched), and a bound on what a crash can
      strand for ``ack_wait``.
    * ``nak_delay`` (1 s, doubled per attempt, at most ``max_nak_delay``): back-off after a failure.
    * ``fetch_timeout``/``probe_timeout``: a fetch returns as soon as one item is there, so the
      timeout only matters when the queue is empty. The first fetch of a drain waits
      ``fetch_timeout``, every later one is a short probe, and "empty" is then confirmed with the
      consumer's own counters (nothing pending, nothing in flight), never assumed from a timeout.
    * ``prefetch``: ask for the next batch while the handler runs on this one (two batches per
      worker may be out at once, which ``max_ack_pending`` must allow). Only while batches are
      quick (under ``PREFETCH_BELOW`` seconds): with a slow handler the round trip does not matter,
      and a prefetched batch would sit idle while other workers run dry at the end of the drain.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    batch: int = 500
    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 4096
    nak_delay: float = 1.0
    max_nak_delay: float = 30.0
    fetch_timeout: float = 0.5
    probe_timeout: float = 0.1
    prefetch: bool = True

    def validate(self) -> DrainSettings:
        checks = [
            (1 <= self.batch <= 10_000, "--batch must be between 1 and 10000"),
            (0.5 <= self.ack_wait <= 3600, "--ack-wait must be between 0.5 and 3600 seconds"),
            (self.max_deliver >= 1, "--max-deliver must be at least 1"),
            (self.max_ack_pending >= 1, "--max-ack-pending must be at least 1"),
            (0 <= self.nak_delay <= 3600 and 0 <= self.max_nak_delay <= 3600, "--nak-delay must be 0..3600 seconds"),
            (0.01 <= self.fetch_timeout <= 60, "--fetch-timeout must be between 0.01 and 60 seconds"),
            (0.01 <= self.probe_timeout <= 60, "--probe-timeout must be between 0.01 and 60 seconds"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return self

    def nak_backoff(self, deliveries: int) -> float:
        return min(self.nak_delay * 2 ** max(0, deliveries - 1), self.max_nak_delay)

    @property
    def settle_limit(self) -> float:
        """How long a worker keeps probing while items are in flight elsewhere without progress."""
        return self.ack_wait + self.max_nak_delay + 1.0


# ===================================================================== streams and consumer
async def _ensure_stream(js: Any, config: api.StreamConfig) -> None:
    for _attempt in range(3):
        try:
            await js.stream_info(config.name)
            return
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(config)
                return
            except nats.js.errors.BadRequestError:
                await asyncio.sleep(0.05)  # lost a creation race; look again
    await js.stream_info(config.name)


def consumer_config(names: QueueNames, settings: DrainSettings) -> api.ConsumerConfig:
    """The shared durable pull consumer (explicit acks, every item from the start).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    return api.ConsumerConfig(
        name=names.durable,
        durable_name=names.durable,
        filter_subject=names.subjects,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=settings.max_deliver,
        max_ack_pending=settings.max_ack_pending,
    )


async def ensure_queue(js: Any, name: str, settings: DrainSettings | None = None) -> api.ConsumerInfo:
    """Create the work stream, the dead-letter stream and the durable consumer if missing.

    Idempotent: creating an identical consumer is a no-op, and a consumer whose ``ack_wait``,
    ``max_deliver`` or ``max_ack_pending`` differ is updated to ``settings`` (the last worker
    started wins, as in a rolling deploy).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    from natsdemo.conn import replicas_for

    names = queue_names(name)
    settings = (settings or DrainSettings()).validate()
    replicas = replicas_for(js)  # 3 on a cluster, 1 on a single server
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=names.stream,
            subjects=[names.subjects],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=replicas,
        ),
    )
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=names.dead_stream,
            subjects=[f"{names.dead_prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=30 * 24 * 3600.0,
            num_replicas=replicas,
        ),
    )
    wanted = consumer_config(names, settings)
    try:
        info = await js.consumer_info(names.stream, names.durable)
        have, want = info.config, wanted
        if (have.ack_wait, have.max_deliver, have.max_ack_pending) == (want.ack_wait, want.max_deliver,
                                                                       want.max_ack_pending):
            return info
    except nats.js.errors.NotFoundError:
        pass
    return await js.add_consumer(names.stream, wanted)  # create, or update the mutable fields


async def enqueue(js: Any, name: str, count: int, *, start: int = 0, key: str = "item", window: int = 2000) -> int:
    """Publish ``count`` items ``{"id": start + i}`` on ``NAME-queue.<key>``, pipelined; returns ``count``.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    if count < 0:
        raise UsageError("the number of items to enqueue must be 0 or more")
    names = queue_names(name)
    subject = names.item_subject(key)
    pending: list[asyncio.Future[Any]] = []
    for i in range(start, start + count):
        pending.append(await js.publish_async(subject, b'{"id": %d}' % i, stream=names.stream))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count


async def queue_state(js: Any, name: str) -> dict[str, int]:
    """``pending`` (not yet delivered), ``ack_pending`` (out with a worker), ``redelivered``, ``stored``.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    names = queue_names(name)
    ci = await js.consumer_info(names.stream, names.durable)
    si = await js.stream_info(names.stream)
    return {
        "pending": ci.num_pending or 0,
        "ack_pending": ci.num_ack_pending or 0,
        "redelivered": ci.num_redelivered or 0,
        "stored": si.state.messages,
    }


# ===================================================================== dead letters
def deliveries_of(msg: Msg) -> int:
    """How many times this item was delivered (1 the first time), read cheaply from the ack subject.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    tokens = (msg.reply or "").split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>... (9 tokens) or the v2 form with domain and hash
    if len(tokens) == 9:
        return int(tokens[4])
    if len(tokens) >= 11:
        return int(tokens[6])
    return 1


def dead_letter_body(msg: Msg, names: QueueNames, reason: str, worker: str) -> dict[str, Any]:
    """The dead-letter JSON: where the item came from, why it died, and the item itself.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    meta = msg.metadata
    try:
        data, encoding = msg.data.decode(), "utf-8"
    except UnicodeDecodeError:
        data, encoding = base64.b64encode(msg.data).decode(), "base64"
    return {
        "queue": names.name,
        "stream": meta.stream,
        "consumer": meta.consumer,
        "subject": msg.subject,
        "stream_seq": meta.sequence.stream,
        "deliveries": meta.num_delivered,
        "reason": reason,
        "worker": worker,
        "dead_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": data,
        "data_encoding": encoding,
    }


async def dead_letters(js: Any, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The dead letters stored so far (oldest first), as dicts.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    names = queue_names(name)
    info = await js.stream_info(names.dead_stream)
    out = []
    first = info.state.first_seq
    for seq in range(first, min(info.state.last_seq, first + limit - 1) + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            raw = await js.get_msg(names.dead_stream, seq)
            out.append(json.loads(raw.data))
    return out


# ===================================================================== metrics
@dataclass
class DrainReport:
    """One drain: from a tick until the queue was empty (or the worker stopped).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    items: int = 0
    batches: int = 0
    failures: int = 0
    dead_lettered: int = 0
    redeliveries: int = 0
    duration: float = 0.0
    ended: str = ""  # "empty", "stopped" or "gave up waiting" (items stayed in flight elsewhere)

    @property
    def rate(self) -> float:
        return self.items / self.duration if self.duration > 0 else 0.0

    def line(self) -> str:
        return (
            f"drained {self.items} items in {self.batches} batches in {self.duration:.2f} s "
            f"({self.rate:,.0f} items/s; {self.redeliveries} redelivered, {self.failures} failed, "
            f"{self.dead_lettered} dead-lettered; {self.ended})"
        )


@dataclass
class DrainMetrics:
    """Totals for one worker since it started.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    ticks: int = 0
    drains: int = 0
    coalesced: int = 0  # ticks that arrived during a drain and were folded into one follow-up drain
    items: int = 0
    batches: int = 0
    failures: int = 0
    dead_lettered: int = 0
    redeliveries: int = 0
    busy_seconds: float = 0.0
    last: DrainReport | None = None

    def add(self, report: DrainReport) -> None:
        self.drains += 1
        self.busy_seconds += report.duration
        self.last = report


# ===================================================================== the drainer
class Drainer:
    """One worker: on every tick, pull batches from the shared consumer until it is empty.

    ``handler(msg)`` (sync or async) processes one item; returning means success (ack), raising
    means failure (nak with back-off, or dead letter + term after ``max_deliver`` attempts).
    A tick that arrives during a drain does not start a second drain in this worker; it asks for
    one follow-up drain once the current one ends (several such ticks fold into one).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    def __init__(
        self,
        js: Any,
        name: str,
        handler: Handler,
        settings: DrainSettings | None = None,
        *,
        worker: str | None = None,
        listen_for_ticks: bool = True,
        tick_durable: str | None = None,
        on_drain: Callable[[DrainReport], Any] | None = None,
    ) -> None:
        self.js = js
        self.names = queue_names(name)
        self.handler = handler
        self.settings = (settings or DrainSettings()).validate()
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.listen_for_ticks = listen_for_ticks
        self.tick_durable = tick_durable
        self.on_drain = on_drain
        self.metrics = DrainMetrics()
        self.draining = False
        self._psub: Any = None
        self._ticks: Any = None
        self._wanted = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._max_deliver = self.settings.max_deliver
        self._is_async = inspect.iscoroutinefunction(handler)
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> Drainer:
        """Create what is missing (streams, consumer, ``SCHEDULE``), bind, and wait for ticks."""
        info = await ensure_queue(self.js, self.names.name, self.settings)
        self._max_deliver = info.config.max_deliver or self.settings.max_deliver
        self._psub = await self.js.pull_subscribe_bind(self.names.durable, stream=self.names.stream)
        if self.listen_for_ticks:
            from natsdemo.ticks import TickConsumer

            self._ticks = TickConsumer(self.js, self.names.name, durable=self.tick_durable)
            await self._ticks.start()
            self._tasks.append(asyncio.ensure_future(self._tick_loop()))
        self._tasks.append(asyncio.ensure_future(self._drain_loop()))
        return self

    def request_drain(self) -> None:
        """Ask for a drain now (what a tick does); folded into a follow-up if one is running."""
        if self.draining:
            self.metrics.coalesced += 1
        self._wanted.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking ticks, finish the item in hand, nak the rest of the batch, unsubscribe."""
        self._stopping = True
        self._wanted.set()
        if self._tasks:
            _done, late = await asyncio.wait(self._tasks, timeout=timeout)
            for task in late:  # a handler that would not finish: cancel; its items are nak'd
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        if self._ticks is not None:
            await self._ticks.stop()
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
            self._psub = None

    async def __aenter__(self) -> Drainer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- loops
    async def _tick_loop(self) -> None:
        while not self._stopping:
            try:
                await self._ticks.next(timeout=0.5)
            except TimeoutError:
                continue
            except Exception as exc:  # keep the service alive (a reconnect, say)
                log.warning("tick consumer: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self.metrics.ticks += 1
            self.request_drain()

    async def _drain_loop(self) -> None:
        backoff = 0.5
        while not self._stopping:
            await self._wanted.wait()
            if self._stopping:
                break
            self._wanted.clear()
            try:
                report = await self.drain_once()
            except Exception as exc:  # a failed drain (a reconnect, a deleted consumer) must not end the service
                log.warning("drain failed, retrying in %.1f s: %r", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._wanted.set()  # try again: the tick is not lost
                continue
            backoff = 0.5
            if self.on_drain is not None:
                with contextlib.suppress(Exception):
                    self.on_drain(report)

    # ---------------------------------------------------------------- one drain
    async def drain_once(self) -> DrainReport:
        """Fetch batches until the consumer has nothing pending and nothing in flight.

        Ticks call this through the worker's drain loop; calling it directly is fine too (the
        ``--once`` mode): drains in one worker never overlap, a second call waits for the first.
        """
        async with self._lock:
            return await self._drain()

    async def _drain(self) -> DrainReport:
        if self._psub is None:
            raise RuntimeError("call start() first")
        s, report = self.settings, DrainReport()
        self.draining = True
        t0 = time.monotonic()
        timeout = s.fetch_timeout
        seen: tuple[int, int] | None = None
        seen_since = t0
        ahead: asyncio.Future[list[Msg]] | None = None  # the next batch, asked for while this one runs
        busy = 0.0  # how long the last batch took to process
        try:
            while not self._stopping:
                try:
                    if ahead is not None:
                        msgs, ahead = await ahead, None
                    else:
                        msgs = await self._psub.fetch(s.batch, timeout=timeout)
                except TimeoutError:
                    # nats-py raises nats.errors.TimeoutError, FetchTimeoutError or a bare
                    # asyncio.TimeoutError depending on the path: all are the builtin TimeoutError.
                    # The timeout says "nothing for me right now"; the consumer's counters say why.
                    ahead = None
                    state = await self._consumer_state()
                    if state == (0, 0):
                        report.ended = "empty"
                        break
                    # items in flight with another worker, waiting out a nak delay, or stranded by a
                    # crashed worker until ack_wait: keep probing while anything moves
                    now = time.monotonic()
                    if state != seen:
                        seen, seen_since = state, now
                    elif now - seen_since > s.settle_limit:
                        report.ended = "gave up waiting"
                        break
                    timeout = s.probe_timeout
                    continue
                report.batches += 1
                # a fetch returns as soon as anything is there, so from now on a short probe is
                # enough; a false "empty" costs one consumer_info, never a missed item
                timeout = s.probe_timeout
                if s.prefetch and busy < PREFETCH_BELOW:
                    ahead = asyncio.ensure_future(self._psub.fetch(s.batch, timeout=timeout))
                started = time.monotonic()
                await self._process(msgs, report, ahead)
                busy = time.monotonic() - started
                seen = None
            else:
                report.ended = "stopped"
        finally:
            if ahead is not None:  # stopped with a prefetched batch: hand it straight back
                extra: list[Msg] = []
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    extra = await ahead
                await self._give_back(extra)
            self.draining = False
            report.duration = time.monotonic() - t0
            self.metrics.add(report)
        return report

    async def _consumer_state(self) -> tuple[int, int]:
        """(pending, ack pending); re-read briefly, since our own last acks may still be in flight."""
        for attempt in range(4):
            info = await self.js.consumer_info(self.names.stream, self.names.durable)
            state = (info.num_pending or 0, info.num_ack_pending or 0)
            if state == (0, 0) or state[0] > 0:
                break
            await asyncio.sleep(0.005 * (attempt + 1))
        return state

    async def _give_back(self, msgs: list[Msg]) -> None:
        """Nak (no delay) what this worker holds but will not process, so another worker gets it now."""
        returned = [m for m in msgs if not m._ackd]
        with contextlib.suppress(Exception):
            for m in returned:
                await m.nak()
            if returned:
                await returned[0]._client.flush(timeout=2)

    async def _process(self, msgs: list[Msg], report: DrainReport, ahead: asyncio.Future[Any] | None) -> None:
        m, s = self.metrics, self.settings
        handler, is_async = self.handler, self._is_async
        stamp = time.monotonic()
        progress_every = s.ack_wait / 3
        done = ok = redelivered = 0
        v1 = len((msgs[0].reply or "").split(".")) == 9  # ack subject layout, the same for the batch
        try:
            for msg in msgs:
                if self._stopping:
                    break
                # cheap delivery count: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...
                n = int(msg.reply.split(".", 5)[4]) if v1 else deliveries_of(msg)
                if n > 1:
                    redelivered += 1
                try:
                    if is_async:
                        await handler(msg)  # type: ignore[misc]
                    else:
                        result = handler(msg)
                        if result is not None and inspect.isawaitable(result):
                            await result
                except Exception as exc:  # a failing item must not stop the drain
                    report.failures += 1
                    m.failures += 1
                    if await self._failed(msg, n, exc):
                        report.dead_lettered += 1
                        m.dead_lettered += 1
                else:
                    await msg.ack()
                    ok += 1
                done += 1
                if time.monotonic() - stamp > progress_every:
                    # a slow batch: tell the server the rest (and the prefetched batch) is being
                    # worked on, so it is not redelivered to another worker meanwhile
                    stamp = time.monotonic()
                    waiting = list(msgs[done:])
                    if ahead is not None and ahead.done() and not ahead.cancelled() and not ahead.exception():
                        waiting += ahead.result()
                    for rest in waiting:
                        await rest.in_progress()
        finally:
            report.items += ok
            m.items += ok
            report.redeliveries += redelivered
            m.redeliveries += redelivered
            m.batches += 1
            # stopping or cancelled: hand what we have not finished straight back to the others
            await self._give_back(msgs[done:])

    async def _failed(self, msg: Msg, deliveries: int, exc: Exception) -> bool:
        """Nak with back-off, or (last attempt) dead-letter and term. True if dead-lettered."""
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if deliveries < self._max_deliver:
            await msg.nak(delay=self.settings.nak_backoff(deliveries))
            return False
        body = dead_letter_body(msg, self.names, reason, self.worker)
        try:
            await self.js.publish(
                self.names.dead_subject(msg.subject),
                json.dumps(body).encode(),
                stream=self.names.dead_stream,
                headers={"Nats-Msg-Id": f"{self.names.dead_prefix}@{body['stream_seq']}"},
                timeout=5,
            )
        except Exception as pub_exc:  # without a dead letter, do not lose the item
            log.warning("could not dead-letter seq %s: %s", body["stream_seq"], pub_exc)
            await msg.nak(delay=self.settings.nak_backoff(deliveries))
            return False
        # +TERM with a reason (server 2.10.4+): no more redeliveries, and the reason shows up in the
        # server's MSG_TERMINATED advisory
        await msg._client.publish(msg.reply, b"+TERM " + reason.encode()[:400])
        msg._ackd = True
        return True


# ===================================================================== a demo handler for the CLI
def demo_handler(
    *,
    worker: str,
    fail_rate: float = 0.0,
    fail_match: str | None = None,
    work_ms: float = 0.0,
    processed_log: str | None = None,
    seed: int | None = None,
) -> Handler:
    """The CLI's handler: optional simulated work and failures, and a log of processed items.

    Each processed item is written to ``processed_log`` (one unbuffered line per item, at the start
    of its work and so before its ack: ``<worker> <stream seq> <deliveries> <subject>``), so a test
    can count what a killed worker did, including the item it died holding.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    rng = random.Random(seed)
    fd = os.open(processed_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if processed_log else None
    needle = fail_match.encode() if fail_match else None

    async def handle(msg: Msg) -> None:
        if needle is not None and needle in msg.data:
            raise ValueError(f"poison item (payload contains {fail_match!r})")
        if fail_rate > 0 and rng.random() < fail_rate:
            raise RuntimeError("simulated failure (--fail-rate)")
        if fd is not None:  # the side effect happens first, then the rest of the work, then the ack
            tokens = msg.reply.split(".")
            seq = tokens[5] if len(tokens) == 9 else tokens[7]
            os.write(fd, f"{worker} {seq} {deliveries_of(msg)} {msg.subject}\n".encode())
        if work_ms > 0:
            await asyncio.sleep(work_ms / 1000)

    return handle


# ===================================================================== CLI
def configure_cli(parser: argparse.ArgumentParser) -> None:
    from natsdemo.conn import add_connection_arguments

    d = DrainSettings()
    parser.add_argument("--name", default="end-of-day", help="queue name (default end-of-day): "
                        "stream NAME_QUEUE on NAME-queue.>, consumer NAME, ticks on schedule.NAME")
    parser.add_argument("--batch", type=int, default=d.batch, help=f"items per fetch (default {d.batch})")
    parser.add_argument("--ack-wait", type=float, default=d.ack_wait, help=f"seconds (default {d.ack_wait:g})")
    parser.add_argument("--max-deliver", type=int, default=d.max_deliver, help=f"default {d.max_deliver}")
    parser.add_argument("--max-ack-pending", type=int, default=d.max_ack_pending, help=f"default {d.max_ack_pending}")
    parser.add_argument("--nak-delay", type=float, default=d.nak_delay, help="first retry delay in s, doubled per try")
    parser.add_argument("--fetch-timeout", type=float, default=d.fetch_timeout, help=argparse.SUPPRESS)
    parser.add_argument("--probe-timeout", type=float, default=d.probe_timeout, help=argparse.SUPPRESS)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="demo: fail this fraction of items (0..1)")
    parser.add_argument("--fail-match", default=None, help="demo: always fail items whose payload contains TEXT")
    parser.add_argument("--work-ms", type=float, default=0.0, help="demo: simulated work per item in ms")
    parser.add_argument("--processed-log", default=None, help="append one line per processed item to FILE")
    parser.add_argument("--worker", default=None, help="worker id (default HOST-PID)")
    parser.add_argument("--tick-durable", default=None, help="durable tick consumer name (unique per worker)")
    parser.add_argument("--enqueue", type=int, default=None, metavar="N", help="publish N demo items and exit")
    parser.add_argument("--once", action="store_true", help="drain now, without waiting for a tick, and exit")
    add_connection_arguments(parser)


def _settings_from_args(args: argparse.Namespace) -> DrainSettings:
    queue_names(args.name)
    if not 0 <= args.fail_rate <= 1:
        raise UsageError("--fail-rate must be between 0 and 1 (e.g. 0.1 fails one item in ten)")
    if args.work_ms < 0:
        raise UsageError("--work-ms must be 0 or more")
    if args.enqueue is not None and args.enqueue < 0:
        raise UsageError("--enqueue must be 0 or more")
    return DrainSettings(
        batch=args.batch,
        ack_wait=args.ack_wait,
        max_deliver=args.max_deliver,
        max_ack_pending=args.max_ack_pending,
        nak_delay=args.nak_delay,
        max_nak_delay=max(args.nak_delay, min(30.0, args.nak_delay * 16)),
        fetch_timeout=args.fetch_timeout,
        probe_timeout=args.probe_timeout,
    ).validate()


async def _serve(args: argparse.Namespace, settings: DrainSettings) -> int:
    from natsdemo.cli import stop_event
    from natsdemo.conn import connect_from_args

    worker = args.worker or f"{socket.gethostname()}-{os.getpid()}"
    nc = await connect_from_args(args, f"natsdemo-drain-{worker}")  # SIGTERM still kills us while connecting
    stop = stop_event()
    js = nc.jetstream()
    try:
        names = queue_names(args.name)
        if args.enqueue is not None:
            await ensure_queue(js, args.name, settings)
            await enqueue(js, args.name, args.enqueue)
            print(f"enqueued {args.enqueue} items on {names.item_subject()}", flush=True)
            return 0
        handler = demo_handler(
            worker=worker, fail_rate=args.fail_rate, fail_match=args.fail_match,
            work_ms=args.work_ms, processed_log=args.processed_log,
        )
        drainer = Drainer(
            js, args.name, handler, settings, worker=worker, listen_for_ticks=not args.once,
            tick_durable=args.tick_durable, on_drain=lambda r: print(f"{worker}: {r.line()}", flush=True),
        )
        await drainer.start()
        if args.once:
            report = await drainer.drain_once()
            print(f"{worker}: {report.line()}", flush=True)
            await drainer.stop()
            return 0
        print(
            f"draining {names.subjects} with consumer {names.durable} on every tick of {names.tick_subject} "
            f"(worker {worker}, batch {settings.batch})",
            flush=True,
        )
        await stop.wait()
        await drainer.stop()
        m = drainer.metrics
        print(f"{worker}: stopped after {m.ticks} ticks, {m.drains} drains, {m.items} items, "
              f"{m.redeliveries} redelivered, {m.dead_lettered} dead-lettered", flush=True)
        return 0
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


def run_cli(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)  # validate before connecting
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    return asyncio.run(_serve(args, settings))


__all__ = [
    "DrainMetrics",
    "DrainReport",
    "DrainSettings",
    "Drainer",
    "QueueNames",
    "consumer_config",
    "dead_letter_body",
    "dead_letters",
    "deliveries_of",
    "demo_handler",
    "enqueue",
    "ensure_queue",
    "queue_names",
    "queue_state",
]
