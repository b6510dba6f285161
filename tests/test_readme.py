"""The README's contract tables and the code's wire modules say the same thing.

Each pattern's ``wire.py`` is its contract in code; these tests read the README's tables and
compare every name, subject, header, msg id and JSON field list with what the code produces.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from natsdemo import drain, reservations, ticks, tls
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"### {title}")
    end = README.find("\n### ", start + 1)
    return README[start : end if end > 0 else None]


def _row(section: str, key: str) -> str:
    m = re.search(rf"^\| {re.escape(key)} \| (.+) \|$", section, re.M)
    assert m, f"no row {key!r} in the README table"
    return m.group(1)


def _fields(text: str) -> list[str]:
    """``{"a", "b": "x", "c"}`` -> ["a", "b", "c"] (the first brace group of a README cell)."""
    group = re.search(r"\{([^}]*)\}", text)
    assert group, text
    return [re.match(r'\s*"(\w+)"', piece).group(1) for piece in group.group(1).split(",")]  # type: ignore[union-attr]


def _keys(payload: bytes) -> list[str]:
    return list(json.loads(payload))


# ---------------------------------------------------------------- TLS
def test_tls_file_names():
    section = _section("TLS with a self-signed CA")
    listed = re.search(r"Writes (.+?) \(add users", section)
    assert listed
    assert re.findall(r"`([\w.-]+\.pem)`", listed.group(1)) == tls.standard_files()
    assert f"`<user>@{tls.EMAIL_DOMAIN}`" in section
    assert f"`--days` ({tls.DEFAULT_DAYS} by default)" in section


# ---------------------------------------------------------------- ticks
def test_tick_contract():
    section = _section("Cron ticks")
    stream = _row(section, "stream")
    assert stream.startswith(f"`{ticks.SCHEDULE_STREAM}` on `{ticks.SUBJECT_PREFIX}>`")
    assert f"{ticks.DUPLICATE_WINDOW / 60:g}-minute duplicate window" in stream
    assert f"`{ticks.SUBJECT_PREFIX}<name>`" in _row(section, "subject")
    example = re.search(r"e\.g\. `([^`]+)`", _row(section, "msg id"))
    assert example
    slot = datetime(2026, 11, 27, 19, 0, tzinfo=UTC)
    assert example.group(1) == ticks.tick_msg_id("end-of-day", slot)
    body = ticks.TickBody("end-of-day", "0 0 20 * * *", "Europe/Berlin", slot, slot).to_json()
    assert _fields(_row(section, "body")) == _keys(body)
    server = _row(section, "server-side")
    assert f"`{ticks.SERVER_SCHEDULE_PREFIX}<name>`" in server
    assert _fields(server) == _keys(ticks.ServerTickBody("n", "* * * * * *", "UTC").to_json())


# ---------------------------------------------------------------- drain
def test_drain_contract():
    section = _section("Tick-triggered draining")
    names = drain.queue_names("end-of-day")
    settings = drain.DrainSettings()
    work = _row(section, "work stream")
    assert work.startswith(f"`{names.stream}` on `{names.subjects}`")
    assert f"on `{names.item_subject()}`" in work and json.loads(drain.item_body(7)) == {"id": 7}
    consumer = _row(section, "consumer")
    assert f"`{names.durable}`" in consumer
    assert (f"ack_wait {settings.ack_wait:g} s, max_deliver {settings.max_deliver}, "
            f"max_ack_pending {settings.max_ack_pending}") in consumer
    assert f"`{names.tick_subject}`" in _row(section, "ticks")
    failures = _row(section, "failures")
    assert f"`{names.dead_stream}`" in failures and f"`{names.dead_prefix}.<rest of subject>`" in failures
    assert f"`Nats-Msg-Id: {drain.dead_msg_id(names, 0).replace('@0', '@<stream seq>')}`" in failures
    assert _fields(failures) == [f.name for f in drain.DeadLetter.__dataclass_fields__.values()]


# ---------------------------------------------------------------- reservations
def test_reservation_contract():
    section = _section("Reservation timeouts")
    r = reservations
    stream = _row(section, "stream")
    assert stream.startswith(f"`{r.STREAM}` on `{r.EVENTS}.>` and `{r.SCHEDULES}.>`")
    assert f"events kept {r.RETENTION_DAYS} days, at most {r.MAX_PER_SUBJECT} messages per subject" in stream
    cfg = r.stream_config()
    assert cfg.max_age == r.RETENTION_DAYS * 86400 and cfg.max_msgs_per_subject == r.MAX_PER_SUBJECT
    assert f"`{r.subject('<id>')}`" in _row(section, "subject")
    reserve = _row(section, "reserve")
    assert _fields(reserve) == _keys(r.reserved_body("x", 5, server_side=False, request="n"))
    assert f'"type": "{r.RESERVED}"' in reserve and "`Nats-Expected-Last-Subject-Sequence: 0`" in reserve
    purchase = _row(section, "purchase")
    assert _fields(purchase) == _keys(r.purchased_body("x", request="n"))
    assert f"`Nats-Scheduler: {r.schedule_subject('<id>')}`" in purchase
    timeout = _row(section, "timeout")
    assert _fields(timeout) == _keys(r.timeout_body("x", 0, "me"))
    headers = r.timeout_headers("<id>", 0)
    assert f"`Nats-Msg-Id: {headers['Nats-Msg-Id']}`" in timeout
    assert "`Nats-Expected-Last-Subject-Sequence: <reservation seq>`" in timeout
    assert f"`Nats-Schedule-Target: {r.subject('<id>')}`" in _row(section, "server-side timer")
    from natsdemo.reservations import snapshot as snap
    assert _row(section, "snapshots").startswith(f"`{snap.SNAPSHOT_STREAM}` on `{snap.SNAPSHOTS}.>`")
    assert snap.snapshot_stream_config().subjects == [f"{snap.SNAPSHOTS}.>"]
    chunk = _row(section, "snapshot chunk")
    assert _fields(chunk) == _keys(snap.chunk_body(0, [("x", 1, 2.0)]))
    assert f'"type": "{snap.CHUNK_TYPE}"' in chunk and f"at most {snap.CHUNK_ENTRIES:,} per message" in chunk
    assert f"`{snap.chunk_subject('writer', 7).rsplit('.', 2)[0]}.<writer>.<S>`" in chunk
    head = _row(section, "snapshot head")
    assert _fields(head) == _keys(snap.head_body(covers=1, stream_created="", chunks=0, entries=0, subject="", by=""))
    assert f'"type": "{snap.HEAD_TYPE}"' in head and f"`{snap.HEAD}`" in head


@pytest.mark.parametrize("broken", ['{"type": "tickets-reserved", "id", "timeout"}'])
def test_the_field_comparison_can_fail(broken: str):
    """A README row that drops a field no longer matches the code."""
    assert _fields(broken) != _keys(reservations.reserved_body("x", 5, server_side=False, request="n"))


# ---------------------------------------------------------------- coupons
def test_coupon_contract():
    from natsdemo import coupons

    section = _section("Coupons that expire by themselves")
    cfg = coupons.stream_config()
    stream = _row(section, "stream")
    assert stream.startswith(f"`{coupons.STREAM}` on `{cfg.subjects[0]}`")
    assert f"markers kept {coupons.MARKER_TTL} s" in stream
    assert f"{cfg.max_msgs_per_subject} message per subject" in stream
    assert cfg.allow_msg_ttl and cfg.subject_delete_marker_ttl == coupons.MARKER_TTL
    assert f"`{coupons.PREFIX}.<id>`" in _row(section, "subject")
    issued = _row(section, "issued")
    assert _fields(issued) == _keys(coupons.wire.issued_body("X", 5, "r"))
    assert f"(1 to {coupons.MAX_TTL})" in issued
    assert _fields(_row(section, "redeemed")) == _keys(coupons.wire.redeemed_body("X", "r"))
    assert f"`{coupons.MARKER_REASON}: {coupons.MAX_AGE}`" in _row(section, "expired")
