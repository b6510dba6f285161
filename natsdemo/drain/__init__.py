"""Tick-triggered draining: N workers empty one shared durable pull consumer on every tick.

Lift this folder, :mod:`natsdemo.ticks` (the ticks that trigger a drain) and :mod:`natsdemo.core`.

* :mod:`~natsdemo.drain.wire`: the contract (names, streams, the dead-letter body);
* :mod:`~natsdemo.drain.queue`: :class:`DrainSettings`, the shared consumer, :func:`enqueue`;
* :mod:`~natsdemo.drain.drainer`: :class:`Drainer`, the worker; :mod:`~natsdemo.drain.report`: its counts;
* :mod:`~natsdemo.drain.puller`: :class:`Puller`, how a worker fetches (no asyncio task per message);
* :mod:`~natsdemo.drain.deadletter`: where an item goes when its handler keeps failing;
* :mod:`~natsdemo.drain.service`: ``python -m natsdemo drain``.
"""

from natsdemo.drain.deadletter import dead_letter, dead_letter_body, dead_letters, deliveries_of
from natsdemo.drain.drainer import PREFETCH_BELOW, Drainer, Handler
from natsdemo.drain.puller import NoMessages, Puller, PullRefused
from natsdemo.drain.queue import DrainSettings, consumer_config, enqueue, ensure_queue, queue_state
from natsdemo.drain.report import Counts, DrainMetrics, DrainReport
from natsdemo.drain.wire import (
    DEAD_MAX_AGE,
    MAX_NAME,
    DeadLetter,
    QueueNames,
    dead_msg_id,
    dead_stream_config,
    item_body,
    queue_names,
    work_stream_config,
)

__all__ = [
    "DEAD_MAX_AGE", "MAX_NAME", "PREFETCH_BELOW", "Counts", "DeadLetter", "DrainMetrics", "DrainReport",
    "DrainSettings", "Drainer", "Handler", "NoMessages", "PullRefused", "Puller", "QueueNames", "consumer_config",
    "dead_letter", "dead_letter_body", "dead_letters", "dead_msg_id", "dead_stream_config", "deliveries_of",
    "enqueue", "ensure_queue", "item_body", "queue_names", "queue_state", "work_stream_config",
]
