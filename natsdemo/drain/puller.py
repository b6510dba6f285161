"""Pull batches from a durable consumer without an asyncio task per message.

nats-py's ``psub.fetch`` waits for each message of a batch with ``next_msg``, which starts an
asyncio task (two on Python 3.11) per message; on a fast queue that is most of a worker's time.
:class:`Puller` speaks the pull protocol itself, with public client calls only:

* one callback subscription on a wildcard inbox ``_INBOX.<id>.*``; the messages land in one list,
  so a fetch awaits one future per request, not a task per message;
* each pull request (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``) gets its own reply subject
  ``_INBOX.<id>.<n>``; the server's status replies (404 no messages, 408 expired, 409 ...) come
  back on it, so a late status of an earlier request cannot end the current fetch early (what
  makes nats-py's fetch return ``[]``: nats.py #709);
* at most one request is open on the server at a time, so every delivered message belongs to it
  (delivered messages keep their own subject and cannot be told apart by reply subject); a fetch
  that was cancelled leaves its request open, and the next fetch, or :meth:`Puller.stop`, first
  waits for it to end and collects what it brought;
* first a ``no_wait`` request for up to ``batch`` messages that are there now; only if that finds
  nothing, a request for **one** message that waits (``expires``) until the timeout, so the first
  item after a quiet spell is returned at once and nothing sits unseen in a half-filled batch;
  nothing at all raises :class:`NoMessages` (a :class:`nats.errors.TimeoutError`), never ``[]``.

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import nats.errors
from nats.aio.msg import Msg

log = logging.getLogger("natsdemo.drain")

HEARTBEAT = "100"  # idle heartbeat / flow control: not the end of a request
MIN_EXPIRES = 0.001  # seconds: a waiting request shorter than this is not worth sending
LOST_AFTER = 2.0  # seconds past its expiry: a request with no final word was lost (a reconnect)
# what a status without a description means for a pull request
MEANING = {"503": "no responders: the consumer does not exist, or has no leader"}
# 409 answers that no retry can change: the consumer's settings refuse this pull
REFUSALS = ("Exceeded MaxRequest", "Consumer Deleted", "Consumer is push based")


class NoMessages(nats.errors.TimeoutError):
    """Nothing to fetch within the timeout (a :class:`nats.errors.TimeoutError`, so a builtin one too)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


class PullRefused(RuntimeError):
    """The server refused the pull request for good (a 409 such as ``Exceeded MaxRequestBatch``)."""


class _Request:
    __slots__ = ("ended", "gone_at", "got", "status", "token", "want")

    def __init__(self, token: str, want: int, gone_at: float, ended: asyncio.Future[None]) -> None:
        self.token = token
        self.want = want
        self.got = 0
        self.gone_at = gone_at  # loop time after which a request without a final word counts as lost
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
        self._open: _Request | None = None  # the one request the server may still be answering
        self._numbers = itertools.count(1)
        self._fetching = False

    async def start(self) -> Puller:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._arrived)
        return self

    async def stop(self, timeout: float = 5.0) -> list[Msg]:
        """Wait (at most ``timeout`` s) for an open request to end, unsubscribe, and return what was
        received but not fetched.

        Hand what it returns back (nak) or process it: those messages are out with this worker. An
        open ``no_wait`` request ends within a round trip; a waiting one asks for one message only.
        """
        if self._sub is not None:
            await self._settle(asyncio.get_running_loop().time() + timeout)
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.ConnectionClosedError):
                await sub.unsubscribe()
        held, self._pool = self._pool, []
        return held

    # ---------------------------------------------------------------- what arrives
    async def _arrived(self, msg: Msg) -> None:
        request = self._open
        if msg.reply:  # a delivered message: JetStream gives it an ack subject, a status has none
            self._pool.append(msg)
            if request is not None:
                request.got += 1
                if request.got >= request.want:
                    self._end(request)
            return
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None or status == HEARTBEAT:
            return
        if request is None or msg.subject != f"{self._inbox}.{request.token}":
            return  # a late word about a request that already ended
        # nats-py parses a status line without a description into the next header: first line only
        described = str(headers.get("Description", "")).split("\n", 1)[0].strip()
        request.status = f"{status} {described or MEANING.get(status, '')}".strip()
        self._end(request)

    def _end(self, request: _Request) -> None:
        if not request.ended.done():
            request.ended.set_result(None)
        if self._open is request:
            self._open = None

    async def _settle(self, deadline: float) -> None:
        """Wait until the open request (a cancelled fetch's, say) has ended, or ``deadline``."""
        request = self._open
        if request is None:
            return
        loop = asyncio.get_running_loop()
        until = min(deadline, request.gone_at)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await asyncio.shield(request.ended)
        if self._open is request and loop.time() >= request.gone_at:
            log.debug("pull request %s had no final word: counted as lost", request.token)
            self._end(request)

    # ---------------------------------------------------------------- fetching
    async def _ask(self, batch: int, deadline: float, *, wait: bool) -> str:
        loop = asyncio.get_running_loop()
        body: dict[str, Any] = {"batch": batch}
        if wait:
            expires = deadline - loop.time() - 0.0001  # the server ends it just before we stop waiting
            body["expires"] = int(expires * 1e9)
            gone_at = deadline + LOST_AFTER
        else:
            body["no_wait"] = True
            gone_at = loop.time() + LOST_AFTER
        token = str(next(self._numbers))
        request = self._open = _Request(token, batch, gone_at, loop.create_future())
        await self.nc.publish(self.next_subject, json.dumps(body).encode(), reply=f"{self._inbox}.{token}")
        await self._settle(deadline)  # a cancelled fetch leaves the request open: the next call settles it
        if any(request.status.startswith(f"409 {refusal}") for refusal in REFUSALS):
            raise PullRefused(f"{self.next_subject}: the server refused the pull: {request.status}")
        return request.status

    def _take(self, batch: int) -> list[Msg]:
        got, self._pool = self._pool[:batch], self._pool[batch:]
        return got

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages (at least one), or :class:`NoMessages` after ``timeout`` s.

        Raises :class:`PullRefused` when the consumer refuses the request for good (its
        ``max_request_batch`` is below ``batch``, or it was deleted or is a push consumer).
        """
        if self._sub is None:
            raise RuntimeError("call start() first")
        if batch < 1 or not timeout > 0:
            raise ValueError(f"fetch needs batch >= 1 and timeout > 0 (got {batch}, {timeout})")
        if self._fetching:
            raise RuntimeError("one fetch at a time on a Puller")
        self._fetching = True
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            await self._settle(deadline)  # what an earlier, cancelled fetch asked for is ours too
            if self._pool:
                return self._take(batch)
            status = ""
            if self._open is None:
                status = await self._ask(batch, deadline, wait=False)
            if not self._pool and self._open is None and deadline - loop.time() > MIN_EXPIRES:
                status = await self._ask(1, deadline, wait=True) or status
                if not self._pool:
                    # ended early by a status (no responders during an election, say): wait out the
                    # timeout like psub.fetch does, so a caller's probe loop never spins
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
            if self._pool:
                return self._take(batch)
            raise NoMessages(f"no messages in {timeout:g} s" + (f" (last status: {status})" if status else ""))
        finally:
            self._fetching = False


__all__ = ["NoMessages", "PullRefused", "Puller"]
