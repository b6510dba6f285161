"""``python -m natsdemo bench NAME``: benchmarks that print figures (never timed tests).

Each benchmark is a module in ``natsdemo/benchmarks/`` with ``run(opts) -> list[Figure]``. A figure
is a median over ``--runs`` repetitions where that makes sense, and any baseline is measured in the
same run so the comparison is fair on whatever machine runs it. ``--json FILE`` writes the figures.

Defined in notebooks/04_reservation_timeouts.ipynb
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import natsdemo.workbook.benchmarks
from natsdemo.core.errors import UsageError


@dataclass
class Figure:
    """One measured number: ``value`` in ``unit``, with how it was measured in ``detail``."""

    name: str
    value: float
    unit: str
    detail: str = ""
    target: str = ""


def available() -> list[str]:
    found = pkgutil.iter_modules(natsdemo.workbook.benchmarks.__path__)
    return sorted(m.name for m in found if not m.name.startswith("_"))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def render(name: str, figures: list[Figure]) -> str:
    rows = [
        (f.name, f"{f.value:,.3f}".rstrip("0").rstrip(".") if f.value == f.value else "n/a", f.unit, f.target, f.detail)
        for f in figures
    ]
    head = ("figure", "value", "unit", "target", "how")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(5)]
    lines = [f"bench {name}"]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of: {', '.join(available())}")
    parser.add_argument("--runs", type=int, default=5, help="repetitions for medians (default 5)")
    parser.add_argument("--quick", action="store_true", help="a small, fast version (used by the tests)")
    parser.add_argument("--part", default=None, help="only one part of a benchmark (timers: startup)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this JSON file")


def run_cli(args: argparse.Namespace) -> int:
    if args.name not in available():
        raise UsageError(f"unknown benchmark {args.name!r}; choose one of: {', '.join(available())}")
    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    mod = importlib.import_module(f"natsdemo.workbook.benchmarks.{args.name}")
    started = time.time()
    figures = mod.run(args)
    print(render(args.name, figures), flush=True)
    if args.json_path:
        doc = {
            "benchmark": args.name,
            "started_at": started,
            "python": sys.version.split()[0],
            "machine": platform.platform(),
            "figures": [asdict(f) for f in figures],
        }
        Path(args.json_path).write_text(json.dumps(doc, indent=2))
    return 0
