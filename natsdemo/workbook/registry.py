"""The registry of workbook servers on disk: which nats-server processes the workbook started,
and who owns them, so a crashed kernel's server can be found and stopped later.

Each server gets a small JSON file in ``$NATSDEMO_STATE_DIR/servers`` (``~/.cache/natsdemo`` by
default) naming its pid, its owner's pid and both start times (so a recycled pid is never
mistaken for ours). :func:`reap_stale` stops servers whose owner is gone; :func:`reset` stops all.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import psutil


def state_dir() -> Path:
    """The workbook's state folder: ``$NATSDEMO_STATE_DIR``, else ``$XDG_CACHE_HOME/natsdemo`` or
    ``~/.cache/natsdemo``. It holds the registry (``servers/``), server runs (``run/``) and service
    logs (``services/``); the test suite points it at a temporary folder."""
    env = os.environ.get("NATSDEMO_STATE_DIR")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "natsdemo"


def alive(pid: Any, create_time: Any = None) -> bool:
    """True if ``pid`` runs (a zombie does not count) and, if given, started at ``create_time``."""
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - float(create_time)) < 1.0
    except (psutil.Error, ValueError, TypeError, OverflowError):
        return False


def _registry() -> Path:
    p = state_dir() / "servers"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _owner_create_time() -> float:
    return psutil.Process(os.getpid()).create_time()


def register(srv: Any) -> None:
    """Record (or update) a server this process started (a :class:`~natsdemo.workbook.server.NatsServer`)."""
    if srv.proc is None:
        return
    entry = {
        "pid": srv.proc.pid,
        "create_time": psutil.Process(srv.proc.pid).create_time() if alive(srv.proc.pid) else None,
        "owner_pid": os.getpid(),
        "owner_create_time": _owner_create_time(),
        "name": srv.name,
        "host": srv.host,
        "port": srv.client_port,
        "monitor_port": srv.monitor_port,
        "run_dir": str(srv.run_dir) if srv.run_dir else None,
        "temp_store": srv._temp_store or srv.store_dir is None,
        "id": uuid.uuid4().hex,
    }
    _write_atomically(_registry() / f"{srv.proc.pid}.json", json.dumps(entry))


def _write_atomically(path: Path, text: str) -> None:
    """Write aside, then rename: another process reads the old entry or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def unregister(srv: Any) -> None:
    """Forget a server (it stopped, or was killed on purpose to be restarted)."""
    if srv.proc is not None:
        with contextlib.suppress(FileNotFoundError):
            (_registry() / f"{srv.proc.pid}.json").unlink()


def entries() -> list[dict[str, Any]]:
    """Every registry entry, dead or alive. An entry that cannot be read is skipped, never deleted:
    it may belong to another process (or be a hand-edited file); ``reset`` is the way to clear one."""
    out = []
    for f in sorted(_registry().glob("*.json")):
        try:
            entry = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and isinstance(entry.get("pid"), int):
            out.append(entry)
    return out


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited; a zombie counts (its parent, not us, must reap it)."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stop_entry(entry: dict[str, Any]) -> bool:
    """Stop the server an entry names (if it is still that process); True if one was stopped."""
    stopped = False
    pid = entry["pid"]
    if alive(pid, entry.get("create_time")):
        try:
            proc = psutil.Process(pid)
            if "nats-server" in " ".join(proc.cmdline()):
                proc.terminate()
                if not _wait_gone(pid, 10):
                    proc.kill()
                stopped = True
        except psutil.Error:  # gone in between, or not ours to signal: nothing left to stop
            pass
    run_dir = entry.get("run_dir")
    if run_dir and entry.get("temp_store"):
        shutil.rmtree(run_dir, ignore_errors=True)
    (_registry() / f"{pid}.json").unlink(missing_ok=True)
    return stopped


def reap_stale() -> list[int]:
    """Stop servers whose owning process is gone; returns their pids."""
    reaped = []
    for entry in entries():
        owner_alive = alive(entry.get("owner_pid"), entry.get("owner_create_time"))
        if (not owner_alive or not alive(entry["pid"], entry.get("create_time"))) and _stop_entry(entry):
            reaped.append(entry["pid"])
    return reaped


def registered_servers() -> list[dict[str, Any]]:
    """Registry entries of servers that are alive."""
    return [e for e in entries() if alive(e["pid"], e.get("create_time"))]


def reset(keep_owned_by_live: bool = False) -> list[int]:
    """Stop every workbook server in the registry and delete their temporary state."""
    stopped = []
    for entry in entries():
        if keep_owned_by_live and alive(entry.get("owner_pid"), entry.get("owner_create_time")):
            continue
        if _stop_entry(entry):
            stopped.append(entry["pid"])
    if not keep_owned_by_live:
        for f in _registry().glob("*.json"):  # what entries() could not read
            f.unlink(missing_ok=True)
        for folder in ("run", "services"):  # server stores and logs, service logs
            shutil.rmtree(state_dir() / folder, ignore_errors=True)
    return stopped
