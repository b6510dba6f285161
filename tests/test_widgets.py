"""The shared widget idiom, headless: handlers called through button.click(), errors routed to the
Output widget, background work awaited or cancelled, plots redrawn in place."""

from __future__ import annotations

import asyncio

import ipywidgets as W
import matplotlib
import pytest

matplotlib.use("Agg")

from natsdemo.workbook.widgets import LivePlot, Panel, Series, button


def _stderr(panel: Panel) -> str:
    return "".join(o.get("text", "") for o in panel.out.outputs)


async def test_click_runs_async_handler_and_settle_waits(nc):
    panel = Panel("t")
    sub = await nc.subscribe("w.click")

    async def publish() -> None:
        await nc.publish("w.click", b"1")
        panel.say("sent")

    def on_click(_b: W.Button):
        return publish()

    b = button("Send", on_click, panel)
    b.click()
    b.click()
    await panel.settle(5)
    assert panel.status.value == "sent" and not panel.errors
    assert (await sub.next_msg(2)).data == b"1"
    assert (await sub.next_msg(2)).data == b"1"


async def test_errors_land_in_the_output_widget():
    panel = Panel()

    def broken(_b: W.Button) -> None:
        raise ValueError("bad cron expression: try '0 0 20 * * *'")

    async def broken_later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("server went away")

    button("Sync", broken, panel).click()
    button("Async", lambda _b: broken_later(), panel).click()
    await panel.settle(5)
    assert panel.errors == [
        "ValueError: bad cron expression: try '0 0 20 * * *'",
        "RuntimeError: server went away",
    ]
    assert "bad cron expression" in _stderr(panel) and "server went away" in _stderr(panel)


async def test_every_repeats_until_stop_and_background_is_not_awaited():
    panel = Panel()
    calls: list[int] = []
    panel.every(0.01, lambda: calls.append(1))

    async def forever() -> None:
        await asyncio.Event().wait()

    bg = panel.background(forever())
    await panel.settle(1)  # returns although the background task runs on
    await asyncio.sleep(0.1)
    assert len(calls) >= 3 and not bg.done()
    panel.stop()
    await asyncio.sleep(0.05)
    n = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == n and bg.cancelled()


async def test_a_replacing_panel_stops_the_old_one():
    old = Panel()
    ticks: list[int] = []
    old.every(0.01, lambda: ticks.append(1))
    await asyncio.sleep(0.05)
    Panel(replaces=old)
    await asyncio.sleep(0.02)
    n = len(ticks)
    await asyncio.sleep(0.05)
    assert len(ticks) == n


def test_liveplot_without_ipympl_falls_back_to_a_png_image():
    plot = LivePlot("t", "x", "y")
    widget = plot.widget
    assert isinstance(widget, W.Image)
    first = widget.value
    plot.set("line", [0, 1, 2], [0, 1, 4])
    assert widget.value != first and widget.value[:4] == b"\x89PNG"
    _xs, ys = plot.lines["line"].get_data()
    assert list(ys) == [0, 1, 4] and plot.ax.get_ylim()[1] >= 4
    plot.close()


def test_series_is_bounded_and_relative():
    s = Series(maxlen=3)
    for v in range(5):
        s.add(v)
    assert list(s.ys) == [2, 3, 4] and len(s) == 3
    assert 0 <= s.xs[0] <= s.now()


def _inside(fig, artist) -> bool:
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height


def test_live_plots_keep_their_labels_inside_the_figure():
    """Measured: a 4.4 x 2.8 in figure without a layout engine puts its x label 13 px below the
    edge (clipped); LivePlot's constrained layout keeps every label inside."""
    import matplotlib.pyplot as plt

    plot = LivePlot("t", "seconds", "items", figsize=(4.4, 2.8), counts=True)
    plot.set("a", [0, 1000], [0, 2_000_000])
    assert all(_inside(plot.fig, a) for a in (plot.ax.xaxis.label, plot.ax.yaxis.label, plot.ax.title))
    with plt.ioff():
        bare, ax = plt.subplots(figsize=(4.4, 2.8))  # the buggy variant, for comparison
    ax.set_xlabel("seconds")
    ax.plot([0, 1000], [0, 2_000_000])
    assert not _inside(bare, ax.xaxis.label)
    plt.close(bare)
    plot.close()


def test_counts_get_integer_ticks_and_a_failed_poll_leaves_a_gap():
    plot = LivePlot("t", "s", "n", counts=True, titles=("a", "b"), figsize=(6, 2.5))
    plot.line("x", 1).set_data([0, 1, 2, 3], [1, 2, float("nan"), 3])
    plot.line("flat", 0).set_data([0, 1, 2], [0, 0, 0])  # an empty queue: a flat line at 0
    plot.redraw()
    plot.fig.canvas.draw()
    for ax in plot.axes:
        lo, hi = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
        assert lo == 0 and ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
    from matplotlib.path import Path

    drawn = plot.lines["x"].get_path().cleaned(remove_nans=True)  # what the renderer draws
    assert list(drawn.codes).count(Path.MOVETO) == 2  # the NaN split it: no segment across the gap
    plot.close()


def test_a_figure_wider_than_a_jupyterlab_window_is_refused():
    with pytest.raises(ValueError, match="1280-pixel"):
        LivePlot("too wide", figsize=(12, 3))
