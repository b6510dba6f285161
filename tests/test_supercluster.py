"""Gateways over mutual TLS, against real servers: the supercluster command's contract, a message
and a stream crossing the gateway, and each way a gateway link is refused (with the words the
servers log). One supercluster per test: a refused link must be seen from a fresh start."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats.js.errors
import psutil
import pytest

from natsdemo import tls
from natsdemo.core.connect import connect
from natsdemo.core.publish import publish_acked
from natsdemo.workbook.monitor import monitor_json
from natsdemo.workbook.supercluster import Supercluster
from tests.conftest import ROOT, assert_one_line_error, run_cli, until

pytestmark = pytest.mark.slow
LINE = re.compile(r"^(east|west) ([ew]1) (tls://127\.0\.0\.1:\d+) pid (\d+)$")
MONITOR = re.compile(r"\b([ew]1) monitoring (http://127\.0\.0\.1:\d+/gatewayz)$")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/ (the workbook set), serveronly/ (gateway cert without clientAuth), other/ (another CA)."""
    base = tmp_path_factory.mktemp("gateway-pki")
    tls.ensure_certs(base / "good", days=5)
    ca = tls.load(base / "good", "ca")
    serveronly = base / "serveronly"
    shutil.copytree(base / "good", serveronly)
    tls.make_cert(ca, "natsdemo server", hosts=tls.DEFAULT_HOSTS, eku=(tls.SERVER_AUTH,)).write(serveronly, "server")
    tls.ensure_certs(base / "other", days=5)  # a complete set from a CA of its own
    return base


async def _crosses(sc: Supercluster, subject: str) -> bool:
    """Publish in east until a subscriber in west receives it (interest crosses the gateway first)."""
    async with await connect(sc.url("east"), ca=sc.ca) as east, await connect(sc.url("west"), ca=sc.ca) as west:
        sub = await west.subscribe(subject)
        await west.flush()
        for _ in range(50):
            await east.publish(subject, b"over the gateway")
            try:
                return (await sub.next_msg(0.1)).data == b"over the gateway"
            except TimeoutError:
                continue
        return False


def _no_link(sc: Supercluster) -> bool:
    return all(not out and not inb for out, inb in sc.links().values())


