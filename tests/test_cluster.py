"""The local 3-node cluster with mutual-TLS routes: CLI contract, R3 streams, losing one node,
losing two (a clear "unavailable", never a false acknowledgement), and recovery."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from natsdemo.cluster import LocalCluster
from natsdemo.conn import connect, default_replicas, publish_acked
from natsdemo.errors import Unavailable
from tests.conftest import ROOT, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow
LINE = re.compile(r"^(n\d) (tls://127\.0\.0\.1:\d+) pid (\d+)$")


def test_cluster_command_prints_one_line_per_node_and_stops_them_all(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "cluster", "--nodes", "3", "--certs", str(tmp_path / "certs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        matches = [LINE.match(ln) for ln in lines]
        assert all(matches), lines
        assert [m.group(1) for m in matches] == ["n1", "n2", "n3"]
        pids = [int(m.group(3)) for m in matches]
        assert all(psutil.pid_exists(p) for p in pids)
        assert (tmp_path / "certs" / "ca.pem").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
        assert not alive
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("args", "fragment"), [(["--nodes", "0"], "between 1 and 9"), (["--nodes", "x"], "invalid")])
def test_cluster_command_refuses_bad_arguments(args: list[str], fragment: str):
    assert_one_line_error(run_cli("cluster", *args), fragment)


async def test_r3_stream_survives_one_node_and_refuses_honestly_without_quorum(tmp_path: Path):
    cluster = LocalCluster(nodes=3, certs=tmp_path / "certs").start()
    nc = None
    try:
        nc = await connect(cluster.url, ca=cluster.ca, reconnect_time_wait=0.2)
        js = nc.jetstream(timeout=2)
        assert default_replicas(nc) == 3
        await js.add_stream(name="ORDERS", subjects=["orders.>"], num_replicas=3)
        acked = set()

        async def put(i: int, retry_for: float = 20.0) -> None:
            await publish_acked(js, f"orders.{i}", b"x", headers={"Nats-Msg-Id": f"order-{i}"}, retry_for=retry_for)
            acked.add(i)

        for i in range(10):
            await put(i)
        leader = (await js.stream_info("ORDERS")).cluster.leader
        cluster.kill(leader)  # the worst node to lose: the stream leader
        for i in range(10, 20):
            await put(i)  # rides out the election
        assert len(acked) == 20

        second = next(n for n in cluster.running() if n != leader)
        cluster.kill(second)
        refused = []
        for i in range(20, 23):
            try:
                await put(i, retry_for=3)
            except Unavailable as exc:
                refused.append(i)
                assert "no leader or no quorum" in str(exc)
        assert refused == [20, 21, 22], "a publish was acknowledged without a quorum"

        cluster.restart(leader)
        cluster.restart(second)
        cluster.wait_ready(timeout=60)
        for i in refused:  # the same msg ids: a copy stored before the failure is de-duplicated
            await put(i)
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 23 and len(acked) == 23
    finally:
        if nc is not None:
            await nc.close()
        cluster.stop()
