"""Every service takes its server and TLS material from flags (--server/--ca/--cert/--key), here
against a mutual-TLS server: with a client certificate it works, without one it says why in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from natsdemo.core.connect import connect
from natsdemo.tls import ensure_certs
from natsdemo.workbook.tls_servers import TlsServer
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory):
    certs = tmp_path_factory.mktemp("svc-certs")
    ensure_certs(certs)
    srv = TlsServer(config="tls-verify.conf", certs=certs, name="t-svc-mtls",
                    store_dir=tmp_path_factory.mktemp("svc-js")).start()
    try:
        yield srv, certs
    finally:
        srv.stop()


def _flags(srv: TlsServer, certs: Path, with_cert: bool = True) -> list[str]:
    url = f"tls://127.0.0.1:{srv.client_port}"
    flags = ["--server", url, "--ca", str(certs / "ca.pem")]
    if with_cert:
        flags += ["--cert", str(certs / "client-alice.pem"), "--key", str(certs / "client-alice-key.pem")]
    return flags


@pytest.mark.parametrize(
    ("args", "ready"),
    [
        (["reservations", "--name", "tls1", "--quiet"], "reservations: tls1 watching"),
        (["drain", "--name", "tlsq"], "draining "),
        (["tick", "--cron", "* * * * * *", "--name", "tls-tick", "--quiet"], "ticking schedule.tls-tick"),
    ],
)
def test_service_runs_over_mutual_tls_with_flags(mtls, args: list[str], ready: str):
    srv, certs = mtls
    proc = subprocess.Popen([sys.executable, "-m", "natsdemo", *args, *_flags(srv, certs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert ready in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


async def test_ticks_published_over_tls_reach_the_stream(mtls):
    srv, certs = mtls
    out = run_cli("drain", "--name", "tlsq2", "--enqueue", "5", *_flags(srv, certs), timeout=60)
    assert out.returncode == 0 and "enqueued 5 items" in out.stdout, out.stderr
    nc = await connect(f"tls://127.0.0.1:{srv.client_port}", ca=certs / "ca.pem",
                       cert=certs / "client-alice.pem", key=certs / "client-alice-key.pem")
    try:
        info = await nc.jetstream().stream_info("TLSQ2_QUEUE")
        assert info.state.messages == 5
    finally:
        await nc.close()


def test_missing_client_certificate_is_one_clear_line(mtls):
    srv, certs = mtls
    out = run_cli("reservations", "--quiet", "--connect-timeout", "2", *_flags(srv, certs, with_cert=False),
                  timeout=60)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("natsdemo reservations: error:")
