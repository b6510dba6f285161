"""Notebook helpers for reservation timeouts: service instances to crash, and a live Gantt timeline.

* :class:`Instances` runs ``python -m natsdemo reservations`` processes (killed with the kernel,
  through ``PR_SET_PDEATHSIG``) so a cell can SIGKILL one and start it again;
* :class:`Tracker` follows ``events.reservation.>`` through a JetStream ordered consumer;
* :class:`Timeline` draws the tracked reservations as bars from reserve to deadline, coloured by
  outcome, with a moving "now" line and a countdown on each pending bar.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from natsdemo import reservations as R
from natsdemo.workbook.services import (  # the instances die with the kernel, like its servers
    ServiceProcess,
    stop_all,
    work_dir,
)
from natsdemo.workbook.widgets import LivePlot

COLOURS = {"pending": "tab:blue", "purchased": "tab:green", "timed out": "tab:red"}


class Instances:
    """Timer-service processes for one server, one :class:`natsdemo.workbook.services.ServiceProcess` each.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    def __init__(self, url: str, default_timeout: float = R.DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.default_timeout = default_timeout
        self.dir = work_dir("reservations-")
        self.procs: dict[str, ServiceProcess] = {}

    def start(self, name: str) -> str:
        """Start (or restart) the instance called ``name``; a running one is left alone."""
        if name not in self.procs:
            args = ["reservations", "--server", self.url, "--name", name, "--timeout", str(self.default_timeout)]
            self.procs[name] = ServiceProcess(name, args, ready=r" watching ", log_path=self.dir / f"{name}.log")
        self.procs[name].start()
        return name

    def scale(self, n: int) -> list[str]:
        """Run exactly instances ``i1`` .. ``in`` (extra ones get SIGTERM); returns their names."""
        for name, proc in self.procs.items():
            if int(name[1:]) > n:
                proc.stop(10)
        return [self.start(f"i{k}") for k in range(1, n + 1)]

    async def ascale(self, n: int) -> list[str]:
        """:meth:`scale` without blocking the event loop (extra instances stop in parallel)."""
        await asyncio.gather(*(p.astop(10) for name, p in self.procs.items() if int(name[1:]) > n))
        return [self.start(f"i{k}") for k in range(1, n + 1)]

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.running()]

    def crashed(self) -> list[str]:
        return [n for n, p in self.procs.items() if not p.running()]

    def crash(self, name: str | None = None) -> str:
        """SIGKILL an instance (the first one alive by default): no shutdown code runs."""
        alive = self.alive()
        if not alive:
            raise RuntimeError("no instance is running: restart one first")
        name = name or alive[0]
        self.procs[name].kill()
        return name

    def restart(self) -> str:
        """Start the first crashed instance again."""
        crashed = self.crashed()
        if not crashed:
            raise RuntimeError("no instance has crashed: crash one first")
        return self.start(crashed[0])

    def log(self, name: str) -> str:
        return self.procs[name].log_text() if name in self.procs else ""

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until every running instance printed its ready line since its latest start."""
        await asyncio.gather(*(self.procs[n].await_ready(timeout) for n in self.alive()))

    def count(self, text: str) -> int:
        """How many log lines of all instances contain ``text``."""
        return sum(self.log(n).count(text) for n in self.procs)

    def deduplicated(self) -> int:
        """Timeouts an instance tried to store after another write had decided the reservation."""
        return self.count("already decided") + self.count("de-duplicated by msg id")

    def stop(self) -> None:
        """SIGTERM every instance (they shut down gracefully), SIGKILL stragglers after 10 s."""
        stop_all(self.procs, timeout=10)

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.gather(*(p.astop(10) for p in self.procs.values()))


@dataclass
class Row:
    """One reservation on the timeline: times are epoch seconds from stream timestamps.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    id: str
    reserved_at: float
    deadline: float
    timer: str
    outcome: str = "pending"
    ended_at: float | None = None


