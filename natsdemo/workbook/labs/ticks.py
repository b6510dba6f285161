"""The tick lab: a cron box and a time-zone picker with a live preview, ticker replicas to start,
add and stop, and live plots of lateness per tick and of duplicates suppressed.

Defined in notebooks/02_cron_ticks.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from datetime import datetime
from typing import Any

import ipywidgets as W

from natsdemo.core.cron import parse_cron, rfc3339
from natsdemo.core.errors import UsageError
from natsdemo.ticks import Fired, TickConsumer, Ticker, tick_subject
from natsdemo.workbook.widgets import LivePlot, Panel, Series, button

ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Australia/Sydney"]
MAX_RUN_SECONDS = 600.0  # a forgotten lab stops ticking on its own after ten minutes


def preview(expr: str, tz: str, count: int = 5, after: datetime | None = None) -> tuple[str, str | None]:
    """(HTML list of the next ``count`` fire times on the zone's wall clock, plain-words error or None).

    Defined in notebooks/02_cron_ticks.ipynb
    """
    try:
        spec = parse_cron(expr, tz)
        times = spec.next_times(count, after)
    except UsageError as exc:
        return f"<span style='color:#b00020'>{html.escape(str(exc))}</span>", str(exc)
    rows = "".join(
        f"<li>{spec.local(t):%a %Y-%m-%d %H:%M:%S %Z} <small>({rfc3339(t)})</small></li>" for t in times
    )
    head = f"<b>next fire times</b> of <code>{html.escape(spec.fields)}</code> in {html.escape(tz)}"
    return f"{head}<ul>{rows}</ul>", None


def _replicas(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"


class TickLab:
    """Ticker replicas in this kernel (one connection each, as if each were its own process), all
    publishing ``schedule.<name>``, and one :class:`TickConsumer` counting what a reader receives.

    Defined in notebooks/02_cron_ticks.ipynb
    """

    def __init__(
        self, server: Any, js: Any, name: str, *, cron: str = "* * * * * *", tz: str = "UTC",
        replaces: TickLab | None = None,
    ) -> None:
        self._closing_old = asyncio.ensure_future(replaces.aclose()) if replaces is not None else None
        self.server, self.js, self.name = server, js, name
        self.panel = Panel(f"Tick lab: {tick_subject(name)}")
        self.cron = W.Text(value=cron, description="cron", continuous_update=True)
        self.tz = W.Combobox(value=tz, options=ZONES, description="time zone", ensure_option=False)
        self.preview = W.HTML()
        self.error: str | None = None
        self.start_button = button("Start ticker", self.on_start, self.panel, button_style="primary")
        self.add_button = button("Add replica", self.on_add, self.panel)
        self.stop_button = button("Stop tickers", self.on_stop, self.panel, button_style="danger")
        self.late_plot = LivePlot("lateness per tick", "seconds", "ms after the slot", figsize=(4.4, 2.8))
        self.dup_plot = LivePlot("duplicates suppressed", "seconds", "count", figsize=(4.4, 2.8), counts=True)
        self.replicas: list[tuple[Ticker, Any, asyncio.Event, asyncio.Task[Any]]] = []
        self.started = 0
        self.lateness: dict[str, Series] = {}
        self.dups = Series()
        self.received = 0
        self.stored = 0
        self._dup_count = 0
        self.consumer: TickConsumer | None = None
        self._listener: asyncio.Task[Any] | None = None
        self.cron.observe(self.on_change, names="value")
        self.tz.observe(self.on_change, names="value")
        self.on_change()
        self.panel.every(0.5, self.refresh)

    # ---------------------------------------------------------------- preview
    def on_change(self, _change: Any = None) -> None:
        """Re-render the preview (or the plain-words error) for the current cron and zone."""
        self.preview.value, self.error = preview(self.cron.value, self.tz.value)

    # ---------------------------------------------------------------- actions (awaitable from cells)
    def _record(self, fired: Fired) -> None:
        series = self.lateness.setdefault(fired.replica, Series())
        series.t0 = self.dups.t0
        series.add(fired.lateness * 1000)
        if fired.duplicate:
            self._dup_count += 1
            self.dups.add(self._dup_count)
        else:
            self.stored += 1

    async def _listen(self) -> None:
        try:
            self.consumer = TickConsumer(self.js, self.name)
            await self.consumer.start()
            while True:
                with contextlib.suppress(TimeoutError):
                    await self.consumer.next(timeout=1.0)
                    self.received += 1
        except Exception as exc:
            self.panel.report(exc)

    async def add_replica(self) -> Ticker:
        """Start one more ticker replica: the running replicas' cron and zone, or the boxes' values."""
        cron, tz = (self.replicas[0][0].spec.expr, self.replicas[0][0].spec.tz) if self.replicas else (
            self.cron.value, self.tz.value)
        self.started += 1
        rid = f"r{self.started}"
        ticker = Ticker(self.js, self.name, cron, tz, replica=rid, on_fire=self._record)  # validates first
        if self._listener is None:  # not panel.spawn: settle() must not wait for this endless reader
            self._listener = asyncio.ensure_future(self._listen())
        nc = await self.server.connect(name=f"tick-lab-{rid}")
        ticker.js = nc.jetstream()
        stop = asyncio.Event()
        task = asyncio.ensure_future(self._run(ticker, stop))
        self.replicas.append((ticker, nc, stop, task))
        verb = "ticking" if len(self.replicas) == 1 else "added"
        self.panel.say(f"replica {rid} {verb} {tick_subject(self.name)} on {ticker.spec.fields!r} in {tz} "
                       f"({_replicas(len(self.replicas))})")
        return ticker

    async def _run(self, ticker: Ticker, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: a cancellation is never swallowed
            async with asyncio.timeout(MAX_RUN_SECONDS):
                await ticker.run(stop)

    async def stop_all(self) -> None:
        """Stop every replica gracefully (the current sleep is interrupted, nothing half-published)."""
        if not self.replicas:
            raise ValueError("no ticker is running: press Start ticker first")
        names = [t.replica for t, *_ in self.replicas]
        while self.replicas:
            _ticker, nc, stop, task = self.replicas.pop()
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
                await nc.drain()
        self.panel.say(f"stopped {_replicas(len(names))} ({', '.join(sorted(names))}): {self.stored} stored, "
                       f"{self.duplicates} duplicates suppressed so far")

    async def wait_for_ticks(self, n: int, timeout: float = 15.0) -> None:
        """Wait until the consumer has received ``n`` ticks in total."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.received < n:
            if loop.time() > deadline:
                raise TimeoutError(f"only {self.received} ticks after {timeout} s")
            await asyncio.sleep(0.1)

    @property
    def duplicates(self) -> int:
        """Publishes the stream refused as duplicates (another replica had stored that slot)."""
        return self._dup_count

    # ---------------------------------------------------------------- widget handlers (plain functions)
    def on_start(self, _button: Any = None) -> Any:
        if self.replicas:
            raise ValueError("a ticker is already running: use Add replica, or Stop tickers first")
        return self.add_replica()

    def on_add(self, _button: Any = None) -> Any:
        return self.add_replica()

    def on_stop(self, _button: Any = None) -> Any:
        return self.stop_all()

    # ---------------------------------------------------------------- live view
    def refresh(self) -> None:
        for rid, series in self.lateness.items():
            self.late_plot.line(rid, marker=".", linestyle="").set_data(list(series.xs), list(series.ys))
        self.late_plot.redraw()
        self.dup_plot.line("suppressed", drawstyle="steps-post", marker=".").set_data(
            list(self.dups.xs), list(self.dups.ys))
        self.dup_plot.redraw()

    @property
    def widget(self) -> W.Widget:
        inputs = W.HBox([self.cron, self.tz])
        controls = W.HBox([self.start_button, self.add_button, self.stop_button])
        plots = W.HBox([self.late_plot.widget, self.dup_plot.widget])
        return self.panel.box(inputs, self.preview, controls, plots)

    async def aclose(self) -> None:
        """Stop the refresh loop, the replicas and the consumer."""
        self.panel.stop()
        with contextlib.suppress(ValueError):
            await self.stop_all()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
        if self.consumer is not None:
            await self.consumer.stop()
        self.late_plot.close()
        self.dup_plot.close()
