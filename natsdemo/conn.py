"""Connecting to NATS the same way from notebooks, services and tests.

Every service reads its servers and TLS material from flags or from the environment:

* ``NATS_URL``: one URL or a comma-separated list (``nats://a:4222,nats://b:4222``);
* ``NATS_CA``, ``NATS_CERT``, ``NATS_KEY``: CA bundle, client certificate and key (PEM files).

Defaults are chosen for production rather than for demos: a bounded connect timeout, unlimited
reconnects (a service should ride out a server restart), and errors logged instead of printed.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
from typing import Any

import nats
from nats.aio.client import Client

log = logging.getLogger("natsdemo")

DEFAULT_URL = "nats://127.0.0.1:4222"


def servers_from_env(default: str | None = None) -> list[str]:
    """Split ``NATS_URL`` (comma-separated) into a list, or ``[default]``."""
    raw = os.environ.get("NATS_URL") or default or DEFAULT_URL
    return [s.strip() for s in raw.split(",") if s.strip()]


def client_tls_context(
    ca_file: str | os.PathLike[str] | None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for nats-py that trusts ``ca_file`` and optionally presents a client cert.

    ``minimum_version`` takes an ``ssl.TLSVersion``; the old ``ssl.PROTOCOL_TLSv1_2`` constant
    seen in stale examples raises here. Host names are checked against the SANs only
    (``hostname_checks_common_name = False``), as Go does.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Python still accepts a certificate *without SANs* whose CN equals the host name; Go (and so
    # nats-server, for routes and leafnodes) never does. Match Go: only SANs name a host.
    ctx.hostname_checks_common_name = False
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class _QuietUntilConnected:
    """nats-py's error callback: quiet until the first connection succeeded (a failure to connect
    is reported once, as an exception), then every error is logged as a warning."""

    def __init__(self) -> None:
        self.connected = False

    async def on_error(self, exc: Exception) -> None:  # nats-py wants a coroutine function
        (log.warning if self.connected else log.debug)("nats: %s", exc)


async def connect(
    servers: str | list[str] | None = None,
    *,
    ca: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    tls: ssl.SSLContext | None = None,
    name: str = "natsdemo",
    connect_timeout: float = 5.0,
    max_reconnect_attempts: int = -1,
    first_connect_timeout: float | None = None,
    **options: Any,
) -> Client:
    """Connect with production defaults. ``servers`` may be a comma-separated string or a list.

    With no ``servers``, ``NATS_URL`` is used; with no TLS arguments, ``NATS_CA``/``NATS_CERT``/
    ``NATS_KEY`` are. The first connection is bounded by ``first_connect_timeout`` (default
    ``max(10, 2 * connect_timeout)`` seconds) and raises ``ConnectionError`` naming the URLs; once
    connected, it reconnects forever (``max_reconnect_attempts=-1``).
    """
    if servers is None:
        servers = servers_from_env()
    elif isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    ca = ca or os.environ.get("NATS_CA") or None
    cert = cert or os.environ.get("NATS_CERT") or None
    key = key or os.environ.get("NATS_KEY") or None
    if tls is None and (ca or cert):
        tls = client_tls_context(ca, cert, key)
    if tls is not None:
        options["tls"] = tls
    quiet = None
    if "error_cb" not in options:
        quiet = _QuietUntilConnected()
        options["error_cb"] = quiet.on_error
    # nats-py keeps retrying the *first* connection as long as reconnects are allowed; bound it,
    # so a service pointed at the wrong URL says so instead of hanging (and stays stoppable)
    first_try = first_connect_timeout or max(10.0, 2 * connect_timeout)
    try:
        nc = await asyncio.wait_for(
            nats.connect(
                servers=servers,
                name=name,
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=max_reconnect_attempts,
                **options,
            ),
            timeout=first_try,
        )
    except TimeoutError as exc:
        raise ConnectionError(f"no NATS server answered at {', '.join(servers)} within {first_try:.0f} s") from exc
    if quiet is not None:
        quiet.connected = True
    return nc


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--server/--ca/--cert/--key`` flags every service shares."""
    parser.add_argument(
        "--server",
        default=None,
        help="NATS URL or comma-separated list (default: $NATS_URL, else nats://127.0.0.1:4222)",
    )
    parser.add_argument("--ca", default=None, help="CA bundle to trust (default: $NATS_CA)")
    parser.add_argument("--cert", default=None, help="client certificate (default: $NATS_CERT)")
    parser.add_argument("--key", default=None, help="client key (default: $NATS_KEY)")


