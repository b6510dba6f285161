"""A loopback TCP proxy that can pass, delay, stall or vanish connections: network faults for tests.

* ``stall(seconds)``: every connection (and every new one) stops forwarding, without closing;
* ``vanish()``: the connections open now go silent for good (no FIN, no RST, nothing forwarded),
  while new connections pass: what a client sees when a peer's host disappears;
* ``reset()``: every open connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._silent: set[asyncio.StreamWriter] = set()
        self._stall_until = 0.0
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds

    def vanish(self) -> None:
        for client, upstream in list(self._conns):
            self._silent.update((client, upstream))

    def reset(self) -> None:
        for client, upstream in list(self._conns):
            for w in (client, upstream):
                with contextlib.suppress(Exception):
                    w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    w.close()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        self._conns.discard(pair)
        for w in pair:
            if w not in self._silent:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                if writer not in self._silent:
                    writer.close()
                return
            while time.monotonic() < self._stall_until:
                await asyncio.sleep(0.05)
            if writer in self._silent:
                continue  # swallowed: the peer hears nothing, ever
            writer.write(data)
            await writer.drain()
