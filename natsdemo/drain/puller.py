"""Pull batches from a durable consumer without an asyncio task per message.

nats-py's ``psub.fetch`` waits for each message of a batch with ``next_msg``, which starts a task
and a ``wait_for`` per message; on a fast queue that is most of a worker's time. :class:`Puller`
speaks the pull protocol itself, with public client calls only:

* one callback subscription on a wildcard inbox ``_INBOX.<id>.*``; the messages of every request
  land in one list, so a fetch awaits one future per request, not one task per message;
* each pull request (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``) gets its own reply subject
  ``_INBOX.<id>.<n>``; the server's status replies (404 no messages, 408 expired, 409 ...) come
  back on it, so a late status of an earlier request can no longer end the current fetch early
  (what makes nats-py's fetch return ``[]``: nats.py #709). Delivered messages keep their own
  subject, so they cannot be told apart by request: they are all the worker's to settle;
* like ``psub.fetch``: first a ``no_wait`` request for what is there now, and only if that finds
  nothing a request that waits (``expires``) until the timeout; nothing at all raises
  :class:`NoMessages` (a :class:`nats.errors.TimeoutError`), never an empty list.

Messages that arrive after a fetch returned (a waiting request answered late) are kept and
returned by the next fetch, or by :meth:`Puller.stop` so the worker can hand them back.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import nats.errors
from nats.aio.msg import Msg

HEARTBEAT = "100"  # idle heartbeat / flow control: not the end of a request
# what a status without a description means for a pull request
MEANING = {"503": "no responders: the consumer does not exist, or has no leader"}
MIN_EXPIRES = 0.001  # seconds: a waiting request shorter than this is not worth sending


class NoMessages(nats.errors.TimeoutError):
    """Nothing to fetch within the timeout (a :class:`nats.errors.TimeoutError`, so a builtin one too)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


class _Request:
    __slots__ = ("ended", "status", "want")

    def __init__(self, want: int, ended: asyncio.Future[None]) -> None:
        self.want = want
        self.ended = ended
        self.status = ""  # "code description" of the status that ended it, if any


class Puller:
    """Batches from one durable pull consumer, over one subscription; one fetch at a time.

    ``api_prefix`` is the JetStream API prefix (``$JS.API``, or ``$JS.<domain>.API``); by default
    the one of ``js``.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    def __init__(self, js: Any, stream: str, durable: str, *, api_prefix: str | None = None) -> None:
        self.nc = js._nc
        prefix = api_prefix or getattr(js, "_prefix", "$JS.API")
        self.next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._sub: Any = None
        self._inbox = ""
        self._pool: list[Msg] = []
        self._requests: dict[str, _Request] = {}
        self._current: _Request | None = None
        self._numbers = itertools.count(1)
        self._fetching = False

    async def start(self) -> Puller:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._arrived)
        return self

    async def stop(self) -> list[Msg]:
        """Unsubscribe; returns the messages received but not yet fetched (hand them back)."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        held, self._pool = self._pool, []
        return held

    async def _arrived(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is None:
            self._pool.append(msg)
            current = self._current
            if current is not None and len(self._pool) >= current.want and not current.ended.done():
                current.ended.set_result(None)
            return
        if status == HEARTBEAT:
            return
        request = self._requests.get(msg.subject[len(self._inbox) + 1:])
        if request is not None and not request.ended.done():  # a status of an older request: ignored
            # nats-py parses a status line without a description into the next header: first line only
            described = str(headers.get("Description", "")).split("\n", 1)[0].strip()  # type: ignore[union-attr]
            request.status = f"{status} {described or MEANING.get(status, '')}".strip()
            request.ended.set_result(None)

    async def _ask(self, batch: int, deadline: float, *, wait: bool) -> tuple[list[Msg], str]:
        loop = asyncio.get_running_loop()
        body: dict[str, Any] = {"batch": batch}
        if wait:
            body["expires"] = int((deadline - loop.time()) * 1e9) - 100_000  # ends just before we stop waiting
        else:
            body["no_wait"] = True
        token = str(next(self._numbers))
        request = self._requests[token] = self._current = _Request(batch, loop.create_future())
        try:
            await self.nc.publish(self.next_subject, json.dumps(body).encode(), reply=f"{self._inbox}.{token}")
            try:
                async with asyncio.timeout_at(deadline):
                    await request.ended
            except TimeoutError:
                pass
        finally:
            del self._requests[token]
            self._current = None
        return self._take(batch), request.status

    def _take(self, batch: int) -> list[Msg]:
        got, self._pool = self._pool[:batch], self._pool[batch:]
        return got

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages (at least one), or :class:`NoMessages` after ``timeout`` s."""
        if self._sub is None:
            raise RuntimeError("call start() first")
        if batch < 1 or not timeout > 0:
            raise ValueError(f"fetch needs batch >= 1 and timeout > 0 (got {batch}, {timeout})")
        if self._fetching:
            raise RuntimeError("one fetch at a time on a Puller")
        self._fetching = True
        try:
            if self._pool:  # answered late to an earlier fetch
                return self._take(batch)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            got, status = await self._ask(batch, deadline, wait=False)
            if got:
                return got
            if deadline - loop.time() > MIN_EXPIRES:
                got, status = await self._ask(batch, deadline, wait=True)
                if got:
                    return got
                # ended early by a status (a 409, no responders during an election): wait out the
                # timeout like psub.fetch does, so a caller's probe loop never spins
                await asyncio.sleep(max(0.0, deadline - loop.time()))
            raise NoMessages(f"no messages in {timeout:g} s" + (f" (last status: {status})" if status else ""))
        finally:
            self._fetching = False


__all__ = ["NoMessages", "Puller"]
