"""What a learner meets before the first cell: one version, a licence, one-click start files that
name real files and commands, a JupyterLab without the news pop-up, and a second start of
scripts/workbook.sh that needs no package index."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

import natsdemo
from natsdemo.workbook.binary import free_ports
from tests.conftest import ROOT, run_cli

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_one_version_everywhere():
    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "natsdemo.__version__"}
    assert importlib.metadata.version("natsdemo") == natsdemo.__version__
    for flag in ("--version", "-V"):
        out = run_cli(flag)
        assert out.returncode == 0 and out.stdout.strip() == f"natsdemo {natsdemo.__version__}", out.stderr


def test_a_licence_fit_for_lifting_code():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted" in text
    assert PYPROJECT["project"]["license"] == "MIT" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in PYPROJECT["project"]["classifiers"])


def test_the_dev_container_runs_the_same_setup_and_forwards_jupyterlab():
    dc = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert "python:1-3.11" in dc["image"]
    for key in ("postCreateCommand", "postStartCommand"):
        script = re.match(r"bash (\S+)", dc[key]).group(1)  # type: ignore[union-attr]
        assert (ROOT / script).is_file(), script
    port = int(re.search(r"--port (\d+)", dc["postStartCommand"]).group(1))  # type: ignore[union-attr]
    assert dc["forwardPorts"] == [port] and str(port) in dc["portsAttributes"]
    assert "--ip 0.0.0.0" in dc["postStartCommand"]  # reachable from outside the container


def test_binder_reuses_the_requirements_and_the_editable_install():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    req = (ROOT / "binder" / "requirements.txt").read_text()
    included = re.search(r"^-r (\S+)$", req, re.M).group(1)  # type: ignore[union-attr]
    assert (ROOT / "binder" / included).resolve() == ROOT / "requirements.txt"
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    assert "pip install --no-deps -e ." in text and "jupyter/overrides.json" in text
    assert (ROOT / "jupyter" / "overrides.json").is_file()


def test_the_badges_point_at_the_repository_and_at_files_that_exist():
    repo = PYPROJECT["project"]["urls"]["Repository"]
    owner_name = repo.removeprefix("https://github.com/")
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", owner_name), repo
    readme = (ROOT / "README.md").read_text()
    binder = re.search(r"\(https://mybinder\.org/v2/gh/([^/]+/[^/]+)/HEAD\?urlpath=lab/tree/([^)]+)\)", readme)
    assert binder and binder.group(1) == owner_name, "Binder badge"
    assert (ROOT / binder.group(2)).is_file(), binder.group(2)  # the notebook it opens
    dev = re.search(r"cloneInVolume\?url=(https://github\.com/[^)\s]+)\)", readme)
    assert dev and dev.group(1) == repo, "dev container badge"
    assert PYPROJECT["project"]["urls"]["Issues"] == f"{repo}/issues"


def test_the_shipped_settings_turn_the_news_pop_up_off():
    overrides = json.loads((ROOT / "jupyter" / "overrides.json").read_text())
    settings = overrides["@jupyterlab/apputils-extension:notification"]
    schema = Path(sys.prefix) / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension/notification.json"
    props = json.loads(schema.read_text())["properties"]
    choices = {c["const"]: c["title"] for c in props["fetchNews"]["oneOf"]}
    assert settings["fetchNews"] == "false" and choices["false"] == "Never"
    assert settings["checkForUpdates"] is False and "checkForUpdates" in props
    installed = Path(sys.prefix) / "share/jupyter/lab/settings/overrides.json"
    assert json.loads(installed.read_text()) == overrides, "scripts/setup-venv.sh installs it into the venv"


@pytest.mark.slow
def test_a_second_start_works_without_a_package_index(tmp_path: Path):
    """The venv already satisfies requirements.txt: no pip at all, so a closed index does not matter."""
    port, token = free_ports(1)[0], secrets.token_hex(8)
    env = {
        **os.environ,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens on the discard port
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "scripts/workbook.sh", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        up = None
        while time.monotonic() - started < 60 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1) as r:
                    up = r.status
                    break
            except OSError:
                time.sleep(0.2)
        took = time.monotonic() - started
        # had pip run, it would have failed on the closed index, and workbook.sh would have exited
        assert up == 200, (proc.poll(), proc.stdout.read().decode()[-2000:] if proc.poll() is not None else "")
        print(f"JupyterLab answered {took:.1f} s after the second start")  # a figure for the notes, not a target
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
