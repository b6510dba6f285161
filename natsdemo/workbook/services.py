"""Run the workbook's services (``tick``, ``drain``, ``reservations``) as real processes.

A :class:`ServiceProcess` is ``python -m natsdemo ARGS`` with its output in a log file, so a
notebook or a test can start it, wait for its ready line, SIGKILL it (a crash), restart it, and
read what it printed. Like the servers, a service dies with the process that started it
(``PR_SET_PDEATHSIG``), so a kernel restart does not leave services running.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from natsdemo.workbook.binary import pdeathsig_hook
from natsdemo.workbook.registry import state_dir


def work_dir(prefix: str = "work-") -> Path:
    """A new folder for service logs and outputs in the workbook's state folder, not in /tmp:
    ``python -m natsdemo reset`` clears it, and a test suite's isolated state folder contains it.

    Defined in notebooks/05_production.ipynb
    """
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_services_dir()))


def _services_dir() -> Path:
    folder = state_dir() / "services"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _new_log() -> Path:
    fd, path = tempfile.mkstemp(prefix="svc-", suffix=".log", dir=_services_dir())
    os.close(fd)
    return Path(path)


@dataclass
class ServiceProcess:
    """``python -m natsdemo *args`` as a child process.

    ``ready`` is a regular expression that the service prints once it is serving; ``env`` adds to
    the environment (``NATS_URL``, ``NATS_CA``... from :meth:`natsdemo.workbook.cluster.LocalCluster.env`).

    Defined in notebooks/05_production.ipynb
    """

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: str = r"."
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    log_path: Path = field(default_factory=lambda: _new_log())
    starts: int = field(default=0, init=False)
    _offset: int = field(default=0, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> ServiceProcess:
        """Start (if not running); does not wait, see :meth:`wait_ready`."""
        if self.running():
            return self
        with open(self.log_path, "ab") as log:
            self._offset = log.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "natsdemo", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                preexec_fn=pdeathsig_hook(),
                start_new_session=True,
            )
        self.starts += 1
        return self

    def _ready_now(self) -> bool:
        text = self.log_text()[self._offset :]
        if re.search(self.ready, text, re.MULTILINE):
            return True
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"service {self.name} exited with {self.proc.returncode}: {text.strip()[-800:]}")
        return False

    def _waiting(self, timeout: float) -> Iterator[None]:  # one step per poll
        deadline = time.monotonic() + timeout
        while not self._ready_now():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {self.name} printed no ready line in {timeout} s")
            yield

    def wait_ready(self, timeout: float = 30.0) -> ServiceProcess:
        """Block until the service printed its ready line (raises if it exited or took too long)."""
        for _ in self._waiting(timeout):
            time.sleep(0.05)
        return self

    async def await_ready(self, timeout: float = 30.0) -> ServiceProcess:
        """:meth:`wait_ready` without blocking the event loop."""
        for _ in self._waiting(timeout):
            await asyncio.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        if self.running():
            self.proc.kill()  # type: ignore[union-attr]
            self.proc.wait(10)  # type: ignore[union-attr]

    def stop(self, timeout: float = 20.0, *, signal_first: bool = True) -> int | None:
        """SIGTERM and wait for the graceful shutdown; SIGKILL if it takes longer than ``timeout``.

        Only one SIGTERM is ever sent: a second one tells a natsdemo service to exit at once.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if signal_first:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    async def astop(self, timeout: float = 20.0) -> int | None:
        """:meth:`stop` without blocking the event loop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return self.stop(timeout=1, signal_first=False)

    def restart(self) -> ServiceProcess:
        self.stop()
        return self.start()

    async def arestart(self) -> ServiceProcess:
        """:meth:`restart` without blocking the event loop (the graceful stop can take seconds)."""
        await self.astop()
        return self.start()

    def remove_log(self) -> None:
        self.log_path.unlink(missing_ok=True)


def stop_all(
    services: list[ServiceProcess] | dict[str, ServiceProcess], timeout: float = 20.0
) -> dict[str, int | None]:
    """SIGTERM every running service first, then wait for each: they shut down in parallel.

    Defined in notebooks/05_production.ipynb
    """
    procs = list(services.values()) if isinstance(services, dict) else list(services)
    for svc in procs:
        if svc.running():
            svc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    return {svc.name: svc.stop(timeout, signal_first=False) for svc in procs}