async def connect_from_args(args: argparse.Namespace, name: str) -> Client:
    """Connect using the flags from :func:`add_connection_arguments` (falling back to the env)."""
    servers = args.server or os.environ.get("NATS_URL") or None
    return await connect(servers, ca=args.ca, cert=args.cert, key=args.key, name=name)


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


async def publish_acked(
    js: Any,
    subject: str,
    payload: bytes,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
    retry_for: float = 15.0,
    idempotent: bool | None = None,
) -> Any:
    """``js.publish`` that rides out a stream leader election, and never reports a false ack.

    * "no responders" means no stream took the message (no leader, or no server): nothing was
      stored, so retrying is always safe;
    * a timeout is ambiguous (the stream may have stored it): it is retried only when a retry
      cannot store a second copy, that is with ``Nats-Msg-Id`` (the stream de-duplicates it) or
      when the caller says so with ``idempotent=True`` (for example a publish guarded by
      ``Nats-Expected-Last-Subject-Sequence``, which the stream refuses once the first copy landed:
      the caller must then read back whether that copy was its own);
    * "duplicate message id is in process" (10158) means an earlier try is still being replicated:
      waiting and retrying returns its acknowledgement (marked duplicate).

    After ``retry_for`` seconds it raises :class:`natsdemo.errors.Unavailable` saying which case it was.
    """
    import nats.errors
    import nats.js.errors

    from natsdemo.errors import Unavailable

    if idempotent is None:
        idempotent = bool(headers and headers.get("Nats-Msg-Id"))
    deadline = asyncio.get_running_loop().time() + retry_for
    delay = 0.1
    while True:
        try:
            return await js.publish(subject, payload, timeout=timeout, headers=headers)
        except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError) as exc:
            last, maybe_stored = exc, False
        except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
            last, maybe_stored = exc, True
            if not idempotent:
                break
        except nats.js.errors.APIError as exc:
            if exc.err_code != 10158:  # "duplicate message id is in process": an earlier try is in flight
                raise
            last, maybe_stored = exc, True
        if asyncio.get_running_loop().time() + delay > deadline:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    if maybe_stored:
        hint = "it may have been stored; retry with the same Nats-Msg-Id so the stream de-duplicates it"
    else:
        hint = "nothing was stored; it is safe to retry"
    raise Unavailable(
        f"JetStream did not acknowledge {subject} ({type(last).__name__}): the stream has no leader or no quorum "
        f"(are most cluster nodes down?); {hint}"
    )


def replicas_for(js: Any, wanted: int = 3) -> int:
    """:func:`default_replicas` for the connection behind a JetStream context.

    Every ``ensure_*`` function of the workbook uses it, so the same service creates R1 streams on
    the workbook's single server and R3 streams on a 3-node cluster.
    """
    nc = getattr(js, "_nc", None)  # nats-py keeps the connection on the context
    return default_replicas(nc, wanted) if nc is not None else 1


async def retrying(what: str, make: Any, *, retry_for: float = 30.0) -> Any:
    """Await ``make()`` until it succeeds, retrying JetStream API calls that failed *transiently*.

    A service starting next to a cluster that is still electing leaders (or on a busy machine)
    sees API timeouts, "no responders" and 503 "JetStream temporarily unavailable". Those are
    retried with backoff for ``retry_for`` seconds; anything else (a bad config, a permission
    error) is raised at once. ``make`` is a zero-argument callable returning a new awaitable.
    """
    import nats.errors
    import nats.js.errors

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
    import nats.js.errors

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
