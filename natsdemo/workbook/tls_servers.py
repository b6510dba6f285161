"""Servers that run the bundled TLS configs in a certificates folder, and certificate rotation.

:class:`TlsServer` is a :class:`~natsdemo.workbook.server.NatsServer` whose working directory is the
certificates folder: the configs name their files relatively, and nats-server resolves relative
paths against its working directory, so the same config works here and in a container whose
``working_dir`` is ``/certs``. :func:`rotate_server_cert` issues a new server certificate into
that folder and reloads the server (SIGHUP): open connections carry on, new ones see the new one.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from natsdemo.tls.files import write_server_cert
from natsdemo.tls.pki import Issued
from natsdemo.tls.wire import DEFAULT_DAYS
from natsdemo.workbook.binary import config_path, nats_server_binary
from natsdemo.workbook.server import NatsServer


@dataclass
class TlsServer(NatsServer):
    """A :class:`~natsdemo.workbook.server.NatsServer` for the TLS configs: runs in the certificates folder.

    The bundled TLS configs name their files relatively (``server.pem``, ``ca.pem``...), and
    nats-server resolves such paths against its working directory, so the same config works here
    (``certs=`` any folder) and in a container (``working_dir: /certs``). ``env`` (inherited) gives
    values for ``$VARIABLES`` in a config (the leaf's ``$NATSDEMO_HUB_URL``).

    Like every NatsServer, it passes ``-n`` only when ``server_name`` is set: nats-server 2.15
    refuses a reload (SIGHUP, used for certificate rotation) when the command-line name differs
    from the config's ("config reload not supported for ServerName").

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    certs: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.certs is not None and self.cwd is None:
            self.cwd = Path(self.certs).resolve()

    def log_lines(self, *needles: str) -> list[str]:
        """Log lines containing any of ``needles`` (what the server said about a refused client)."""
        return [ln for ln in self.log_text().splitlines() if any(n in ln for n in needles)]


def check_config_in(config: str | os.PathLike[str], certs: str | os.PathLike[str], env: dict[str, str] | None = None
                    ) -> tuple[bool, str]:
    """``nats-server -t -c CONFIG`` run in the certificates folder (as the server itself would be).

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    path = config_path(config)
    out = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        capture_output=True, text=True, timeout=30, cwd=str(certs), env={**os.environ, **(env or {})},
    )
    text = (out.stdout + out.stderr).strip()
    return out.returncode == 0 and "is valid" in text, text


async def rotate_server_cert(
    server: TlsServer, ca: Issued, days: float = DEFAULT_DAYS, timeout: float = 5.0
) -> Issued:
    """Issue a new server certificate from ``ca`` into the server's folder, reload (SIGHUP), wait for it.

    The CA key is passed in rather than read from the server's folder: a server never needs it.

    Connected clients are not touched: TLS is only negotiated when a connection opens, so the new
    certificate is what *new* connections see. Returns the new certificate.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    new = write_server_cert(Path(server.cwd or "."), ca, days)
    await areload(server, timeout)
    return new


async def areload(server: TlsServer, timeout: float = 5.0) -> None:
    """Reload ``server``'s config and certificates (SIGHUP) and wait until it logs that it did.

    Raises ``RuntimeError`` with the server's reason if it refused the new config.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    done = len(server.log_lines("Reloaded server configuration"))
    server.reload()
    deadline = asyncio.get_running_loop().time() + timeout
    while len(server.log_lines("Reloaded server configuration")) <= done:
        failed = server.log_lines("Failed to reload")
        if failed:
            raise RuntimeError(f"the server refused the reload: {failed[-1].split('] ', 1)[-1]}")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the server did not reload in {timeout} s; see its log")
        await asyncio.sleep(0.05)
