"""Coupons that expire by themselves: per-message TTL (``Nats-TTL``) and subject delete markers.

Lift this folder and :mod:`natsdemo.core`; nothing here needs Jupyter or a local nats-server.

* :mod:`~natsdemo.coupons.wire`: the contract (stream, subjects, headers, bodies, the TTL rules);
* :mod:`~natsdemo.coupons.client`: :func:`issue`, :func:`redeem`, :func:`watch`, :func:`last_event`;
* :mod:`~natsdemo.coupons.service`: ``python -m natsdemo coupons issue|redeem|watch``.

Unlike the reservation pattern, no process keeps a timer: nats-server removes each coupon when its
TTL runs out and leaves a delete marker that a consumer reads as the expiry.
"""

from natsdemo.coupons.client import (
    AlreadyRedeemedError,
    Coupon,
    CouponError,
    CouponExistsError,
    ExpiredCouponError,
    UnknownCouponError,
    ensure_stream,
    issue,
    last_event,
    redeem,
    watch,
)
from natsdemo.coupons.wire import (
    EXPIRED,
    ISSUED,
    MARKER_REASON,
    MARKER_TTL,
    MAX_AGE,
    MAX_TTL,
    PREFIX,
    REDEEMED,
    STREAM,
    CouponEvent,
    check_id,
    check_ttl,
    event_line,
    is_marker,
    parse_event,
    stream_config,
    subject,
)

__all__ = [
    "EXPIRED", "ISSUED", "MARKER_REASON", "MARKER_TTL", "MAX_AGE", "MAX_TTL", "PREFIX", "REDEEMED", "STREAM",
    "AlreadyRedeemedError", "Coupon", "CouponError", "CouponEvent", "CouponExistsError", "ExpiredCouponError",
    "UnknownCouponError", "check_id", "check_ttl", "ensure_stream", "event_line", "is_marker", "issue",
    "last_event", "parse_event", "redeem", "stream_config", "subject", "watch",
]
