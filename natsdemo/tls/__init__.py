"""TLS with a self-signed CA: certificates, client contexts, and every failure in plain words.

Lift this folder and :mod:`natsdemo.core`; nothing here needs Jupyter or a local nats-server.

* :mod:`~natsdemo.tls.wire`: the file names and identities (the contract ``certs`` keeps);
* :mod:`~natsdemo.tls.pki`: make a CA, server and client certificates, and broken ones;
* :mod:`~natsdemo.tls.files`: the set on disk, made or renewed idempotently; rotation's file half;
* :mod:`~natsdemo.tls.certinfo`: what a certificate says; :mod:`~natsdemo.tls.context`: the client's
  ``ssl.SSLContext``; :mod:`~natsdemo.tls.diagnose`: probes and explanations;
  :mod:`~natsdemo.tls.cli`: ``python -m natsdemo certs``.

The servers that run the TLS configs on this machine are the workbook's
(:mod:`natsdemo.workbook.tls_servers`).
"""

from natsdemo.tls.certinfo import CertTable, describe, load_cert, sans
from natsdemo.tls.context import client_context
from natsdemo.tls.diagnose import Outcome, explain, plaintext_probe, probe, server_certificate
from natsdemo.tls.files import ensure_certs, load, write_server_cert
from natsdemo.tls.pki import (
    Issued,
    bad_certs,
    make_ca,
    make_cert,
    make_client_cert,
    make_server_cert,
    new_key,
    now,
    san_entries,
    write_private,
)
from natsdemo.tls.wire import (
    CA,
    CA_DAYS,
    CLIENT_AUTH,
    DEFAULT_DAYS,
    DEFAULT_HOSTS,
    DEFAULT_USERS,
    EMAIL_DOMAIN,
    RENEW_BEFORE,
    SERVER,
    SERVER_AUTH,
    client_stem,
    standard_files,
    user_email,
)

__all__ = [
    "CA", "CA_DAYS", "CLIENT_AUTH", "DEFAULT_DAYS", "DEFAULT_HOSTS", "DEFAULT_USERS", "EMAIL_DOMAIN",
    "RENEW_BEFORE", "SERVER", "SERVER_AUTH", "CertTable", "Issued", "Outcome", "bad_certs", "client_context",
    "client_stem", "describe", "ensure_certs", "explain", "load", "load_cert", "make_ca", "make_cert",
    "make_client_cert", "make_server_cert", "new_key", "now", "plaintext_probe", "probe", "san_entries", "sans",
    "server_certificate", "standard_files", "user_email", "write_private", "write_server_cert",
]
