"""Coupons that expire by per-message TTL, against a real server: expiry leaves a delete marker read
once by a consumer, a redeem before expiry wins and one after is refused (and the unguarded redeem
would let both happen), the TTL-raising trap, TTL granularity, a restart, and the CLI from outside."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from natsdemo import coupons
from natsdemo.core.errors import UsageError
from natsdemo.workbook.server import NatsServer
from tests.conftest import ROOT, assert_one_line_error, run_cli, until


@pytest.fixture
async def js(nc):
    js = nc.jetstream(timeout=5)
    await coupons.ensure_stream(js)
    return js


async def _markers(js, durable: str, wait: float) -> list:
    """Everything a durable pull consumer on coupons.> delivers within ``wait`` s, each acked."""
    psub = await js.pull_subscribe("coupons.>", durable=durable, stream=coupons.STREAM)
    got = []
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(10, timeout=0.3)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for m in msgs:
                got.append(m)
                await m.ack()
    finally:
        await psub.unsubscribe()  # else draining the connection waits for the pull subscription
    return got


async def test_an_expired_coupon_is_gone_and_its_marker_is_read_once(js):
    coupon = await coupons.issue(js, "SPRING-5", 2)
    assert (await coupons.last_event(js, "SPRING-5")).kind == coupons.ISSUED
    got = await _markers(js, "expiry-reader", 3.5)
    kinds = [(m.subject, (m.headers or {}).get(coupons.MARKER_REASON)) for m in got]
    assert kinds == [("coupons.SPRING-5", None), ("coupons.SPRING-5", "MaxAge")], kinds
    marker = got[1]
    late_ms = (marker.metadata.timestamp.timestamp() * 1e9 - coupon.expires_ns) / 1e6
    assert -50 < late_ms < 1500, late_ms  # the server's clock, within its expiry sweep
    assert (await coupons.last_event(js, "SPRING-5")).kind == coupons.EXPIRED
    # read once: acked, nothing pending or redelivered afterwards
    assert await _markers(js, "expiry-reader", 1.0) == []
    info = await js.consumer_info(coupons.STREAM, "expiry-reader")
    assert info.num_pending == 0 and info.num_ack_pending == 0 and info.num_redelivered == 0
    with pytest.raises(coupons.ExpiredCouponError, match="expired before this redeem"):
        await coupons.redeem(js, "SPRING-5")


async def test_a_redeem_before_expiry_wins_and_no_marker_follows(js):
    await coupons.issue(js, "EARLY", 2)
    seq = await coupons.redeem(js, "EARLY")
    await asyncio.sleep(2.8)
    last = await coupons.last_event(js, "EARLY")
    assert last.kind == coupons.REDEEMED and last.seq == seq  # the TTL went with the replaced coupon
    with pytest.raises(coupons.AlreadyRedeemedError):
        await coupons.redeem(js, "EARLY")
    with pytest.raises(coupons.CouponExistsError):
        await coupons.issue(js, "EARLY", 5)
    with pytest.raises(coupons.UnknownCouponError):
        await coupons.redeem(js, "NEVER-ISSUED")


async def test_the_unguarded_redeem_lets_an_expired_coupon_be_redeemed(js):
    """The bug the guard prevents: redeem = "publish coupon-redeemed" after checking, without
    Nats-Expected-Last-Subject-Sequence. Checked while valid, published after the expiry: both the
    expiry and the redemption happen. The guarded redeem, in the same race, is refused."""
    for name, guarded in (("RACE-BUGGY", False), ("RACE-GUARDED", True)):
        coupon = await coupons.issue(js, name, 1)
        assert (await coupons.last_event(js, name)).kind == coupons.ISSUED  # the check passes...
        assert await until(lambda n=name: _kind(js, n, coupons.EXPIRED), 5)  # ...the TTL runs out first
        headers = {"Nats-Expected-Last-Subject-Sequence": str(coupon.seq)} if guarded else None
        try:
            await js.publish(coupons.subject(name), coupons.wire.redeemed_body(name, "r"), headers=headers)
            stored = True
        except nats.js.errors.BadRequestError as exc:
            assert exc.err_code == 10071  # wrong last sequence: the marker landed first
            stored = False
        last = await coupons.last_event(js, name)
        if guarded:
            assert not stored and last.kind == coupons.EXPIRED  # exactly one outcome: expired
        else:
            assert stored and last.kind == coupons.REDEEMED  # redeemed although it had expired


async def test_delete_markers_with_another_per_subject_limit_raise_the_ttl(nc):
    """nats-server raises a message TTL to the marker TTL unless max_msgs_per_subject is 1
    (stream.go: "subject delete markers could be missed if one already exists")."""
    js = nc.jetstream(timeout=5)
    trap = StreamConfig(name="TRAP", subjects=["trap.>"], allow_msg_ttl=True, subject_delete_marker_ttl=60,
                        allow_rollup_hdrs=True)
    await js.add_stream(trap)
    await coupons.ensure_stream(js)
    a = await js.publish("trap.A", b"{}", headers={"Nats-TTL": "2"})
    b = await coupons.issue(js, "KEPT-TTL", 2)
    assert (await js.get_msg("TRAP", a.seq)).headers["Nats-TTL"] == "60"  # silently raised
    assert (await js.get_msg(coupons.STREAM, b.seq)).headers["Nats-TTL"] == "2"
    await asyncio.sleep(2.8)
    assert (await js.get_msg("TRAP", subject="trap.A")).seq == a.seq  # still there after its 2 s
    assert (await coupons.last_event(js, "KEPT-TTL")).kind == coupons.EXPIRED


async def test_a_stray_message_on_a_coupon_subject_is_refused_not_guessed(js):
    await js.publish("coupons.JUNK", b"not a coupon")
    for action in (lambda: coupons.redeem(js, "JUNK"), lambda: coupons.issue(js, "JUNK", 5)):
        with pytest.raises(coupons.CouponError, match="not a coupon event"):
            await action()


@pytest.mark.parametrize("bad", [1.5, 0, -1, 0.5, float("nan"), float("inf"), True, "2", coupons.MAX_TTL + 1])
def test_a_ttl_must_be_whole_seconds_from_one(bad):
    with pytest.raises(UsageError):
        coupons.check_ttl(bad)


async def test_ttl_granularity_on_the_wire(js):
    """nats-py truncates msg_ttl (1.5 -> "1", 0.5 -> "0", which the server refuses); the server
    accepts a Go duration and truncates it too: "1.5s" lives one second."""
    a = await js.publish("coupons.frac", b"{}", msg_ttl=1.5)
    assert (await js.get_msg(coupons.STREAM, a.seq)).headers["Nats-TTL"] == "1"
    with pytest.raises(nats.js.errors.BadRequestError) as info:
        await js.publish("coupons.half", b"{}", msg_ttl=0.5)
    assert info.value.err_code == 10165  # invalid per-message TTL
    b = await js.publish("coupons.go-duration", b"{}", headers={"Nats-TTL": "1.5s"})
    stored = (await js.get_msg(coupons.STREAM, b.seq)).time.timestamp()
    gone = await until(lambda: _is_marker(js, "coupons.go-duration"), 5, every=0.02)
    assert gone
    marker = await js.get_msg(coupons.STREAM, subject="coupons.go-duration")
    lived = marker.time.timestamp() - stored
    assert 0.95 < lived < 1.45, lived


async def _is_marker(js, subj: str) -> bool:
    return coupons.is_marker((await js.get_msg(coupons.STREAM, subject=subj)).headers)


async def test_a_coupon_expires_even_if_the_server_was_down_at_its_deadline(tmp_path: Path):
    """The clock lives in the server's store: nothing has to be running at the deadline."""
    srv = NatsServer(name="test-coupons-restart", store_dir=tmp_path / "store").start()
    try:
        nc = await nats.connect(srv.url)
        js = nc.jetstream(timeout=5)
        await coupons.ensure_stream(js)
        await coupons.issue(js, "DOWNTIME", 2)
        await nc.close()
        srv.stop()
        time.sleep(3)
        srv.start()
        nc = await nats.connect(srv.url)
        js = nc.jetstream(timeout=5)
        assert await until(lambda: _kind(js, "DOWNTIME", coupons.EXPIRED), 10)
        await nc.close()
    finally:
        srv.stop()


