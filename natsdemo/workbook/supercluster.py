"""A local supercluster: clusters joined by gateways over mutual TLS, from the workbook's own CA.

Every node runs ``natsdemo/configs/gateway-tls.conf`` (the file docker compose mounts too) in the
certificates folder. The environment gives each node its cluster name, its gateway port, the
address it advertises to the other gateways and one gateway to dial first (the first cluster's);
the command line gives its name, cluster port and routes. A cluster of one node routes to itself:
nats-server refuses JetStream with a cluster block and no routes, and ignores a route to itself.

The supercluster is ready when every node has an outbound and an inbound gateway link to every
other cluster and the JetStream meta group (which spans all clusters) has one leader.

``python -m natsdemo supercluster [--clusters 2] [--nodes 1] [--certs DIR]`` prints
``<cluster> <node> <client URL> pid <PID>`` per node once ready, and stops every node on SIGINT
or SIGTERM.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from natsdemo.core.errors import UsageError
from natsdemo.tls import ensure_certs
from natsdemo.workbook.binary import free_ports
from natsdemo.workbook.monitor import amonitor_json, monitor_json
from natsdemo.workbook.nodes import NodeGroup
from natsdemo.workbook.tls_servers import TlsServer

CONFIG = "gateway-tls.conf"
CLUSTER_NAMES = ("east", "west", "north", "south", "central")  # distinct first letters name the nodes


@dataclass(kw_only=True)
class Supercluster(NodeGroup):
    """``clusters`` clusters of ``nodes`` nats-server processes each, joined by TLS gateways.

    Nodes are named after their cluster: ``e1``, ``e2``... in ``east``, ``w1``... in ``west``.
    ``certs`` is the certificates folder (made or refreshed with :func:`natsdemo.tls.ensure_certs`);
    ``cluster_certs`` gives one cluster another folder (the failure demonstrations use it);
    ``seed_host`` is the host in the URL the other clusters dial to reach the first one;
    ``advertise_host`` is the host each gateway tells the others to dial. Both must be in the
    SANs of the certificate they lead to. ``replaces`` stops an earlier supercluster first.

    Defined in notebooks/05_production.ipynb
    """

    clusters: int = 2
    nodes: int = 1
    certs: str | os.PathLike[str] = "certs"
    cluster_certs: dict[str, str | os.PathLike[str]] = field(default_factory=dict)
    seed_host: str = "127.0.0.1"
    advertise_host: str = "127.0.0.1"
    cluster_of: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not 2 <= self.clusters <= len(CLUSTER_NAMES):
            raise UsageError(f"--clusters must be between 2 and {len(CLUSTER_NAMES)} (got {self.clusters})")
        if not 1 <= self.nodes <= 5:
            raise UsageError(f"--nodes must be between 1 and 5 per cluster (got {self.nodes})")
        unknown = set(self.cluster_certs) - set(self.names)
        if unknown:
            raise UsageError(f"no cluster {', '.join(sorted(unknown))}; clusters are {', '.join(self.names)}")

    # ------------------------------------------------------------------ addresses
    @property
    def names(self) -> list[str]:
        """Cluster names, the first being the one every other cluster dials first."""
        return list(CLUSTER_NAMES[: self.clusters])

    def nodes_of(self, cluster: str) -> list[str]:
        return [n for n, c in self.cluster_of.items() if c == cluster]

    def urls(self, cluster: str) -> list[str]:
        """Client URLs of one cluster's nodes."""
        return [f"tls://127.0.0.1:{self.servers[n].client_port}" for n in self.nodes_of(cluster)]

    def url(self, cluster: str) -> str:
        """One cluster's nodes as a comma-separated list, the form ``NATS_URL`` takes."""
        return ",".join(self.urls(cluster))

    @property
    def ca(self) -> Path:
        return Path(self.certs).resolve() / "ca.pem"

    def env(self, cluster: str) -> dict[str, str]:
        """Environment for a client of ``cluster``: its nodes' URLs and the CA to trust."""
        return {"NATS_URL": self.url(cluster), "NATS_CA": str(self.ca)}

    # ------------------------------------------------------------------ lifecycle
    def _build(self) -> None:
        ensure_certs(self.certs)
        store = self._store_root("natsdemo-supercluster-")
        gateway_ports = free_ports(self.clusters * self.nodes)
        seed_url = f"tls://{self.seed_host}:{gateway_ports[0]}"
        for c, cluster in enumerate(self.names):
            names = [f"{cluster[0]}{i + 1}" for i in range(self.nodes)]
            route_ports = dict(zip(names, free_ports(self.nodes), strict=True))
            # a route to itself is ignored, and lets a cluster of one run JetStream
            routes = ",".join(f"nats://127.0.0.1:{route_ports[o]}" for o in names)
            for i, node in enumerate(names):
                gw_port = gateway_ports[c * self.nodes + i]
                self.cluster_of[node] = cluster
                self.servers[node] = TlsServer(
                    config=CONFIG,
                    certs=self.cluster_certs.get(cluster, self.certs),
                    server_name=node,
                    name=f"supercluster-{node}",
                    store_dir=store / node,
                    env={
                        "NATSDEMO_CLUSTER": cluster,
                        "NATSDEMO_GATEWAY_PORT": str(gw_port),
                        "NATSDEMO_GATEWAY_ADVERTISE": f"{self.advertise_host}:{gw_port}",
                        "NATSDEMO_SEED": self.names[0],
                        "NATSDEMO_SEED_URL": seed_url,
                    },
                    extra_args=["--cluster", f"nats://127.0.0.1:{route_ports[node]}", "--routes", routes],
                )

    # ------------------------------------------------------------------ readiness
    def links(self) -> dict[str, tuple[set[str], set[str]]]:
        """Per node: (clusters it has an outbound gateway to, clusters it has an inbound one from)."""
        out: dict[str, tuple[set[str], set[str]]] = {}
        for node, srv in self.servers.items():
            gz = monitor_json(srv, "gatewayz", timeout=2)
            out[node] = (set(gz.get("outbound_gateways") or {}), set(gz.get("inbound_gateways") or {}))
        return out

    def connected(self) -> bool:
        """True when every node has both directions to every other cluster."""
        for node, (outbound, inbound) in self.links().items():
            others = set(self.names) - {self.cluster_of[node]}
            if outbound != others or inbound != others:
                return False
        return True

    def wait_ready(self, timeout: float | None = None) -> str:
        """Block until all gateway links are up and every node names the same meta leader."""
        limit = timeout or self.ready_timeout
        deadline = time.monotonic() + limit
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                if self.connected():
                    leaders = {monitor_json(s, "jsz", timeout=2).get("meta_cluster", {}).get("leader")
                               for s in self.servers.values()}
                    if len(leaders) == 1 and not {None, ""} & leaders:
                        return str(leaders.pop())
                    last = f"gateways up, meta leaders seen {leaders}"
                else:
                    last = f"gateway links (outbound, inbound) {self.links()}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"supercluster not ready after {limit:.0f} s ({last})")

    def log_lines(self, *needles: str) -> dict[str, list[str]]:
        """Per node, the log lines containing any of ``needles`` (why a gateway did not form)."""
        return {n: s.log_lines(*needles) for n, s in self.servers.items()}

    async def amonitor(self, node: str, endpoint: str) -> dict:
        """A monitoring endpoint (``gatewayz``, ``jsz``...) of one node, read in a worker thread."""
        if node not in self.servers:
            raise UsageError(f"no node {node!r}; nodes are {', '.join(self.servers)}")
        return await amonitor_json(self.servers[node], endpoint, timeout=2)


# ===================================================================== command line
def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clusters", type=int, default=2, help="number of clusters (default 2)")
    parser.add_argument("--nodes", type=int, default=1, help="nodes per cluster (default 1)")
    parser.add_argument("--certs", default="certs", help="certificates folder, made if missing (default certs/)")
    parser.add_argument("--store", default=None, help="keep each node's JetStream data in STORE/<node>")


def run_cli(args: argparse.Namespace) -> int:
    sc = Supercluster(clusters=args.clusters, nodes=args.nodes, certs=args.certs, store=args.store)

    def notes() -> list[str]:
        first = sc.names[0]
        return [f"{node} monitoring {srv.monitor_url}/gatewayz" for node, srv in sc.servers.items()] + [
            f"supercluster ready: export NATS_URL={sc.url(first)} NATS_CA={sc.ca} (cluster {first}); "
            "Ctrl-C stops all nodes"
        ]

    return sc.run_in_foreground(
        lambda: [f"{sc.cluster_of[n]} {n} tls://127.0.0.1:{s.client_port} pid {s.pid}" for n, s in sc.servers.items()],
        notes,
    )
