"""What a local cluster and a local supercluster share: servers started, awaited and stopped together.

:class:`NodeGroup` owns the servers and their stores (a temporary folder unless ``store`` names
one), stops an earlier group it ``replaces`` (a re-run notebook cell), and stops everything it
started if a start fails half-way. A subclass builds its servers in ``_build`` and says when they
are ready in ``wait_ready``.

Not taught on its own: the base of LocalCluster and Supercluster, which notebook 05 runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natsdemo.workbook.tls_servers import TlsServer

log = logging.getLogger("natsdemo.workbook")


@dataclass(kw_only=True)
class NodeGroup:
    """Servers started and stopped together; see :class:`~natsdemo.workbook.cluster.LocalCluster`."""

    store: str | os.PathLike[str] | None = None
    ready_timeout: float = 30.0
    replaces: Any = field(default=None, repr=False)  # an earlier group, stopped before this one starts
    servers: dict[str, TlsServer] = field(default_factory=dict, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    def _build(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float | None = None) -> str:
        raise NotImplementedError

    def _store_root(self, prefix: str) -> Path:
        """Where each node keeps its JetStream data: ``store``, or a temporary folder :meth:`stop` removes."""
        if self.store is not None:
            return Path(self.store).resolve()
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        return Path(self._tmp.name)

    def start(self, wait: bool = True) -> Any:
        """Start every node; with ``wait``, block until :meth:`wait_ready` says so."""
        if self.replaces is not None:  # re-running a notebook cell: stop the previous group first
            self.replaces.stop()
            self.replaces = None
        if not self.servers:
            self._build()
        try:
            for srv in self.servers.values():
                srv.start()
            if wait:
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    async def astart(self, wait: bool = True) -> Any:
        """:meth:`start` without blocking the event loop (notebooks, widget handlers)."""
        if self.replaces is not None:
            await self.replaces.astop()
            self.replaces = None
        if not self.servers:
            await asyncio.to_thread(self._build)  # certificates: CPU work
        try:
            for srv in self.servers.values():
                await srv.astart()
            if wait:
                await self.await_ready()
        except BaseException:
            await self.astop()
            raise
        return self

    async def await_ready(self, timeout: float | None = None) -> str:
        """:meth:`wait_ready` without blocking the event loop (for notebooks)."""
        return await asyncio.to_thread(self.wait_ready, timeout)

    def stop(self) -> None:
        for srv in self.servers.values():
            srv.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.gather(*(srv.astop() for srv in self.servers.values()))
        self.stop()

    def run_in_foreground(self, lines: Callable[[], Iterable[str]], notes: Callable[[], Iterable[str]]) -> int:
        """The ``cluster``/``supercluster`` commands: start, print ``lines()`` on stdout and ``notes()``
        on stderr once ready, then wait for SIGINT or SIGTERM and stop every node."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        try:
            for line in lines():
                print(line, flush=True)
            for note in notes():
                log.info("%s", note)
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
        return 0

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
