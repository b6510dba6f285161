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

from natsdemo.core.names import ack_fields
from natsdemo.core.publish import publish_acked
from natsdemo.drain.wire import DeadLetter, QueueNames, dead_msg_id, queue_names

log = logging.getLogger("natsdemo.drain.deadletter")


def deliveries_of(msg: Msg) -> int:
    """How many times this item was delivered (1 the first time), read cheaply from the ack subject.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    fields = ack_fields(msg.reply)
    return fields.delivered if fields else 1


def dead_letter_body(msg: Msg, names: QueueNames, reason: str, worker: str) -> DeadLetter:
    """The dead-letter JSON: where the item came from, why it died, and the item itself.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    meta = msg.metadata
    try:
        data, encoding = msg.data.decode(), "utf-8"
    except UnicodeDecodeError:
        data, encoding = base64.b64encode(msg.data).decode(), "base64"
    return DeadLetter(
        queue=names.name,
        stream=meta.stream,
        consumer=meta.consumer,
        subject=msg.subject,
        stream_seq=meta.sequence.stream,
        deliveries=meta.num_delivered,
        reason=reason,
        worker=worker,
        dead_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        data=data,
        data_encoding=encoding,
    )


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
        await publish_acked(
            js,
            names.dead_subject(msg.subject),
            body.to_json(),
            stream=names.dead_stream,
            headers={"Nats-Msg-Id": dead_msg_id(names, body.stream_seq)},
            timeout=5,
            retry_for=10,
        )
    except Exception as exc:  # without a dead letter, do not lose the item: the caller naks it
        log.warning("could not dead-letter seq %s: %s", body.stream_seq, exc)
        return False
    # +TERM with a reason (server 2.10.4+): no more redeliveries, and the reason shows up in the
    # server's MSG_TERMINATED advisory
    await msg._client.publish(msg.reply, b"+TERM " + reason.encode()[:400])
    msg._ackd = True
    return True


__all__ = ["dead_letter", "dead_letter_body", "dead_letters", "deliveries_of"]
