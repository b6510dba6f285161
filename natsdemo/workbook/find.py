"""The server a notebook should use: this kernel's own, or the one ``NATS_URL`` names.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from nats.aio.client import Client

from natsdemo.core.connect import connect
from natsdemo.workbook.monitor import monitor_json
from natsdemo.workbook.registry import alive, entries
from natsdemo.workbook.server import NatsServer


@dataclass
class ExternalServer:
    """A server somebody else runs (``NATS_URL``): same interface, start and stop do nothing.

    Defined in notebooks/00_start_here.ipynb
    """

    url: str
    monitor_url: str | None = None
    pid: int | None = None

    def start(self) -> ExternalServer:
        return self

    async def astart(self) -> ExternalServer:
        return self

    def stop(self, timeout: float = 0) -> None:
        return None

    async def astop(self, timeout: float = 0) -> None:
        return None

    def running(self) -> bool:
        return True

    async def connect(self, **options: Any) -> Client:
        return await connect(self.url, **options)

    def varz(self) -> dict[str, Any]:
        return monitor_json(self, "varz")


async def whoami(nc: Client) -> str:
    """``"<server URL> as <user> (account <ACCOUNT>)"``: where a notebook is connected, and as whom.

    Asks the server (``$SYS.REQ.USER.INFO``, answered for every connection), so it is true for a
    workshop seat's account (``SEAT1``) and for the default account (``$G``) alike.

    Defined in notebooks/00_start_here.ipynb
    """
    url = nc.connected_url
    where = f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else "?"
    try:
        info = json.loads((await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data).get("data") or {}
    except Exception as exc:  # an old server: say what is known
        return f"{where} (the server did not say which account: {type(exc).__name__})"
    user = info.get("user") or "no login"
    return f"{where} as {user} (account {info.get('account', '?')})"


def find_or_start(name: str = "workbook", **kwargs: Any) -> NatsServer | ExternalServer:
    """The server a notebook or service should use.

    With ``NATS_URL`` set (docker compose, a shared workshop server) nothing is started. Otherwise a
    server owned by this process and registered under ``name`` is reused, so re-running the cell
    does not start a second one; any server whose owner has died is stopped first.

    Defined in notebooks/00_start_here.ipynb
    """
    found = _find(name)
    if found is not None:
        return found
    return NatsServer(name=name, **kwargs).start()


async def afind_or_start(name: str = "workbook", **kwargs: Any) -> NatsServer | ExternalServer:
    """:func:`find_or_start` that waits for a new server without blocking the event loop (notebooks).

    Defined in notebooks/00_start_here.ipynb
    """
    found = _find(name)
    if found is not None:
        return found
    return await NatsServer(name=name, **kwargs).astart()


def _find(name: str) -> NatsServer | ExternalServer | None:
    env = os.environ.get("NATS_URL")
    if env:
        return ExternalServer(env, os.environ.get("NATS_MONITOR_URL"))
    for entry in entries():  # (starting a new server reaps stale ones first)
        if entry.get("name") == name and entry.get("owner_pid") == os.getpid() and alive(entry["pid"]):
            srv = _adopt(entry)
            if srv is not None:
                return srv
    return None


def _adopt(entry: dict[str, Any]) -> NatsServer | None:
    """Re-attach to a live server this process started (re-run of a notebook cell)."""
    if entry.get("port") is None:
        return None
    srv = NatsServer(name=str(entry.get("name")), host=str(entry.get("host", "127.0.0.1")))
    srv.client_port = entry["port"]
    srv.monitor_port = entry.get("monitor_port")
    srv.run_dir = Path(entry["run_dir"]) if entry.get("run_dir") else None
    srv._temp_store = bool(entry.get("temp_store"))
    srv.proc = _AdoptedProcess(entry["pid"])  # type: ignore[assignment]
    return srv


class _AdoptedProcess:
    """Enough of Popen's interface to stop a server started earlier by this same process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if alive(self.pid):
            return None
        self.returncode = self.returncode if self.returncode is not None else 0
        return self.returncode

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        try:
            psutil.Process(self.pid).wait(timeout)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired as exc:
            raise subprocess.TimeoutExpired("nats-server", timeout or 0) from exc
        return 0
