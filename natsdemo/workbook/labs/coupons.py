"""The coupon board of notebook 06: buttons that issue and redeem coupons, and a live count plot.

:class:`CouponBoard` follows ``coupons.>`` with :func:`natsdemo.coupons.watch` (from now on, every
kind of event) and keeps, per coupon, its TTL and outcome. Its plot shows how many coupons are
valid, redeemed and expired over time, and the expiry lateness (the marker's stream timestamp
minus the coupon's, minus its TTL), all from the server's timestamps.

Defined in notebooks/06_coupons_ttl.ipynb
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
from matplotlib.ticker import MaxNLocator

from natsdemo import coupons as C
from natsdemo.workbook.widgets import LivePlot, Panel, Series, button

STATES = ("valid", "redeemed", "expired")
COLOURS = {"valid": "tab:blue", "redeemed": "tab:green", "expired": "tab:red"}


@dataclass
class Entry:
    """One coupon the board saw issued."""

    id: str
    issued_ns: int
    ttl: int
    state: str = "valid"
    lateness_ms: float | None = None  # expired only


class CouponBoard:
    """Issue / redeem buttons, a TTL slider, and a plot of coupon states over time.

    Defined in notebooks/06_coupons_ttl.ipynb
    """

    def __init__(self, js: Any, *, prefix: str = "board", replaces: CouponBoard | None = None) -> None:
        self.js = js
        self.prefix = f"{prefix}-{time.time_ns() % 10**9}"  # ids are single-use: a fresh prefix per board
        self.entries: dict[str, Entry] = {}
        if replaces is not None:  # re-running the cell: stop the old board's watcher and figure
            replaces.close()
        self.panel = Panel("Coupons")
        self.ttl = W.IntRangeSlider(value=(2, 6), min=1, max=20, description="TTL (s)")
        self.issue_button = button("Issue 5 coupons", lambda _: self.issue(5), self.panel)
        self.redeem_button = button("Redeem one", lambda _: self.redeem_one(), self.panel)
        self.series = {s: Series() for s in STATES}
        self.plot = LivePlot("", "seconds since the board started", figsize=(8.5, 3),
                             titles=["coupons by state", "expiry lateness (ms)"])
        self._n = 0
        self.issued = self.redeemed = 0  # by this board's buttons
        self.panel.background(self._follow())
        self.panel.every(0.5, self.refresh)

    @property
    def widget(self) -> W.Widget:
        return self.panel.box(W.HBox([self.issue_button, self.redeem_button, self.ttl]), self.plot.widget)

    async def issue(self, n: int) -> list[str]:
        """Issue ``n`` coupons with TTLs drawn from the slider's range; returns their ids."""
        low, high = self.ttl.value
        ids = []
        for _ in range(n):
            self._n += 1
            cid = f"{self.prefix}-{self._n}"
            await C.issue(self.js, cid, random.randint(low, high))
            ids.append(cid)
        self.issued += n
        self.panel.say(f"issued {self.issued} so far (latest {ids[-1]})")
        return ids

    async def redeem_one(self) -> str | None:
        """Redeem the valid coupon furthest from expiry (a refusal would show in the output)."""
        valid = sorted((e for e in self.entries.values() if e.state == "valid"),
                       key=lambda e: -(e.issued_ns + e.ttl * 10**9))
        if not valid:
            self.panel.say("no valid coupon to redeem: issue some first")
            return None
        await C.redeem(self.js, valid[0].id)
        self.redeemed += 1
        self.panel.say(f"redeemed {self.redeemed} so far (latest {valid[0].id})")
        return valid[0].id

    async def _follow(self) -> None:
        async for ev in C.watch(self.js, kinds=(C.ISSUED, C.REDEEMED, C.EXPIRED)):
            if not ev.id.startswith(self.prefix):
                continue  # somebody else's coupons
            if ev.kind == C.ISSUED and ev.ttl is not None:
                self.entries[ev.id] = Entry(ev.id, ev.ts_ns, ev.ttl)
            elif ev.id in self.entries:
                entry = self.entries[ev.id]
                entry.state = "redeemed" if ev.kind == C.REDEEMED else "expired"
                if ev.kind == C.EXPIRED:
                    entry.lateness_ms = (ev.ts_ns - entry.issued_ns - entry.ttl * 10**9) / 1e6

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for e in self.entries.values():
            out[e.state] += 1
        return out

    def lateness(self) -> list[float]:
        return [e.lateness_ms for e in self.entries.values() if e.lateness_ms is not None]

    def refresh(self) -> None:
        counts = self.counts()
        for state, series in self.series.items():
            series.add(counts[state])
            self.plot.set(state, series.xs, series.ys, color=COLOURS[state])
        late = self.lateness()
        self.plot.set("expiries", range(1, len(late) + 1), late, panel=1, color="tab:red", marker="o",
                      linestyle="none")
        self.plot.axes[1].set_xlabel("expiry number")
        self.plot.axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))

    def close(self) -> None:
        self.panel.stop()
        self.plot.close()
