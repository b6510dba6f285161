"""``python -m natsdemo workshop``: one server for a whole room, one NATS account per seat.

Every seat gets an account of its own (``SEAT1``, ``SEAT2``, ...) with JetStream and limits sized
for the workbook, so notebooks that create, purge and delete streams with fixed names never collide:
accounts are separate subject spaces, and a seat sees only its own streams. The instructor is the
system account's user and reads every seat's figures from the monitoring port, which listens on
loopback only. Each seat's settings go to ``OUT/seat-<n>.env`` (``export NAME=value`` lines, paths
absolute), so ``source workshop/seat-1.env`` before ``bash scripts/workbook.sh`` is all an attendee
does; ``OUT/roster.json`` (mode 0600: it holds the passwords) lets ``workshop status`` and a
second ``workshop --seats N`` find the running server. More seats are added by a config reload
(SIGHUP), so existing seats keep their connections and streams.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from natsdemo.core.errors import UsageError
from natsdemo.workbook.roster import load_roster, plan, server_alive, write_files
from natsdemo.workbook.server import NatsServer

log = logging.getLogger("natsdemo.workbook")

# the streams each notebook creates: the honest, cheap sign of how far a seat got
REACHED = (("00", ("HELLO", "CLICKS")), ("02", ("SCHEDULE",)), ("03", ("END_OF_DAY_QUEUE",)),
           ("04", ("RESERVATIONS",)), ("06", ("COUPONS",)))


# ===================================================================== status
def _monitor(roster: dict[str, Any], endpoint: str, node: int = 0) -> dict[str, Any]:
    url = f"http://127.0.0.1:{roster['monitor_ports'][node]}/{endpoint}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def status(roster: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seat: connections, streams, messages, consumers, and the last notebook its streams show."""
    conns = [c for node in range(len(roster["monitor_ports"]))
             for c in _monitor(roster, "connz?auth=true&limit=4096", node).get("connections") or []]
    jsz = _monitor(roster, "jsz?accounts=true&streams=true&consumers=true").get("account_details") or []
    by_account = {a.get("name"): a for a in jsz}
    rows = []
    for seat in roster["seats"]:
        acct = by_account.get(seat["account"], {})
        streams = [s for d in acct.get("stream_detail") or [] for s in [d]]
        names = sorted(s.get("name", "") for s in streams)
        reached = [nb for nb, needs in REACHED if any(n in names for n in needs)]
        rows.append({
            "seat": seat["seat"], "account": seat["account"],
            "connections": sum(1 for c in conns if c.get("account") == seat["account"]),
            "streams": names, "messages": sum((s.get("state") or {}).get("messages", 0) for s in streams),
            "consumers": sum((s.get("state") or {}).get("consumer_count", 0) for s in streams),
            "reached": reached[-1] if reached else "-",
        })
    return rows


def render_status(rows: list[dict[str, Any]]) -> str:
    head = f"{'seat':<5} {'connected':<10} {'streams':<8} {'messages':<9} {'consumers':<10} {'reached':<8} stream names"
    lines = [head]
    for r in rows:
        lines.append(f"{r['seat']:<5} {('yes (' + str(r['connections']) + ')') if r['connections'] else 'no':<10} "
                     f"{len(r['streams']):<8} {r['messages']:<9} {r['consumers']:<10} {r['reached']:<8} "
                     f"{', '.join(r['streams']) or '-'}")
    return "\n".join(lines)


# ===================================================================== CLI
def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["start", "status"], default="start",
                        help="start (the default) runs the server; status shows every seat")
    parser.add_argument("--seats", type=int, default=None, metavar="N", help="seats, one account each (default 1)")
    parser.add_argument("--port", type=int, default=4222, help="client port (default 4222; -1 for a free one)")
    parser.add_argument("--host", action="append", default=[], metavar="NAME",
                        help="a name or address attendees dial (repeatable; the first goes into the URLs; "
                             "default 127.0.0.1, which listens on loopback only)")
    parser.add_argument("--out", default="workshop",
                        help="folder for the seat files and the roster (default workshop/)")
    parser.add_argument("--tls", action="store_true", help="mutual TLS: each seat logs in with its client certificate")
    parser.add_argument("--cluster", action="store_true",
                        help="a 3-node JetStream cluster (mutual-TLS routes, TLS clients, free ports) "
                             "instead of one server")


