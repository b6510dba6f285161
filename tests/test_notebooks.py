"""Every notebook in notebooks/ runs end to end in a fresh kernel, with no error output, and is
stored without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
                if "Traceback" in text or "Error" in text:
                    found.append(f"cell {i} stderr: {text[:500]}")
    return found


def execute(path: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, in the notebooks folder."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=True,
    )
    env_before = dict(os.environ)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return nb


def test_there_are_notebooks():
    assert any(p.name.startswith("00_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_headless(path: Path):
    nb = execute(path)
    errors = _errors(nb)
    assert not errors, "\n".join(errors)
    # every code cell ran (a notebook that stopped early would leave cells unexecuted)
    missing = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() and not c.execution_count
    ]
    assert not missing, f"cells not executed: {missing}"
