"""Replicas are chosen explicitly: 3 on a cluster (the connected server's own INFO says it is one),
1 on a single server, `--replicas N` / `NATS_REPLICAS` otherwise; never silently fewer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from natsdemo.core.connect import connect
from natsdemo.core.errors import ReplicasError
from natsdemo.core.streams import create_stream_if_missing, default_replicas
from natsdemo.drain import queue_names
from natsdemo.reservations import STREAM as RESERVATIONS
from natsdemo.ticks import SCHEDULE_STREAM, schedule_stream_config
from natsdemo.workbook.cluster import LocalCluster
from natsdemo.workbook.services import ServiceProcess, stop_all
from tests.conftest import assert_one_line_error, run_cli

SERVICES = {  # name -> (args, ready line, streams it creates)
    "tick": (["tick", "--cron", "* * * * * *", "--name", "rep"], r"^ticking", [SCHEDULE_STREAM]),
    "drain": (["drain", "--name", "rep"], r"^draining", [queue_names("rep").stream, queue_names("rep").dead_stream]),
    "reservations": (["reservations", "--name", "rep1"], r" watching ", [RESERVATIONS]),
}


def test_the_default_follows_the_connected_server_not_the_gossip(monkeypatch):
    class Conn:  # only the INFO fields default_replicas reads
        def __init__(self, info: dict) -> None:
            self._server_info = info

    monkeypatch.delenv("NATS_REPLICAS", raising=False)
    assert default_replicas(Conn({})) == 1
    # a cluster whose gossip names only 2 of its nodes still gets 3 replicas
    assert default_replicas(Conn({"cluster": "c", "connect_urls": ["a:1", "b:2"]})) == 3
    assert default_replicas(Conn({"cluster": "c"}), 2) == 2
    monkeypatch.setenv("NATS_REPLICAS", "1")
    assert default_replicas(Conn({"cluster": "c"})) == 1


def test_bad_replicas_are_one_line(nats_server):
    proc = run_cli("tick", "--cron", "* * * * * *", "--name", "x", "--replicas", "0", "--server", nats_server.url)
    assert_one_line_error(proc, "--replicas", "1 to 5")
    proc = run_cli("reservations", "--server", nats_server.url, env={"NATS_REPLICAS": "many"}, timeout=30)
    assert_one_line_error(proc, "NATS_REPLICAS")


async def test_a_single_server_refuses_three_replicas_in_plain_words(nats_server):
    nc = await nats_server.connect()
    try:
        with pytest.raises(ReplicasError, match="asked for 3 replicas"):
            await create_stream_if_missing(nc.jetstream(), schedule_stream_config(3))
    finally:
        await nc.close()
    proc = run_cli("tick", "--cron", "* * * * * *", "--name", "x", "--replicas", "3", "--server", nats_server.url)
    assert_one_line_error(proc, "asked for 3 replicas")


async def _replicas_of(url: str, ca: Path, streams: list[str]) -> dict[str, int]:
    nc = await connect(url, ca=ca)
    try:
        js = nc.jetstream()
        return {s: (await js.stream_info(s)).config.num_replicas for s in streams}
    finally:
        await nc.close()


async def _start_all(cluster: LocalCluster, tag: str) -> dict[str, ServiceProcess]:
    procs = {name: ServiceProcess(f"{tag}-{name}", args, cluster.env(), ready=ready)
             for name, (args, ready, _) in SERVICES.items()}
    for p in procs.values():
        p.start()
    await asyncio.gather(*(p.await_ready(60) for p in procs.values()))
    return procs


@pytest.mark.slow
async def test_services_get_r3_streams_right_after_the_cluster_forms_and_with_a_node_down(tmp_path: Path):
    streams = [s for _, _, ss in SERVICES.values() for s in ss]
    cluster = LocalCluster(nodes=3, certs=tmp_path / "certs").start()
    procs: dict[str, ServiceProcess] = {}
    try:
        procs = await _start_all(cluster, "formed")  # the moment the meta leader is elected
        assert await _replicas_of(cluster.url, cluster.ca, streams) == dict.fromkeys(streams, 3)
        stop_all(procs)
        nc = await connect(cluster.url, ca=cluster.ca)
        for s in streams:
            await nc.jetstream().delete_stream(s)
        await nc.close()
        cluster.kill("n3")
        await cluster.await_ready(60)  # the two left have a meta leader again (n3 may have led)
        procs = await _start_all(cluster, "down")  # a third of the cluster is gone
        assert await _replicas_of(cluster.url, cluster.ca, streams) == dict.fromkeys(streams, 3)
    finally:
        stop_all(procs)
        for p in procs.values():
            p.remove_log()
        cluster.stop()


@pytest.mark.slow
async def test_an_r1_stream_is_scaled_up_not_left_behind(tmp_path: Path):
    cluster = LocalCluster(nodes=3, certs=tmp_path / "certs").start()
    try:
        nc = await connect(cluster.url, ca=cluster.ca)
        js = nc.jetstream()
        await js.add_stream(schedule_stream_config(1))  # made earlier, with one replica
        info = await create_stream_if_missing(js, schedule_stream_config(default_replicas(nc)))
        assert info.config.num_replicas == 3
        assert (await js.stream_info(SCHEDULE_STREAM)).config.num_replicas == 3
        await nc.close()
    finally:
        cluster.stop()
