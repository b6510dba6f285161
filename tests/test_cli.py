"""The foundation's command line, from outside: server, reset, doctor, bench, and bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import psutil
import pytest

from natsdemo.workbook.binary import free_ports
from natsdemo.workbook.server import NatsServer
from tests.conftest import ROOT, assert_one_line_error, run_cli


def _start_cli_server(*extra: str) -> tuple[subprocess.Popen, str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "server", "--port", "-1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    url = proc.stdout.readline().strip()
    return proc, url, time.monotonic() - t0


def _nats_children(pid: int) -> list[psutil.Process]:
    """The nats-server processes under ``pid`` (not the short-lived `nats-server --version`)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if cmd and cmd[0].endswith("nats-server") and "--version" not in cmd:
            found.append(child)
    return found


async def test_server_command_prints_url_serves_jetstream_and_stops_on_sigterm():
    proc, url, elapsed = _start_cli_server()
    try:
        assert url.startswith("nats://127.0.0.1:"), url
        assert elapsed < 10  # the 2 s target is measured by `bench server`, not asserted here
        children = _nats_children(proc.pid)
        assert len(children) == 1
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="CLI", subjects=["cli.>"])
        assert (await js.publish("cli.x", b"1")).seq == 1
        await nc.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, "nats-server survived SIGTERM of `natsdemo server`"
    finally:
        proc.kill()
        proc.wait()


def test_server_command_keeps_a_named_store(tmp_path: Path):
    proc, url, _ = _start_cli_server("--store", str(tmp_path / "data"))
    try:
        assert url.startswith("nats://")

        async def put() -> None:
            nc = await nats.connect(url)
            await nc.jetstream().add_stream(name="KEPT", subjects=["kept.>"])
            await nc.close()

        asyncio.run(put())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    assert (tmp_path / "data" / "jetstream" / "$G" / "streams" / "KEPT").exists()


def test_server_command_refuses_a_port_in_use():
    with NatsServer(name="t-busy") as busy:
        proc = run_cli("server", "--port", str(busy.client_port))
    assert_one_line_error(proc, "already in use", "--port")
    assert proc.returncode == 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["server", "--port", "70000"], "not a port"),
        (["server", "--port", "abc"], "invalid int value"),
        (["server", "--port", "-1", "--config", "nope.conf"], "not found"),
        (["nosuch"], "invalid choice"),
        (["bench", "nosuch"], "unknown benchmark"),
        (["bench", "server", "--runs", "0"], "at least 1"),
    ],
)
def test_bad_arguments_give_one_line(args: list[str], fragment: str):
    assert_one_line_error(run_cli(*args), fragment)


def test_reset_stops_stray_servers():
    # a server whose owner lives on (a detached "kernel"), the case `reset` is for
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from natsdemo.workbook.server import NatsServer; import time; "
            "s = NatsServer(name='t-stray').start(); print(s.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        pid = int(owner.stdout.readline())
        out = run_cli("reset")
        assert out.returncode == 0, out.stderr
        assert f"stopped 1 workbook server(s): {pid}" in out.stdout
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        owner.kill()
        owner.wait()


def test_doctor_passes_on_this_machine():
    out = run_cli("doctor", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(ln.startswith("PASS  nats-server") and "v2.15" in ln for ln in lines)
    assert any(ln.startswith("PASS  jetstream") for ln in lines)
    assert not any(ln.startswith("FAIL") for ln in lines)
    assert lines[-1] == "doctor: all checks passed"


def test_doctor_fails_clearly_without_a_server_binary(tmp_path: Path):
    out = run_cli("doctor", env={"NATS_SERVER_BIN": str(tmp_path / "missing-nats-server")})
    assert out.returncode == 1
    assert any(ln.startswith("FAIL  nats-server") for ln in out.stdout.splitlines()), out.stdout


def test_bench_server_prints_a_table_and_writes_json(tmp_path: Path):
    out = run_cli("bench", "server", "--quick", "--json", str(tmp_path / "b.json"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "start to ready" in out.stdout
    doc = json.loads((tmp_path / "b.json").read_text())
    ready = next(f for f in doc["figures"] if f["name"] == "start to ready")
    assert ready["unit"] == "ms" and 0 < ready["value"] < 60_000


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "natsdemo"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "reservations" in out.stdout


_HANGS_ON_SHUTDOWN = """
import asyncio
from natsdemo.core.service import stop_event

async def main():
    stop = stop_event(grace={grace})
    print("ready", flush=True)
    await stop.wait()
    await asyncio.Event().wait()  # a shutdown that never finishes

asyncio.run(main())
"""


@pytest.mark.parametrize(("signals", "code"), [(1, 1), (2, 130)])
def test_a_service_never_outlives_a_stop_request(signals: int, code: int):
    """A hanging graceful shutdown ends after the grace period; a second signal ends it at once."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HANGS_ON_SHUTDOWN.format(grace=1.5 if signals == 1 else 60)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        assert proc.wait(10) == code
        assert ("exiting now" if signals == 2 else "longer than 1.5 s") in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_a_service_with_no_server_to_reach_says_so_in_one_line():
    """The README's promise: an unreachable server is one readable line and exit status 1."""
    free = free_ports(1)[0]  # nothing listens there
    out = run_cli("reservations", "--server", f"nats://127.0.0.1:{free}", "--connect-timeout", "2", timeout=60)
    assert out.returncode == 1
    assert "within 2 s" in out.stderr or "cannot reach NATS" in out.stderr
    assert_one_line_error(out, "natsdemo reservations: error: cannot reach NATS", f"127.0.0.1:{free}")


@pytest.mark.parametrize("command", sorted(__import__("natsdemo.cli", fromlist=["COMMANDS"]).COMMANDS))
def test_every_command_takes_verbose_and_quiet(command: str):
    args = [command, "issue", "--help"] if command == "coupons" else [command, "--help"]
    out = run_cli(*args, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "-v, --verbose" in out.stdout and "-q, --quiet" in out.stdout, out.stdout
    both = run_cli(*args[:-1], "-v", "--quiet", timeout=60)
    assert_one_line_error(both, "not allowed with argument")


def test_quiet_keeps_results_and_drops_notes(tmp_path: Path):
    loud = run_cli("certs", "--out", str(tmp_path / "a"), timeout=60)
    quiet = run_cli("certs", "--out", str(tmp_path / "b"), "--quiet", timeout=60)
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "ca.pem" in loud.stdout and quiet.stdout == "" and quiet.stderr == ""
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(p.name for p in (tmp_path / "a").iterdir())
    doctor = run_cli("doctor", "--quiet", timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert not any(ln.startswith("PASS") for ln in doctor.stdout.splitlines()), doctor.stdout
    assert doctor.stdout.splitlines()[-1] == "doctor: all checks passed"


@pytest.mark.parametrize(("flag", "note", "debug"), [("", True, False), ("--quiet", False, False), ("-v", True, True)])
def test_the_server_command_notes_follow_the_noise_flags(flag: str, note: bool, debug: bool):
    proc, url, _ = _start_cli_server(*[f for f in (flag,) if f])
    try:
        assert url.startswith("nats://127.0.0.1:"), url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        err = proc.stderr.read()
        assert ("Ctrl-C stops it" in err) is note, err
        assert ("its log:" in err) is debug, err
    finally:
        proc.kill()
        proc.wait()
