"""Every notebook in a real browser: JupyterLab on loopback, Debian's headless Chromium driven by
playwright. Runs all cells, checks that widgets rendered and no cell shows an error, clicks the
buttons listed in the notebook's ``metadata.natsdemo.browser`` and waits for their visible effect.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from natsdemo.workbook.binary import free_ports

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab on a free loopback port, stopped (with its kernels) after the module."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium"
    port, token = free_ports(1)[0], secrets.token_hex(16)
    home = tmp_path_factory.mktemp("jupyter-home")
    # render every cell (JupyterLab 4 otherwise only renders the cells in view)
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    # no autosave (the browser test must never write outputs anywhere); the news pop-up is turned
    # off by the project's jupyter/overrides.json, which scripts/setup-venv.sh installs into .venv
    for plugin, settings in {
        "docmanager-extension/plugin": {"autosave": False},
    }.items():
        f = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(settings))
    # run copies of the notebooks, so nothing the browser does can touch the repository's files
    root = home / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        # certificates of their own: notebook 01 rotates the server's in place, and the notebook
        # test may be running it at the same moment on the other pytest-xdist worker
        "NATSDEMO_CERTS_DIR": str(home / "certs"),
    }
    log = open(ARTIFACTS / "jupyterlab.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.port_retries=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (ARTIFACTS / "jupyterlab.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not start in 90 s"
            time.sleep(0.25)
        yield base, token
    finally:
        _shutdown_kernels(base, token)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _shutdown_kernels(base: str, token: str) -> None:
    """Ask JupyterLab to shut every kernel down (each kernel then stops its nats-server)."""
    try:
        with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5) as r:
            kernels = json.loads(r.read())
    except OSError:
        return
    for k in kernels:
        req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}", method="DELETE")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _shutdown_kernels(base: str, token: str) -> None:
    with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as r:
        kernels = json.load(r)
    for k in kernels:
        req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}", method="DELETE")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=30).close()


def _visible_errors(page) -> list[str]:
    texts = page.eval_on_selector_all(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
        "els => els.map(e => e.innerText)",
    )
    return [t[:400] for t in texts if re.search(r"Traceback|Error|Exception", t)]


_STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.model.cells;
  let code = 0, done = 0; const errors = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code' || !c.sharedModel.getSource().trim()) continue;
    code++;
    if (c.executionCount) done++;
    for (const o of c.sharedModel.getOutputs()) {
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  }
  const kernel = w.sessionContext.session.kernel;
  return {code, done, errors, status: kernel ? kernel.status : 'none'};
}"""


def _wait_all_run(page, timeout: float) -> dict:
    """Wait until every code cell has an execution count and the kernel is idle (from the model)."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = page.evaluate(_STATE_JS)
        if state["errors"]:
            return state
        if state["done"] >= state["code"] and state["status"] == "idle":
            return state
        time.sleep(0.5)
    raise AssertionError(f"cells still running after {timeout} s: {state}")


# widget labels, buttons and readouts whose text is wider than their box (ipywidgets cuts it with an
# ellipsis): a "Reserve" button that reads "Rese..." is a bug the screenshots would show
CLIPPED = """() => Array.from(document.querySelectorAll(
    '.widget-label, .widget-button, .widget-toggle-button, .widget-readout, .widget-inline-hbox .widget-label'))
  .filter(e => e.offsetParent !== null && e.textContent.trim() && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.textContent.trim().slice(0, 40))"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_browser(path: Path, jupyterlab, browser):
    base, token = jupyterlab
    nb = json.loads(path.read_text())
    n_code = sum(1 for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip())
    steps = nb.get("metadata", {}).get("natsdemo", {}).get("browser", [])
    assert steps, f"{path.name} lists no buttons to click in metadata.natsdemo.browser"
    page = browser.new_page(viewport={"width": 1280, "height": 1000})  # the window the plots are sized for
    page.set_default_timeout(60_000)
    console_errors: list[str] = []
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    try:
        page.goto(f"{base}/lab/tree/notebooks/{path.name}?reset&token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        # wait for the kernel, then run everything the way a user would from the Run menu
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.connectionStatus === 'connected'; }",
            timeout=90_000,
        )
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        state = _wait_all_run(page, timeout=240)
        page.screenshot(path=str(ARTIFACTS / f"{path.stem}-ran.png"), full_page=False)
        assert not state["errors"], f"{path.name} raised in the browser: {state['errors']}"
        assert state["code"] == n_code, state
        errors = _visible_errors(page)
        assert not errors, f"{path.name} shows errors in the browser: {errors}"
        assert page.get_by_text("Jupyter news", exact=False).count() == 0, "the news pop-up is showing"
        assert page.locator(".widget-button").count() > 0, "no widget rendered: is the ipywidgets extension loaded?"
        clipped = page.evaluate(CLIPPED)
        assert not clipped, f"{path.name}: widget labels cut off (text wider than its box): {clipped}"
        for i, step in enumerate(steps):
            button = page.locator("button.widget-button", has_text=step["click"]).last
            button.scroll_into_view_if_needed()
            button.click()
            page.get_by_text(step["expect"], exact=False).first.wait_for(
                state="attached", timeout=step.get("timeout", 20) * 1000
            )
            page.screenshot(path=str(ARTIFACTS / f"{path.stem}-click{i + 1}.png"))
        errors = _visible_errors(page) + _wait_all_run(page, timeout=60)["errors"]
        assert not errors, f"{path.name} shows errors after the clicks: {errors}"
    finally:
        page.close()
        _shutdown_kernels(base, token)  # a finished notebook's background work must not slow the next one
