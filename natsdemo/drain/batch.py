"""One batch in one worker: up to ``concurrency`` handler calls at once, each item settled by its own.

With ``concurrency`` 1 the items are handled in delivery order; above 1 an item's handler starts
when a slot is free and its ack goes out when that handler returns, so items finish out of order.
While the batch is worked on, every item still held (waiting, running, or prefetched in ``ahead``)
is marked "in progress" every ``heartbeat`` seconds (``ack_wait``/3), so a slow batch is not
redelivered to another worker meanwhile. On a stop, the items in hand finish and the rest is
handed straight back (nak without delay); if the batch is cancelled, running handlers are too.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg

from natsdemo.drain.acks import give_back


async def run_batch(msgs: list[Msg], handle: Callable[[Msg], Awaitable[None]], *, concurrency: int,
                    stopping: Callable[[], bool], heartbeat: float, ahead: asyncio.Future[Any] | None = None,
                    release: Callable[[list[Msg]], Awaitable[None]] = give_back) -> None:
    """``await handle(msg)`` for every item of ``msgs`` (which settles it), at most ``concurrency`` at once.

    What is left unsettled (a stop, a cancel, an error) goes to ``release`` (default: nak at once).
    """
    running: set[asyncio.Task[None]] = set()
    beat = asyncio.ensure_future(keep_in_progress(msgs, ahead, heartbeat))
    try:
        for msg in msgs:
            if concurrency == 1:
                if stopping():
                    break
                await handle(msg)
                continue
            while len(running) >= concurrency:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a lost connection ends the drain, like the sequential path
            if stopping():
                break
            running.add(asyncio.ensure_future(handle(msg)))
        if running:  # the items in hand finish, also when stopping
            done, running = await asyncio.wait(running)
            for task in done:
                task.result()
    finally:
        beat.cancel()
        for task in running:  # cancelled (a stop that timed out) or failed: the rest go back
            task.cancel()
        await asyncio.gather(beat, *running, return_exceptions=True)
        await release(msgs)  # what was not settled goes straight to the other workers


async def keep_in_progress(msgs: list[Msg], ahead: asyncio.Future[Any] | None, every: float) -> None:
    """Every ``every`` seconds, tell the server the unsettled items (and a prefetched batch) are being worked on."""
    while True:
        await asyncio.sleep(every)
        held = [m for m in msgs if not m._ackd]
        if ahead is not None and ahead.done() and not ahead.cancelled() and not ahead.exception():
            held += ahead.result()
        for m in held:
            with contextlib.suppress(Exception):  # settled meanwhile, or a reconnect: the next beat tries again
                await m.in_progress()


__all__ = ["keep_in_progress", "run_batch"]
