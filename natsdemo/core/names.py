"""Names that become one subject token: a schedule, a queue, a reservation id, a durable.

NATS splits subjects on ``.`` and gives ``*`` and ``>`` a meaning, and a space ends a subject in the
protocol, so a name that lands inside a subject is checked before it is used: letters, digits,
``-`` and ``_`` only (ASCII), never empty, and short enough for the stream and consumer names
derived from it. :func:`ack_fields` reads the other direction: what a JetStream delivery's reply
subject says about the message.

Not taught on its own: every pattern's wire module uses it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from natsdemo.core.errors import UsageError

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def is_token(value: object, max_len: int = 64) -> bool:
    """True if ``value`` is a string of 1 to ``max_len`` letters, digits, ``-`` or ``_``.
    """
    return isinstance(value, str) and len(value) <= max_len and _TOKEN.fullmatch(value) is not None


def check_token(value: object, what: str, max_len: int = 64, example: str = "end-of-day") -> str:
    """Return ``value`` if it is one subject token (:func:`is_token`), else raise :class:`UsageError`.

    ``what`` names the value in the message (``"queue name"``, ``"--name"``), ``example`` shows a
    good one: ``check_token("a.b", "queue name", 48, "--name end-of-day")`` raises
    ``queue name 'a.b' is not subject-safe: use 1-48 letters, digits, '-' or '_' ...``.
    """
    if not is_token(value, max_len):
        raise UsageError(
            f"{what} {value!r} is not subject-safe: use 1-{max_len} letters, digits, '-' or '_' "
            f"(no dots, spaces or wildcards), e.g. {example}"
        )
    return value  # type: ignore[return-value]


class AckFields(NamedTuple):
    """The numbers in a JetStream delivery's reply (ack) subject."""

    delivered: int  # 1 the first time, more on redelivery
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int  # when the stream stored the message
    pending: int  # messages left for this consumer after this one


def ack_fields(reply: str | None) -> AckFields | None:
    """Parse ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (or the newer
    form with domain and account hash after ``$JS.ACK``); None for a message that is no delivery.

    Cheaper than nats-py's ``msg.metadata`` in the hot loops that only need a number or two.
    """
    tokens = (reply or "").split(".")
    if len(tokens) == 9:
        base = 4
    elif len(tokens) >= 11 and tokens[:2] == ["$JS", "ACK"]:
        base = 6
    else:
        return None
    return AckFields(*(int(t) for t in tokens[base : base + 5]))


__all__ = ["AckFields", "ack_fields", "check_token", "is_token"]