def run_cli(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    if args.action == "status":
        roster = load_roster(out)
        if roster is None or not server_alive(roster):
            raise UsageError(f"no workshop server is running for {out} (start one with `python -m natsdemo workshop`)")
        print(render_status(status(roster)), flush=True)
        return 0
    if args.port < -1 or args.port > 65535 or args.port == 0:
        raise UsageError(f"--port {args.port} is not a port; use 1-65535, or -1 for a free one")
    for h in args.host:
        if not h or any(c.isspace() or c in "/:@" for c in h):
            raise UsageError(f"--host takes a bare host name or IP address (got {h!r})")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    old = load_roster(out)
    if old is not None and server_alive(old):
        return _add_seats(out, old, args)
    seats = 1 if args.seats is None else args.seats
    if args.cluster and args.port not in (4222, -1):
        raise UsageError("--cluster picks free ports for its three nodes; leave --port out")
    roster = plan(out, seats, port=args.port, hosts=args.host or ["127.0.0.1"], tls=args.tls, cluster=args.cluster)
    return _serve_cluster(out, roster) if args.cluster else _serve(out, roster)


def _add_seats(out: Path, old: dict[str, Any], args: argparse.Namespace) -> int:
    """A second ``workshop --seats N`` while the server runs: more accounts by a config reload."""
    if args.seats is None or args.seats <= len(old["seats"]):
        raise UsageError(f"a workshop server already runs for {out} with {len(old['seats'])} seats "
                         f"(pid {old['pids'][0]}); pass a larger --seats to add seats, or stop it first")
    roster = plan(out, args.seats, port=old["port"], hosts=old["hosts"], tls=old["tls"],
                  cluster=old.get("cluster", False))
    roster["url"] = old["url"]
    write_files(out, roster)
    for pid in roster["pids"]:  # each server re-reads its config: new accounts, nothing else changes
        os.kill(pid, signal.SIGHUP)
    if not wait_for_seats(roster, args.seats):
        raise RuntimeError(f"the server (pids {roster['pids']}) did not take the new seats; see its log")
    print(f"added seats {len(old['seats']) + 1}-{args.seats} to the running workshop server (config reloaded); "
          f"hand out {out}/seat-N.env", flush=True)
    return 0


def _serve(out: Path, roster: dict[str, Any]) -> int:
    hosts = roster["hosts"]
    listen = "127.0.0.1" if all(h in ("127.0.0.1", "localhost") for h in hosts) else "0.0.0.0"
    scheme = "tls" if roster["tls"] else "nats"
    port = roster["port"] if roster["port"] > 0 else "PORT"
    write_files(out, {**roster, "url": f"{scheme}://{hosts[0]}:{port}"})  # validates before starting
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    srv = NatsServer(config=roster["config"], port=roster["port"], host=listen, monitor=False, name="workshop",
                     store_dir=roster["store"])
    srv.start()
    try:
        roster.update(url=f"{scheme}://{hosts[0]}:{srv.client_port}", port=srv.client_port, pids=[srv.pid])
        return _until_stopped(out, roster, stop, [srv])
    finally:
        srv.stop()


def _serve_cluster(out: Path, roster: dict[str, Any]) -> int:
    from natsdemo.workbook.cluster import LocalCluster

    hosts = roster["hosts"]
    listen = "127.0.0.1" if all(h in ("127.0.0.1", "localhost") for h in hosts) else "0.0.0.0"
    write_files(out, {**roster, "url": "tls://PENDING"})  # certificates and a config that validates
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    per_node = str(Path(roster["config"]).with_name("workshop-{node}.conf"))
    cluster = LocalCluster(nodes=3, certs=roster["certs"], config=per_node, host=listen, store=roster["store"])
    cluster.start()
    try:
        nodes = list(cluster.servers.values())
        roster.update(url=",".join(f"tls://{hosts[0]}:{n.client_port}" for n in nodes),
                      pids=[n.pid for n in nodes], monitor_ports=[n.monitor_port for n in nodes])
        return _until_stopped(out, roster, stop, nodes)
    finally:
        cluster.stop()


def _until_stopped(out: Path, roster: dict[str, Any], stop: threading.Event, servers: Sequence[NatsServer]) -> int:
    write_files(out, roster)
    print(roster["url"], flush=True)
    log.info("workshop: %d seats; hand out %s/seat-N.env; `python -m natsdemo workshop status --out %s` "
             "shows them; Ctrl-C stops the server", len(roster["seats"]), out, out)
    while not stop.wait(0.2):
        if not all(s.running() for s in servers):
            log.error("a nats-server exited unexpectedly; its logs: %s", ", ".join(str(s.log_path) for s in servers))
            return 1
    return 0


def wait_for_seats(roster: dict[str, Any], count: int, timeout: float = 10.0) -> bool:
    """True once the server's accounts include seat ``count`` (after a reload)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            names = set(_monitor(roster, "accountz").get("accounts") or [])
        except OSError:
            names = set()
        if f"SEAT{count}" in names:
            return True
        time.sleep(0.1)
    return False


__all__ = ["render_status", "status", "wait_for_seats"]
