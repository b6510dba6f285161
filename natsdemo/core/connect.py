"""Connecting to NATS the same way from notebooks, services and tests.

Every service reads its servers and TLS material from flags or from the environment:

* ``NATS_URL``: one URL or a comma-separated list (``nats://a:4222,nats://b:4222``);
* ``NATS_CA``, ``NATS_CERT``, ``NATS_KEY``: CA bundle, client certificate and key (PEM files).

Defaults are chosen for production rather than for demos: a bounded first connect, unlimited
reconnects (a service should ride out a server restart), and every disconnect, reconnect and
asynchronous error logged through :mod:`logging` (logger ``natsdemo.connect``), so an outage is
never silent.

Defined in notebooks/05_production.ipynb
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

from natsdemo.core.errors import PlaintextRefused, UsageError

log = logging.getLogger("natsdemo.connect")

DEFAULT_URL = "nats://127.0.0.1:4222"
# nats-py's defaults (a PING every 2 minutes, 2 unanswered) notice a connection that went silent
# (a vanished peer: no FIN, no RST) only after 6 minutes; nats-py declares it stale at the third
# interval with two PINGs unanswered, so these notice it within 15 s
PING_INTERVAL = 5
MAX_OUTSTANDING_PINGS = 2


def check_servers(servers: list[str]) -> list[str]:
    """``servers`` if every one is a NATS URL (``nats://``, ``tls://``, ``ws://``, ``wss://`` with a host), else
    :class:`UsageError` naming the first bad one."""
    from urllib.parse import urlparse

    for url in servers:
        try:
            u = urlparse(url if "://" in url else f"nats://{url}")
            host = u.hostname or ""
            ok = u.scheme in ("nats", "tls", "ws", "wss") and bool(host) and not any(c.isspace() for c in url) \
                and (u.port is None or u.port > 0)
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(f"{url!r} is not a NATS server URL: use nats://HOST:PORT (or tls://), "
                             "several separated by commas")
    return servers


def split_servers(raw: str) -> list[str]:
    """``"nats://a:4222, nats://b:4222"`` -> ``["nats://a:4222", "nats://b:4222"]``."""
    return [s.strip() for s in raw.split(",") if s.strip()]


def servers_from_env(default: str | None = None) -> list[str]:
    """Split ``NATS_URL`` (comma-separated) into a list, or ``[default]``."""
    return split_servers(os.environ.get("NATS_URL") or default or DEFAULT_URL)


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
    for what, path in (("CA", ca_file), ("certificate", cert_file), ("key", key_file)):
        if path and not os.path.isfile(path):
            raise UsageError(f"the {what} file {os.fspath(path)!r} does not exist (check --ca/--cert/--key or NATS_CA/"
                             "NATS_CERT/NATS_KEY)")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Python still accepts a certificate *without SANs* whose CN equals the host name; Go (and so
    # nats-server, for routes and leafnodes) never does. Match Go: only SANs name a host.
    ctx.hostname_checks_common_name = False
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class ConnectionLog:
    """nats-py's callbacks, logged: quiet until the first connection succeeded (a failure to
    connect is reported once, as an exception), then every disconnect, reconnect and error."""

    def __init__(self, name: str, logger: logging.Logger = log) -> None:
        self.name = name
        self.log = logger
        self.connected = False
        self.nc: Client | None = None
        self.disconnects = 0
        self.reconnects = 0
        self.require_tls = False
        self.handshake_first = False

    async def on_error(self, exc: Exception) -> None:  # nats-py wants coroutine functions
        (self.log.warning if self.connected else self.log.debug)("%s: nats error: %s", self.name, exc)

    async def on_disconnected(self) -> None:
        if not self.connected or (self.nc is not None and (self.nc.is_closed or self.nc.is_draining)):
            return  # our own close or drain: not an outage
        self.disconnects += 1
        self.log.warning("%s: disconnected from NATS; reconnecting", self.name)

    async def on_reconnected(self) -> None:
        self.reconnects += 1
        url = getattr(self.nc, "connected_url", None)
        where = f"{url.scheme}://{url.netloc}" if url is not None else "a server"
        self.log.warning("%s: reconnected to %s", self.name, where)
        if self.require_tls and self.nc is not None and not _tls_in_use(self.nc, self.handshake_first):
            self.log.error("%s: %s offers no TLS: closing the connection rather than talking in plain text",
                           self.name, where)
            await self.nc.close()

    async def on_closed(self) -> None:
        if self.connected:
            self.log.debug("%s: connection closed", self.name)

    def options(self) -> dict[str, Any]:
        return {
            "error_cb": self.on_error,
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
            "closed_cb": self.on_closed,
        }


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
    ``NATS_KEY`` are; ``NATS_USER``/``NATS_PASSWORD`` or ``NATS_CREDS`` log in (unless ``user`` or
    ``user_credentials`` are passed). The first connection is bounded by ``first_connect_timeout`` (default
    ``max(10, 2 * connect_timeout)`` seconds) and raises ``ConnectionError`` naming the URLs; once
    connected, it reconnects forever (``max_reconnect_attempts=-1``). Callbacks not given in
    ``options`` are a :class:`ConnectionLog`.
    """
    if servers is None:
        servers = servers_from_env()
    elif isinstance(servers, str):
        servers = split_servers(servers)
    ca = ca or os.environ.get("NATS_CA") or None
    cert = cert or os.environ.get("NATS_CERT") or None
    key = key or os.environ.get("NATS_KEY") or None
    if tls is None and (ca or cert):
        tls = client_tls_context(ca, cert, key)
    if tls is not None:
        options["tls"] = tls
    # a login, when the environment gives one (a workshop seat's file sets NATS_USER/NATS_PASSWORD)
    if "user" not in options and os.environ.get("NATS_USER"):
        options["user"], options["password"] = os.environ["NATS_USER"], os.environ.get("NATS_PASSWORD", "")
    if "user_credentials" not in options and os.environ.get("NATS_CREDS"):
        options["user_credentials"] = os.environ["NATS_CREDS"]
    events = ConnectionLog(name)
    events.require_tls = tls is not None or any(s.startswith("tls://") for s in servers)
    events.handshake_first = bool(options.get("tls_handshake_first"))
    options.setdefault("ping_interval", PING_INTERVAL)  # a silent connection is noticed within 15 s
    options.setdefault("max_outstanding_pings", MAX_OUTSTANDING_PINGS)
    for option, callback in events.options().items():
        options.setdefault(option, callback)
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
    events.nc = nc
    if events.require_tls and not _tls_in_use(nc, events.handshake_first):
        url = nc.connected_url
        where = f"{url.scheme}://{url.netloc}" if url is not None else ", ".join(servers)
        await nc.close()
        raise PlaintextRefused(
            f"refusing a plain-text connection to {where}: TLS was asked for (a tls:// URL or a "
            "CA, certificate or context), but the server offers no TLS, and nats-py would have connected without "
            "it; enable TLS on the server, or connect with nats:// and no --ca"
        )
    events.connected = True
    return nc


def _tls_in_use(nc: Client, handshake_first: bool) -> bool:
    """nats-py upgrades to TLS only when the server's INFO says ``tls_required`` (or handshake first)."""
    info = getattr(nc, "_server_info", None) or {}
    return handshake_first or bool(info.get("tls_required"))


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
    parser.add_argument(
        "--connect-timeout", type=_seconds, default=None, metavar="SECONDS",
        help="give up the first connection after SECONDS (default 10); reconnects later never give up",
    )


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0.5 <= seconds <= 600:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds from 0.5 to 600")
    return seconds


async def connect_from_args(args: argparse.Namespace, name: str) -> Client:
    """Connect using the flags from :func:`add_connection_arguments` (falling back to the env)."""
    servers = args.server or os.environ.get("NATS_URL") or None
    return await connect(servers, ca=args.ca, cert=args.cert, key=args.key, name=name,
                         first_connect_timeout=getattr(args, "connect_timeout", None))
