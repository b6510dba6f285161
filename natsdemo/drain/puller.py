"""Pull batches from a durable consumer without an asyncio task per message.

nats-py's ``psub.fetch`` waits for each message of a batch with ``next_msg``, which starts an
asyncio task (two on Python 3.11) per message; on a fast queue that is most of a worker's time.
:class:`Puller` speaks the pull protocol itself, with nats-py's public client calls (it reads the
context's connection and API prefix):

* one callback subscription on a wildcard inbox ``_INBOX.<id>.*``; the messages land in one list,
  and a fetch waits on one wake-up event, not on a task per message;
* each pull request (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``) gets its own reply subject
  ``_INBOX.<id>.<n>``; the server's status replies (404 no messages, 408 expired, 409 ...) come
  back on it, so a late status of an earlier request cannot end the current fetch early (what
  makes nats-py's fetch return ``[]``: nats.py #709);
* at most one request is open on the server at a time, so every delivered message belongs to it
  (delivered messages keep their own subject and cannot be told apart by reply subject); a fetch
  that was cancelled leaves its request open, and the next fetch, or :meth:`Puller.stop`, first
  waits for it to end and collects what it brought;
* one request per fetch, ``{"batch": n, "no_wait": true, "expires": <the timeout>}``: measured on
  nats-server 2.15.1, it returns what is there at once and ends with a 404; on an empty queue it
  waits for the first items, sends what is there, then the 404; when ``max_ack_pending`` caps it
  (or nothing comes) it ends with a 408 at expiry. (``no_wait`` without ``expires`` gets no reply at
  all once ``max_ack_pending`` is reached.) Nothing at all raises :class:`NoMessages` (a
  :class:`nats.errors.TimeoutError`), never ``[]``;
* no request is sent while the connection is down (nats-py would buffer it and send it after the
  reconnect, long after the fetch gave up on it).

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
LOST_AFTER = 2.0  # seconds past its expiry: a request with no final word was lost (a reconnect)
QUIET = 0.01  # seconds without a new message: a batch that max_ack_pending holds back is returned
EARLY = 0.01  # seconds: a request's expires ends this much before its fetch's deadline
END_GRACE = 0.5  # seconds a fetch past its deadline waits for its own request's final word (a busy server)
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
    __slots__ = ("gone_at", "got", "status", "token", "want")

    def __init__(self, token: str, want: int, gone_at: float) -> None:
        self.token = token
        self.want = want
        self.got = 0
        self.gone_at = gone_at  # loop time after which a request without a final word counts as lost
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
        self._wake = asyncio.Event()  # something arrived, or the open request ended
        self._last_arrival = 0.0
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
        open request ends by itself at its ``expires``, which is never longer than its fetch's timeout.
        """
        if self._sub is not None:
            await self.quiesce(timeout)
            sub, self._sub = self._sub, None
            try:  # drain, not unsubscribe: what already reached the client still lands in the pool
                async with asyncio.timeout(timeout):
                    await sub.drain()
            except (TimeoutError, nats.errors.Error):
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
        held, self._pool = self._pool, []
        return held

    @property
    def holding(self) -> int:
        """Messages received but not yet returned by a fetch (fetch again, or stop() and hand them back)."""
        return len(self._pool)

    async def quiesce(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` s) until no request is open, so a nak goes to another fetch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (request := self._open) is not None and loop.time() < deadline:
            await self._wait(min(deadline, request.gone_at))
            self._expire(loop.time())

    # ---------------------------------------------------------------- what arrives
    async def _arrived(self, msg: Msg) -> None:
        request = self._open
        if msg.reply:  # a delivered message: JetStream gives it an ack subject, a status has none
            self._pool.append(msg)
            self._last_arrival = asyncio.get_running_loop().time()
            self._wake.set()
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
        if self._open is request:
            self._open = None
            self._wake.set()

    def _expire(self, now: float) -> None:
        request = self._open
        if request is not None and now >= request.gone_at:
            log.debug("pull request %s had no final word: counted as lost", request.token)
            self._end(request)

    async def _wait(self, until: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await self._wake.wait()

    # ---------------------------------------------------------------- fetching
    async def _ask(self, batch: int, deadline: float) -> _Request:
        loop = asyncio.get_running_loop()
        left = deadline - loop.time()
        expires = left - min(EARLY, left / 10)  # the server's 408 should come before we stop waiting
        body = {"batch": batch, "no_wait": True, "expires": max(1, int(expires * 1e9))}
        request = self._open = _Request(str(next(self._numbers)), batch, deadline + LOST_AFTER)
        await self.nc.publish(self.next_subject, json.dumps(body).encode(), reply=f"{self._inbox}.{request.token}")
        return request

    def _take(self, batch: int) -> list[Msg]:
        got, self._pool = self._pool[:batch], self._pool[batch:]
        return got

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages (at least one), or :class:`NoMessages` after ``timeout`` s.

        Returns as soon as the request ends, ``batch`` messages are in, or (a batch that
        ``max_ack_pending`` holds back) no new message came for :data:`QUIET` seconds; the request
        then stays open and what it brings later goes to the next fetch. Sends one request at most,
        and none while the connection is down. Raises :class:`PullRefused` when the consumer refuses
        the request for good (its ``max_request_batch`` is below ``batch``, or it was deleted or is
        a push consumer).
        """
        if self._sub is None:
            raise RuntimeError("call start() first")
        if batch < 1 or not timeout > 0:
            raise ValueError(f"fetch needs batch >= 1 and timeout > 0 (got {batch}, {timeout})")
        if self._fetching:
            raise RuntimeError("one fetch at a time on a Puller")
        self._fetching = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        mine: _Request | None = None
        try:
            while True:
                now = loop.time()
                self._expire(now)
                request = self._open
                if self._pool and (request is None or len(self._pool) >= batch or now - self._last_arrival >= QUIET
                                    or now >= deadline):
                    return self._take(batch)
                if mine is not None and any(mine.status.startswith(f"409 {r}") for r in REFUSALS):
                    raise PullRefused(f"{self.next_subject}: the server refused the pull: {mine.status}")
                if now >= deadline:
                    if request is not None and request is mine and now < deadline + END_GRACE:
                        # its expiry is due: a server late with it would answer after we gave up,
                        # into a pool nobody reads until the next fetch
                        await self._wait(min(request.gone_at, deadline + END_GRACE))
                        continue
                    break
                if request is None and mine is None and self.nc.is_connected:
                    mine = await self._ask(batch, deadline)  # one per fetch: a refusal never spins
                    continue
                # wait for a message, the end of the open request, or the deadline; an early end
                # with nothing (no responders during an election) waits out the timeout, as
                # psub.fetch does, so a caller's probe loop never spins
                until = deadline if request is None else min(deadline, request.gone_at)
                if self._pool:
                    until = min(until, self._last_arrival + QUIET)
                await self._wait(until)
            status = mine.status if mine is not None else "" if self.nc.is_connected else "not connected"
            raise NoMessages(f"no messages in {timeout:g} s" + (f" (last status: {status})" if status else ""))
        finally:
            self._fetching = False


__all__ = ["NoMessages", "PullRefused", "Puller"]