def test_supercluster_command_prints_its_nodes_crosses_the_gateway_and_stops(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "supercluster", "--clusters", "2", "--certs", str(tmp_path / "certs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        matches = [LINE.match(ln) for ln in lines]
        assert all(matches), (lines, proc.stderr.read() if proc.poll() is not None else "")
        assert [(m.group(1), m.group(2)) for m in matches] == [("east", "e1"), ("west", "w1")]
        monitors = dict(m.groups() for m in (MONITOR.search(proc.stderr.readline().strip()) for _ in range(2)) if m)
        assert set(monitors) == {"e1", "w1"}
        # the gateways are up before the lines are printed, over TLS, each way
        import json
        import urllib.request

        for node, url in monitors.items():
            gz = json.load(urllib.request.urlopen(url, timeout=5))
            other = "west" if node == "e1" else "east"
            assert gz["outbound_gateways"][other]["connection"]["tls_version"].startswith("1.")
            assert gz["inbound_gateways"][other][0]["connection"]["tls_version"].startswith("1.")
        pids = [int(m.group(4)) for m in matches]
        assert all(psutil.pid_exists(p) for p in pids)
        east, west = matches[0].group(3), matches[1].group(3)
        code = (
            "import asyncio,sys\n"
            "from natsdemo.core.connect import connect\n"
            "async def main():\n"
            f"    w = await connect({west!r}, ca={str(tmp_path / 'certs' / 'ca.pem')!r})\n"
            f"    e = await connect({east!r}, ca={str(tmp_path / 'certs' / 'ca.pem')!r})\n"
            "    sub = await w.subscribe('cross'); await w.flush()\n"
            "    for _ in range(50):\n"
            "        await e.publish('cross', b'x')\n"
            "        try:\n"
            "            print((await sub.next_msg(0.1)).data.decode()); break\n"
            "        except TimeoutError: pass\n"
            "    await w.close(); await e.close()\n"
            "asyncio.run(main())\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert out.stdout.strip() == "x", out.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
        assert not alive
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("args", "fragment"), [
    (["--clusters", "1"], "between 2 and 5"), (["--clusters", "6"], "between 2 and 5"),
    (["--nodes", "0"], "between 1 and 5"), (["--clusters", "x"], "invalid"),
])
def test_supercluster_command_refuses_bad_arguments(args: list[str], fragment: str):
    assert_one_line_error(run_cli("supercluster", *args), fragment)


async def test_a_stream_in_one_cluster_is_read_from_the_other(material: Path):
    sc = await Supercluster(certs=material / "good").astart()
    try:
        assert await _crosses(sc, "hello.west")
        async with await connect(sc.url("east"), ca=sc.ca) as east, await connect(sc.url("west"), ca=sc.ca) as west:
            js_east, js_west = east.jetstream(), west.jetstream()
            await js_east.add_stream(name="ORDERS", subjects=["orders.>"])
            info = await js_west.stream_info("ORDERS")  # the JetStream API answers from every cluster
            assert info.cluster is not None and info.cluster.name == "east"  # placed where it was created
            # right after creation the stream's interest may not have crossed yet: no responders, retried
            await publish_acked(js_west, "orders.1", b"placed from west")  # stored in east
            psub = await js_west.pull_subscribe("orders.>", durable="west-reader", stream="ORDERS")
            msgs = []
            for _ in range(40):  # the new consumer's interest may not have crossed yet either (503)
                try:
                    msgs = await psub.fetch(1, timeout=5)
                    break
                except nats.js.errors.ServiceUnavailableError:
                    await asyncio.sleep(0.25)
            assert [m.data for m in msgs] == [b"placed from west"]
            gz = monitor_json(sc.servers["e1"], "gatewayz")
            assert gz["outbound_gateways"]["west"]["configured"] is False  # found by gossip, not configured
    finally:
        await sc.astop()


async def test_a_gateway_certificate_without_client_auth_never_links_and_the_peer_says_why(material: Path):
    """Gateways verify both ways: the dialling side presents its certificate as a client."""
    sc = Supercluster(certs=material / "good", cluster_certs={"west": material / "serveronly"})
    await sc.astart(wait=False)
    try:
        logged = await until(lambda: sc.log_lines("incompatible key usage")["e1"], 10)
        assert logged, sc.servers["e1"].log_text()[-2000:]
        assert _no_link(sc)
    finally:
        await sc.astop()


async def test_a_gateway_from_another_ca_is_refused_both_ways(material: Path):
    sc = Supercluster(certs=material / "good", cluster_certs={"west": material / "other"})
    await sc.astart(wait=False)
    try:
        words = "certificate signed by unknown authority"
        seen = await until(lambda: all(sc.log_lines("TLS gateway handshake error").values()), 10)
        assert seen, sc.log_lines("gateway")
        assert any(words in ln for lines in sc.log_lines(words).values() for ln in lines)
        assert _no_link(sc)
    finally:
        await sc.astop()


async def test_a_gateway_url_whose_host_is_not_in_the_sans_is_refused(material: Path):
    """127.0.0.2 reaches this machine, but the certificate names 127.0.0.1, ::1 and localhost."""
    sc = Supercluster(certs=material / "good", seed_host="127.0.0.2")
    await sc.astart(wait=False)
    try:
        assert await until(lambda: sc.log_lines("not 127.0.0.2")["w1"], 10), sc.servers["w1"].log_text()[-2000:]
        assert _no_link(sc)
    finally:
        await sc.astop()


async def test_a_gossiped_gateway_address_must_be_in_the_sans_too(material: Path):
    """West dials east by a good URL and that half forms; east then dials the address west
    advertised (gossip), which the certificate does not name, so the link stays one-way."""
    sc = Supercluster(certs=material / "good", advertise_host="127.0.0.2")
    await sc.astart(wait=False)
    try:
        assert await until(lambda: sc.log_lines("not 127.0.0.2")["e1"], 10), sc.servers["e1"].log_text()[-2000:]
        time.sleep(0.5)
        links = sc.links()
        assert links["w1"][0] == {"east"} and links["e1"][0] == set()  # west -> east only
        assert not sc.connected()
    finally:
        await sc.astop()
