"""``python -m natsdemo certs``: write or refresh the workbook PKI, one line per file pair.

Defined in notebooks/01_tls_self_signed_ca.ipynb
"""

from __future__ import annotations

import argparse
from pathlib import Path

from natsdemo.core.errors import UsageError
from natsdemo.tls.certinfo import describe
from natsdemo.tls.files import ensure_certs
from natsdemo.tls.wire import CA, CA_DAYS, DEFAULT_DAYS, DEFAULT_USERS


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """``python -m natsdemo certs --out DIR [--force] [--days N] [--host NAME ...] [--user NAME ...]``."""
    parser.add_argument("--out", default="certs", help="folder for the PEM files (default: certs/ in the cwd)")
    parser.add_argument("--force", action="store_true", help="regenerate everything, even valid material")
    parser.add_argument(
        "--days", type=float, default=DEFAULT_DAYS,
        help=f"life of server and client certificates in days (default {DEFAULT_DAYS}; the CA: max(N, {CA_DAYS}))",
    )
    parser.add_argument(
        "--host", action="append", default=[], metavar="NAME",
        help="extra host name or IP for the server certificate's SANs (repeatable; e.g. docker service names)",
    )
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME",
        help="client certificate users (repeatable; default: alice and bob)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Write or refresh the certificate set and print one line per file pair."""
    users = args.user or list(DEFAULT_USERS)
    bad = [u for u in users if not u.replace("-", "").replace("_", "").isalnum()]
    if bad:
        raise UsageError(f"user names may hold letters, digits, - and _ only (got {bad[0]!r})")
    for h in args.host:
        if not h or any(c.isspace() or c in "/:@" for c in h):
            raise UsageError(f"--host takes a bare host name or IP address (got {h!r})")
    actions = ensure_certs(args.out, days=args.days, force=args.force, users=users, hosts=args.host)
    out = Path(args.out)
    if getattr(args, "quiet", False):
        return 0
    for stem, action in actions.items():
        d = describe(out / f"{stem}.pem")
        print(f"{action:8} {out / stem}.pem  ({d['SANs'] if stem != CA else d['subject']}; until {d['not after']})")
    print(f"keys are mode 0600; trust {out / 'ca.pem'} in clients (never a system trust store)", flush=True)
    return 0
