"""Headless execution time of each notebook: a fresh kernel, all cells, as the test suite runs them."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from natsdemo.core.errors import UsageError
from natsdemo.workbook.bench import Figure, median

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _execute(path: Path) -> tuple[float, int]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}, allow_errors=True
    ).execute()
    elapsed = time.perf_counter() - t0
    errors = sum(1 for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error")
    return elapsed, errors


def run(opts: argparse.Namespace) -> list[Figure]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise UsageError(f"no notebooks found in {NOTEBOOKS} (run from a checkout of the workbook)")
    if opts.quick:
        paths = paths[:1]
    runs = 1 if opts.quick else min(opts.runs, 3)
    figures = []
    for path in paths:
        samples = [_execute(path) for _ in range(runs)]
        errors = max(e for _, e in samples)
        how = f"median of {runs} run(s), fresh kernel, all cells" + (f"; {errors} cell(s) FAILED" if errors else "")
        figures.append(Figure(path.stem, median([s for s, _ in samples]), "s", how))
    return figures