class Tracker:
    """Follows ``events.reservation.>`` (from now on) and keeps one :class:`Row` per reservation.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    def __init__(self, js: Any) -> None:
        self.js = js
        self.rows: dict[str, Row] = {}
        self.timeouts = 0
        self._sub: Any = None

    async def start(self) -> Tracker:
        from nats.js.api import DeliverPolicy

        self._sub = await self.js.subscribe(
            f"{R.EVENTS}.>", stream=R.STREAM, ordered_consumer=True, cb=self._on_msg,
            deliver_policy=DeliverPolicy.NEW,
        )
        return self

    async def _on_msg(self, msg: Any) -> None:
        seq, ts_ns, _ = R.js_meta(msg.reply)
        try:
            ev = R.parse_event(msg.subject, msg.data, seq, ts_ns)
        except ValueError:
            return
        at = ts_ns / 1e9
        if ev.type == R.RESERVED:
            self.rows[ev.id] = Row(ev.id, at, ev.deadline_ns(R.DEFAULT_TIMEOUT) / 1e9, ev.timer)
            return
        row = self.rows.get(ev.id)
        if ev.type == R.TIMED_OUT:
            self.timeouts += 1
        if row is not None and row.outcome == "pending":
            row.outcome = "purchased" if ev.type == R.PURCHASED else "timed out"
            row.ended_at = at

    def pending(self) -> list[str]:
        """Ids still pending, newest first (for the purchase picker)."""
        return [r.id for r in sorted(self.rows.values(), key=lambda r: -r.reserved_at) if r.outcome == "pending"]

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


class Timeline:
    """A Gantt chart of the newest reservations, redrawn in place by :meth:`refresh`.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    def __init__(self, tracker: Tracker, deduplicated: Callable[[], int] = lambda: 0, rows: int = 12) -> None:
        self.tracker = tracker
        self.deduplicated = deduplicated
        self.max_rows = rows
        self.t0 = time.time()
        self.plot = LivePlot(figsize=(8, 3.6))  # constrained layout leaves room for the id labels

    @property
    def widget(self) -> Any:
        return self.plot.widget

    def refresh(self) -> None:
        ax, now = self.plot.ax, time.time()
        rows = sorted(self.tracker.rows.values(), key=lambda r: r.reserved_at)[-self.max_rows :]
        ax.clear()
        for y, r in enumerate(rows):
            colour = COLOURS[r.outcome]
            ax.barh(y, r.deadline - r.reserved_at, left=r.reserved_at - self.t0, color=colour, alpha=0.2)
            end = r.ended_at if r.ended_at is not None else min(now, r.deadline)
            ax.barh(y, end - r.reserved_at, left=r.reserved_at - self.t0, height=0.5, color=colour)
            if r.outcome == "pending":
                label = f"{r.deadline - now:.1f} s left" if r.deadline > now else "due: no instance fired yet"
            elif r.outcome == "purchased":
                label = "purchased"
            else:
                label = f"timed out +{(r.ended_at - r.deadline) * 1e3:.0f} ms"  # type: ignore[operator]
            ax.text(max(end, r.deadline) - self.t0 + 0.3, y, label, va="center", fontsize="small")
        ax.axvline(now - self.t0, color="black", linestyle="--", linewidth=1)
        left = min([r.reserved_at for r in rows], default=now) - self.t0 - 1
        right = max([r.deadline for r in rows] + [now], default=now) - self.t0 + 8
        ax.set_xlim(max(left, right - 120), right)
        ax.set_ylim(-0.8, max(len(rows), 1) - 0.2)
        ax.set_yticks(range(len(rows)), [f"{r.id} ({r.timer})" for r in rows], fontsize="small")
        ax.set_xlabel("seconds since the timeline started (dashed: now)")
        ax.set_title(
            f"timeouts stored: {self.tracker.timeouts}, duplicate attempts refused: {self.deduplicated()}",
            fontsize="medium",
        )
        self.plot.redraw()
