"""What a worker does with an item it could not finish: settle a failure, give back what it holds.

Not taught on its own: notebook 03 runs these steps through the Drainer.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nats.aio.msg import Msg

from natsdemo.drain.deadletter import dead_letter
from natsdemo.drain.wire import QueueNames


async def settle_failure(
    js: Any, msg: Msg, names: QueueNames, worker: str, deliveries: int, max_deliver: int, nak_delay: float,
    exc: Exception,
) -> bool:
    """Nak with back-off, or (last attempt) dead-letter and term. True if dead-lettered.
    """
    reason = f"{type(exc).__name__}: {exc}"[:500]
    if deliveries >= max_deliver and await dead_letter(js, msg, names, reason, worker):
        return True
    await msg.nak(delay=nak_delay)  # also when the dead letter failed
    return False


async def give_back(msgs: list[Msg]) -> None:
    """Nak (no delay) what a worker holds but will not process, so another worker gets it now.
    """
    returned = [m for m in msgs if not m._ackd]
    with contextlib.suppress(Exception):
        for m in returned:
            await m.nak()
        if returned:
            await returned[0]._client.flush(timeout=2)
