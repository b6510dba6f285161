"""Workshop mode against the real server it runs: one account per seat (isolated subjects and
streams, JetStream limits per seat), seat files that are all an attendee needs, seats added by a
config reload, the instructor's status, and three seats running notebooks at the same time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest

from natsdemo.core.connect import connect
from natsdemo.workbook.binary import check_config
from natsdemo.workbook.roster import read_seat_file
from tests.conftest import ROOT, assert_one_line_error, run_cli, until

pytestmark = pytest.mark.slow


seat_env = read_seat_file  # what `source seat-N.env` sets


class Workshop:
    def __init__(self, out: Path, *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "natsdemo", "workshop", "--port", "-1", "--out", str(out), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.url = self.proc.stdout.readline().strip()
        assert self.url, self.proc.stderr.read() if self.proc.poll() is not None else "no URL"

    def seat(self, n: int) -> dict[str, str]:
        return seat_env(self.out / f"seat-{n}.env")

    async def connect(self, n: int):
        env = self.seat(n)
        if env.get("NATS_CERT"):
            return await connect(env["NATS_URL"], ca=env["NATS_CA"], cert=env["NATS_CERT"], key=env["NATS_KEY"])
        return await connect(env["NATS_URL"], user=env["NATS_USER"], password=env["NATS_PASSWORD"])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


async def test_seats_are_isolated_limited_and_added_by_a_reload(tmp_path: Path):
    ws = Workshop(tmp_path / "ws", "--seats", "3")
    conns = []
    try:
        assert ws.url.startswith("nats://127.0.0.1:")
        roster = json.loads((ws.out / "roster.json").read_text())
        assert [s["account"] for s in roster["seats"]] == ["SEAT1", "SEAT2", "SEAT3"]
        for name in ("roster.json", "seat-1.env", "workshop.conf"):  # passwords: owner only
            assert stat.S_IMODE((ws.out / name).stat().st_mode) == 0o600, name
        assert check_config(ws.out / "workshop.conf")[0]
        one = ws.seat(1)
        assert one["NATS_URL"] == ws.url and one["NATS_USER"] == "seat1" and one["NATS_MONITOR_URL"] == ""
        s1, s2, s3 = conns[:] = [await ws.connect(n) for n in (1, 2, 3)]
        # the same stream name in two seats: two streams, neither sees the other's messages
        for nc, n in ((s1, 3), (s2, 1)):
            js = nc.jetstream()
            await js.add_stream(name="ORDERS", subjects=["orders.>"])
            for i in range(n):
                await js.publish("orders.new", f"{i}".encode())
        assert (await s1.jetstream().stream_info("ORDERS")).state.messages == 3
        assert (await s2.jetstream().stream_info("ORDERS")).state.messages == 1
        # a subscriber in seat 1 never receives seat 2's messages on the same subject
        sub = await s1.subscribe("orders.>")
        await s1.flush()
        await s2.publish("orders.spy", b"seat 2")
        await s2.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.5)
        # the instructor is the system account's user: it sees every seat's JetStream figures
        boss = seat_env(ws.out / "instructor.env")
        async with await connect(ws.url, user=boss["NATS_USER"], password=boss["NATS_PASSWORD"]) as sysnc:
            reply = await sysnc.request("$SYS.REQ.SERVER.PING.JSZ", json.dumps({"accounts": True}).encode(), timeout=3)
            accounts = {a["name"] for a in json.loads(reply.data)["data"]["account_details"]}
            assert {"SEAT1", "SEAT2"} <= accounts, accounts
        # a wrong password is refused
        with pytest.raises((nats.errors.Error, ConnectionError, OSError)):
            await connect(ws.url, user="seat1", password="wrong", first_connect_timeout=3, max_reconnect_attempts=0)
        # seat 3 runs into its stream limit with a clear error, while seat 1 keeps working
        js3 = s3.jetstream()
        made = 0
        with pytest.raises(nats.js.errors.APIError, match="maximum number of streams reached"):
            for i in range(100):
                await js3.add_stream(name=f"S{i}", subjects=[f"s{i}.>"])
                made += 1
        assert made == 40
        assert (await s1.jetstream().publish("orders.new", b"still fine")).seq == 4
        # more seats by a config reload: the running server, the connections and the streams stay
        added = run_cli("workshop", "--seats", "4", "--out", str(ws.out), timeout=60)
        assert added.returncode == 0, added.stderr
        assert "added seats 4-4" in added.stdout
        s4 = await ws.connect(4)
        conns.append(s4)
        await s4.jetstream().add_stream(name="ORDERS", subjects=["orders.>"])
        assert s1.is_connected and (await s1.jetstream().stream_info("ORDERS")).state.messages == 4
        status = run_cli("workshop", "status", "--out", str(ws.out), timeout=60)
        assert status.returncode == 0, status.stderr
        rows = {ln.split()[0]: ln for ln in status.stdout.splitlines()[1:]}
        assert set(rows) == {"1", "2", "3", "4"}, status.stdout
        assert "ORDERS" in rows["1"] and "yes" in rows["1"] and "S39" in rows["3"], status.stdout
        smaller = run_cli("workshop", "--seats", "2", "--out", str(ws.out), timeout=60)
        assert_one_line_error(smaller, "already runs", "with 4 seats")
    finally:
        for nc in conns:
            await nc.close()
        assert ws.stop() == 0


async def test_with_tls_the_client_certificate_is_the_seat(tmp_path: Path):
    ws = Workshop(tmp_path / "ws", "--seats", "2", "--tls")
    try:
        assert ws.url.startswith("tls://127.0.0.1:")
        two = ws.seat(2)
        assert Path(two["NATS_CERT"]).is_absolute() and two["NATS_CERT"].endswith("client-seat2.pem")
        assert two["NATS_USER"] == "" and "password" not in (ws.out / "workshop.conf").read_text().split("SEAT1")[1]
        nc = await ws.connect(2)
        try:
            reply = json.loads((await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)["data"]
            assert reply["account"] == "SEAT2" and reply["user"] == "seat2@natsdemo.test"
        finally:
            await nc.close()
        with pytest.raises((nats.errors.Error, ConnectionError, OSError)):  # no certificate, no entry
            await connect(ws.url, ca=two["NATS_CA"], first_connect_timeout=3, max_reconnect_attempts=0)
    finally:
        assert ws.stop() == 0


async def test_a_cluster_for_the_room(tmp_path: Path):
    from nats.js.api import StreamConfig

    ws = Workshop(tmp_path / "ws", "--seats", "2", "--cluster")
    conns = []
    try:
        urls = ws.url.split(",")
        assert len(urls) == 3 and all(u.startswith("tls://127.0.0.1:") for u in urls), ws.url
        one = ws.seat(1)
        assert one["NATS_CA"].endswith("/certs/ca.pem") and one["NATS_USER"] == "seat1"
        s1 = await connect(one["NATS_URL"], ca=one["NATS_CA"], user="seat1", password=one["NATS_PASSWORD"])
        conns.append(s1)
        info = await s1.jetstream().add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"], num_replicas=3))
        assert info.config.num_replicas == 3
        two = ws.seat(2)
        s2 = await connect(two["NATS_URL"], ca=two["NATS_CA"], user="seat2", password=two["NATS_PASSWORD"])
        conns.append(s2)
        with pytest.raises(nats.js.errors.NotFoundError):  # seat 2 has no such stream
            await s2.jetstream().stream_info("ORDERS")
        added = run_cli("workshop", "--seats", "3", "--out", str(ws.out), timeout=60)
        assert added.returncode == 0, added.stderr
        three = ws.seat(3)
        s3 = await connect(three["NATS_URL"], ca=three["NATS_CA"], user="seat3", password=three["NATS_PASSWORD"])
        conns.append(s3)
        assert (await s3.jetstream().add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"],
                                                             num_replicas=3))).config.num_replicas == 3
        status = run_cli("workshop", "status", "--out", str(ws.out), timeout=60)
        rows = {ln.split()[0]: ln for ln in status.stdout.splitlines()[1:]}
        assert "ORDERS" in rows["1"] and "yes (1)" in rows["2"] and "ORDERS" in rows["3"], status.stdout
    finally:
        for nc in conns:
            await nc.close()
        assert ws.stop() == 0


def test_bad_workshop_input_is_one_line(tmp_path: Path):
    assert_one_line_error(run_cli("workshop", "--seats", "0", "--out", str(tmp_path / "a")), "--seats 0")
    assert_one_line_error(run_cli("workshop", "--port", "0", "--out", str(tmp_path / "b")), "--port 0")
    assert_one_line_error(run_cli("workshop", "status", "--out", str(tmp_path / "c")), "no workshop server")


async def test_three_seats_run_notebooks_at_the_same_time_and_seat_one_runs_again(tmp_path: Path):
    ws = Workshop(tmp_path / "ws", "--seats", "3")
    try:
        def run(notebook: str, seat: int) -> subprocess.Popen[str]:
            env = {**os.environ, **ws.seat(seat), "NATSDEMO_CERTS_DIR": str(tmp_path / f"certs-{seat}"),
                   "NATSDEMO_STATE_DIR": str(tmp_path / f"state-{seat}")}
            env.pop("NATS_MONITOR_URL", None)
            return subprocess.Popen([sys.executable, "-m", "tests.nbrun", str(ROOT / "notebooks" / notebook)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)

        runs = {1: run("00_start_here.ipynb", 1), 2: run("02_cron_ticks.ipynb", 2),
                3: run("04_reservation_timeouts.ipynb", 3)}

        async def seen_while_running() -> str | None:  # the instructor's view, while the notebooks run
            out = await asyncio.to_thread(run_cli, "workshop", "status", "--out", str(ws.out), timeout=60)
            rows = {ln.split()[0]: ln for ln in out.stdout.splitlines()[1:]}
            ok = "SCHEDULE" in rows.get("2", "") and "RESERVATIONS" in rows.get("3", "")
            return out.stdout if ok and all(p.poll() is None for p in runs.values()) else None

        status = await until(seen_while_running, timeout=120, every=1.0)
        results = {seat: json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for seat, p in runs.items()}
        assert all(not errors for errors in results.values()), results
        assert status, "workshop status never showed seats 2 and 3 with their streams while they ran"
        t0 = time.monotonic()
        again = run("04_reservation_timeouts.ipynb", 1)
        out, err = again.communicate(timeout=300)
        assert json.loads(out.strip().splitlines()[-1]) == [], err[-2000:]
        assert time.monotonic() - t0 < 300
    finally:
        assert ws.stop() == 0
