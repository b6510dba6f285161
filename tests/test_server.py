"""natsdemo.workbook.server against the real binary: readiness, clean stop, no orphans, NATS_URL, errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from natsdemo.workbook.binary import CONFIG_DIR, ServerStartError, check_config, nats_server_binary
from natsdemo.workbook.find import ExternalServer, find_or_start
from natsdemo.workbook.registry import reap_stale, registered_servers, state_dir
from natsdemo.workbook.server import NatsServer


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_start_ready_and_stop_leaves_nothing():
    srv = NatsServer(name="t-start").start()
    pid, run_dir = srv.pid, srv.run_dir
    assert srv.url.startswith("nats://127.0.0.1:") and srv.client_port != 4222
    assert "Server is ready" in srv.log_text()
    assert srv.varz()["jetstream"]["config"]["store_dir"].startswith(str(run_dir))
    assert any(e["pid"] == pid for e in registered_servers())
    srv.stop()
    assert _gone(pid)
    assert not run_dir.exists()
    assert all(e["pid"] != pid for e in registered_servers())


async def test_async_context_manager_serves_jetstream():
    async with NatsServer(name="t-async") as srv:
        nc = await srv.connect()
        js = nc.jetstream()
        await js.add_stream(name="A", subjects=["a.>"])
        ack = await js.publish("a.1", b"x")
        assert ack.seq == 1 and ack.stream == "A"
        await nc.close()
        pid = srv.pid
    assert _gone(pid)


async def test_named_store_survives_restart_on_same_port(tmp_path: Path):
    srv = NatsServer(name="t-persist", store_dir=tmp_path / "js").start()
    try:
        nc = await srv.connect()
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.1", b"x")
        await nc.close()
        port = srv.client_port
        srv.restart()
        assert srv.client_port == port
        nc = await srv.connect()
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
        await nc.close()
    finally:
        srv.stop()
    assert (tmp_path / "js" / "jetstream").exists()  # a named store is kept


def test_bad_config_raises_with_the_servers_own_words(tmp_path: Path):
    bad = tmp_path / "bad.conf"
    bad.write_text("tls { cert_file: /nonexistent/server.pem\n key_file: /nonexistent/key.pem }\n")
    with pytest.raises(ServerStartError) as info:
        NatsServer(config=bad, name="t-bad").start()
    assert "nonexistent" in str(info.value)
    assert "exited with code" in str(info.value)


def test_unknown_config_name_lists_the_bundled_ones():
    with pytest.raises(ServerStartError, match=r"jetstream\.conf"):
        NatsServer(config="no-such.conf").start()


def test_port_in_use_is_a_clear_error():
    with NatsServer(name="t-a") as a, pytest.raises(ServerStartError, match="address already in use"):
        NatsServer(name="t-b", port=a.client_port, monitor=False).start()


@pytest.mark.parametrize("conf", sorted(p.name for p in CONFIG_DIR.glob("*.conf") if "cert_file" not in p.read_text()))
def test_plain_config_files_are_valid(conf: str):
    ok, out = check_config(conf)
    assert ok, out


def test_find_or_start_reuses_this_processes_server():
    a = find_or_start("t-reuse")
    try:
        b = find_or_start("t-reuse")
        assert b.url == a.url and b.pid == a.pid
    finally:
        a.stop()
    assert _gone(a.pid)


def test_nats_url_means_no_server_is_started(monkeypatch: pytest.MonkeyPatch):
    before = {e["pid"] for e in registered_servers()}
    monkeypatch.setenv("NATS_URL", "nats://example.invalid:4222")
    srv = find_or_start("t-env")
    assert isinstance(srv, ExternalServer) and srv.url == "nats://example.invalid:4222"
    assert {e["pid"] for e in registered_servers()} == before


def test_a_server_whose_owner_was_killed_dies_with_it(tmp_path: Path):
    """The kernel-crash case: the owner is SIGKILLed; PR_SET_PDEATHSIG stops the server."""
    script = textwrap.dedent(
        """
        import sys, time
        from natsdemo.workbook.server import NatsServer
        srv = NatsServer(name="t-orphan").start()
        print(srv.pid, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        pid = int(owner.stdout.readline())
        assert psutil.pid_exists(pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert _gone(pid), "server outlived its killed owner"
    finally:
        owner.kill()
        owner.wait()


def test_reap_stale_stops_a_server_whose_owner_is_gone(tmp_path: Path):
    """The registry case: a server started without the death signal, owner recorded as dead."""
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
        dead_owner.wait()
        entry = {
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "owner_pid": dead_owner.pid,
            "owner_create_time": 1.0,
            "name": "t-stale",
            "host": "127.0.0.1",
            "port": None,
            "monitor_port": None,
            "run_dir": None,
            "temp_store": False,
        }
        (state_dir() / "servers" / f"{proc.pid}.json").write_text(json.dumps(entry))
        reaped = reap_stale()
        assert proc.pid in reaped
        assert proc.wait(10) is not None
    finally:
        proc.kill()
        proc.wait()


def test_kill_then_start_again_keeps_the_temporary_store():
    srv = NatsServer(name="t-crash").start()
    try:
        store = srv.run_dir / "store"
        srv.kill()
        assert not srv.running() and store.exists()
        srv.start()
        assert srv.running()
    finally:
        srv.stop()


def _kernel_server_pid(kc) -> int:
    """Start a workbook server inside a real ipykernel and return its pid."""
    code = "from natsdemo.workbook.find import find_or_start\nprint(find_or_start('kernel').pid)"
    lines = []
    kc.execute_interactive(code, timeout=60, output_hook=lambda m: lines.append(m["content"].get("text", "")))
    return int("".join(lines).strip())


@pytest.mark.parametrize("how", ["restart", "shutdown"])
def test_a_kernel_restart_or_shutdown_takes_its_server_along(how: str):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        pid = _kernel_server_pid(kc)
        assert psutil.pid_exists(pid)
        if how == "restart":
            km.restart_kernel(now=True)  # kills the kernel process, like Kernel > Restart
        else:
            km.shutdown_kernel(now=False)
        assert _gone(pid), f"server {pid} outlived the kernel ({how})"
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


async def test_reload_keeps_clients_connected_for_any_registry_name():
    """`name` labels the registry only; passing it as -n would make nats-server refuse reloads."""
    async with NatsServer(name="nb-anything") as srv:
        nc = await srv.connect()
        srv.reload()
        deadline = time.monotonic() + 5
        while "Reloaded server configuration" not in srv.log_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "Reloaded server configuration" in srv.log_text(), srv.log_text()[-1500:]
        assert "Failed to reload" not in srv.log_text()
        assert srv.varz()["server_name"] == "natsdemo"
        await nc.publish("still.here", b"1")
        await nc.flush(timeout=2)
        assert nc.is_connected and nc.stats["reconnects"] == 0
        await nc.close()
