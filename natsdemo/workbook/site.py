"""The executed workbook as a static website: every notebook run once, then Sphinx with myst-nb.

``python -m natsdemo site [--out DIR]`` (what ``bash scripts/site.sh`` runs) starts one workbook
server, runs every notebook top to bottom in a fresh kernel against it (notebook 05 starts its own
clusters), and builds ``DIR/html`` with the Sphinx Book Theme: a table of contents, previous/next
links, and a banner saying that widgets are live only in JupyterLab. The pages are plain files:
any static web server (or ``file://``) shows them, outputs and plots included.

Plots: an ipympl canvas stores no picture of itself, so the kernel runs with ``NATSDEMO_SITE=1``;
every :class:`~natsdemo.workbook.widgets.LivePlot` remembers the cell that displayed it, and after
the last cell :func:`~natsdemo.workbook.widgets.site_snapshots` draws each one into a PNG that is
put under that cell. Widget outputs become a one-line note (their state is not saved).

Not taught on its own: the README's ``bash scripts/site.sh`` builds it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from natsdemo.workbook.server import NatsServer
from natsdemo.workbook.widgets import SITE_ENV

log = logging.getLogger("natsdemo.site")

ROOT = Path(__file__).resolve().parents[2]
WIDGET = "application/vnd.jupyter.widget-view+json"
BANNER = ("Widgets and live plots are interactive only in JupyterLab: here each plot is a picture taken at the "
          "end of one run, and buttons do nothing. <code>bash scripts/workbook.sh</code> opens the real thing.")
NOTE = '<p class="natsdemo-widget"><em>An interactive widget was here; open the notebook in JupyterLab.</em></p>'

CONF = '''
project = "natsdemo: NATS patterns, run and tested"
extensions = ["myst_nb"]
html_theme = "sphinx_book_theme"
html_title = "natsdemo workbook"
html_theme_options = {{
    "announcement": {banner!r},
    "show_prev_next": True,
    "show_toc_level": 2,
}}
nb_execution_mode = "off"          # executed by natsdemo.workbook.site, with a real server
nb_output_stderr = "show"
myst_enable_extensions = ["colon_fence"]
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure", "myst.header"]
'''


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


SNAPSHOT = "from natsdemo.workbook.widgets import site_snapshots as _s\nprint(_s())"  # run last, in the kernel


def attach(nb: nbformat.NotebookNode, snapshot: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Put the pictures printed by a :data:`SNAPSHOT` cell under the cells that showed each plot,
    and turn widget outputs into a note; returns ``nb`` (changed in place)."""
    text = "".join(o.get("text", "") for o in snapshot.get("outputs", []) if o.get("name") == "stdout")
    pictures = json.loads(text.strip().splitlines()[-1]) if text.strip() else []
    by_count: dict[int, list[str]] = {}
    for pic in pictures:
        by_count.setdefault(pic["execution_count"], []).append(pic["png"])
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if WIDGET in out.get("data", {}):
                out["data"] = {"text/html": NOTE}
        for png in by_count.get(cell.get("execution_count") or -1, []):
            cell.outputs.append(nbformat.v4.new_output("display_data", data={"image/png": png}))
    return nb


def execute(path: Path, env: dict[str, str], timeout: int = 300) -> nbformat.NotebookNode:
    """Run ``path`` once in a fresh kernel (in the notebooks folder) and add the plots' pictures."""
    nb = nbformat.read(path, as_version=4)
    snap = nbformat.v4.new_code_cell(SNAPSHOT)
    nb.cells.append(snap)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    saved = dict(os.environ)
    os.environ.update({**env, SITE_ENV: "1"})  # the kernel inherits it
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    nb.cells.pop()
    return attach(nb, snap)


def _index(names: list[str]) -> str:
    lines = ["# natsdemo: NATS patterns, run and tested", "",
             "Each page is a notebook of the workbook, executed against a real `nats-server`.", "",
             "```{toctree}", ":maxdepth: 1", ""]
    return "\n".join(lines + names + ["```", ""])


def build(out: Path, executed: Path | None = None) -> Path:
    """Build the site into ``out/html``; ``executed`` may hold notebooks already run by :func:`execute`."""
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    names = []
    with tempfile.TemporaryDirectory(prefix="natsdemo-site-") as store, \
            NatsServer(name="site", store_dir=store) as srv:
        env = {"NATS_URL": srv.url, "NATS_MONITOR_URL": srv.monitor_url or ""}
        for path in notebooks():
            ready = executed / path.name if executed else None
            if ready and ready.exists():
                nb = nbformat.read(ready, as_version=4)
                log.info("%s: executed already", path.name)
            else:
                log.info("executing %s", path.name)
                nb = execute(path, env)
            nbformat.write(nb, src / path.name)
            names.append(path.stem)
    log.info("building the pages with Sphinx and myst-nb")
    (src / "conf.py").write_text(CONF.format(banner=BANNER))
    (src / "index.md").write_text(_index(names))
    html = out / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(html)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"sphinx-build failed:\n{done.stderr[-3000:]}")
    return html / "index.html"


def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="_site", help="build folder (default _site/); the pages go to OUT/html")


def run_cli(args: argparse.Namespace) -> int:
    index = build(Path(args.out).resolve())
    print(index)
    return 0
