"""The TLS lab of notebook 01: servers in every TLS mode, a connection-matrix widget, a validity plot.

:class:`TlsLab` keeps one real nats-server per TLS mode (started on first use, in the certificates
folder) plus the deliberately bad material from :func:`natsdemo.tls.bad_certs`. The
:class:`ConnectionMatrix` lets you pick server mode x trusted CA x client certificate x host name
and press *Connect*: the answer is "connected" or the error in plain words with its fix.
:class:`~natsdemo.workbook.labs.tls_validity.ValidityPlot` draws validity windows on a timeline.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as W

from natsdemo import tls
from natsdemo.workbook.tls_servers import TlsServer
from natsdemo.workbook.widgets import Panel, button

MODES: dict[str, str] = {
    "server-only TLS": "tls.conf",
    "mutual TLS (verify)": "tls-verify.conf",
    "verify_and_map": "tls-verify-and-map.conf",
    "handshake_first": "tls-handshake-first.conf",
    "min_version 1.3": "tls-min-1.3.conf",
}
TRUSTS = ["the workbook CA", "another CA", "nothing (system store)", "CERT_NONE (no verification)"]
# label -> file stem inside the lab folder (None: no client certificate)
CLIENTS: dict[str, str | None] = {
    "none": None,
    "alice": "client-alice",
    "bob": "client-bob",
    "mallory (not in users)": "lab/unknown_user_client",
    "alice, expired": "lab/expired_client",
    "alice, from another CA": "lab/other_ca_client",
    "alice, serverAuth EKU only": "lab/wrong_eku_client",
    "alice, no EKU at all": "lab/no_eku_client",
}
HOSTS = ["127.0.0.1", "localhost", "nats.example.test (not in SAN)"]


CERTS_ENV = "NATSDEMO_CERTS_DIR"


def workbook_certs_dir() -> Path:
    """``$NATSDEMO_CERTS_DIR`` if set; else ``certs/`` at the top of the repository (git-ignored);
    else ``~/.cache/natsdemo/certs``. (The test suite gives each notebook run a folder of its own,
    since notebook 01 rotates the server certificate in place.)

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    if os.environ.get(CERTS_ENV):
        return Path(os.environ[CERTS_ENV])
    repo = Path(__file__).resolve().parents[3] / "certs"  # natsdemo/workbook/labs/tls.py -> the repository
    if repo.is_dir():
        return repo
    return Path.home() / ".cache" / "natsdemo" / "certs"


class _DropEofNote(logging.Filter):
    """Drops asyncio's "returning true from eof_received() has no effect when using ssl" note.

    nats-py's protocol returns True from ``eof_received``; over TLS asyncio logs that it ignores
    it on every close. It is harmless and would clutter every output of this notebook.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


def quiet_tls_close_note() -> None:
    """Install :class:`_DropEofNote` on the ``asyncio`` logger (once; nothing else is filtered).

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _DropEofNote) for f in log.filters):
        log.addFilter(_DropEofNote())


