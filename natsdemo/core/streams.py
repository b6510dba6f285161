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
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from natsdemo.core.errors import ReplicasError, UsageError

log = logging.getLogger("natsdemo.streams")

T = TypeVar("T")

REPLICAS_ENV = "NATS_REPLICAS"


def default_replicas(nc: Client, replicas: int | None = None) -> int:
    """Stream replicas to ask for: ``replicas`` if given, else ``$NATS_REPLICAS``, else 3 when the
    server we are connected to is in a cluster and 1 on a single server.

    The connected server's own INFO says whether it is clustered. Its gossiped list of the other
    members (``connect_urls``) is not used: right after a cluster forms, or while a node is down,
    it can name 2 of 3 nodes, and a count derived from it would silently create R2 or R1 streams.
    Asking for 3 on a cluster either gets R3 streams (a node that is down catches up when it is
    back) or fails with :class:`~natsdemo.core.errors.ReplicasError`.
    """
    if replicas is None:
        raw = os.environ.get(REPLICAS_ENV, "").strip()
        if raw:
            replicas = check_replicas(raw, REPLICAS_ENV)
    if replicas is not None:
        return check_replicas(replicas)
    info = getattr(nc, "_server_info", None) or {}
    return 3 if info.get("cluster") else 1


def check_replicas(value: object, what: str = "--replicas") -> int:
    """``value`` as a replica count (1 to 5, as JetStream allows), or :class:`UsageError`."""
    try:
        n = int(str(value))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a number of replicas: use 1 to 5 (3 on a 3-node cluster)") from None
    if not 1 <= n <= 5:
        raise UsageError(f"{what} {n} is not a number of replicas: use 1 to 5 (3 on a 3-node cluster)")
    return n


def replicas_for(js: Any, replicas: int | None = None) -> int:
    """:func:`default_replicas` for the connection behind a JetStream context.

    Every ``ensure_*`` function of the workbook uses it, so the same service creates R1 streams on
    the workbook's single server and R3 streams on a cluster, unless told otherwise.
    """
    nc = getattr(js, "_nc", None)  # nats-py keeps the connection on the context
    if nc is None:
        return check_replicas(replicas) if replicas is not None else 1
    return default_replicas(nc, replicas)


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
    stream. An existing stream is returned as it is, except that one with fewer replicas than
    ``config.num_replicas`` is scaled up; a stream that cannot have the replicas asked for raises
    :class:`~natsdemo.core.errors.ReplicasError` (never a silent R1). If the stream cannot be
    created for another reason (most often another stream already captures its subjects), the
    error says so.
    """
    wanted = config.num_replicas or 1
    failure: Exception | None = None
    for _attempt in range(3):
        try:
            info = await js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            pass
        else:
            return await _with_replicas(js, info, wanted)
        try:
            return await js.add_stream(config)
        except nats.js.errors.APIError as exc:
            if _placement_failed(exc):
                raise _replicas_error(config.name, wanted, exc) from None
            if not isinstance(exc, nats.js.errors.BadRequestError):
                raise
            failure = exc  # lost a creation race, or a real conflict: look again
            await asyncio.sleep(0.05)
    raise RuntimeError(
        f"cannot create stream {config.name} on {', '.join(config.subjects or [])} ({failure}); "
        "does another stream already capture those subjects?"
    )


def _placement_failed(exc: Exception) -> bool:
    # 10074: replicas > 1 on a single server; 10023: insufficient resources; 10005: no suitable peers
    text = str(getattr(exc, "description", "") or exc).lower()
    return getattr(exc, "err_code", None) in {10074, 10023, 10005} or "replicas" in text or "peers" in text


def _replicas_error(stream: str, wanted: int, exc: Exception) -> ReplicasError:
    why = getattr(exc, "description", None) or str(exc)
    return ReplicasError(
        f"stream {stream}: asked for {wanted} replicas, but the server cannot place them ({why}); "
        f"start the missing cluster nodes, or ask for fewer with --replicas N or {REPLICAS_ENV}"
    )


async def _with_replicas(js: Any, info: Any, wanted: int) -> Any:
    """``info`` if its stream has at least ``wanted`` replicas, else the stream scaled up to them."""
    have = info.config.num_replicas or 1
    if have >= wanted:
        return info
    info.config.num_replicas = wanted
    try:
        scaled = await js.update_stream(info.config)
    except nats.js.errors.APIError as exc:
        raise _replicas_error(info.config.name, wanted, exc) from None
    log.warning("stream %s had %d replica(s); scaled up to %d", info.config.name, have, wanted)
    return scaled
