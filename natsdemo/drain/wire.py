"""The drain pattern's contract in code: names, streams, the dead-letter body.

For a queue called ``NAME`` (e.g. ``end-of-day``), see :func:`queue_names`:

* work items are published on ``NAME-queue.<anything>`` and stored by stream ``NAME_QUEUE``
  (upper case, ``-`` -> ``_``), a **work-queue** stream: an acknowledged item is deleted, so the
  stream itself shows what is left;
* all workers pull from one durable pull consumer called ``NAME`` (explicit acks);
* dead letters go to ``NAME-dead.<rest of the item's subject>`` in stream ``NAME_DEAD`` (kept 30
  days), as :class:`DeadLetter` JSON with ``Nats-Msg-Id: NAME-dead@<stream seq>``;
* the ticks that start a drain arrive on ``schedule.NAME`` (:mod:`natsdemo.ticks.wire`).

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

from nats.js import api

from natsdemo.core.jsonbody import json_object
from natsdemo.core.names import check_token
from natsdemo.ticks.wire import tick_subject

MAX_NAME = 48  # leaves room for the _QUEUE / _DEAD suffixes of the stream names
DEAD_MAX_AGE = 30 * 24 * 3600.0  # seconds a dead letter is kept


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
    check_token(name, "queue name", MAX_NAME, "--name end-of-day")
    upper = name.upper().replace("-", "_")
    return QueueNames(
        name=name,
        stream=f"{upper}_QUEUE",
        prefix=f"{name}-queue",
        durable=name,
        dead_stream=f"{upper}_DEAD",
        dead_prefix=f"{name}-dead",
        tick_subject=tick_subject(name),
    )


def work_stream_config(names: QueueNames, replicas: int) -> api.StreamConfig:
    """``NAME_QUEUE`` on ``NAME-queue.>``: a work-queue stream, so an acknowledged item is deleted."""
    return api.StreamConfig(
        name=names.stream,
        subjects=[names.subjects],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
    )


def dead_stream_config(names: QueueNames, replicas: int) -> api.StreamConfig:
    """``NAME_DEAD`` on ``NAME-dead.>``: dead letters, kept :data:`DEAD_MAX_AGE` seconds."""
    return api.StreamConfig(
        name=names.dead_stream,
        subjects=[f"{names.dead_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=DEAD_MAX_AGE,
        num_replicas=replicas,
    )


def dead_msg_id(names: QueueNames, stream_seq: int) -> str:
    """``NAME-dead@<stream seq>``: a retried dead letter of the same item is stored once."""
    return f"{names.dead_prefix}@{stream_seq}"


def item_body(item_id: int) -> bytes:
    """The demo work item ``{"id": n}`` that ``--enqueue`` publishes."""
    return b'{"id": %d}' % item_id


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"dead letter: {name!r} is missing or not a string")
    return value


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"dead letter: {name!r} is missing or not an integer")
    return value


@dataclass(frozen=True)
class DeadLetter:
    """The JSON body of a dead letter: where the item came from, why it died, and the item itself.

    ``data`` is the item's payload as UTF-8 text, or base64 when it is not text
    (``data_encoding`` says which). Every field is required.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    queue: str
    stream: str
    consumer: str
    subject: str
    stream_seq: int
    deliveries: int
    reason: str
    worker: str
    dead_at: str  # RFC 3339 UTC, milliseconds
    data: str
    data_encoding: str  # "utf-8" or "base64"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        """Parse and validate; raises ``ValueError`` naming what is wrong."""
        body = json_object(data, "dead letter")
        t = functools.partial(_text, body)
        return cls(
            queue=t("queue"), stream=t("stream"), consumer=t("consumer"), subject=t("subject"),
            stream_seq=_int(body, "stream_seq"), deliveries=_int(body, "deliveries"), reason=t("reason"),
            worker=t("worker"), dead_at=t("dead_at"), data=t("data"), data_encoding=t("data_encoding"),
        )
