"""Reading ticks: each tick of ``schedule.<name>`` once, through a JetStream consumer.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
from nats.js import api

from natsdemo.core.names import check_token
from natsdemo.core.streams import retrying
from natsdemo.ticks.tick import Tick, ensure_schedule_stream
from natsdemo.ticks.wire import SCHEDULE_STREAM, tick_subject, validate_name


class TickConsumer:
    """Each tick of ``schedule.<name>`` once, through a JetStream consumer (never a core subscription).

    ``durable=None``: an ordered (ephemeral) consumer that delivers only ticks published after
    :meth:`start`. With a durable name, a pull consumer remembers what was acknowledged, so ticks
    published while the process was down are delivered on restart; several processes sharing one
    durable name split the ticks between them (each tick to one of them).

    Defined in notebooks/02_cron_ticks.ipynb
    """

    def __init__(self, js: Any, name: str, *, durable: str | None = None, replicas: int | None = None) -> None:
        self.js = js
        self.name = validate_name(name)
        self.subject = tick_subject(name)
        self.durable = None if durable is None else check_token(durable, "durable name", 64, "worker-1")
        self.replicas = replicas  # of the SCHEDULE stream, if this consumer creates it
        self._sub: Any = None
        self._stopped = False

    async def start(self) -> None:
        """Ensure the stream exists, then create (or bind to) the consumer."""
        self._stopped = False
        if self._sub is not None:
            return
        await retrying("creating stream SCHEDULE", lambda: ensure_schedule_stream(self.js, replicas=self.replicas))
        # creating the consumer is a JetStream API call too: right after a leader election (or
        # with a node down) it can time out once, so it is retried like the stream
        if self.durable is None:
            self._sub = await retrying(f"creating a consumer on {self.subject}", lambda: self.js.subscribe(
                self.subject,
                stream=SCHEDULE_STREAM,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
            ))
        else:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.NEW,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=30,
            )
            durable = self.durable
            self._sub = await retrying(f"creating consumer {durable}", lambda: self.js.pull_subscribe(
                self.subject, durable=durable, stream=SCHEDULE_STREAM, config=config
            ))

    async def next(self, timeout: float) -> Tick:
        """The next tick, acknowledged on delivery (at most once for a durable consumer: a reader
        that crashes while handling it does not get it again; use :meth:`processing` for that).

        Raises the builtin ``TimeoutError`` if none arrives within ``timeout`` s.
        """
        msg = await self._next_msg(timeout)
        await self._ack(msg)
        return Tick.from_msg(msg)

    @contextlib.asynccontextmanager
    async def processing(self, timeout: float) -> AsyncIterator[Tick]:
        """The next tick, acknowledged only when the ``async with`` block finishes without an error.

        With a durable consumer this is at-least-once: if the block raises, the tick is nak'd and
        delivered again; if the process dies inside it, the tick comes back after ``ack_wait``
        (30 s). Make the handling idempotent (the tick's ``scheduled_at`` identifies the slot).
        An ordered consumer (no durable) has no acknowledgements at all.
        """
        msg = await self._next_msg(timeout)
        try:
            yield Tick.from_msg(msg)
        except BaseException:
            if self.durable is not None:
                with contextlib.suppress(Exception):
                    await msg.nak()
            raise
        await self._ack(msg)

    async def _ack(self, msg: Any) -> None:
        if self.durable is not None:  # confirmed by the server, so a restart does not replay it
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                await msg.ack_sync(timeout=2.0)

    async def _next_msg(self, timeout: float) -> Any:
        if self._sub is None:
            await self.start()
        try:
            if self.durable is None:
                return await self._sub.next_msg(timeout=timeout)
            msgs = await self._sub.fetch(1, timeout=timeout)
            if not msgs:  # nats-py sometimes returns [] instead of raising (nats.py #709)
                raise TimeoutError("fetch returned no messages")
            return msgs[0]
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise TimeoutError(f"no tick on {self.subject} within {timeout} s") from exc

    def __aiter__(self) -> TickConsumer:
        return self

    async def __anext__(self) -> Tick:
        """Wait for the next tick as long as it takes; the iteration ends when :meth:`stop` is called."""
        while not self._stopped:
            try:
                return await self.next(timeout=1.0)
            except TimeoutError:
                continue
            except nats.errors.Error:
                if not self._stopped:
                    raise
        raise StopAsyncIteration

    async def stop(self) -> None:
        """Unsubscribe (a durable consumer stays on the server, remembering its position)."""
        self._stopped = True
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def __aenter__(self) -> TickConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
