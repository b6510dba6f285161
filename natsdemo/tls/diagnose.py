"""TLS failures in plain words: try one connection, and say what went wrong and how to fix it.

* :func:`probe` tries one connection with nats-py and :func:`explain` turns the error (and the
  server's own log line, when we can read it) into plain words and a fix: the failure matrix of
  notebook 01;
* :func:`plaintext_probe` speaks plain NATS protocol over TCP, as a client without TLS would;
* :func:`server_certificate` fetches the certificate a server presents (like ``openssl s_client``).

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from natsdemo.tls.context import client_context


class LogSource(Protocol):
    """Anything whose log we can read: a server the workbook started."""

    def log_text(self) -> str: ...


@dataclass
class Outcome:
    """What happened when a client tried to connect: ok, or the raw error with plain words and a fix.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    ok: bool
    error: str = ""
    reason: str = ""
    fix: str = ""

    def __str__(self) -> str:
        if self.ok:
            return "connected"
        return f"refused: {self.reason} (fix: {self.fix}) [{self.error}]"


async def probe(
    url: str,
    tls: ssl.SSLContext | None = None,
    *,
    tls_hostname: str | None = None,
    handshake_first: bool = False,
    timeout: float = 3.0,
    server: LogSource | None = None,
) -> Outcome:
    """Try one connection with nats-py (connect, one PING/PONG round trip, close) and explain the result.

    Never retries, never hangs longer than about ``timeout``, never logs a traceback. With TLS 1.3
    the server judges the client certificate *after* the client's handshake is done, so the client
    may only see "connection lost"; pass ``server`` (one we started) and its log explains why.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    import nats

    seen: list[BaseException] = []
    log_from = len(server.log_text()) if server is not None else 0

    async def on_error(exc: Exception) -> None:
        seen.append(exc)

    opts: dict[str, object] = {}
    if tls is not None:
        opts["tls"] = tls
    if tls_hostname:
        opts["tls_hostname"] = tls_hostname
    try:
        nc = await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=timeout,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                tls_handshake_first=handshake_first,
                error_cb=on_error,
                **opts,
            ),
            timeout + 1,
        )
    except Exception as exc:  # every failure is the answer we are after
        if handshake_first and isinstance(exc, TimeoutError | asyncio.TimeoutError):
            # measured: sometimes the handshake completes, but the INFO was already sent in plaintext
            exc = TimeoutError("no INFO after the handshake: WRONG_VERSION_NUMBER-like mismatch")
        return explain(exc, [*seen, *await _server_says(server, log_from)])
    try:
        await nc.flush(max(1, round(timeout)))  # nats-py takes whole seconds
        if nc.is_closed or seen:
            first = seen[0] if seen else ConnectionError("connection closed by the server")
            return explain(first, [*seen, *await _server_says(server, log_from)])
        return Outcome(True)
    except Exception as exc:
        return explain(exc, [*seen, *await _server_says(server, log_from)])
    finally:
        if not nc.is_closed:
            await nc.close()


async def _server_says(server: LogSource | None, offset: int, wait: float = 1.0) -> list[BaseException]:
    """The server's error lines logged since ``offset`` (waiting up to ``wait`` s for one), as exceptions."""
    if server is None:
        return []
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        lines = [ln.split("] ", 1)[-1] for ln in server.log_text()[offset:].splitlines() if "[ERR]" in ln]
        if lines or asyncio.get_running_loop().time() > deadline:
            return [ConnectionError(f"server log: {ln}") for ln in lines[:2]]
        await asyncio.sleep(0.05)


