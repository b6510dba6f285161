"""Tick-triggered draining: work piles up all day, and every tick empties the queue.

The worker, :class:`Drainer`, reads every tick of ``schedule.NAME`` once through a JetStream
consumer (:class:`natsdemo.ticks.consumer.TickConsumer`), never a core subscription, and then pulls
batches from the queue's shared durable consumer until the consumer's own counters say it is
empty. Failures are nak'd with back-off; after ``max_deliver`` attempts an item is dead-lettered
and terminated (:mod:`natsdemo.drain.deadletter`).

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg

from natsdemo.core.errors import UsageError
from natsdemo.core.streams import retrying
from natsdemo.drain.acks import give_back, settle_failure
from natsdemo.drain.batch import run_batch
from natsdemo.drain.deadletter import dead_letter_exhausted, deliveries_of, max_deliveries_subject
from natsdemo.drain.puller import Puller
from natsdemo.drain.queue import DrainSettings, consumer_state, ensure_queue
from natsdemo.drain.report import Counts, DrainMetrics, DrainReport
from natsdemo.drain.wire import queue_names
from natsdemo.ticks.consumer import TickConsumer

log = logging.getLogger("natsdemo.drain")

Handler = Callable[[Msg], Awaitable[None] | None]
PREFETCH_BELOW = 0.25  # seconds: prefetch the next batch only while a batch takes less than this


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
        replicas: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.js = js
        self.names = queue_names(name)
        self.handler = handler
        settings = settings or DrainSettings()
        if concurrency is not None:
            settings = dataclasses.replace(settings, concurrency=concurrency)
        self.settings = settings.validate()
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.listen_for_ticks = listen_for_ticks
        self.tick_durable = tick_durable
        self.on_drain = on_drain
        self.replicas = replicas  # of the streams this worker creates when they are missing
        self.metrics = DrainMetrics()
        self.draining = False
        self._puller: Puller | None = None
        self._ticks: Any = None
        self._wanted = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._max_deliver = self.settings.max_deliver
        self._is_async = inspect.iscoroutinefunction(handler)
        if self.settings.concurrency > 1 and not self._is_async:
            raise UsageError(
                f"concurrency {self.settings.concurrency} needs an async handler (`async def`): a plain function "
                "blocks the event loop, so its calls can only run one at a time"
            )
        self._lock = asyncio.Lock()
        self._advisories: Any = None

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> Drainer:
        """Create what is missing (streams, consumer, ``SCHEDULE``), bind, and wait for ticks."""
        info = await retrying(  # a cluster may still be electing leaders
            f"creating queue {self.names.name}",
            lambda: ensure_queue(self.js, self.names.name, self.settings, replicas=self.replicas),
        )
        self._max_deliver = info.config.max_deliver or self.settings.max_deliver
        # batches without a task per message (nats-py's fetch starts tasks for each: puller.py)
        self._puller = await Puller(self.js, self.names.stream, self.names.durable).start()
        # items the server gave up on (every delivery unanswered) still reach the dead letters
        self._advisories = await self.js._nc.subscribe(max_deliveries_subject(self.names), cb=self._on_exhausted)
        if self.listen_for_ticks:
            self._ticks = TickConsumer(self.js, self.names.name, durable=self.tick_durable, replicas=self.replicas)
            await self._ticks.start()
            self._tasks.append(asyncio.ensure_future(self._tick_loop()))
        self._tasks.append(asyncio.ensure_future(self._drain_loop()))
        return self

    async def _on_exhausted(self, msg: Msg) -> None:
        try:
            if await dead_letter_exhausted(self.js, self.names, json.loads(msg.data), self.worker):
                self.metrics.dead_lettered += 1
        except Exception as exc:  # the item stays in the stream; the next advisory or a replay tries again
            log.warning("could not dead-letter an exhausted item: %r", exc)

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
        if self._advisories is not None:
            with contextlib.suppress(Exception):
                await self._advisories.unsubscribe()
            self._advisories = None
        if self._ticks is not None:
            await self._ticks.stop()
        if self._puller is not None:
            held: list[Msg] = []
            with contextlib.suppress(Exception):
                held = await self._puller.stop()
            await give_back(held)  # answered to a fetch after it ended: the other workers get them now
            self._puller = None

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
        if self._puller is None:
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
                        msgs = await self._puller.fetch(s.batch, timeout=timeout)
                except TimeoutError:
                    # "nothing for me right now" (never an empty list: puller.py); the consumer's
                    # counters say why
                    ahead = None
                    await self._puller.quiesce()  # a request answered late is ours to process
                    if self._puller.holding:
                        continue
                    state = await consumer_state(self.js, self.names)
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
                # a fetch returns as soon as anything is there, so from now on a short probe is
                # enough; a false "empty" costs one consumer_info, never a missed item
                timeout = s.probe_timeout
                if s.prefetch and busy < PREFETCH_BELOW:
                    ahead = asyncio.ensure_future(self._puller.fetch(s.batch, timeout=timeout))
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
                await self._release(extra)
            self.draining = False
            report.duration = time.monotonic() - t0
            self.metrics.add(report)
        return report

    async def _process(self, msgs: list[Msg], report: DrainReport, ahead: asyncio.Future[Any] | None) -> None:
        batch = Counts(batches=1)  # added to the drain's report and the worker's metrics at the end
        try:
            await run_batch(msgs, lambda msg: self._handle(msg, batch), concurrency=self.settings.concurrency,
                            stopping=lambda: self._stopping, heartbeat=self.settings.ack_wait / 3, ahead=ahead,
                            release=self._release)
        finally:
            report.count(batch)
            self.metrics.count(batch)

    async def _release(self, msgs: list[Msg]) -> None:
        """Hand unsettled items back once no pull request of ours is open (else they come back here)."""
        if self._puller is not None and any(not m._ackd for m in msgs):
            await self._puller.quiesce()
        await give_back(msgs)

    async def _handle(self, msg: Msg, batch: Counts) -> None:
        n = deliveries_of(msg)
        if n > 1:
            batch.redeliveries += 1
        try:
            result = self.handler(msg)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception as exc:  # a failing item must not stop the drain
            batch.failures += 1
            if await settle_failure(self.js, msg, self.names, self.worker, n, self._max_deliver,
                                    self.settings.nak_backoff(n), exc):
                batch.dead_lettered += 1
        else:
            await msg.ack()
            batch.items += 1


__all__ = ["PREFETCH_BELOW", "Drainer", "Handler"]
