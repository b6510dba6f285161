"""Run the real ``nats-server`` binary for the workbook, the tests and the demos.

:class:`NatsServer` starts it on a free port with JetStream, waits until the server itself logs
that it is ready, and stops it without leaving an orphan behind:

* the child gets ``PR_SET_PDEATHSIG``, so if the owning process dies (a Jupyter kernel restart,
  ``kill -9``) the kernel sends the server SIGTERM;
* every server is recorded in a small registry on disk (:mod:`natsdemo.workbook.registry`); the
  next start stops any server whose owner is gone, and ``python -m natsdemo reset`` stops all.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from natsdemo.core.connect import connect
from natsdemo.workbook.binary import ServerStartError, _fatal_lines, config_path, nats_server_binary, pdeathsig_hook
from natsdemo.workbook.monitor import monitor_json
from natsdemo.workbook.registry import reap_stale, register, state_dir, unregister

READY_LINE = "Server is ready"
_CLIENT_RE = re.compile(r"Listening for client connections on (\S+):(\d+)")
_MONITOR_RE = re.compile(r"Starting http monitor on (\S+):(\d+)")
_TLS_MONITOR_RE = re.compile(r"Starting https monitor on (\S+):(\d+)")


@dataclass
class NatsServer:
    """A real nats-server child process.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`start` and
    :meth:`stop`. ``port=-1`` lets the server pick a free port; ``store_dir=None`` keeps the
    JetStream store in a temporary folder that :meth:`stop` removes, while a named folder is kept
    so a restarted server finds its streams again.

    Defined in notebooks/00_start_here.ipynb
    """

    config: str | os.PathLike[str] | None = "jetstream.conf"
    port: int = -1
    host: str = "127.0.0.1"
    store_dir: str | os.PathLike[str] | None = None
    monitor: bool = True
    name: str = "natsdemo"
    extra_args: list[str] = field(default_factory=list)
    start_timeout: float = 10.0
    cwd: str | os.PathLike[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    server_name: str | None = None

    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    client_port: int | None = field(default=None, init=False)
    monitor_port: int | None = field(default=None, init=False)
    run_dir: Path | None = field(default=None, init=False, repr=False)
    _temp_store: bool = field(default=False, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)

    # ----------------------------------------------------------------- addresses
    @property
    def url(self) -> str:
        if self.client_port is None:
            raise RuntimeError("server is not running")
        return f"nats://{self.host}:{self.client_port}"

    @property
    def monitor_url(self) -> str | None:
        if self.monitor_port is None:
            return None
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path | None:
        return self.run_dir / "server.log" if self.run_dir else None

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        p = self.log_path
        return p.read_text(errors="replace") if p and p.exists() else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ----------------------------------------------------------------- lifecycle
    def _command(self) -> list[str]:
        cmd = [nats_server_binary()]
        if self.config is not None:
            cmd += ["-c", str(config_path(self.config))]
        port = self.client_port if self.client_port is not None else self.port
        cmd += ["-a", self.host, "-p", str(port)]
        if self.server_name:
            # only when asked: nats-server refuses a config reload (SIGHUP) when a command-line
            # name differs from the config's server_name, so `name` is for the registry only
            cmd += ["-n", self.server_name]
        if self.monitor:
            cmd += ["-m", str(self.monitor_port if self.monitor_port is not None else -1)]
        if self.store_dir is not None or self.config is None or self._config_has_jetstream():
            cmd += ["-js", "-sd", str(self._store())]
        return cmd + list(self.extra_args)

    def _config_has_jetstream(self) -> bool:
        if self.config is None:
            return False
        return "jetstream" in config_path(self.config).read_text()

    def _store(self) -> Path:
        if self.store_dir is not None:
            return Path(self.store_dir).resolve()
        assert self.run_dir is not None
        self._temp_store = True
        return self.run_dir / "store"

    def _spawn(self) -> None:
        reap_stale()
        if self.run_dir is None:
            root = state_dir() / "run"
            root.mkdir(parents=True, exist_ok=True)
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=root))
        log = open(self.run_dir / "server.log", "ab")  # noqa: SIM115 (the child keeps writing to it)
        self._log_offset = log.tell()
        try:
            self.proc = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},  # e.g. values for $VARIABLES in a config
                cwd=str(self.cwd or (config_path(self.config).parent if self.config else self.run_dir)),
                preexec_fn=pdeathsig_hook(),
                start_new_session=True,
            )
        finally:
            log.close()
        register(self)

    def _poll_ready(self) -> bool:
        """True once the log says ready; raises if the process died first."""
        text = self.log_text()[self._log_offset :]
        if READY_LINE in text:
            m = _CLIENT_RE.search(text)
            if m:
                self.client_port = int(m.group(2))
            m = _MONITOR_RE.search(text) or _TLS_MONITOR_RE.search(text)
            if m:
                self.monitor_port = int(m.group(2))
            register(self)
            return True
        assert self.proc is not None
        if self.proc.poll() is not None:
            self._cleanup()
            raise ServerStartError(
                f"nats-server exited with code {self.proc.returncode} before it was ready:\n{_fatal_lines(text)}"
            )
        return False

    def _timeout(self) -> ServerStartError:
        text = self.log_text()[self._log_offset :]
        self.stop()
        return ServerStartError(f"nats-server was not ready after {self.start_timeout:.0f} s:\n{_fatal_lines(text)}")

    def _starting(self) -> Iterator[None]:  # one step per readiness poll
        """Spawn, then yield until the log says ready (raising on exit or timeout)."""
        self._spawn()
        deadline = time.monotonic() + self.start_timeout
        while not self._poll_ready():
            if time.monotonic() > deadline:
                raise self._timeout()
            yield

    def start(self) -> NatsServer:
        """Start and block until the server reports ready (or raise :class:`ServerStartError`)."""
        if not self.running():
            for _ in self._starting():
                time.sleep(0.005)
        return self

    async def astart(self) -> NatsServer:
        """Like :meth:`start`, but waits without blocking the event loop."""
        if not self.running():
            for _ in self._starting():
                await asyncio.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server shuts down cleanly), SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._cleanup()

    async def astop(self, timeout: float = 10.0) -> None:
        """Like :meth:`stop` without blocking the event loop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self.stop(timeout=5)

    def kill(self) -> None:
        """SIGKILL the server, keeping its store: a crash, for failure demos. Restart with :meth:`start`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        unregister(self)

    def restart(self) -> NatsServer:
        """Stop and start again on the same port with the same store (use a named ``store_dir``)."""
        if self.running():
            self.proc.terminate()  # type: ignore[union-attr]
            self.proc.wait(10)  # type: ignore[union-attr]
        unregister(self)
        return self.start()

    def reload(self) -> None:
        """Ask the server to re-read its config and certificates (SIGHUP); clients stay connected."""
        if not self.running():
            raise RuntimeError("server is not running")
        os.kill(self.pid, signal.SIGHUP)  # type: ignore[arg-type]

    def _cleanup(self) -> None:
        unregister(self)
        if self.run_dir is not None:
            # the run folder holds the log and, without a named store_dir, the JetStream store
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    # ----------------------------------------------------------------- context managers
    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> NatsServer:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # ----------------------------------------------------------------- clients
    async def connect(self, **options: Any) -> Client:
        """A nats-py connection to this server (see :func:`natsdemo.core.connect.connect`)."""
        return await connect(self.url, **options)

    def varz(self) -> dict[str, Any]:
        """The monitoring endpoint ``/varz`` as a dict."""
        return monitor_json(self, "varz")