# (substring of the error, what it means, what to do); first match wins
_EXPLANATIONS: tuple[tuple[str, str, str], ...] = (
    ("unable to get local issuer certificate",
     "the client does not trust the CA that signed the server certificate (no CA given means the "
     "system trust store, which has never heard of a self-signed CA)",
     "give the client the CA that signed the server: ca='certs/ca.pem' (CLI --ca, env NATS_CA)"),
    ("self-signed certificate",
     "the server's chain ends in a CA the client does not trust",
     "trust the CA that signed the server certificate (ca='certs/ca.pem')"),
    ("verify failed: certificate has expired",
     "the server certificate has expired",
     "issue a new one (python -m natsdemo certs) and reload the server (SIGHUP); clients need no change"),
    ("verify failed: certificate is not yet valid",
     "the server certificate is not valid yet: issued for the future, or a clock is wrong",
     "check both clocks (NTP) and issue certificates whose not-before is slightly in the past"),
    ("mismatch, certificate is not valid for",
     "the host name or IP in the URL is not in the certificate's SANs (the CN is ignored)",
     "connect with a name in the SANs, reissue with --host NAME, or set tls_hostname to a name it has"),
    ("unsuitable certificate purpose",
     "the server certificate's extended key usage does not include serverAuth",
     "reissue the server certificate with the serverAuth EKU"),
    ("didn't provide a certificate",
     "the server requires a client certificate (verify) and the client sent none",
     "load the client's certificate and key: cert='certs/client-alice.pem', key='certs/client-alice-key.pem'"),
    ("CERTIFICATE_REQUIRED",
     "the server requires a client certificate (verify) and the client sent none",
     "load the client's certificate and key: cert='certs/client-alice.pem', key='certs/client-alice-key.pem'"),
    ("signed by unknown authority",
     "the server does not trust the CA that signed the client certificate",
     "issue the client certificate from the CA in the server's ca_file (or add that CA to ca_file)"),
    ("UNKNOWN_CA",
     "the server does not trust the CA that signed the client certificate",
     "issue the client certificate from the CA in the server's ca_file (or add that CA to ca_file)"),
    ("certificate has expired or is not yet valid",
     "the server refused the client certificate because it has expired (or is not valid yet)",
     "issue the client a new certificate (python -m natsdemo certs renews expired ones)"),
    ("ALERT_CERTIFICATE_EXPIRED",
     "the server refused the client certificate because it has expired",
     "issue the client a new certificate (python -m natsdemo certs renews expired ones)"),
    ("incompatible key usage",
     "the server refused the client certificate: its extended key usage does not allow client authentication",
     "reissue the client certificate with the clientAuth EKU"),
    ("BAD_CERTIFICATE",
     "the server refused the client certificate: its extended key usage does not allow client authentication",
     "reissue the client certificate with the clientAuth EKU"),
    ("PROTOCOL_VERSION",
     "client and server share no TLS version (the server's min_version is above the client's maximum)",
     "let the client use TLS 1.3 (do not cap maximum_version) or lower min_version on the server"),
    ("WRONG_VERSION_NUMBER",
     "the client started TLS at once (tls_handshake_first) but this server first sends a plaintext INFO",
     "drop tls_handshake_first, or set handshake_first: true in the server's tls block"),
    ("expecting INFO",
     "the server waits for a TLS handshake first (handshake_first) while the client waited for INFO",
     "connect with tls_handshake_first=True"),
    ("Authorization Violation",
     "the certificate is valid, but no user in the server's list matches it (verify_and_map maps its "
     "email SAN, then DNS SAN, URI SAN, then subject)",
     "add that identity to authorization.users, or connect with a certificate of a listed user"),
    ("Permissions Violation",
     "the user is connected but may not publish or subscribe on that subject",
     "change the user's permissions in the server config, or use another subject"),
    ("does not look like a TLS handshake",
     "the server only accepts TLS and the client spoke plaintext",
     "connect with TLS: tls=client_context(ca='certs/ca.pem')"),
    ("TLS Required",
     "the server only accepts TLS and the client spoke plaintext",
     "connect with TLS: tls=client_context(ca='certs/ca.pem')"),
    ("Connect call failed",
     "nothing is listening at that address",
     "start the server (or fix the URL)"),
)


def explain(exc: BaseException, seen: Sequence[BaseException] = ()) -> Outcome:
    """Plain words and a fix for a TLS or connection error (``seen``: errors nats-py reported too).

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    raw = " ".join(f"{type(e).__name__}: {e}" for e in dict.fromkeys([exc, *seen]))
    raw = " ".join(raw.split())
    for needle, reason, fix in _EXPLANATIONS:
        if needle.lower() in raw.lower():
            return Outcome(False, raw, reason, fix)
    if isinstance(exc, TimeoutError) or "timeout" in raw.lower():
        return Outcome(False, raw, "no answer in time", "check the URL, the port and that both sides agree on TLS")
    return Outcome(False, raw, "the connection failed", "read the raw error and the server log")


async def plaintext_probe(url: str, timeout: float = 3.0, server: LogSource | None = None) -> Outcome:
    """Speak plain NATS protocol over raw TCP (what a client without TLS does) and report the answer.

    nats-py cannot be used for this: it upgrades to TLS by itself when the server asks for it.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    from urllib.parse import urlparse

    u = urlparse(url)
    log_from = len(server.log_text()) if server is not None else 0
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port), timeout)
    try:
        info = await asyncio.wait_for(reader.readline(), timeout)
        writer.write(b'CONNECT {"verbose":false,"tls_required":false}\r\nPING\r\n')
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    text = answer.decode(errors="replace").strip()
    if text == "PONG":
        return Outcome(True)
    said = f"{text or 'connection closed'} (after {info.decode(errors='replace')[:40]}...)"
    if not text and b'"tls_required":true' in info:
        # measured on 2.15: no -ERR line; the server waits for a ClientHello, gets text, hangs up
        said += " although its INFO said tls_required, so the TLS Required server hung up"
    return explain(ConnectionError(said), await _server_says(server, log_from))


async def server_certificate(url: str, *, handshake_first: bool = False, timeout: float = 3.0) -> x509.Certificate:
    """The certificate a NATS server presents right now (like ``openssl s_client``), for inspection.

    Reads the plaintext INFO line first (unless the server does ``handshake_first``), then runs a
    TLS handshake that does *not* verify: we only look at the certificate, nothing is sent.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    from urllib.parse import urlparse

    u = urlparse(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port), timeout)
    try:
        if not handshake_first:
            await asyncio.wait_for(reader.readline(), timeout)
        await asyncio.wait_for(
            writer.start_tls(client_context(verify=False), server_hostname=u.hostname), timeout
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return x509.load_der_x509_certificate(der)
