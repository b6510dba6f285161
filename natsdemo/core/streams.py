"""Streams that exist when a service needs them: create-if-missing, transient retries, replicas.

* :func:`create_stream_if_missing` is safe when several processes start together;
* :func:`retrying` awaits a JetStream API call through the transient failures of a cluster that is
  still electing leaders, and raises at once on anything else;
* :func:`default_replicas` / :func:`replicas_for` pick 3 replicas on a cluster, 1 on a single server.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client

log = logging.getLogger("natsdemo.streams")

T = TypeVar("T")


def default_replicas(nc: Client, wanted: int = 3) -> int:
    """Stream replicas to ask for: ``wanted`` (capped at the cluster size) on a cluster, 1 on a single server.

    The server's INFO names its cluster and gossips every member's client URL, so a service can
    create R3 streams on a 3-node cluster and still run against the single workbook server.
    """
    info = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return 1
    members = len(set(info.get("connect_urls") or [])) or 1
    return max(1, min(wanted, members))


def replicas_for(js: Any, wanted: int = 3) -> int:
    """:func:`default_replicas` for the connection behind a JetStream context.

    Every ``ensure_*`` function of the workbook uses it, so the same service creates R1 streams on
    the workbook's single server and R3 streams on a 3-node cluster.
    """
    nc = getattr(js, "_nc", None)  # nats-py keeps the connection on the context
    return default_replicas(nc, wanted) if nc is not None else 1


async def retrying(what: str, make: Callable[[], Awaitable[T]], *, retry_for: float = 30.0) -> T:
    """Await ``make()`` until it succeeds, retrying JetStream API calls that failed *transiently*.

    A service starting next to a cluster that is still electing leaders (or on a busy machine)
    sees API timeouts, "no responders" and 503 "JetStream temporarily unavailable". Those are
    retried with backoff for ``retry_for`` seconds; anything else (a bad config, a permission
    error) is raised at once. ``make`` is a zero-argument callable returning a new awaitable.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    delay = 0.2
    while True:
        try:
            return await make()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                nats.js.errors.ServiceUnavailableError, TimeoutError) as exc:
            if loop.time() + delay > deadline:
                raise ConnectionError(f"{what}: JetStream did not answer for {retry_for:.0f} s ({exc!r})") from exc
            log.info("%s: %r, retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def create_stream_if_missing(js: Any, config: Any) -> Any:
    """The info of stream ``config.name``, created with ``config`` if it is missing.

    Safe when several processes start together: the loser of a creation race finds the winner's
    stream. An existing stream is returned as it is. If the stream cannot be created (most often
    because another stream already captures its subjects) the error says so.
    """
    failure: Exception | None = None
    for _attempt in range(3):
        try:
            return await js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            pass
        try:
            return await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:  # lost a creation race, or a real conflict: look again
            failure = exc
            await asyncio.sleep(0.05)
    raise RuntimeError(
        f"cannot create stream {config.name} on {', '.join(config.subjects or [])} ({failure}); "
        "does another stream already capture those subjects?"
    )
