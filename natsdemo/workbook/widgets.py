"""The widget and live-plot idiom every notebook shares.

* Handlers are plain named functions, so a test can call them or ``button.click()`` them.
* Async work goes onto the kernel's running loop through :meth:`Panel.spawn`, never a blocking
  sleep; :meth:`Panel.settle` waits for it (a cell or a test can ``await panel.settle()``).
* Errors land in the panel's ``Output`` widget instead of vanishing into the kernel log.
* Plots are matplotlib figures made with ``plt.ioff()``; with ``%matplotlib widget`` (ipympl) the
  canvas is itself a widget updated in place with ``set_data`` + ``draw_idle``. Without ipympl the
  same :class:`LivePlot` falls back to a PNG in an ``Image`` widget, so it works anywhere.

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import io
import json
import os
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


class Panel:
    """An error ``Output``, a status line, and the background tasks its handlers started.

    Defined in notebooks/00_start_here.ipynb
    """

    def __init__(self, title: str = "", replaces: Panel | None = None) -> None:
        if replaces is not None:  # re-running a cell: stop the old panel's background work first
            replaces.stop()
        self.title = title
        self.status = W.HTML(value="")
        self.out = W.Output(layout=W.Layout(max_height="12em", overflow="auto"))
        self.tasks: set[asyncio.Task[Any]] = set()
        self.errors: list[str] = []
        self._loops: list[asyncio.Task[Any]] = []

    # ---------------------------------------------------------------- errors
    def report(self, exc: BaseException) -> None:
        """Show an exception as one readable line in the Output widget (and keep it in ``errors``)."""
        line = f"{type(exc).__name__}: {exc}"
        self.errors.append(line)
        self.out.append_stderr(line + "\n")

    def say(self, text: str) -> None:
        """Set the status line (HTML)."""
        self.status.value = text

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a handler so exceptions (and failures of a coroutine it returns) reach the Output."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self.report(exc)
                return None
            if asyncio.iscoroutine(result):
                return self.spawn(result)
            return result

        return wrapper

    # ---------------------------------------------------------------- async work
    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` on the kernel's loop in the background; its error goes to the Output."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self.report(exc)
            if not isinstance(exc, ValueError | RuntimeError | OSError | TimeoutError):
                self.out.append_stderr("".join(traceback.format_exception(exc)[-3:]))

    def background(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a long-lived task (a consumer loop) until :meth:`stop`; :meth:`settle` does not wait for it."""
        task = asyncio.ensure_future(coro)
        self._loops.append(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.report(task.exception())  # type: ignore[arg-type]

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every task :meth:`spawn` started has finished (errors are already reported).

        Long-lived work started with :meth:`background` or :meth:`every` is not waited for.
        """
        deadline = time.monotonic() + timeout
        while self.tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.tasks)} background task(s) still running after {timeout} s")
            await asyncio.wait(set(self.tasks), timeout=left)

    def every(self, seconds: float, fn: Callable[[], Any]) -> asyncio.Task[Any]:
        """Call ``fn`` (sync or async) every ``seconds`` until :meth:`stop`; e.g. to redraw a plot."""

        async def loop() -> None:
            while True:
                try:
                    result = fn()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as exc:
                    self.report(exc)
                await asyncio.sleep(seconds)

        task = asyncio.ensure_future(loop())
        self._loops.append(task)
        return task

    def stop(self) -> None:
        """Cancel refresh loops and pending tasks (re-running a cell calls this on the old panel)."""
        for task in [*self._loops, *self.tasks]:
            task.cancel()
        self._loops.clear()

    def box(self, *children: W.Widget) -> W.VBox:
        """Lay out ``children`` above the status line and the error Output."""
        head = [W.HTML(f"<b>{self.title}</b>")] if self.title else []
        return W.VBox([*head, *children, self.status, self.out])


def button(description: str, handler: Callable[[W.Button], Any], panel: Panel, **kw: Any) -> W.Button:
    """A button whose click runs ``panel.guard(handler)``.

    Defined in notebooks/00_start_here.ipynb
    """
    b = W.Button(description=description, **kw)
    b.on_click(panel.guard(handler))
    return b


def _is_widget(obj: object) -> bool:
    return isinstance(obj, W.DOMWidget)


SITE_ENV = "NATSDEMO_SITE"  # set by the site builder: live plots remember where they were shown
_SITE_PLOTS: list[tuple[int, weakref.ref[LivePlot]]] = []  # (execution count of the cell, plot)


def _execution_count() -> int | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    # IPython counts the running cell before running it; ipykernel reports count - 1 as its number
    return int(shell.execution_count) - 1 if shell is not None else None


def site_snapshots() -> str:
    """JSON ``[{"execution_count", "png"}]`` of every live plot shown so far, drawn as it is now: the
    static website puts each under the cell that showed it (an ipympl canvas stores no image)."""
    out = []
    for count, ref in _SITE_PLOTS:
        plot = ref()
        if plot is None:
            continue
        buf = io.BytesIO()
        plot.fig.savefig(buf, format="png", dpi=90)
        out.append({"execution_count": count, "png": base64.b64encode(buf.getvalue()).decode()})
    return json.dumps(out)


MAX_WIDTH = 9.6  # inches at 100 dpi: what fits beside JupyterLab's file browser in a 1280-pixel window


class LivePlot:
    """A matplotlib figure that redraws in place: named lines updated with :meth:`set`.

    Laid out with matplotlib's constrained layout, so titles and axis labels are never clipped;
    ``counts=True`` puts integer ticks on the y axis (items, messages, duplicates). ``titles`` makes
    one panel per title, side by side, each with its own y axis (for quantities of very different
    sizes). A NaN in a line's data leaves a gap: the way to show a poll that failed.

    Defined in notebooks/00_start_here.ipynb
    """

    def __init__(
        self, title: str = "", xlabel: str = "", ylabel: str = "", figsize: tuple[float, float] = (6, 3),
        *, counts: bool = False, titles: Iterable[str] = (),
    ) -> None:
        panels = list(titles) or [title]
        if figsize[0] > MAX_WIDTH:
            raise ValueError(f"a figure wider than {MAX_WIDTH} in does not fit a 1280-pixel JupyterLab window")
        with plt.ioff():
            self.fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False)
        self.fig.set_layout_engine("constrained")
        self.axes = list(axes[0])
        self.ax = self.axes[0]
        self.counts = counts
        for ax, panel in zip(self.axes, panels, strict=True):
            ax.set_title(panel, fontsize="medium")
            ax.set_xlabel(xlabel)
            if counts:
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if titles and title:
            self.fig.suptitle(title)
        self.ax.set_ylabel(ylabel)
        self.lines: dict[str, Any] = {}
        self._image: W.Image | None = None
        self.draws = 0
        canvas = self.fig.canvas
        if _is_widget(canvas):
            canvas.header_visible = False
            canvas.toolbar_visible = False
            canvas.resizable = False

    @property
    def widget(self) -> W.Widget:
        """The widget to lay out: the ipympl canvas, or a PNG ``Image`` without ipympl."""
        if os.environ.get(SITE_ENV) and not any(ref() is self for _, ref in _SITE_PLOTS):
            count = _execution_count()
            if count is not None:
                _SITE_PLOTS.append((count, weakref.ref(self)))
        if _is_widget(self.fig.canvas):
            return self.fig.canvas
        if self._image is None:
            self._image = W.Image(format="png")
            self.redraw()
        return self._image

    def line(self, name: str, panel: int = 0, **style: Any) -> Any:
        """Get or create the line called ``name`` (in panel ``panel``; shown in the legend)."""
        if name not in self.lines:
            ax = self.axes[panel]
            (self.lines[name],) = ax.plot([], [], label=name, **style)
            ax.legend(loc="upper left", fontsize="small")
        return self.lines[name]

    def set(self, name: str, xs: Iterable[float], ys: Iterable[float], **style: Any) -> None:
        """Replace the data of line ``name`` and redraw."""
        self.line(name, **style).set_data(list(xs), list(ys))
        self.redraw()

    def redraw(self) -> None:
        """Rescale to the data and draw (idle draw with ipympl, a fresh PNG otherwise)."""
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
            if self.counts:  # counts start at 0, and a flat line still gets whole-number ticks
                ax.set_ylim(0, max(1, ax.get_ylim()[1]))
        self.draws += 1
        if _is_widget(self.fig.canvas):
            self.fig.canvas.draw_idle()
        elif self._image is not None:
            buf = io.BytesIO()
            self.fig.savefig(buf, format="png", dpi=80)
            self._image.value = buf.getvalue()

    def close(self) -> None:
        plt.close(self.fig)


class Series:
    """A bounded (time, value) series for live plots, with times relative to its creation.

    Defined in notebooks/00_start_here.ipynb
    """

    def __init__(self, maxlen: int = 2000) -> None:
        self.t0 = time.monotonic()
        self.xs: collections.deque[float] = collections.deque(maxlen=maxlen)
        self.ys: collections.deque[float] = collections.deque(maxlen=maxlen)

    def add(self, value: float, at: float | None = None) -> None:
        self.xs.append((at if at is not None else time.monotonic()) - self.t0)
        self.ys.append(value)

    def now(self) -> float:
        """Seconds since the series was created (the x of a point added now)."""
        return time.monotonic() - self.t0

    def __len__(self) -> int:
        return len(self.xs)
