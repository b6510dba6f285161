"""The coupon pattern's contract in code: stream, subjects, headers and bodies.

Stream ``COUPONS`` on ``coupons.>`` (file storage, per-message TTL allowed, subject delete
markers on, ``max_msgs_per_subject=1``); one subject per coupon, ``coupons.<id>`` with ``<id>``
matching ``[A-Za-z0-9_-]{1,64}``. The subject's one message is the coupon's state:

* ``{"type": "coupon-issued", "id", "ttl", "request"}`` with ``Nats-TTL: <whole seconds>``:
  the server removes it ``ttl`` seconds after it was stored;
* then either ``{"type": "coupon-redeemed", "id", "request"}`` (no TTL: a redeemed id stays
  redeemed), published with ``Nats-Expected-Last-Subject-Sequence: <coupon seq>`` so it lands only
  while the coupon is still there, and replacing it (one message per subject);
* or, when the TTL ran out first, the server's *subject delete marker*: an empty message with
  ``Nats-Marker-Reason: MaxAge``, which itself lives :data:`MARKER_TTL` seconds.

``max_msgs_per_subject=1`` is not only tidiness: with delete markers on and any other per-subject
limit, nats-server raises every message TTL to at least the marker TTL (measured in the tests).

:func:`parse_event` is the one reader: the watcher, the notebook and the benchmark use it.

Defined in notebooks/06_coupons_ttl.ipynb
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from nats.js.api import StorageType, StreamConfig

from natsdemo.core.cron import rfc3339
from natsdemo.core.errors import UsageError
from natsdemo.core.jsonbody import json_object
from natsdemo.core.names import check_token, is_token

STREAM = "COUPONS"
PREFIX = "coupons"
ISSUED, REDEEMED, EXPIRED = "coupon-issued", "coupon-redeemed", "coupon-expired"
MARKER_REASON = "Nats-Marker-Reason"  # header on a subject delete marker
MAX_AGE = "MaxAge"  # its value when a TTL (or max_age) removed the subject's last message
MARKER_TTL = 3600  # seconds a marker stays: a late redeem within it says "expired", not "unknown"
MAX_TTL = 366 * 86400  # a coupon lives at most a year (a typo of 10**9 is refused, not stored)


def subject(cid: str) -> str:
    """``coupons.<id>``, after checking the id.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    return f"{PREFIX}.{check_id(cid)}"


def check_id(cid: object) -> str:
    """Return ``cid`` if it is a valid coupon id (one subject token), else raise :class:`UsageError`.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    return check_token(cid, "coupon id", 64, "WELCOME-10")


def check_ttl(ttl: object) -> int:
    """A coupon TTL as whole seconds, 1 to :data:`MAX_TTL`; anything else is a :class:`UsageError`.

    ``Nats-TTL`` has whole-second granularity and a minimum of one second. nats-py's
    ``js.publish(msg_ttl=1.5)`` silently sends ``1`` (it truncates), and ``msg_ttl=0.5`` sends
    ``0``; refusing fractions here makes the coupon live exactly as long as it says.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise UsageError(f"--ttl {ttl!r}: give whole seconds, e.g. --ttl 30")
    if ttl != int(ttl):
        raise UsageError(f"--ttl {ttl!r}: a message TTL has whole-second granularity; give {math.ceil(ttl)} or more")
    if not 1 <= ttl <= MAX_TTL:
        raise UsageError(f"--ttl {ttl!r}: give 1 to {MAX_TTL} seconds (a TTL is at least one second)")
    return int(ttl)


def stream_config(*, replicas: int = 1, marker_ttl: float = MARKER_TTL,
                  storage: StorageType = StorageType.FILE) -> StreamConfig:
    """The ``COUPONS`` stream: TTLs allowed, delete markers on, one message per coupon subject.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    return StreamConfig(
        name=STREAM,
        subjects=[f"{PREFIX}.>"],
        storage=storage,
        num_replicas=replicas,
        allow_msg_ttl=True,
        subject_delete_marker_ttl=marker_ttl,
        max_msgs_per_subject=1,  # also keeps each coupon's own TTL (see the module docstring)
        allow_rollup_hdrs=True,  # nats-server requires roll-ups for delete markers
        deny_purge=False,
    )


def issued_body(cid: str, ttl: int, request: str) -> bytes:
    """Defined in notebooks/06_coupons_ttl.ipynb"""
    return json.dumps({"type": ISSUED, "id": cid, "ttl": ttl, "request": request}).encode()


def redeemed_body(cid: str, request: str) -> bytes:
    """Defined in notebooks/06_coupons_ttl.ipynb"""
    return json.dumps({"type": REDEEMED, "id": cid, "request": request}).encode()


@dataclass
class CouponEvent:
    """One decoded message of ``coupons.<id>``: ``kind`` is issued, redeemed or expired.

    Defined in notebooks/06_coupons_ttl.ipynb
    """

    kind: str
    id: str
    seq: int
    ts_ns: int
    ttl: int | None = None  # issued only
    request: str | None = None


def is_marker(headers: dict[str, str] | None) -> bool:
    """True for a subject delete marker left by an expiry (``Nats-Marker-Reason: MaxAge``).

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    return bool(headers) and headers.get(MARKER_REASON) == MAX_AGE  # type: ignore[union-attr]


def parse_event(subj: str, data: bytes, headers: dict[str, str] | None, seq: int, ts_ns: int) -> CouponEvent:
    """Validate one message of the stream; ``ValueError`` with the reason for anything else.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    head, _, cid = subj.partition(".")
    if head != PREFIX or not is_token(cid):
        raise ValueError(f"{subj!r} is not coupons.<id>")
    if is_marker(headers):
        return CouponEvent(EXPIRED, cid, seq, ts_ns)
    body: dict[str, Any] = json_object(data, f"message {seq} on {subj}")
    kind = body.get("type")
    if body.get("id") != cid:
        raise ValueError(f"message {seq} on {subj}: its id {body.get('id')!r} does not match the subject")
    if kind == ISSUED:
        ttl = body.get("ttl")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"message {seq} on {subj}: ttl {ttl!r} is not whole seconds")
        return CouponEvent(ISSUED, cid, seq, ts_ns, ttl, body.get("request"))
    if kind == REDEEMED:
        return CouponEvent(REDEEMED, cid, seq, ts_ns, None, body.get("request"))
    raise ValueError(f"message {seq} on {subj}: unknown type {kind!r}")


def event_line(ev: CouponEvent) -> str:
    """What ``coupons watch`` prints: ``<redeemed|expired|issued> <id> <UTC time> seq <N>``.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    when = dt.datetime.fromtimestamp(ev.ts_ns // 1000 / 1e6, dt.UTC)
    return f"{ev.kind.removeprefix('coupon-')} {ev.id} {rfc3339(when)} seq {ev.seq}"
