"""The drain lab: a widget panel to enqueue work, fire ticks, add and remove workers, and watch the
queue empty (pending and ack-pending over time, items processed per worker).

Defined in notebooks/03_tick_triggered_drain.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from pathlib import Path
from typing import Any

import ipywidgets as W
import nats.js.errors

from natsdemo.drain import Drainer, DrainSettings, enqueue, queue_names, queue_state
from natsdemo.ticks import publish_tick
from natsdemo.workbook.services import ServiceProcess
from natsdemo.workbook.widgets import LivePlot, Panel, Series, button


async def reset_queue(js: Any, name: str) -> None:
    """Delete queue ``name``'s work and dead-letter streams (and so its consumer): a clean start.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    names = queue_names(name)
    for stream in (names.stream, names.dead_stream):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


async def start_cli_worker(url: str, name: str, worker: str, log: str, *flags: str) -> ServiceProcess:
    """Start ``python -m natsdemo drain`` as a separate process and wait for its ready line.

    The child gets SIGTERM if this kernel dies (``PR_SET_PDEATHSIG``), so it never outlives it;
    its output goes to ``.log_path``. ``kill()`` is a crash, ``stop()`` a graceful shutdown.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    args = ["drain", "--name", name, "--server", url, "--worker", worker, "--processed-log", log, *flags]
    proc = ServiceProcess(f"drain worker {worker}", args, ready=r"^draining ").start()
    try:
        return await proc.await_ready(timeout=20)
    except BaseException:
        proc.kill()
        raise


def read_processed_log(path: str | Path) -> list[tuple[str, int, int]]:
    """``(worker, stream seq, delivery count)`` for each line a CLI worker wrote to ``--processed-log``.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """
    p = Path(path)
    if not p.exists():
        return []
    rows = []
    for line in p.read_text().splitlines():
        worker, seq, deliveries, _subject = line.split(" ")
        rows.append((worker, int(seq), int(deliveries)))
    return rows


class DrainLab:
    """Workers (in this kernel, one connection each, as if each were its own process) draining
    queue ``name`` on every tick, with the controls and live plots of notebook 03.

    Defined in notebooks/03_tick_triggered_drain.ipynb
    """

    def __init__(
        self,
        server: Any,
        js: Any,
        name: str,
        settings: DrainSettings,
        *,
        work_ms: float = 2.0,
        replaces: DrainLab | None = None,
    ) -> None:
        # re-running the cell: stop the old lab's workers and plots (in the background)
        self._closing_old = asyncio.ensure_future(replaces.aclose()) if replaces is not None else None
        self.server, self.js, self.name, self.settings = server, js, name, settings
        self.work_ms = work_ms
        self.rng = random.Random(3)
        self.panel = Panel(f"Drain lab: {queue_names(name).subjects}")
        self.workers: list[tuple[Drainer, Any]] = []
        self.started = 0
        self.enqueued = 0
        self.ticks = 0
        self.high = 0  # most items waiting since the queue was last empty: the progress bar's 100 %
        self.state: dict[str, int] = {}
        self.count = W.BoundedIntText(value=2000, min=1, max=100_000, step=500, description="items")
        self.batch = W.IntSlider(value=settings.batch, min=1, max=1000, description="batch size")
        self.fail = W.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.05, description="fail rate")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="drained", bar_style="info")
        self.batch.observe(self._on_batch, names="value")
        self.enqueue_button = button("Enqueue items", self.on_enqueue, self.panel, button_style="primary")
        self.tick_button = button("Fire a tick now", self.on_tick, self.panel, button_style="warning")
        self.add_button = button("Add worker", self.on_add, self.panel)
        self.remove_button = button("Remove worker", self.on_remove, self.panel)
        self.queue_plot = LivePlot("the queue", "seconds", "items", figsize=(4.4, 2.8), counts=True)
        self.worker_plot = LivePlot("items processed per worker", "seconds", "items", figsize=(4.4, 2.8),
                                    counts=True)
        self.pending, self.ack_pending = Series(), Series()
        self.per_worker: dict[str, Series] = {}
        self.panel.every(0.25, self.refresh)

    # ---------------------------------------------------------------- the handler every worker runs
    async def handle(self, msg: Any) -> None:
        """Simulated work; fails (raises) with the probability set by the fail-rate slider."""
        await asyncio.sleep(self.work_ms / 1000)
        if self.fail.value and self.rng.random() < self.fail.value:
            raise RuntimeError("simulated failure (fail-rate slider)")

    # ---------------------------------------------------------------- actions (awaitable from cells)
    async def enqueue(self, n: int) -> None:
        await enqueue(self.js, self.name, n, start=self.enqueued)
        self.enqueued += n
        self.panel.say(f"enqueued {n:,} items ({self.enqueued:,} so far); fire a tick to drain them")

    async def tick(self) -> None:
        await publish_tick(self.js, self.name)
        self.ticks += 1
        self.panel.say(f"tick {self.ticks} fired on {queue_names(self.name).tick_subject}")

    async def add_worker(self) -> Drainer:
        self.started += 1
        wid = f"w{self.started}"
        nc = await self.server.connect(name=f"drain-lab-{wid}")
        settings = dataclasses.replace(self.settings, batch=self.batch.value)
        drainer = await Drainer(nc.jetstream(), self.name, self.handle, settings, worker=wid).start()
        self.workers.append((drainer, nc))
        self.per_worker.setdefault(wid, Series()).t0 = self.pending.t0
        self.panel.say(f"worker {wid} started ({_workers(len(self.workers))})")
        return drainer

    async def remove_worker(self) -> None:
        if not self.workers:
            raise ValueError("no worker to remove: add one first")
        drainer, nc = self.workers.pop()
        await drainer.stop()  # finishes the item in hand and naks the rest: nothing waits for ack_wait
        await nc.drain()
        self.panel.say(f"worker {drainer.worker} stopped after {drainer.metrics.items:,} items "
                       f"({_workers(len(self.workers))} left)")

    async def wait_until_drained(self, timeout: float = 60.0) -> dict[str, int]:
        """Wait until nothing is pending or in flight (and every worker has finished its drain)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            st = await queue_state(self.js, self.name)
            if st["pending"] == 0 and st["ack_pending"] == 0 and not any(d.draining for d, _ in self.workers):
                return st
            await asyncio.sleep(0.1)
        raise TimeoutError(f"queue not drained after {timeout} s: {await queue_state(self.js, self.name)}")

    # ---------------------------------------------------------------- widget handlers (plain functions)
    def on_enqueue(self, _button: Any = None) -> Any:
        return self.enqueue(self.count.value)

    def on_tick(self, _button: Any = None) -> Any:
        return self.tick()

    def on_add(self, _button: Any = None) -> Any:
        return self.add_worker()

    def on_remove(self, _button: Any = None) -> Any:
        return self.remove_worker()

    def _on_batch(self, change: dict[str, Any]) -> None:
        for drainer, _ in self.workers:
            drainer.settings.batch = int(change["new"])  # read at every fetch

    # ---------------------------------------------------------------- live view
    async def refresh(self) -> None:
        st = await queue_state(self.js, self.name)
        self.state = st
        left = st["pending"] + st["ack_pending"]
        self.high = max(self.high, left) if left else 0
        self.progress.max = max(1, self.high)
        self.progress.value = self.high - left if left else self.progress.max
        self.progress.description = f"{left:,} left" if left else "empty"
        self.pending.add(st["pending"])
        self.ack_pending.add(st["ack_pending"])
        self.queue_plot.line("pending").set_data(list(self.pending.xs), list(self.pending.ys))
        self.queue_plot.line("ack pending").set_data(list(self.ack_pending.xs), list(self.ack_pending.ys))
        self.queue_plot.redraw()
        for drainer, _ in self.workers:
            self.per_worker[drainer.worker].add(drainer.metrics.items)
        for wid, series in self.per_worker.items():
            self.worker_plot.line(wid).set_data(list(series.xs), list(series.ys))
        self.worker_plot.redraw()

    @property
    def widget(self) -> W.Widget:
        controls = W.HBox([self.count, self.enqueue_button, self.tick_button, self.add_button, self.remove_button])
        knobs = W.HBox([self.batch, self.fail, self.progress])
        plots = W.HBox([self.queue_plot.widget, self.worker_plot.widget])
        return self.panel.box(controls, knobs, plots)

    async def aclose(self) -> None:
        """Stop the refresh loop and every worker (gracefully)."""
        self.panel.stop()
        while self.workers:
            drainer, nc = self.workers.pop()
            with contextlib.suppress(Exception):
                await drainer.stop()
                await nc.drain()
        self.queue_plot.close()
        self.worker_plot.close()
