"""A local JetStream cluster whose routes use mutual TLS, from the workbook's own CA.

Every node runs ``natsdemo/configs/cluster-tls.conf`` (the file docker compose mounts too) in the
certificates folder, with its name, cluster port and routes given on the command line. The
cluster is ready when the JetStream meta group has elected a leader: before that, creating a
stream fails. Clients connect with TLS and must trust the workbook CA (``NATS_CA``).

``python -m natsdemo cluster [--nodes 3]`` prints ``<node name> <client URL> pid <PID>`` per node
once ready, and stops every node on SIGINT or SIGTERM.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from natsdemo.core.errors import UsageError
from natsdemo.tls import ensure_certs
from natsdemo.workbook.binary import free_ports
from natsdemo.workbook.monitor import amonitor_json, monitor_json
from natsdemo.workbook.nodes import NodeGroup
from natsdemo.workbook.tls_servers import TlsServer

CONFIG = "cluster-tls.conf"


@dataclass(kw_only=True)
class LocalCluster(NodeGroup):
    """``nodes`` nats-server processes (n1, n2, ...) routed to each other over mutual TLS.

    ``certs`` is the certificates folder (made or refreshed with :func:`natsdemo.tls.ensure_certs`);
    ``store`` keeps each node's JetStream data in ``store/<node>`` (a temporary folder by default);
    ``replaces`` stops an earlier cluster first (a re-run notebook cell).

    Defined in notebooks/05_production.ipynb
    """

    nodes: int = 3
    certs: str | os.PathLike[str] = "certs"
    # another node config (the workshop's, with accounts); "{node}" in it is replaced by the node's name
    config: str | os.PathLike[str] = CONFIG
    host: str = "127.0.0.1"  # where the nodes listen for clients (0.0.0.0 for a room)

    def __post_init__(self) -> None:
        if not 2 <= self.nodes <= 9:  # one node has no routes, and nats-server refuses a JetStream cluster of one
            raise UsageError(f"--nodes must be between 2 and 9 (got {self.nodes}); 3 is the usual size")

    # ------------------------------------------------------------------ addresses
    @property
    def names(self) -> list[str]:
        return list(self.servers)

    @property
    def urls(self) -> list[str]:
        """Client URLs of all nodes (running or not), in node order."""
        return [f"tls://127.0.0.1:{s.client_port}" for s in self.servers.values() if s.client_port]

    @property
    def url(self) -> str:
        """A comma-separated server list, the form ``NATS_URL`` takes."""
        return ",".join(self.urls)

    @property
    def ca(self) -> Path:
        return Path(self.certs).resolve() / "ca.pem"

    def env(self) -> dict[str, str]:
        """Environment for a service process: every node's URL and the CA to trust."""
        return {"NATS_URL": self.url, "NATS_CA": str(self.ca)}

    # ------------------------------------------------------------------ lifecycle
    def _build(self) -> None:
        ensure_certs(self.certs)
        store = self._store_root("natsdemo-cluster-")
        names = [f"n{i + 1}" for i in range(self.nodes)]
        route_ports = dict(zip(names, free_ports(len(names)), strict=True))
        for n in names:
            routes = ",".join(f"nats://127.0.0.1:{route_ports[o]}" for o in names if o != n)
            args = ["--cluster", f"nats://127.0.0.1:{route_ports[n]}", "--cluster_name", "natsdemo"]
            if routes:
                args += ["--routes", routes]
            self.servers[n] = TlsServer(
                config=str(self.config).replace("{node}", n),
                host=self.host,
                certs=self.certs,
                server_name=n,
                name=f"cluster-{n}",
                store_dir=store / n,
                extra_args=args,
            )

    def wait_ready(self, timeout: float | None = None, need: int | None = None) -> str:
        """Block until the meta group has a leader and ``need`` nodes (all running ones) see a full mesh."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        last = "no answer yet"
        while time.monotonic() < deadline:
            running = [s for s in self.servers.values() if s.running()]
            try:
                leaders = {self._jsz(s).get("meta_cluster", {}).get("leader") for s in running}
                routes = [self._routez(s) for s in running]
                meshed = all(r >= (need or len(running)) - 1 for r in routes)
                if len(leaders) == 1 and None not in leaders and "" not in leaders and meshed:
                    return leaders.pop()
                last = f"meta leaders seen {leaders}, routes {routes}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ready after {timeout or self.ready_timeout:.0f} s ({last})")

    def kill(self, node: str) -> None:
        """SIGKILL one node, keeping its store (a crash)."""
        self._node(node).kill()

    def restart(self, node: str) -> None:
        """Start a stopped or killed node again, same ports and store."""
        srv = self._node(node)
        if not srv.running():
            srv.start()

    async def arestart(self, node: str) -> None:
        """:meth:`restart` without blocking the event loop."""
        srv = self._node(node)
        if not srv.running():
            await srv.astart()

    def running(self) -> list[str]:
        return [n for n, s in self.servers.items() if s.running()]

    def _node(self, node: str) -> TlsServer:
        if node not in self.servers:
            raise UsageError(f"no node {node!r}; nodes are {', '.join(self.servers)}")
        return self.servers[node]

    # ------------------------------------------------------------------ monitoring
    def _jsz(self, srv: TlsServer) -> dict:
        return monitor_json(srv, "jsz", timeout=2)

    def _routez(self, srv: TlsServer) -> int:
        routes = monitor_json(srv, "routez", timeout=2).get("routes") or []
        return len({r.get("remote_name") or r.get("remote_id") for r in routes})

    def monitor(self, node: str, endpoint: str) -> dict:
        """A monitoring endpoint (``healthz``, ``varz``, ``jsz``, ``routez``...) of one node."""
        return monitor_json(self._node(node), endpoint, timeout=2)

    async def amonitor(self, node: str, endpoint: str) -> dict:
        """:meth:`monitor` in a worker thread, so the event loop never waits on HTTP."""
        return await amonitor_json(self._node(node), endpoint, timeout=2)


# ===================================================================== command line
def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument("--certs", default="certs", help="certificates folder, made if missing (default certs/)")
    parser.add_argument("--store", default=None, help="keep each node's JetStream data in STORE/<node>")


def run_cli(args: argparse.Namespace) -> int:
    cluster = LocalCluster(nodes=args.nodes, certs=args.certs, store=args.store)
    return cluster.run_in_foreground(
        lambda: [f"{name} tls://127.0.0.1:{srv.client_port} pid {srv.pid}" for name, srv in cluster.servers.items()],
        lambda: [f"cluster ready: export NATS_URL={cluster.url} NATS_CA={cluster.ca}; Ctrl-C stops all nodes"],
    )
