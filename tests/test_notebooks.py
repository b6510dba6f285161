"""Every notebook in notebooks/ runs end to end with no error output, and is stored without outputs.

Re-runs are a tested property: each notebook runs twice in one kernel (Run All, then Run All again),
then once more in a fresh kernel right after, all against one server that outlives the kernels
(``NATS_URL``), so streams, durable consumers and msg-id windows of the previous run are still
there. (The browser test runs each notebook on its kernel's own embedded server.)"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from natsdemo.workbook import site
from natsdemo.workbook.server import NatsServer

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# notebooks that start their own servers and clusters (temporary stores): a fresh kernel finds
# nothing of a previous run on the shared server, so their site pages come from the second run
OWN_SERVERS = {"05_production"}


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


def solutions(path: Path) -> list[Path]:
    """``solutions/NN_K.py``: the solution of exercise K of notebook NN."""
    return sorted((ROOT / "solutions").glob(f"{path.stem[:2]}_*.py"))


def execute(path: Path, timeout: int = 180, runs: int = 1, env: dict[str, str] | None = None,
            extra: list[Path] = (), keep: list[nbformat.NotebookNode] | None = None) -> list[list[str]]:
    """Run a notebook top to bottom ``runs`` times in one fresh kernel, in the notebooks folder,
    then each file of ``extra`` as one more cell in the same kernel (exercise solutions).

    Returns, per run, the errors it showed (and cells that did not run), then one list for ``extra``.
    With ``keep``, the last run (with the site's plot pictures) is appended to it before ``extra`` runs."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=True,
    )
    env_before = dict(os.environ)
    os.environ.update({**(env or {}), site.SITE_ENV: "1"})  # the kernel inherits it
    found: list[list[str]] = []
    try:
        with client.setup_kernel():
            for _ in range(runs):
                for i, cell in enumerate(nb.cells):
                    if cell.cell_type == "code":
                        cell.execution_count = None
                        client.execute_cell(cell, i)
                missing = [i for i, c in enumerate(nb.cells)
                           if c.cell_type == "code" and c.source.strip() and not c.execution_count]
                found.append(_errors(nb) + [f"cells not executed: {missing}"] * bool(missing))
            if keep is not None:
                snap = nbformat.v4.new_code_cell(site.SNAPSHOT)
                nb.cells.append(snap)
                client.execute_cell(snap, len(nb.cells) - 1)
                nb.cells.pop()
                keep.append(site.attach(copy.deepcopy(nb), snap))
            if extra:
                cells = [nbformat.v4.new_code_cell(f.read_text()) for f in extra]
                nb.cells.extend(cells)
                for i, cell in enumerate(cells, len(nb.cells) - len(cells)):
                    client.execute_cell(cell, i)
                found.append([f"{f.name}: {e.split(': ', 1)[-1]}" for f, c in zip(extra, cells, strict=True)
                              for e in _errors(nbformat.v4.new_notebook(cells=[c]))])
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return found


def test_there_are_notebooks():
    assert any(p.name.startswith("00_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_twice_in_one_kernel_then_again_in_a_fresh_one(path: Path, tmp_path: Path,
                                                                    executed_notebooks: Path):
    srv = NatsServer(name=f"test-nb-{path.stem[:2]}", store_dir=tmp_path / "store").start()
    try:
        # certificates of its own (notebook 01 rotates the server's in place; the browser test
        # may run the same notebook at the same time on the other pytest-xdist worker)
        env = {"NATS_URL": srv.url, "NATS_MONITOR_URL": srv.monitor_url or "",
               "NATSDEMO_CERTS_DIR": str(tmp_path / "certs")}
        kept: list[nbformat.NotebookNode] = []
        first, second, *solved = execute(path, runs=2, env=env, extra=solutions(path), keep=kept)
        assert not first, "first run:\n" + "\n".join(first)
        assert not second, "second run in the same kernel:\n" + "\n".join(second)
        assert not solved or not solved[0], "exercise solutions:\n" + "\n".join(solved[0])
        if path.stem in OWN_SERVERS:  # nothing on the shared server for a fresh kernel to trip over
            nbformat.write(kept[0], executed_notebooks / path.name)
            return
        # within seconds of the previous kernel's last cell; the run the static website is built from
        nb = site.execute(path, env)
        fresh = _errors(nb) + [f"cell {i} did not run" for i, c in enumerate(nb.cells)
                               if c.cell_type == "code" and c.source.strip() and not c.execution_count]
        assert not fresh, "fresh kernel after a previous run:\n" + "\n".join(fresh)
        nbformat.write(nb, executed_notebooks / path.name)
    finally:
        srv.stop()


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)#\s]+\.ipynb)\)", text)


def test_notebook_00_links_every_notebook_and_each_ends_with_the_way_on():
    cells = lambda p: ["".join(c["source"]) for c in json.loads(p.read_text())["cells"]]  # noqa: E731
    names = [p.name for p in NOTEBOOKS]
    start = "\n".join(cells(NOTEBOOKS[0]))
    assert set(names[1:]) <= set(_links(start)), "00's map must link every notebook"
    for i, path in enumerate(NOTEBOOKS):
        last = cells(path)[-1]
        links = _links(last.split("---")[-1])
        want = ([names[i + 1]] if i + 1 < len(names) else []) + ([names[0]] if i > 0 else [])
        assert links == want, (path.name, links)
        assert all((path.parent / link).exists() for link in _links("\n".join(cells(path)))), path.name


def test_every_solution_is_linked_from_its_exercise_with_a_hint():
    linked = {}
    for path in NOTEBOOKS:
        text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
        exercises = text.split("## Exercises", 1)[-1].split("\n## ", 1)[0] if "## Exercises" in text else ""
        for m in re.finditer(r"%load \.\./solutions/((\d\d)_(\d+)\.py)", exercises):
            assert m.group(2) == path.stem[:2], (path.name, m.group(1))
            linked[m.group(1)] = path
        items = re.split(r"\n(?=\d+\. )", exercises)[1:]
        assert items, f"{path.name} has no exercises"
        for item in items:  # every exercise: a collapsed hint, and a solution the suite runs
            assert "<details><summary>Hint and solution</summary>" in item and "%load" in item, (path.name, item[:80])
    files = {p.name for p in (ROOT / "solutions").glob("*.py")}
    assert files == set(linked), (sorted(files ^ set(linked)))
    assert all((p.parent / ".." / "solutions" / f).resolve().is_file() for f, p in linked.items())
