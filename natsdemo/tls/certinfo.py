"""What is in a certificate: SANs, EKU, CA flag, validity; a table of several side by side.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from natsdemo.tls.pki import Issued, now
from natsdemo.tls.wire import CLIENT_AUTH, SERVER_AUTH


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    """Read one PEM certificate."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def sans(cert: x509.Certificate) -> dict[str, list[str]]:
    """The SubjectAltName entries of ``cert``: ``{"hosts": [...], "emails": [...]}``."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"hosts": [], "emails": []}
    hosts = [*ext.get_values_for_type(x509.DNSName), *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]
    return {"hosts": hosts, "emails": list(ext.get_values_for_type(x509.RFC822Name))}


def _eku_names(cert: x509.Certificate) -> list[str]:
    names = {SERVER_AUTH: "serverAuth", CLIENT_AUTH: "clientAuth"}
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [names.get(o, o.dotted_string) for o in ext]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def describe(cert: x509.Certificate | Issued | str | os.PathLike[str], at: dt.datetime | None = None) -> dict[str, str]:
    """What to look at in a certificate: subject, SANs, issuer, CA flag, EKU, validity, fingerprint.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    if isinstance(cert, Issued):
        cert = cert.cert
    elif not isinstance(cert, x509.Certificate):
        cert = load_cert(cert)
    at = at or now()
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    state = "expired" if end < at else "not yet valid" if start > at else f"valid, {(end - at).days} days left"
    s = sans(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "SANs": ", ".join([*s["hosts"], *s["emails"]]) or "(none)",
        "issuer": cert.issuer.rfc4514_string(),
        "CA": "yes" if _is_ca(cert) else "no",
        "EKU": ", ".join(_eku_names(cert)) or "(none)",
        "not before": start.strftime("%Y-%m-%d %H:%M UTC"),
        "not after": end.strftime("%Y-%m-%d %H:%M UTC"),
        "state": state,
        "serial": f"{cert.serial_number:x}"[:16],
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":")[:23] + "...",
    }


class CertTable:
    """Several certificates side by side; renders as an HTML table in a notebook, text elsewhere.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    def __init__(self, certs: dict[str, x509.Certificate | Issued | str | os.PathLike[str]]) -> None:
        self.rows = {name: describe(c) for name, c in certs.items()}

    def _fields(self) -> list[str]:
        return list(next(iter(self.rows.values())).keys()) if self.rows else []

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.rows)
        body = "".join(
            f"<tr><th style='text-align:left'>{f}</th>"
            + "".join(f"<td style='text-align:left'>{html.escape(r[f])}</td>" for r in self.rows.values())
            + "</tr>"
            for f in self._fields()
        )
        return f"<table><tr><th></th>{head}</tr>{body}</table>"

    def __repr__(self) -> str:
        return "\n\n".join(
            f"{name}\n" + "\n".join(f"  {f:<11} {v}" for f, v in row.items()) for name, row in self.rows.items()
        )
