"""The cluster dashboard of notebook 05: kill and restart nodes and services, and watch stream
leaders, message counts and pending timers carry on.

Defined in notebooks/05_production.ipynb
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import ipywidgets as W

from natsdemo.workbook.cluster import LocalCluster
from natsdemo.workbook.services import ServiceProcess
from natsdemo.workbook.widgets import LivePlot, Panel, Series, button

STREAMS = ("SCHEDULE", "EOD_QUEUE", "RESERVATIONS")


def _replicas_current(info: Any) -> str:
    """``current/configured`` replicas of a stream: a dead node's replica stops being current."""
    total = info.config.num_replicas or 1
    if not info.cluster:
        return f"{total}/{total}"
    followers = [p for p in info.cluster.replicas or [] if p.current and not p.offline]
    return f"{(1 if info.cluster.leader else 0) + len(followers)}/{total}"


class ClusterDashboard:
    """Node and service controls, a table of stream leaders, and a live plot of message counts.

    Every control is a plain method (``kill_node``, ``restart_node``, ``kill_service``,
    ``restart_service``) that the buttons call, so cells and tests can use them directly. Each
    kill or restart is marked on the plot as a vertical line.

    Defined in notebooks/05_production.ipynb
    """

    def __init__(
        self,
        cluster: LocalCluster,
        js: Any,
        services: dict[str, ServiceProcess],
        replaces: ClusterDashboard | None = None,
        interval: float = 1.0,
    ) -> None:
        self.cluster, self.js, self.services = cluster, js, services
        self.panel = Panel("Cluster", replaces=replaces.panel if replaces else None)
        self.series = {name: Series() for name in STREAMS}
        # one panel per stream: 2,000 queue items and a few ticks do not share a readable axis
        self.plot = LivePlot("messages per stream (SIGKILLs and restarts dotted; gaps: no answer)", "seconds",
                             "messages", figsize=(8.8, 2.8), counts=True, titles=STREAMS)
        self.table = W.HTML()
        self.node = W.Dropdown(options=cluster.names, value=cluster.names[0], description="node")
        self.service = W.Dropdown(options=list(services), value=next(iter(services)), description="service")
        self.events: list[tuple[float, str]] = []
        self.buttons = {
            "kill node": button("Kill node", lambda _b: self.kill_node(self.node.value), self.panel,
                                button_style="danger"),
            "restart node": button("Restart node", lambda _b: self.restart_node(self.node.value), self.panel),
            "kill service": button("Kill service", lambda _b: self.kill_service(self.service.value), self.panel,
                                   button_style="danger"),
            "restart service": button("Restart service", lambda _b: self.restart_service(self.service.value),
                                      self.panel),
        }
        self.panel.every(interval, self.refresh)

    # ------------------------------------------------------------------ controls
    def _mark(self, label: str) -> None:
        t = self.series[STREAMS[0]].now()
        self.events.append((t, label))
        for ax in self.plot.axes:
            ax.axvline(t, color="grey", linestyle=":", linewidth=1)
            ax.annotate(label, (t, 0), rotation=90, fontsize="x-small", color="grey",
                        xycoords=("data", "axes fraction"), va="bottom")

    def kill_node(self, node: str) -> None:
        """SIGKILL one node (its data stays on disk)."""
        self.cluster.kill(node)
        self._mark(f"kill {node}")
        self.panel.say(f"killed {node} (SIGKILL); running: {', '.join(self.cluster.running()) or 'none'}")

    async def restart_node(self, node: str) -> None:
        """Start a killed node again on the same ports and store (without blocking the kernel)."""
        await self.cluster.arestart(node)
        self._mark(f"start {node}")
        self.panel.say(f"restarted {node}; running: {', '.join(self.cluster.running())}")

    def kill_service(self, name: str) -> None:
        """SIGKILL one service process: no graceful shutdown."""
        self.services[name].kill()
        self._mark(f"kill {name}")
        self.panel.say(f"killed service {name} (SIGKILL)")

    async def restart_service(self, name: str) -> None:
        """Start a service again; it picks up from the streams where it left off (without blocking)."""
        svc = self.services[name]
        await svc.arestart()
        self._mark(f"start {name}")
        self.panel.say(f"restarted service {name} (pid {svc.pid})")

    # ------------------------------------------------------------------ view
    async def refresh(self) -> None:
        """Poll every stream's leader and message count (a short timeout: nodes may be down)."""
        rows = []
        for name in STREAMS:
            try:
                info = await asyncio.wait_for(self.js.stream_info(name), 2)
                leader, count = info.cluster.leader if info.cluster else "-", info.state.messages
                replicas = _replicas_current(info)
                self.series[name].add(count)
                rows.append((name, leader or "(electing)", f"{replicas}", f"{count:,}"))
            except Exception as exc:  # a node being down is shown in the table, not raised
                self.series[name].add(float("nan"))  # a gap in the plot: the poll got no answer
                rows.append((name, "unavailable", "-", type(exc).__name__))
        nodes = ", ".join(f"{n} {'up' if n in self.cluster.running() else 'DOWN'}" for n in self.cluster.names)
        svcs = ", ".join(f"{n} {'up' if s.running() else 'DOWN'}" for n, s in self.services.items())
        cells = "".join(
            "<tr>" + "".join(f"<td style='padding:0 8px'>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
        )
        self.table.value = (
            f"<table><tr><th>stream</th><th>leader</th><th>replicas current</th><th>messages</th></tr>{cells}</table>"
            f"<div>nodes: {nodes}</div><div>services: {svcs}</div>"
        )
        for panel, (name, s) in enumerate(self.series.items()):
            self.plot.line(name, panel).set_data(list(s.xs), list(s.ys))
        self.plot.redraw()

    @property
    def widget(self) -> W.Widget:
        b = self.buttons
        controls = W.VBox([
            W.HBox([self.node, b["kill node"], b["restart node"]]),
            W.HBox([self.service, b["kill service"], b["restart service"]]),
        ])
        return self.panel.box(controls, self.plot.widget, self.table)
