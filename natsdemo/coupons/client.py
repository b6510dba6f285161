"""Issuing, redeeming and watching coupons that expire by themselves (per-message TTL).

No timer runs anywhere in this code: the server holds each coupon's clock. :func:`issue` stores
the coupon with ``Nats-TTL``; the server removes it when the TTL runs out and leaves a subject
delete marker, which :func:`watch` reads as the expiry event. :func:`redeem` replaces the coupon
with a redemption, guarded by the coupon's sequence, so exactly one of "redeemed" and "expired"
happens: a redeem after the expiry finds the marker (or nothing) and is refused.

Writes go through :func:`~natsdemo.core.publish.publish_acked` (rides out leader elections) with
the expected-sequence guard and a random ``request`` nonce, read back after a refusal to tell our
own earlier attempt from somebody else's, as the reservation pattern does.

Defined in notebooks/06_coupons_ttl.ipynb
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import DeliverPolicy, StorageType

from natsdemo.core.errors import NatsdemoError
from natsdemo.core.names import ack_fields
from natsdemo.core.publish import CLIENT_RETRY_FOR, publish_acked, refused_by_guard
from natsdemo.core.streams import create_stream_if_missing, replicas_for
from natsdemo.coupons.wire import (
    EXPIRED,
    ISSUED,
    MARKER_TTL,
    PREFIX,
    REDEEMED,
    STREAM,
    CouponEvent,
    check_id,
    check_ttl,
    issued_body,
    parse_event,
    redeemed_body,
    stream_config,
    subject,
)

log = logging.getLogger("natsdemo.coupons")


class CouponError(NatsdemoError):
    """A coupon request the coupon's current state does not allow (the message says which state).

    Defined in notebooks/06_coupons_ttl.ipynb
    """


class UnknownCouponError(CouponError):
    """No coupon with this id (never issued, or expired longer ago than the marker lives).

    Defined in notebooks/06_coupons_ttl.ipynb
    """


class ExpiredCouponError(CouponError):
    """The coupon's TTL ran out before this redeem: the server removed it.

    Defined in notebooks/06_coupons_ttl.ipynb
    """


class AlreadyRedeemedError(CouponError):
    """The coupon was redeemed before (a coupon is single-use).

    Defined in notebooks/06_coupons_ttl.ipynb
    """


class CouponExistsError(CouponError):
    """Issuing an id whose coupon is still valid, or was redeemed.

    Defined in notebooks/06_coupons_ttl.ipynb
    """


@dataclass
class Coupon:
    """What :func:`issue` stored: the coupon's sequence, TTL and stream timestamp.

    Defined in notebooks/06_coupons_ttl.ipynb
    """

    id: str
    seq: int
    ttl: int
    ts_ns: int

    @property
    def expires_ns(self) -> int:
        """When the server will remove it: stored at + TTL (the server's clock, not ours)."""
        return self.ts_ns + self.ttl * 1_000_000_000


async def ensure_stream(js: Any, *, replicas: int | None = None, marker_ttl: float = MARKER_TTL,
                        storage: StorageType = StorageType.FILE) -> Any:
    """Create the ``COUPONS`` stream if missing (idempotent, safe to race) and return its info.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    config = stream_config(replicas=replicas_for(js, replicas), marker_ttl=marker_ttl, storage=storage)
    return await create_stream_if_missing(js, config)


async def last_event(js: Any, cid: str) -> CouponEvent | None:
    """The coupon's current state: the one message on ``coupons.<id>``, decoded; None if there is none.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    try:
        msg = await js.get_msg(STREAM, subject=subject(cid))
    except nats.js.errors.NotFoundError:
        return None
    ts_ns = _ts_ns(msg)
    try:
        return parse_event(msg.subject, msg.data or b"", msg.headers, msg.seq, ts_ns)
    except ValueError as exc:  # somebody wrote something else there: refuse, never guess
        raise CouponError(f"coupons.{cid} holds a message that is not a coupon event ({exc})") from None


def _ts_ns(msg: Any) -> int:
    """A stored message's stream timestamp in ns (the API reports microseconds)."""
    return int(msg.time.timestamp() * 1e6) * 1000 if msg.time else 0


def _refusal(cid: str, ev: CouponEvent | None, issuing: bool = False) -> CouponError:
    if issuing:
        if ev is not None and ev.kind == REDEEMED:
            return CouponExistsError(f"coupon {cid!r} was redeemed (seq {ev.seq}): coupon ids are single-use")
        if ev is None or ev.kind == EXPIRED:  # it changed between our read and our write
            return CouponError(f"coupon {cid!r} changed while it was being issued; issue it again")
    elif ev is not None and ev.kind == ISSUED:  # expired and issued again between our read and write
        return CouponError(f"coupon {cid!r} was issued again while it was being redeemed; redeem it again")
    if ev is None:
        return UnknownCouponError(f"no coupon {cid!r}: it was never issued, or expired over {MARKER_TTL} s ago")
    if ev.kind == EXPIRED:
        return ExpiredCouponError(f"coupon {cid!r} expired before this redeem arrived; the server removed it")
    if ev.kind == REDEEMED:
        return AlreadyRedeemedError(f"coupon {cid!r} was redeemed already (seq {ev.seq})")
    return CouponExistsError(f"coupon {cid!r} is already issued and still valid (seq {ev.seq})")


async def _ours(js: Any, cid: str, request: str) -> CouponEvent | None:
    with contextlib.suppress(ValueError):
        ev = await last_event(js, cid)
        if ev is not None and ev.request == request:
            return ev
    return None


async def issue(js: Any, cid: str, ttl: float, *, retry_for: float = CLIENT_RETRY_FOR) -> Coupon:
    """Store a coupon that the server removes ``ttl`` whole seconds from now.

    The id may be new, or one whose coupon expired (its marker is replaced); a valid or redeemed
    coupon with this id is refused (:class:`CouponExistsError`).

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    cid, ttl = check_id(cid), check_ttl(ttl)
    current = await last_event(js, cid)
    if current is not None and current.kind != EXPIRED:
        raise _refusal(cid, current, issuing=True)
    request = uuid.uuid4().hex
    headers = {"Nats-TTL": str(ttl), "Nats-Expected-Last-Subject-Sequence": str(current.seq if current else 0)}
    try:
        ack = await publish_acked(js, subject(cid), issued_body(cid, ttl, request), headers=headers,
                                  retry_for=retry_for, idempotent=True)
        seq = ack.seq
    except nats.js.errors.BadRequestError as exc:
        if not refused_by_guard(exc):
            raise
        mine = await _ours(js, cid, request)  # a retry after a timeout: did our first attempt land?
        if mine is None:
            raise _refusal(cid, await last_event(js, cid), issuing=True) from None
        return Coupon(cid, mine.seq, ttl, mine.ts_ns)
    try:  # the stream's timestamp, so expires_ns is the server's deadline, not our clock's
        ts_ns = _ts_ns(await js.get_msg(STREAM, seq))
    except nats.js.errors.NotFoundError:  # already redeemed (replaced) or expired: approximate
        ts_ns = time.time_ns()
    return Coupon(cid, seq, ttl, ts_ns)


async def redeem(js: Any, cid: str, *, retry_for: float = CLIENT_RETRY_FOR) -> int:
    """Redeem a valid coupon; returns the redemption's sequence.

    The redemption names the coupon's sequence (``Nats-Expected-Last-Subject-Sequence``): if the
    TTL ran out in between, the subject's last message is the delete marker (or nothing), the
    server refuses, and :class:`ExpiredCouponError` says so. Never both redeemed and expired.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    cid = check_id(cid)
    current = await last_event(js, cid)
    if current is None or current.kind != ISSUED:
        raise _refusal(cid, current)
    request = uuid.uuid4().hex
    headers = {"Nats-Expected-Last-Subject-Sequence": str(current.seq)}
    try:
        ack = await publish_acked(js, subject(cid), redeemed_body(cid, request), headers=headers,
                                  retry_for=retry_for, idempotent=True)
        return int(ack.seq)
    except nats.js.errors.BadRequestError as exc:
        if not refused_by_guard(exc):
            raise
        mine = await _ours(js, cid, request)
        if mine is not None:
            return mine.seq
        raise _refusal(cid, await last_event(js, cid)) from None


async def watch(js: Any, *, since_new: bool = True, kinds: tuple[str, ...] = (REDEEMED, EXPIRED),
                durable: str | None = None) -> AsyncIterator[CouponEvent]:
    """Yield coupon events as they happen (by default redemptions and expiries only).

    An ordered consumer from "now" (``since_new``) or from the stream's start; with ``durable``,
    a durable push consumer whose position survives restarts: each event is acknowledged when the
    caller asks for the next one, so an event whose handling crashed is delivered again.
    Messages that are not coupon events are logged and skipped.

    Defined in notebooks/06_coupons_ttl.ipynb
    """
    policy = DeliverPolicy.NEW if since_new else DeliverPolicy.ALL
    if durable:
        sub = await js.subscribe(f"{PREFIX}.>", stream=STREAM, durable=durable, deliver_policy=policy,
                                 manual_ack=True)
    else:
        sub = await js.subscribe(f"{PREFIX}.>", stream=STREAM, ordered_consumer=True, deliver_policy=policy)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.ConnectionClosedError:
                return  # the connection was closed under us (a shutdown): the watch ends
            fields = ack_fields(msg.reply)
            try:
                if fields is None:
                    raise ValueError(f"not a JetStream delivery on {msg.subject}")
                ev = parse_event(msg.subject, msg.data, msg.headers, fields.stream_seq, fields.timestamp_ns)
            except ValueError as exc:
                log.warning("skipped: %s", exc)
                ev = None
            if ev is not None and ev.kind in kinds:
                yield ev  # handled by the caller before the ack below
            if durable:
                await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
