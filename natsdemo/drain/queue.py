"""A drain queue: its settings, its streams and shared consumer, and how work gets in.

:func:`ensure_queue` creates all of it idempotently; :class:`natsdemo.drain.drainer.Drainer` is the
worker. The names and bodies are :mod:`natsdemo.drain.wire`.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js import api

from natsdemo.core.errors import UsageError
from natsdemo.core.streams import create_stream_if_missing, replicas_for
from natsdemo.drain.wire import QueueNames, dead_stream_config, item_body, queue_names, work_stream_config

MAX_CONCURRENCY = 1024  # handler calls at once in one worker


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
    * ``concurrency`` (1): handler calls one worker runs at once (an async handler that waits on
      I/O: a database, an HTTP call). Each item is acked when its own handler returns, so items
      finish out of order; at-least-once is unchanged (an item whose handler finished but whose ack
      was lost comes back). It must fit in ``batch`` and in ``max_ack_pending``, and ``ack_wait``
      must be at least 1 s: held items get an "in progress" every ``ack_wait``/3, and with many
      handlers sharing one event loop a beat can be late by a good part of a second.
    * ``prefetch``: ask for the next batch while the handler runs on this one (two batches per
      worker may be out at once, which ``max_ack_pending`` must allow). Only while batches are
      quick (under :data:`natsdemo.drain.drainer.PREFETCH_BELOW` seconds): with a slow handler the round
      trip does not matter, and a prefetched batch would sit idle while other workers run dry at
      the end of the drain.

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
    concurrency: int = 1

    def validate(self) -> DrainSettings:
        checks = [
            (1 <= self.batch <= 10_000, "--batch must be between 1 and 10000"),
            (0.5 <= self.ack_wait <= 3600, "--ack-wait must be between 0.5 and 3600 seconds"),
            (self.max_deliver >= 1, "--max-deliver must be at least 1"),
            (self.max_ack_pending >= 1, "--max-ack-pending must be at least 1"),
            (0 <= self.nak_delay <= 3600 and 0 <= self.max_nak_delay <= 3600, "--nak-delay must be 0..3600 seconds"),
            (0.01 <= self.fetch_timeout <= 60, "--fetch-timeout must be between 0.01 and 60 seconds"),
            (0.01 <= self.probe_timeout <= 60, "--probe-timeout must be between 0.01 and 60 seconds"),
            (1 <= self.concurrency <= MAX_CONCURRENCY, f"--concurrency must be between 1 and {MAX_CONCURRENCY}"),
            (self.max_ack_pending >= self.concurrency,
             f"--max-ack-pending {self.max_ack_pending} is below --concurrency {self.concurrency}: the server "
             f"never lets a worker hold more than {self.max_ack_pending} items, so at most that many handlers "
             "could run"),
            (self.batch >= self.concurrency,
             f"--batch {self.batch} is below --concurrency {self.concurrency}: a worker runs the handlers of one "
             f"batch at a time, so at most {self.batch} could run; raise --batch"),
            (self.concurrency == 1 or self.ack_wait >= 1.0,
             f"--ack-wait {self.ack_wait:g} is too short for --concurrency {self.concurrency}: held items are "
             "marked in progress every ack_wait/3, and with concurrent handlers a beat can be late by most of a "
             "second (a redelivery while the item is still being worked on); use at least 1 s"),
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


async def ensure_queue(
    js: Any, name: str, settings: DrainSettings | None = None, *, replicas: int | None = None
) -> api.ConsumerInfo:
    """Create the work stream, the dead-letter stream and the durable consumer if missing.

    Idempotent: creating an identical consumer is a no-op, and a consumer whose ``ack_wait``,
    ``max_deliver`` or ``max_ack_pending`` differ is updated to ``settings`` (the last worker
    started wins, as in a rolling deploy).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    names = queue_names(name)
    settings = (settings or DrainSettings()).validate()
    replicas = replicas_for(js, replicas)  # $NATS_REPLICAS, else 3 on a cluster and 1 on a single server
    await create_stream_if_missing(js, work_stream_config(names, replicas))
    await create_stream_if_missing(js, dead_stream_config(names, replicas))
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
        pending.append(await js.publish_async(subject, item_body(i), stream=names.stream))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count


async def consumer_state(js: Any, names: QueueNames) -> tuple[int, int]:
    """(pending, ack pending) of the shared consumer; re-read briefly while only acks are in flight
    (a worker's own last acks may not have reached the server yet).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    state = (0, 0)
    for attempt in range(4):
        info = await js.consumer_info(names.stream, names.durable)
        state = (info.num_pending or 0, info.num_ack_pending or 0)
        if state == (0, 0) or state[0] > 0:
            break
        await asyncio.sleep(0.005 * (attempt + 1))
    return state


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


__all__ = [
    "DrainSettings",
    "consumer_config",
    "consumer_state",
    "enqueue",
    "ensure_queue",
    "queue_state",
]
