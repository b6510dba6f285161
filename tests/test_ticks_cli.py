"""``python -m natsdemo tick`` from outside: two replicas store one tick per slot, bad input is refused
before connecting, SIGINT stops cleanly, ``--server-side`` installs a schedule, and the benchmark runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from natsdemo.ticks import SCHEDULE_STREAM, TickConsumer, ensure_schedule_stream, install_server_schedule
from tests.conftest import ROOT, assert_one_line_error, run_cli

UNREACHABLE = "nats://127.0.0.1:1"


def start_ticker(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "natsdemo", "tick", "--server", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def wait_ready(proc: subprocess.Popen[str], timeout: float = 15) -> str:
    """Wait (without blocking the loop) for the ``ticking ...`` line."""
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)  # type: ignore[union-attr]
    assert line.startswith("ticking schedule."), (line, proc.poll())
    return line


def stop(procs: list[subprocess.Popen[str]], sig: int = signal.SIGTERM) -> list[tuple[int, str, str]]:
    results = []
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
        results.append((p.returncode, out, err))
    return results


@pytest.mark.slow
async def test_two_tick_processes_store_one_tick_per_slot(nats_server, nc):
    js = nc.jetstream()
    await ensure_schedule_stream(js)
    ticks = TickConsumer(js, "eod")
    await ticks.start()
    started = datetime.now(UTC)
    procs = [start_ticker(nats_server.url, "--cron", "* * * * * *", "--name", "eod") for _ in range(2)]
    got = []
    try:
        for p in procs:
            await wait_ready(p)
        window_start = datetime.now(UTC)  # both replicas are ticking from here on
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                got.append(await ticks.next(timeout=0.5))
        window_end = datetime.now(UTC)
    finally:
        results = stop(procs)
    await asyncio.sleep(0.3)
    while True:  # ticks in flight when the processes stopped
        try:
            got.append(await ticks.next(timeout=0.5))
        except TimeoutError:
            break
    await ticks.stop()
    info = await js.stream_info(SCHEDULE_STREAM)
    slots = [t.scheduled_at for t in got]
    in_window = [s for s in slots if window_start <= s <= window_end]
    assert 9 <= len(in_window) <= 11, in_window  # 10 s with two replicas: about 10 ticks, not 20
    assert len(slots) == info.state.messages  # the consumer received each stored tick ...
    assert len(set(slots)) == len(slots)  # ... once, and no slot was stored twice
    assert info.state.messages <= 12 + int((window_start - started).total_seconds())  # start-up ticks only
    assert all(rc == 0 for rc, _, _ in results), results
    duplicates = sum(out.count("duplicate of seq") for _, out, _ in results)
    assert duplicates >= 6  # the other replica's publishes were de-duplicated by msg id


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cron", "0 20 * *", "--name", "eod"], "has 4 fields"),
        (["--cron", "0 0 20 * * *", "--name", "eod", "--tz", "Europe/Berlinn"], "unknown time zone"),
        (["--cron", "@daily", "--name", "end.of.day"], "not subject-safe"),
    ],
)
def test_bad_input_is_one_line_before_connecting(args, fragment):
    t0 = time.monotonic()
    proc = run_cli("tick", "--server", UNREACHABLE, *args, timeout=30)
    assert proc.returncode == 2
    assert_one_line_error(proc, "natsdemo tick: error:", fragment)
    assert time.monotonic() - t0 < 8  # refused up front; connecting to nowhere would take 10 s


async def test_sigint_stops_the_ticker_cleanly(nats_server):
    proc = start_ticker(nats_server.url, "--cron", "* * * * * *", "--name", "sig", "--tz", "Europe/Berlin")
    try:
        line = await wait_ready(proc)
        assert "tz Europe/Berlin" in line
        await asyncio.sleep(1.5)
    finally:
        [(rc, out, err)] = stop([proc], signal.SIGINT)
    assert rc == 0, err
    assert "stopped:" in out and "Traceback" not in err


async def test_server_side_flag_installs_a_schedule(nats_server, nc):
    js = nc.jetstream()
    ticks = TickConsumer(js, "srv")
    await ticks.start()
    proc = await asyncio.to_thread(
        run_cli, "tick", "--server", nats_server.url, "--cron", "* * * * * *", "--name", "srv", "--server-side"
    )
    assert proc.returncode == 0, proc.stderr
    assert "schedule._cron.srv" in proc.stdout
    tick = await ticks.next(timeout=3)
    assert tick.source == "server"
    await install_server_schedule(js, "srv", "0 0 0 1 1 *")  # replace it with a yearly one (quiet)
    await ticks.stop()


def test_server_side_month_end_with_L_is_refused_with_the_work_around(nats_server):
    """nats-server answers 10189 to `L`; the command says what to schedule instead, in one line."""
    proc = run_cli("tick", "--server", nats_server.url, "--cron", "0 0 18 L * *", "--tz", "Europe/Berlin",
                   "--name", "monthend", "--server-side")
    assert_one_line_error(proc, "no 'L'", "10189", "'0 0 18 28-31 * *'", "is_last_day_of_month")


def test_bench_ticks_quick():
    proc = run_cli("bench", "ticks", "--quick", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for figure in ("client ticker lateness p99", "server schedule lateness p99", "ticks stored per slot"):
        assert figure in proc.stdout
    stored_per_slot = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ticks stored per slot"))
    assert stored_per_slot.split()[4] == "1", stored_per_slot
