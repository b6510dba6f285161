"""A tiny private PKI for NATS: a self-signed CA, server and client certificates, and bad ones.

Everything is made with the ``cryptography`` package (no openssl at run time):

* a root CA (CA basic constraint, keyCertSign) that nobody's trust store knows: a *self-signed* CA;
* a server certificate with SANs ``localhost``, ``127.0.0.1``, ``::1`` (plus extra hosts) and both
  serverAuth and clientAuth EKU, so the same certificate also serves cluster routes, which verify
  both ways;
* client certificates with an email SAN (what ``verify_and_map`` maps to a user) and clientAuth EKU;
* deliberately broken certificates for the failure matrix (expired, not yet valid, wrong SAN,
  another CA, wrong EKU, CN only).

Keys are ECDSA P-256 and validity is short. Files on disk are :mod:`natsdemo.tls.files`.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from natsdemo.tls.wire import CA_DAYS, CLIENT_AUTH, DEFAULT_DAYS, DEFAULT_HOSTS, SERVER_AUTH, user_email


def now() -> dt.datetime:
    """The current time, timezone-aware UTC (what certificate validity is compared with)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def write(self, folder: str | os.PathLike[str], stem: str) -> tuple[Path, Path]:
        """Write ``stem-key.pem`` (mode 0600), then ``stem.pem``, into ``folder``; returns both paths.

        Each file is written aside and renamed into place, so a reader sees the old file or the
        new one, never half of one (a crash between the two renames leaves a mismatched pair,
        which servers refuse and :func:`natsdemo.tls.files.ensure_certs` replaces).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
        write_private(key_path, self.key_pem)
        write_public(cert_path, self.cert_pem)
        return cert_path, key_path


def write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (no window where it is world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # in case a umask or an ACL widened it
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate (mode 0644) aside, then rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key: small, fast, and accepted by every NATS client."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "natsdemo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _window(days: float, not_before: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    # start a minute in the past so a clock a little behind still accepts a fresh certificate
    start = not_before or now() - dt.timedelta(minutes=1)
    return start, start + dt.timedelta(days=days)


def san_entries(hosts: Iterable[str] = (), emails: Iterable[str] = ()) -> list[x509.GeneralName]:
    """SubjectAltName entries: IP addresses become IP SANs, everything else a DNS SAN."""
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    out += [x509.RFC822Name(e) for e in emails]
    return out


def make_ca(
    common_name: str = "natsdemo CA", days: float = CA_DAYS, not_before: dt.datetime | None = None
) -> Issued:
    """A self-signed root CA: CA basic constraint, may sign certificates (keyCertSign), nothing else.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    key = new_key()
    start, end = _window(days, not_before)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_cert(
    ca: Issued,
    common_name: str,
    *,
    hosts: Sequence[str] = (),
    emails: Sequence[str] = (),
    eku: Sequence[x509.ObjectIdentifier] = (SERVER_AUTH,),
    days: float = DEFAULT_DAYS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """A leaf certificate signed by ``ca``: any SANs, any EKU, any validity window (for the bad ones too).

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    key = key or new_key()
    start, end = _window(days, not_before)
    end = not_after or end
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    sans = san_entries(hosts, emails)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_server_cert(ca: Issued, extra_hosts: Sequence[str] = (), days: float = DEFAULT_DAYS, **kw: object) -> Issued:
    """A server certificate for ``localhost``/``127.0.0.1``/``::1`` plus ``extra_hosts``.

    It carries serverAuth *and* clientAuth, because a cluster route dials out as a client too.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    hosts = list(dict.fromkeys([*DEFAULT_HOSTS, *extra_hosts]))
    return make_cert(ca, "natsdemo server", hosts=hosts, eku=(SERVER_AUTH, CLIENT_AUTH), days=days, **kw)  # type: ignore[arg-type]


def make_client_cert(ca: Issued, user: str, days: float = DEFAULT_DAYS, **kw: object) -> Issued:
    """A client certificate for ``user``: email SAN ``user@natsdemo.test``, clientAuth EKU only.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    kw.setdefault("eku", (CLIENT_AUTH,))
    return make_cert(ca, user, emails=[user_email(user)], days=days, **kw)  # type: ignore[arg-type]


def bad_certs(ca: Issued) -> dict[str, Issued]:
    """The broken certificates the failure matrix needs, keyed by what is wrong with them.

    ``other_ca`` and ``other_ca_client`` are signed by a second, unrelated CA (``other_ca_root``).

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    t = now()
    other = make_ca("impostor CA")
    return {
        "expired": make_server_cert(ca, not_before=t - dt.timedelta(days=10), not_after=t - dt.timedelta(days=1)),
        "not_yet_valid": make_server_cert(ca, not_before=t + dt.timedelta(days=1), days=10),
        "wrong_san": make_cert(ca, "natsdemo server", hosts=["nats.example.test"], eku=(SERVER_AUTH, CLIENT_AUTH)),
        "cn_only": make_cert(ca, "localhost", hosts=(), eku=(SERVER_AUTH, CLIENT_AUTH)),
        "other_ca_root": other,
        "other_ca": make_server_cert(other),
        "other_ca_client": make_client_cert(other, "alice"),
        "expired_client": make_client_cert(
            ca, "alice", not_before=t - dt.timedelta(days=10), not_after=t - dt.timedelta(days=1)
        ),
        "wrong_eku_client": make_client_cert(ca, "alice", eku=(SERVER_AUTH,)),
        "no_eku_client": make_client_cert(ca, "alice", eku=()),
        "unknown_user_client": make_client_cert(ca, "mallory"),
    }