async def _kind(js, cid: str, kind: str) -> bool:
    ev = await coupons.last_event(js, cid)
    return ev is not None and ev.kind == kind


async def test_watch_skips_what_is_not_a_coupon_and_goes_on(js, caplog):
    seen: list[str] = []

    async def follow():
        async for ev in coupons.watch(js):
            seen.append(coupons.event_line(ev))

    task = asyncio.ensure_future(follow())
    await asyncio.sleep(0.3)
    await js.publish("coupons.garbage", b"\xff not json")
    await js.publish("coupons.wrong-id", b'{"type": "coupon-redeemed", "id": "other"}')
    await coupons.issue(js, "AFTER-GARBAGE", 5)
    await coupons.redeem(js, "AFTER-GARBAGE")
    assert await until(lambda: seen, 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(seen) == 1 and seen[0].startswith("redeemed AFTER-GARBAGE ")
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped:")]
    assert any("not JSON" in s for s in skipped) and any("does not match" in s for s in skipped)


def test_coupons_cli_from_outside(nats_server, tmp_path: Path):
    env = {**os.environ, "NATS_URL": nats_server.url, "PYTHONPATH": str(ROOT)}
    watch = subprocess.Popen([sys.executable, "-m", "natsdemo", "coupons", "watch"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert watch.stdout.readline().startswith("watching coupons.> for redeemed, expired")  # no stream yet
        ok = run_cli("coupons", "issue", "CLI-1", "--ttl", "30", env={"NATS_URL": nats_server.url})
        assert ok.returncode == 0 and ok.stdout.startswith("issued CLI-1 seq "), ok.stderr
        assert run_cli("coupons", "redeem", "CLI-1", env={"NATS_URL": nats_server.url}).returncode == 0
        twice = run_cli("coupons", "redeem", "CLI-1", env={"NATS_URL": nats_server.url})
        assert_one_line_error(twice, "redeemed already")
        unknown = run_cli("coupons", "redeem", "NOPE", env={"NATS_URL": nats_server.url})
        assert_one_line_error(unknown, "no coupon 'NOPE'")
        assert run_cli("coupons", "issue", "CLI-2", "--ttl", "1", env={"NATS_URL": nats_server.url}).returncode == 0
        time.sleep(1.8)
        late = run_cli("coupons", "redeem", "CLI-2", env={"NATS_URL": nats_server.url})
        assert_one_line_error(late, "expired")
        lines = [watch.stdout.readline().strip() for _ in range(2)]
        assert lines[0].startswith("redeemed CLI-1 ") and lines[1].startswith("expired CLI-2 "), lines
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(30) == 0
    finally:
        watch.kill()
        watch.wait()


@pytest.mark.parametrize(("args", "fragment"), [
    (["issue", "X", "--ttl", "1.5"], "whole-second"), (["issue", "X", "--ttl", "0"], "at least one second"),
    (["issue", "X", "--ttl", "soon"], "whole seconds"), (["issue", "a.b", "--ttl", "5"], "not subject-safe"),
    (["issue", "X"], "--ttl"), (["redeem"], "id"), (["burn", "X"], "invalid choice"),
])
def test_coupons_cli_refuses_bad_input_in_one_line(args, fragment):
    assert_one_line_error(run_cli("coupons", *args, env={"NATS_URL": "nats://127.0.0.1:1"}), fragment)


def test_bench_coupons_quick(tmp_path: Path):
    out = run_cli("bench", "coupons", "--quick", "--json", str(tmp_path / "b.json"), timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    figures = {f["name"]: f["value"] for f in json.loads((tmp_path / "b.json").read_text())["figures"]}
    assert figures["coupons held by the server"] == 2000
    assert figures["earliest expiry vs TTL"] >= 0  # the server never removed a coupon before its TTL
