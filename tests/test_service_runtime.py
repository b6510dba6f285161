"""The one service runtime, seen from outside: every service logs an outage and its end, prints its
ready line, honours -v/--quiet, and exits 0 on SIGTERM after a clean drain."""

from __future__ import annotations

import pytest

from natsdemo.workbook.server import NatsServer
from natsdemo.workbook.services import ServiceProcess
from tests.conftest import wait_for

SERVICES = {
    "tick": (["tick", "--cron", "* * * * * *", "--name", "rt"], r"^ticking schedule\.rt"),
    "drain": (["drain", "--name", "rt"], r"^draining rt-queue"),
    "reservations": (["reservations", "--name", "rt1"], r"^reservations: rt1 watching"),
}


@pytest.mark.slow
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_service_logs_disconnect_and_reconnect_and_stops_cleanly(service: str, tmp_path):
    args, ready = SERVICES[service]
    srv = await NatsServer(name=f"test-rt-{service}", store_dir=tmp_path / "store").astart()
    svc = ServiceProcess(f"rt-{service}", [*args, "--server", srv.url], ready=ready)
    try:
        svc.start()
        await svc.await_ready(30)
        srv.kill()  # the outage
        await wait_for(lambda: "disconnected from NATS" in svc.log_text(), timeout=15)
        await srv.astart()  # same port, same store
        await wait_for(lambda: "reconnected to nats://127.0.0.1:" in svc.log_text(), timeout=20)
        assert svc.running()
        code = await svc.astop(timeout=20)
        assert code == 0, svc.log_text()[-2000:]
        text = svc.log_text()
        assert "Traceback" not in text, text[-3000:]
        assert "WARNING natsdemo.connect" in text  # through logging, with level and logger name
    finally:
        svc.kill()
        svc.remove_log()
        await srv.astop()


@pytest.mark.slow
async def test_verbose_and_quiet_change_what_a_service_logs(nats_server):
    loud = ServiceProcess("rt-v", ["tick", "--cron", "* * * * * *", "--name", "rtv", "-v", "--server", nats_server.url],
                          ready=r"^ticking")
    quiet = ServiceProcess("rt-q", ["tick", "--cron", "* * * * * *", "--name", "rtq", "--quiet",
                                    "--server", nats_server.url], ready=r"^ticking")
    try:
        for svc in (loud, quiet):
            svc.start()
        for svc in (loud, quiet):
            await svc.await_ready(30)
        await wait_for(lambda: "stored seq" in loud.log_text(), timeout=10)
        assert await loud.astop() == 0 and await quiet.astop() == 0
        assert "DEBUG" in loud.log_text()
        q = quiet.log_text()
        assert "ticking schedule.rtq" in q and "stored seq" not in q and "DEBUG" not in q and "INFO" not in q
    finally:
        for svc in (loud, quiet):
            svc.kill()
            svc.remove_log()
