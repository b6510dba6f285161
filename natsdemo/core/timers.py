"""One scheduler for many timers: a heap keyed by absolute deadline.

The seed starts one goroutine per reservation. In Python the equivalent (one asyncio task per
timer) costs about 1.6 KB per pending timer, and a restart would start every timer from scratch.
:class:`Scheduler` keeps every pending timer as a small ``(deadline, key, token)`` tuple in one
heap, with a ``key -> token`` map for cancellation, and a single loop that sleeps until the earliest
deadline. Deadlines are absolute wall-clock times (seconds since the epoch), so a timer whose
deadline passed while the process was down fires as soon as the loop starts.

Cancelling is lazy: :meth:`Scheduler.cancel` only forgets the key, and the stale heap entry is
skipped when it reaches the top (the heap is compacted when stale entries outnumber live ones).
:class:`TaskPerTimer` is the baseline with the same interface, kept for the benchmark.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

FireFn = Callable[[Any, Any, float], Awaitable[None]]
MAX_SLEEP = 1.0  # seconds the loop sleeps at most before reading its clock again


class Scheduler:
    """Fire ``fire(key, token, deadline)`` once per key at (never before) its absolute deadline.

    ``add`` replaces any pending timer for the same key. ``fire`` coroutines run concurrently, at
    most ``max_in_flight`` at a time, so one slow publish does not delay the next expiry.
    Call :meth:`run` (it loops until cancelled) or :meth:`start` / :meth:`stop`.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    def __init__(self, fire: FireFn, *, clock: Callable[[], float] = time.time, max_in_flight: int = 256) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[tuple[float, Hashable, Any]] = []
        self._live: dict[Hashable, Any] = {}
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._firing: dict[Hashable, tuple[float, Hashable, Any]] = {}  # popped, fire not finished yet
        self._max_in_flight = max_in_flight
        self._task: asyncio.Task[None] | None = None
        self.fired = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._live

    def add(self, key: Hashable, deadline: float, token: Any = None) -> None:
        """Schedule ``key`` at ``deadline`` (epoch seconds); ``token`` is handed back to ``fire``."""
        old = self._live.get(key)
        if old is not None and old[0] == deadline and old[2] == token:
            return
        entry = (deadline, key, token)  # the live map holds the same tuple: `is` tells stale entries apart
        self._live[key] = entry
        earliest = not self._heap or deadline < self._heap[0][0]
        heapq.heappush(self._heap, entry)
        if earliest:
            self._wake.set()  # a new earliest deadline: the loop must sleep less

    def cancel(self, key: Hashable) -> bool:
        """Forget ``key``'s timer; True if one was pending."""
        self._firing.pop(key, None)  # decided while its fire runs: no longer pending work
        found = self._live.pop(key, None) is not None
        if found and len(self._heap) > 1024 and len(self._heap) > 2 * len(self._live):
            self._heap = [e for e in self._heap if self._live.get(e[1]) is e]
            heapq.heapify(self._heap)
        return found

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        while self._heap and self._live.get(self._heap[0][1]) is not self._heap[0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pending(self) -> dict[Hashable, float]:
        """``key -> deadline`` of every pending timer (a copy)."""
        return {k: e[0] for k, e in self._live.items()}

    def entries(self) -> list[tuple[float, Hashable, Any]]:
        """``(deadline, key, token)`` of every pending timer and of every one whose ``fire`` has not
        finished yet (a copy, taken at once): what a snapshot of the pending work must hold. A timer
        leaves the heap a moment before its ``fire`` coroutine starts; it is never in neither."""
        return [*self._firing.values(), *self._live.values()]

    async def run(self) -> None:
        """Sleep until the earliest deadline, fire everything due, repeat."""
        while True:
            self._wake.clear()
            now = self._clock()
            while (nxt := self.next_deadline()) is not None and nxt <= now:
                deadline, key, token = heapq.heappop(self._heap)
                del self._live[key]
                await self._launch(key, token, deadline)
                now = self._clock()
            nxt = self.next_deadline()
            delay = None if nxt is None else nxt - self._clock()
            if delay is not None and delay <= 0:
                continue
            # woken by add() (a new earliest deadline) or by the timeout, at most a second later
            # (MAX_SLEEP), so a clock that was stepped or corrected is looked at again soon.
            # asyncio.timeout, not wait_for: on Python 3.11 a wait_for whose timeout fires while the
            # task is being cancelled can turn the cancellation into a TimeoutError (swallowed
            # here), and the loop would never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MAX_SLEEP if delay is None else min(delay, MAX_SLEEP)):
                    await self._wake.wait()

    async def _launch(self, key: Hashable, token: Any, deadline: float) -> None:
        entry = self._firing[key] = (deadline, key, token)  # before any wait: never out of both maps
        while len(self._in_flight) >= self._max_in_flight:
            await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
        self.fired += 1
        task = asyncio.ensure_future(self._fire(key, token, deadline))
        self._in_flight.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._in_flight.discard(t)
            if self._firing.get(key) is entry:
                del self._firing[key]

        task.add_done_callback(done)

    def start(self) -> asyncio.Task[None]:
        """Run the loop in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for fire coroutines already started."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)

    async def stop(self) -> None:
        """Stop the loop, let started fires finish (bounded), keep pending timers in memory."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.drain()


class TaskPerTimer:
    """The seed's design in asyncio terms: one sleeping task per pending timer (benchmark baseline).

    Same interface as :class:`Scheduler`; tasks wait for :meth:`start` before firing.

    Defined in notebooks/04_reservation_timeouts.ipynb
    """

    def __init__(self, fire: FireFn, *, clock: Callable[[], float] = time.time, max_in_flight: int = 256) -> None:
        self._fire = fire
        self._clock = clock
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._started = asyncio.Event()
        self.fired = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tasks

    async def _timer(self, key: Hashable, deadline: float, token: Any) -> None:
        await self._started.wait()
        await asyncio.sleep(max(0.0, deadline - self._clock()))
        while self._clock() < deadline:  # asyncio may wake a hair early
            await asyncio.sleep(deadline - self._clock())
        self._tasks.pop(key, None)
        self.fired += 1
        await self._fire(key, token, deadline)

    def add(self, key: Hashable, deadline: float, token: Any = None) -> None:
        self.cancel(key)
        self._tasks[key] = asyncio.ensure_future(self._timer(key, deadline, token))

    def cancel(self, key: Hashable) -> bool:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        return task is not None

    def next_deadline(self) -> float | None:
        return None

    def pending(self) -> dict[Hashable, float]:
        return {}

    def entries(self) -> list[tuple[float, Hashable, Any]]:
        return []  # the baseline keeps no inspectable state (its services take no snapshots)

    def start(self) -> None:
        self._started.set()

    async def drain(self, timeout: float = 5.0) -> None:
        return None

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
