"""Dead letters: where an item goes when its handler keeps failing.

After ``max_deliver`` attempts the :class:`natsdemo.drain.drainer.Drainer` calls :func:`dead_letter`:
the item is published to ``NAME-dead.<rest of its subject>`` (stream ``NAME_DEAD``, kept 30 days)
as :class:`~natsdemo.drain.wire.DeadLetter` JSON, with ``Nats-Msg-Id: NAME-dead@<stream seq>`` so a
retried publish is stored once, and then terminated (``+TERM <reason>``) so the server stops
redelivering it.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import base64
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.aio.msg import Msg

from natsdemo.core.publish import publish_acked
from natsdemo.drain.wire import DeadLetter, QueueNames, dead_msg_id, queue_names

log = logging.getLogger("natsdemo.drain.deadletter")


def deliveries_of(msg: Msg) -> int:
    """How many times this item was delivered (1 the first time), read cheaply from the ack subject.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    tokens = (msg.reply or "").split(".")  # the one field, without building all of ack_fields (a hot loop)
    if len(tokens) == 9:
        return int(tokens[4])
    if len(tokens) >= 11 and tokens[0] == "$JS":
        return int(tokens[6])
    return 1


def dead_letter_body(msg: Msg, names: QueueNames, reason: str, worker: str) -> DeadLetter:
    """The dead-letter JSON: where the item came from, why it died, and the item itself.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    meta = msg.metadata
    return _body(names, msg.subject, msg.data, meta.sequence.stream, meta.num_delivered, reason, worker)


def _body(names: QueueNames, subject: str, payload: bytes, seq: int, deliveries: int, reason: str, worker: str
          ) -> DeadLetter:
    try:
        data, encoding = payload.decode(), "utf-8"
    except UnicodeDecodeError:
        data, encoding = base64.b64encode(payload).decode(), "base64"
    return DeadLetter(
        queue=names.name,
        stream=names.stream,
        consumer=names.durable,
        subject=subject,
        stream_seq=seq,
        deliveries=deliveries,
        reason=reason,
        worker=worker,
        dead_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        data=data,
        data_encoding=encoding,
    )


async def _publish(js: Any, names: QueueNames, body: DeadLetter) -> None:
    await publish_acked(
        js,
        names.dead_subject(body.subject),
        body.to_json(),
        stream=names.dead_stream,
        headers={"Nats-Msg-Id": dead_msg_id(names, body.stream_seq)},  # a retry, or a second worker: one copy
        timeout=5,
        retry_for=10,
    )


def max_deliveries_subject(names: QueueNames) -> str:
    """Where the server announces an item it stopped delivering (``max_deliver`` reached, never acked)."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{names.stream}.{names.durable}"


async def dead_letter_exhausted(js: Any, names: QueueNames, advisory: dict[str, Any], worker: str) -> bool:
    """Dead-letter an item the server gave up on (its ``MAX_DELIVERIES`` advisory), then delete it.

    That happens when no worker ever answered it (each one crashed, or ran past ``ack_wait``), or
    when the dead letter of its last attempt could not be published. Every worker receives the
    advisory; the msg id stores one dead letter, and the item is deleted from the work stream
    once its dead letter is stored. False if the item is gone already (acknowledged, or handled
    by another worker).

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    seq = int(advisory["stream_seq"])
    try:
        raw = await js.get_msg(names.stream, seq)
    except nats.js.errors.NotFoundError:
        return False
    deliveries = int(advisory.get("deliveries") or 0)
    reason = (f"max_deliver reached after {deliveries} deliveries without an answer "
              "(the worker crashed or ran past ack_wait each time)")
    await _publish(js, names, _body(names, raw.subject, raw.data or b"", seq, deliveries, reason, worker))
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_msg(names.stream, seq)
    log.warning("dead-lettered seq %d of %s: %s", seq, names.stream, reason)
    return True


async def dead_letters(js: Any, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The dead letters stored so far (oldest first), as dicts; one that breaks the contract is logged and left out.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    names = queue_names(name)
    info = await js.stream_info(names.dead_stream)
    out: list[dict[str, Any]] = []
    if info.state.messages == 0:  # an empty stream reports sequence 0, which get_msg refuses
        return out
    first = max(1, info.state.first_seq)
    for seq in range(first, min(info.state.last_seq, first + limit - 1) + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            raw = await js.get_msg(names.dead_stream, seq)
            try:
                out.append(DeadLetter.from_json(raw.data or b"").to_dict())
            except ValueError as exc:
                log.warning("skipping seq %d of %s: %s", seq, names.dead_stream, exc)
    return out


async def dead_letter(js: Any, msg: Msg, names: QueueNames, reason: str, worker: str) -> bool:
    """Publish ``msg`` as a dead letter, then terminate it; False (and nothing terminated) if the publish failed.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    body = dead_letter_body(msg, names, reason, worker)
    try:
        await _publish(js, names, body)
    except Exception as exc:  # not lost: the caller naks it, and the server's MAX_DELIVERIES advisory
        log.warning("could not dead-letter seq %s yet (%s): it comes back as an advisory", body.stream_seq, exc)
        return False
    # +TERM with a reason (server 2.10.4+): no more redeliveries, and the reason shows up in the
    # server's MSG_TERMINATED advisory
    await msg._client.publish(msg.reply, b"+TERM " + reason.encode()[:400])
    msg._ackd = True
    return True


__all__ = [
    "dead_letter", "dead_letter_body", "dead_letter_exhausted", "dead_letters", "deliveries_of",
    "max_deliveries_subject",
]
