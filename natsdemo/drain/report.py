"""What a drain did: counts per drain (:class:`DrainReport`) and per worker (:class:`DrainMetrics`).

Not taught on its own: notebook 03 prints these counts through a report's line().
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Counts:
    """What happened to items, counted per drain (:class:`DrainReport`) and per worker (:class:`DrainMetrics`).
    """

    items: int = 0  # processed and acknowledged
    batches: int = 0
    failures: int = 0  # handler calls that raised
    dead_lettered: int = 0
    redeliveries: int = 0  # items that had been delivered before

    def count(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for f in dataclasses.fields(Counts):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class DrainReport(Counts):
    """One drain: from a tick until the queue was empty (or the worker stopped).
    """

    duration: float = 0.0
    ended: str = ""  # "empty", "stopped" or "gave up waiting" (items stayed in flight elsewhere)

    @property
    def rate(self) -> float:
        return self.items / self.duration if self.duration > 0 else 0.0

    def line(self) -> str:
        return (
            f"drained {self.items} items in {self.batches} batches in {self.duration:.2f} s "
            f"({self.rate:,.0f} items/s; {self.redeliveries} redelivered, {self.failures} failed, "
            f"{self.dead_lettered} dead-lettered; {self.ended})"
        )


@dataclass
class DrainMetrics(Counts):
    """Totals for one worker since it started.
    """

    ticks: int = 0
    drains: int = 0
    coalesced: int = 0  # ticks that arrived during a drain and were folded into one follow-up drain
    busy_seconds: float = 0.0
    last: DrainReport | None = None

    def add(self, report: DrainReport) -> None:
        self.drains += 1
        self.busy_seconds += report.duration
        self.last = report