@dataclass
class TlsLab:
    """Certificates (good and bad) in ``certs`` and one running server per TLS mode.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    certs: Path
    servers: dict[str, TlsServer] = field(default_factory=dict)
    bad: dict[str, tls.Issued] = field(default_factory=dict)

    @property
    def lab(self) -> Path:
        return self.certs / "lab"

    @classmethod
    async def open(cls, certs: str | Path, previous: TlsLab | None = None) -> TlsLab:
        """Make sure the material exists (bad certificates are made fresh), stopping ``previous`` first."""
        if previous is not None:
            await previous.stop()
        quiet_tls_close_note()
        lab = cls(Path(certs))
        tls.ensure_certs(lab.certs)
        shutil.rmtree(lab.lab, ignore_errors=True)
        bad = lab.bad = tls.bad_certs(tls.load(lab.certs, tls.CA))
        for name in ("other_ca_client", "expired_client", "wrong_eku_client", "no_eku_client", "unknown_user_client"):
            bad[name].write(lab.lab, name)
        bad["other_ca_root"].write(lab.lab / "impostor", "ca")
        bad["other_ca"].write(lab.lab / "impostor", "server")
        return lab

    def folder(self, kind: str) -> Path:
        """A certificates folder for one server variant, made fresh.

        ``expired``, ``not_yet_valid``, ``wrong_san``, ``cn_only``: the workbook CA with that bad
        server certificate; ``impostor``: another CA and its server; ``mismatch``: a server
        certificate with somebody else's key; ``rotation``: a copy of the good set to rotate in.
        """
        kinds = ("expired", "not_yet_valid", "wrong_san", "cn_only", "impostor", "mismatch", "rotation")
        if kind not in kinds:
            raise ValueError(f"unknown variant {kind!r}; choose one of {', '.join(kinds)}")
        if kind == "impostor":
            return self.lab / "impostor"
        d = self.lab / kind
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for name in ("ca.pem", "server.pem", "server-key.pem"):
            shutil.copy2(self.certs / name, d / name)
        if kind == "mismatch":
            tls.write_private(d / "server-key.pem", tls.make_server_cert(self.bad["other_ca_root"]).key_pem)
        elif kind != "rotation":
            self.bad[kind].write(d, "server")
        return d

    def variant(self, kind: str, config: str = "tls.conf") -> TlsServer:
        """A server (not started: use ``async with``) running ``config`` in :meth:`folder` ``(kind)``."""
        return TlsServer(config=config, certs=self.folder(kind), name=f"nb01-{kind}")

    def path(self, stem: str) -> Path:
        return self.certs / f"{stem}.pem"

    async def server(self, mode: str) -> TlsServer:
        """The running server for ``mode`` (a key of :data:`MODES`), started on first use."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        srv = self.servers.get(mode)
        if srv is None or not srv.running():
            srv = TlsServer(config=MODES[mode], certs=self.certs, name="nb01-tls", monitor=True)
            await srv.astart()
            self.servers[mode] = srv
        return srv

    def context(self, trust: str, client: str, tls12: bool = False) -> ssl.SSLContext | None:
        """The client's ``SSLContext`` for a row of the matrix (``None``: let nats-py pick its default)."""
        stem = CLIENTS[client]
        cert = key = None
        if stem:
            cert, key = self.certs / f"{stem}.pem", self.certs / f"{stem}-key.pem"
        top = ssl.TLSVersion.TLSv1_2 if tls12 else None
        if trust == "the workbook CA":
            return tls.client_context(self.path(tls.CA), cert, key, max_version=top)
        if trust == "another CA":
            return tls.client_context(self.lab / "impostor" / "ca.pem", cert, key, max_version=top)
        if trust == "nothing (system store)":
            return tls.client_context(None, cert, key, max_version=top)
        return tls.client_context(cert=cert, key=key, verify=False, max_version=top)

    async def attempt(
        self, mode: str, trust: str, client: str, host: str, handshake_first: bool = False, tls12: bool = False
    ) -> tls.Outcome:
        """Start (or reuse) the server for ``mode`` and try one connection described by the matrix."""
        srv = await self.server(mode)
        url = srv.url
        tls_hostname = None
        if host == "localhost":
            url = url.replace(srv.host, "localhost")
        elif host != "127.0.0.1":
            tls_hostname = host.split()[0]
        ctx = self.context(trust, client, tls12)
        return await tls.probe(
            url, ctx, tls_hostname=tls_hostname, handshake_first=handshake_first, timeout=2.5, server=srv
        )

    async def stop(self) -> None:
        for srv in self.servers.values():
            await srv.astop()
        self.servers.clear()


# (server mode, trust, client, host, handshake_first, tls12) -> should it connect?
CASES: list[tuple[tuple[str, str, str, str, bool, bool], bool]] = [
    (("server-only TLS", "the workbook CA", "none", "127.0.0.1", False, False), True),
    (("server-only TLS", "nothing (system store)", "none", "127.0.0.1", False, False), False),
    (("server-only TLS", "another CA", "none", "127.0.0.1", False, False), False),
    (("server-only TLS", "the workbook CA", "none", "localhost", False, False), True),
    (("server-only TLS", "the workbook CA", "none", "nats.example.test (not in SAN)", False, False), False),
    (("mutual TLS (verify)", "the workbook CA", "none", "127.0.0.1", False, False), False),
    (("mutual TLS (verify)", "the workbook CA", "alice", "127.0.0.1", False, False), True),
    (("mutual TLS (verify)", "the workbook CA", "alice, from another CA", "127.0.0.1", False, False), False),
    (("mutual TLS (verify)", "the workbook CA", "alice, expired", "127.0.0.1", False, False), False),
    (("mutual TLS (verify)", "the workbook CA", "alice, serverAuth EKU only", "127.0.0.1", False, False), False),
    (("mutual TLS (verify)", "the workbook CA", "alice, no EKU at all", "127.0.0.1", False, False), True),
    (("verify_and_map", "the workbook CA", "bob", "127.0.0.1", False, False), True),
    (("verify_and_map", "the workbook CA", "mallory (not in users)", "127.0.0.1", False, False), False),
    (("handshake_first", "the workbook CA", "none", "127.0.0.1", True, False), True),
    (("min_version 1.3", "the workbook CA", "none", "127.0.0.1", False, True), False),
]


