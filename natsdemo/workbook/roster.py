"""The workshop's files: the server config with one account per seat, one ``seat-<n>.env`` per
seat, and the roster (``roster.json``, mode 0600, and a human ``roster.txt``) that ``workshop
status`` and a second ``workshop --seats N`` read. ``python -m natsdemo workshop`` writes them
(:mod:`natsdemo.workbook.workshop`); an attendee only ever reads their seat file.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import psutil

from natsdemo.core.errors import UsageError
from natsdemo.workbook.binary import check_config, free_ports

# per seat: enough for every notebook (each creates a handful of small streams), small enough
# that one runaway seat cannot fill the instructor's disk
LIMITS = {"max_mem": "64M", "max_file": "512M", "max_streams": 40, "max_consumers": 400}
MAX_SEATS = 200
EMAIL_DOMAIN = "natsdemo.test"  # client certificates carry <user>@natsdemo.test (natsdemo.tls)


def seat_user(n: int) -> str:
    return f"seat{n}"


def config_text(roster: dict[str, Any]) -> str:
    """The server config for ``roster`` (accounts, limits, monitoring on loopback, TLS if asked)."""
    lines = ["# Written by `python -m natsdemo workshop`; run it again (with --seats) rather than editing this file."]
    if not roster.get("cluster"):  # a cluster's nodes get their names and monitoring ports on the command line
        lines += ["server_name: workshop", f"http: 127.0.0.1:{roster['monitor_ports'][0]}"]
    lines += [
        "max_payload: 1MB",
        "jetstream {",  # the store folder comes on the command line (-sd), like every workbook server
        "  max_memory_store: 2GB",
        "  max_file_store: 20GB",
        "}",
    ]
    certs = roster["certs"]
    files = (("cert", "server.pem"), ("key", "server-key.pem"), ("ca", "ca.pem"))
    pem = {k: json.dumps(f"{certs}/{f}") for k, f in files}
    if roster["tls"] or roster.get("cluster"):  # a cluster's clients always use TLS, like cluster-tls.conf's
        lines += ["tls {", f"  cert_file: {pem['cert']}", f"  key_file: {pem['key']}"]
        if roster["tls"]:
            lines += [f"  ca_file: {pem['ca']}", "  verify_and_map: true"]
        lines += ["  timeout: 2", "}"]
    if roster.get("cluster"):  # routes over mutual TLS; name, port and routes come on the command line
        lines += ["cluster {", "  name: natsdemo", "  listen: 127.0.0.1:6222", "  tls {",
                  f"    cert_file: {pem['cert']}", f"    key_file: {pem['key']}", f"    ca_file: {pem['ca']}",
                  "    timeout: 2", "  }", "}"]
    limits = ", ".join(f"{k}: {v}" for k, v in LIMITS.items())
    lines += ["accounts {", "  SYS {", f"    users: [{_user_entry(roster, 'instructor', roster['instructor'])}]", "  }"]
    for seat in roster["seats"]:
        lines += [f"  {seat['account']} {{", f"    jetstream: {{ {limits} }}",
                  f"    users: [{_user_entry(roster, seat['user'], seat['password'])}]", "  }"]
    lines += ["}", "system_account: SYS", ""]
    return "\n".join(lines)


def _user_entry(roster: dict[str, Any], user: str, password: str) -> str:
    if roster["tls"]:  # the certificate is the login (verify_and_map): no password travels
        return f"{{ user: {json.dumps(f'{user}@{EMAIL_DOMAIN}')} }}"
    return f"{{ user: {json.dumps(user)}, password: {json.dumps(password)} }}"


def env_text(roster: dict[str, Any], seat: dict[str, Any]) -> str:
    """``export`` lines for one seat (absolute paths: kernels run in notebooks/)."""
    out = [f"# seat {seat['seat']} of the workshop at {roster['url']}: `source` this file, then start JupyterLab",
           f"export NATS_URL={roster['url']}", "unset NATS_MONITOR_URL"]
    certs = roster["certs"]
    if roster["tls"]:
        out += [f"export NATS_CA={certs}/ca.pem", f"export NATS_CERT={certs}/client-{seat['user']}.pem",
                f"export NATS_KEY={certs}/client-{seat['user']}-key.pem", "unset NATS_USER NATS_PASSWORD"]
    else:
        out += [f"export NATS_USER={seat['user']}", f"export NATS_PASSWORD={seat['password']}"]
        out += [f"export NATS_CA={certs}/ca.pem", "unset NATS_CERT NATS_KEY"] if roster.get("cluster") else \
            ["unset NATS_CA NATS_CERT NATS_KEY"]
    return "\n".join(out) + "\n"


def read_seat_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """What ``source seat-N.env`` sets (the variables it unsets, as empty strings)."""
    env: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
        elif line.startswith("unset "):
            env.update(dict.fromkeys(line.split()[1:], ""))
    return env


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load_roster(out: Path) -> dict[str, Any] | None:
    path = out / "roster.json"
    if not path.exists():
        return None
    try:
        roster = json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path} is not a workshop roster ({exc}); remove it or pick another --out") from None
    return roster if isinstance(roster, dict) and "seats" in roster else None


def server_alive(roster: dict[str, Any]) -> bool:
    """True if a server (every node, for a cluster) of ``roster`` is running."""
    pids = roster.get("pids") or []
    try:
        return bool(pids) and all("nats-server" in " ".join(psutil.Process(pid).cmdline()) for pid in pids)
    except psutil.Error:
        return False


def plan(out: Path, seats: int, *, port: int, hosts: list[str], tls: bool, cluster: bool = False) -> dict[str, Any]:
    """The roster for ``seats`` seats, keeping the passwords (and ports) of an earlier roster in ``out``."""
    if not 1 <= seats <= MAX_SEATS:
        raise UsageError(f"--seats {seats}: give 1 to {MAX_SEATS}")
    old = load_roster(out) or {}
    have = {s["seat"]: s for s in old.get("seats", [])}
    roster = {
        "url": "", "port": port, "hosts": hosts, "tls": tls, "cluster": cluster, "pids": old.get("pids") or [],
        "monitor_ports": old.get("monitor_ports") or free_ports(1), "store": str((out / "store").resolve()),
        "certs": str((out / "certs").resolve()), "config": str((out / "workshop.conf").resolve()),
        "instructor": old.get("instructor") or secrets.token_urlsafe(12),
        "seats": [have.get(n) or {"seat": n, "account": f"SEAT{n}", "user": seat_user(n),
                                  "password": secrets.token_urlsafe(12), "env": str((out / f"seat-{n}.env").resolve())}
                  for n in range(1, max(seats, len(have)) + 1)],
    }
    return roster


def write_files(out: Path, roster: dict[str, Any]) -> None:
    """Config, one env file per seat and ``instructor.env``, ``roster.json`` and a human ``roster.txt``."""
    if roster["tls"] or roster["cluster"]:
        from natsdemo.tls import ensure_certs

        users = [s["user"] for s in roster["seats"]] if roster["tls"] else []
        ensure_certs(roster["certs"], users=[*users, "instructor"], hosts=roster["hosts"])
    _write_private(Path(roster["config"]), config_text(roster))
    configs = [Path(roster["config"])]
    if roster["cluster"]:  # a JetStream cluster reloads only with server_name in its config: one file per node
        configs = [Path(roster["config"]).with_name(f"workshop-{n}.conf") for n in ("n1", "n2", "n3")]
        for node, path in zip(("n1", "n2", "n3"), configs, strict=True):
            _write_private(path, f"server_name: {node}\ninclude \"workshop.conf\"\n")
    for path in configs:
        ok, problem = check_config(path)
        if not ok:
            raise RuntimeError(f"the generated config {path.name} does not validate: {problem}")
    for seat in roster["seats"]:
        _write_private(Path(seat["env"]), env_text(roster, seat))
    # the instructor: the system account's user (server-wide $SYS.REQ.* requests, every account's figures)
    instructor = {"seat": "instructor", "user": "instructor", "password": roster["instructor"]}
    _write_private(out / "instructor.env", env_text(roster, instructor))
    _write_private(out / "roster.json", json.dumps(roster, indent=1) + "\n")
    rows = [f"{'seat':<5} {'account':<8} URL and settings file"]
    rows += [f"{s['seat']:<5} {s['account']:<8} {roster['url']}  {s['env']}" for s in roster["seats"]]
    (out / "roster.txt").write_text("\n".join(rows) + "\n")


__all__ = ["LIMITS", "config_text", "env_text", "load_roster", "plan", "read_seat_file", "server_alive", "write_files"]
