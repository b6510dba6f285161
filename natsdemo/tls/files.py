"""The certificate set on disk: read it, check it, and make or renew what is missing (idempotent).

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from natsdemo.core.errors import UsageError
from natsdemo.tls.certinfo import load_cert, sans
from natsdemo.tls.pki import Issued, make_ca, make_client_cert, make_server_cert, now
from natsdemo.tls.wire import CA, CA_DAYS, DEFAULT_DAYS, DEFAULT_HOSTS, DEFAULT_USERS, RENEW_BEFORE, SERVER, client_stem


def load(folder: str | os.PathLike[str], stem: str) -> Issued:
    """Read ``stem.pem`` and ``stem-key.pem`` from ``folder``."""
    folder = Path(folder)
    key = serialization.load_pem_private_key((folder / f"{stem}-key.pem").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{folder / stem}-key.pem is not an EC key; regenerate with --force")
    return Issued(load_cert(folder / f"{stem}.pem"), key)


def _usable(folder: Path, stem: str, ca: Issued | None, hosts: Sequence[str] = ()) -> Issued | None:
    """The pair if it exists, matches, is signed by ``ca``, covers ``hosts`` and is not about to expire."""
    try:
        pair = load(folder, stem)
    except (OSError, ValueError, UsageError):
        return None
    cert = pair.cert
    if pair.key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        return None
    if cert.not_valid_after_utc - now() < RENEW_BEFORE or cert.not_valid_before_utc > now():
        return None
    if ca is not None:
        try:
            cert.verify_directly_issued_by(ca.cert)
        except (ValueError, TypeError, InvalidSignature):
            return None
    if hosts and not set(hosts) <= set(sans(cert)["hosts"]):
        return None
    return pair


def ensure_certs(
    out: str | os.PathLike[str] = "certs",
    *,
    days: float = DEFAULT_DAYS,
    force: bool = False,
    users: Sequence[str] = DEFAULT_USERS,
    hosts: Sequence[str] = (),
) -> dict[str, str]:
    """Make sure ``out`` holds a usable CA, server and client set; returns ``{file stem: action}``.

    Idempotent: a pair that exists, matches its key, chains to the CA, covers ``hosts`` and is
    valid for more than a day is ``kept``; anything else is ``created``. A new CA re-issues
    everything it signed. ``force=True`` regenerates all. ``days`` is the life of the server and
    client certificates; the CA lives ``max(days, CA_DAYS)`` days and no leaf outlives it.

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    if not 1 < days <= 3650:  # NaN fails this too
        raise UsageError(f"--days must be more than 1 and at most 3650 (got {days}); certificates are renewed a "
                         "day before expiry, and short lives are the point")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder; pass another --out")
    folder.mkdir(parents=True, exist_ok=True)
    actions: dict[str, str] = {}
    ca = None if force else _usable(folder, CA, None)
    if ca is None:
        ca = make_ca(days=max(days, CA_DAYS))
        ca.write(folder, CA)
        actions[CA] = "created"
    else:
        actions[CA] = "kept"
    hosts = list(dict.fromkeys([*DEFAULT_HOSTS, *hosts]))
    # a leaf never outlives its CA
    leaf_days = min(days, (ca.cert.not_valid_after_utc - now()).total_seconds() / 86400)
    todo: list[tuple[str, Callable[[], Issued], Sequence[str]]] = [
        (SERVER, lambda: make_server_cert(ca, hosts, days=leaf_days), hosts)
    ]
    todo += [(client_stem(u), functools.partial(make_client_cert, ca, u, days=leaf_days), ()) for u in users]
    for stem, make, need in todo:
        if not force and actions[CA] == "kept" and _usable(folder, stem, ca, need) is not None:
            actions[stem] = "kept"
        else:
            make().write(folder, stem)
            actions[stem] = "created"
    return actions


def write_server_cert(folder: str | os.PathLike[str], ca: Issued, days: float = DEFAULT_DAYS) -> Issued:
    """Replace ``server.pem``/``server-key.pem`` in ``folder`` with a new certificate from ``ca``.

    Keeps the extra host names of the certificate it replaces, and never outlives the CA. This is
    the file half of a rotation; the server picks the new pair up on a reload (SIGHUP or
    ``nats-server --signal reload=PID``).

    Defined in notebooks/01_tls_self_signed_ca.ipynb
    """
    folder = Path(folder)
    old = load_cert(folder / f"{SERVER}.pem")
    extra = [h for h in sans(old)["hosts"] if h not in DEFAULT_HOSTS]
    left = (ca.cert.not_valid_after_utc - now()).total_seconds() / 86400
    new = make_server_cert(ca, extra, days=min(days, left))
    new.write(folder, SERVER)
    return new