def _verdict(outcome: tls.Outcome, trust: str) -> str:
    if outcome.ok and trust.startswith("CERT_NONE"):
        return "Result: connected, but WITHOUT checking who answered: an impostor would be accepted just the same"
    if outcome.ok:
        return "Result: connected"
    return f"Result: refused. {outcome.reason}. Fix: {outcome.fix}."


class ConnectionMatrix:
    """Dropdowns for server mode x trusted CA x client certificate x host name, and two buttons.

    *Connect* tries the selected combination; *Run all cases* runs :data:`CASES` and tabulates them.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    def __init__(self, lab: TlsLab, replaces: ConnectionMatrix | None = None) -> None:
        self.lab = lab
        self.panel = Panel("Connection matrix", replaces=replaces.panel if replaces else None)
        self.mode = W.Dropdown(options=list(MODES), description="server")
        self.trust = W.Dropdown(options=TRUSTS, description="client trusts")
        self.client = W.Dropdown(options=list(CLIENTS), description="client cert")
        self.host = W.Dropdown(options=HOSTS, description="host name")
        self.first = W.Checkbox(value=False, description="tls_handshake_first")
        self.tls12 = W.Checkbox(value=False, description="client max TLS 1.2")
        self.detail = W.HTML(value="")
        self.table = W.HTML(value="")
        self.results: list[tuple[str, bool, tls.Outcome]] = []
        self.connect_button = button("Connect", self.on_connect, self.panel, button_style="primary")
        self.all_button = button("Run all cases", self.on_run_all, self.panel)

    # the handlers are plain functions: a cell (or a test) can call them or click the buttons
    def on_connect(self, _: Any = None) -> Any:
        choice = (self.mode.value, self.trust.value, self.client.value, self.host.value)
        self.panel.say("connecting...")
        return self.attempt(*choice, self.first.value, self.tls12.value)

    async def attempt(self, mode: str, trust: str, client: str, host: str, first: bool, tls12: bool) -> tls.Outcome:
        outcome = await self.lab.attempt(mode, trust, client, host, first, tls12)
        self.panel.say(html.escape(_verdict(outcome, trust)))
        self.detail.value = f"<small><code>{html.escape(outcome.error)}</code></small>" if outcome.error else ""
        return outcome

    def on_run_all(self, _: Any = None) -> Any:
        self.panel.say("running every case...")
        return self.run_all()

    async def run_all(self) -> list[tuple[str, bool, tls.Outcome]]:
        self.results = []
        for (mode, trust, client, host, first, tls12), expected in CASES:
            outcome = await self.lab.attempt(mode, trust, client, host, first, tls12)
            label = f"{mode} | {trust} | cert: {client} | {host}" + (" | TLS first" if first else "") + (
                " | client max TLS 1.2" if tls12 else ""
            )
            self.results.append((label, expected, outcome))
        good = sum(exp == out.ok for _, exp, out in self.results)
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{'connects' if exp else 'refused'}</td>"
            f"<td>{'OK' if exp == out.ok else 'UNEXPECTED'}</td>"
            f"<td>{html.escape(out.reason or 'connected')}</td></tr>"
            for label, exp, out in self.results
        )
        self.table.value = (
            "<table><tr><th>case</th><th>expected</th><th>as expected?</th><th>why</th></tr>" + rows + "</table>"
        )
        self.panel.say(f"Matrix done: {good} of {len(self.results)} cases behaved as expected")
        return self.results

    def reset(self) -> None:
        """Clear the status, detail and table (so the next click visibly produces a new answer)."""
        self.panel.say("")
        self.detail.value = ""
        self.table.value = ""

    @property
    def widget(self) -> W.Widget:
        controls = W.VBox([self.mode, self.trust, self.client, self.host, W.HBox([self.first, self.tls12])])
        return self.panel.box(controls, W.HBox([self.connect_button, self.all_button]), self.detail, self.table)
