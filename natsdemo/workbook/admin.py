"""Instructor tools: ``server`` (a foreground nats-server), ``doctor`` (pre-flight check) and
``reset`` (stop stray workbook servers, clear their state).

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata as md
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from natsdemo.core.errors import UsageError
from natsdemo.workbook.binary import CONFIG_DIR, check_config, nats_server_binary, server_version
from natsdemo.workbook.registry import registered_servers, reset, state_dir
from natsdemo.workbook.server import NatsServer

log = logging.getLogger("natsdemo.workbook")


# ===================================================================== server
def configure_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=4222, help="client port (default 4222; -1 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--store", default=None, help="JetStream store folder to keep (default: a temporary one)")
    parser.add_argument("--config", default="jetstream.conf", help="config file name in natsdemo/configs or a path")


def run_server(args: argparse.Namespace) -> int:
    if args.port < -1 or args.port > 65535 or args.port == 0:
        raise UsageError(f"--port {args.port} is not a port; use 1-65535, or -1 for a free one")
    if args.port > 0 and not _port_free(args.port, args.host):
        raise UsageError(
            f"port {args.port} on {args.host} is already in use (another nats-server?): "
            "stop it with `python -m natsdemo reset`, or pick another with --port"
        )
    if args.store:
        Path(args.store).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    srv = NatsServer(port=args.port, host=args.host, store_dir=args.store, config=args.config, name="natsdemo-server")
    srv.start()
    try:
        print(srv.url, flush=True)
        log.info("nats-server %s pid %s, JetStream store %s, monitoring %s; Ctrl-C stops it",
                 server_version(), srv.pid, args.store or "temporary", srv.monitor_url)
        log.debug("its log: %s", srv.log_path)
        while not stop.wait(0.2):
            if not srv.running():
                print("natsdemo server: error: nats-server exited unexpectedly", file=sys.stderr)
                return 1
    finally:
        srv.stop()
    return 0


# ===================================================================== reset
def configure_reset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-live", action="store_true", help="only stop servers whose owner (kernel, test) has exited"
    )


def run_reset(args: argparse.Namespace) -> int:
    stopped = reset(keep_owned_by_live=args.keep_live)
    if getattr(args, "quiet", False):
        return 0
    print(
        f"stopped {len(stopped)} workbook server(s){': ' + ', '.join(map(str, stopped)) if stopped else ''}; "
        f"cleared server stores and service logs in {state_dir()}"
    )
    return 0


# ===================================================================== doctor
class _Checks:
    def __init__(self, quiet: bool = False) -> None:
        self.failed = 0
        self.quiet = quiet  # print only FAIL and WARN lines

    def line(self, ok: bool | None, what: str, detail: str) -> None:
        tag = {True: "PASS", False: "FAIL", None: "WARN"}[ok]
        self.failed += ok is False
        if ok is not True or not self.quiet:
            print(f"{tag}  {what:<22} {detail}", flush=True)


def _version(pkg: str) -> str | None:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing accepts connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            return s.connect_ex((host, port)) != 0
        except OSError:
            return True


async def _jetstream_roundtrip(srv: NatsServer) -> str:
    nc = await srv.connect()
    try:
        js = nc.jetstream()
        from nats.js.api import StreamConfig

        await js.add_stream(StreamConfig(name="DOCTOR", subjects=["doctor.>"], allow_msg_schedules=True))
        ack = await js.publish("doctor.ping", b"ok", headers={"Nats-Msg-Id": "doctor-1"})
        dup = await js.publish("doctor.ping", b"ok", headers={"Nats-Msg-Id": "doctor-1"})
        if not dup.duplicate or ack.seq != 1:
            raise RuntimeError("msg-id de-duplication did not work")
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
        await js.publish(
            "doctor.sched", b"tick", headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": "doctor.fired"}
        )
        sub = await js.subscribe("doctor.fired", ordered_consumer=True)
        await sub.next_msg(timeout=5)
        return "stream, publish, de-dup and an @at message schedule all work"
    finally:
        await nc.close()


def configure_doctor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--certs", default="certs", help="certificate folder to check (default certs/)")


def run_doctor(args: argparse.Namespace) -> int:
    c = _Checks(quiet=getattr(args, "quiet", False))
    py = sys.version.split()[0]
    c.line(sys.version_info >= (3, 11), "python", f"{py} at {sys.executable} (3.11+ needed)")
    try:
        binary = nats_server_binary()
        ver = server_version()
        parts = tuple(int(x) for x in ver.lstrip("v").split(".")[:2])
        c.line(parts >= (2, 14), "nats-server", f"{ver} at {binary} (2.14+ needed for cron schedules)")
    except Exception as exc:
        c.line(False, "nats-server", str(exc))
        return 1
    for pkg in ("nats-py", "jupyterlab", "ipywidgets", "ipympl", "matplotlib", "croniter", "cryptography"):
        v = _version(pkg)
        c.line(v is not None, pkg, v or "missing: pip install -r requirements.txt")
    bad = []
    for conf in sorted(CONFIG_DIR.glob("*.conf")):
        needs_certs = "cert_file" in conf.read_text()
        if needs_certs:
            continue  # TLS configs are validated by the tests, after certificates are generated
        ok, out = check_config(conf)
        log.debug("nats-server -t %s: %s", conf.name, "valid" if ok else out)
        if not ok:
            bad.append(f"{conf.name}: {out.splitlines()[-1] if out else '?'}")
    c.line(not bad, "config files", "; ".join(bad) or "all plain configs valid (nats-server -t)")
    t0 = time.perf_counter()
    try:
        with NatsServer(name="doctor") as srv:
            c.line(True, "server start", f"ready in {(time.perf_counter() - t0) * 1000:.0f} ms on {srv.url}")
            try:
                c.line(True, "jetstream", asyncio.run(_jetstream_roundtrip(srv)))
            except Exception as exc:
                c.line(False, "jetstream", f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        c.line(False, "server start", " ".join(str(exc).split()))
    for port, use in ((4222, "client port"), (8222, "monitoring port")):
        free = _port_free(port)
        c.line(
            True if free else None,
            f"port {port}",
            f"free ({use} for `natsdemo server` and docker compose)"
            if free
            else "in use: `natsdemo server` will need --port, or run `python -m natsdemo reset`",
        )
    strays = registered_servers()
    c.line(
        True if not strays else None,
        "stray servers",
        "none" if not strays else f"{len(strays)} running; `python -m natsdemo reset` stops them",
    )
    certs = Path(args.certs)
    have = certs.joinpath("ca.pem").exists()
    c.line(
        True if have else None,
        "certificates",
        f"{certs}/ca.pem present" if have else "none yet; notebook 01 or `python -m natsdemo certs` makes them",
    )
    url = os.environ.get("NATS_URL")
    if url:
        c.line(None, "NATS_URL", f"set to {url}: notebooks and services will use that server")
    print("doctor: all checks passed" if not c.failed else f"doctor: {c.failed} check(s) failed", flush=True)
    return 1 if c.failed else 0
