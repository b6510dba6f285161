"""Shared fixtures: real nats-server processes (never mocks), an isolated server registry, and a
check at the end of the session that no nats-server or Jupyter process the suite started is alive."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from natsdemo.workbook.server import NatsServer

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"


def _our_children() -> list[psutil.Process]:
    """nats-server and jupyter processes whose command line points at this suite's state dir or
    that are descendants of this pytest process."""
    me = psutil.Process()
    found = []
    state = os.environ.get("NATSDEMO_STATE_DIR", "")
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            ours = (state and state in cmd) or me in proc.parents()
            if ("nats-server" in cmd or "jupyter" in cmd or "ipykernel" in cmd) and proc.pid != me.pid and ours:
                found.append(proc)
        except psutil.Error:
            continue
    return found


# scripts/test.sh runs two pytest-xdist workers (--dist loadscope). One unit of work per test file,
# except that the notebook and site tests share one, since the site is built from the notebooks the
# notebook test executed; the two longest units (that one, then the browser test) start first.
# (xdist's own --dist loadgroup silently stops grouping on pytest 9.2: pytest-xdist#1386.)
FIRST = ("test_notebooks.py", "test_site.py", "test_browser.py")
SHARED_UNIT = {"test_notebooks.py": "notebooks+site", "test_site.py": "notebooks+site"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: file order otherwise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return SHARED_UNIT.get(Path(file).name, file)

    config.option.loadscopereorder = False  # keep the order above
    return ByFile(config, log)


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory: pytest.TempPathFactory):
    """Give the suite its own server registry, and fail if anything it started outlives it."""
    state = tmp_path_factory.mktemp("natsdemo-state")
    old = os.environ.get("NATSDEMO_STATE_DIR")
    os.environ["NATSDEMO_STATE_DIR"] = str(state)
    os.environ.pop("NATS_URL", None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield state
    candidates = _our_children()
    _, alive = psutil.wait_procs(candidates, timeout=10)  # give exiting kernels a moment
    leaked = []
    for p in alive:
        try:
            leaked.append((p.pid, " ".join(p.cmdline())))
            p.kill()
        except psutil.Error:
            continue
    if old is None:
        os.environ.pop("NATSDEMO_STATE_DIR", None)
    else:
        os.environ["NATSDEMO_STATE_DIR"] = old
    assert not leaked, f"processes left running by the suite: {leaked}"


@pytest.fixture
def nats_server():
    """A fresh JetStream server on a random port with a temporary store."""
    srv = NatsServer(name="test").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def nc(nats_server):
    """A nats-py connection to :func:`nats_server`, drained after the test."""
    conn = await nats_server.connect()
    try:
        yield conn
    finally:
        if not conn.is_closed:
            await conn.drain()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m natsdemo ARGS`` as a user would, from outside."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "natsdemo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        **kw,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A bad-input exit: non-zero, one readable line on stderr, no traceback."""
    assert proc.returncode != 0, proc
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


async def until(check, timeout: float = 10.0, every: float = 0.05, tolerate: tuple[type[BaseException], ...] = ()):
    """Poll ``check()`` (sync or async) until it returns something truthy; return the last value,
    which is falsy on timeout. Exceptions listed in ``tolerate`` count as "not yet"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except tolerate:
            value = None
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(every)


async def wait_for(check, timeout: float = 15.0, every: float = 0.05):
    """:func:`until`, failing the test if the condition is not met in time."""
    value = await until(check, timeout, every)
    if not value:
        raise AssertionError(f"condition not met within {timeout} s")
    return value


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the notebook test leaves each notebook as its fresh-kernel run executed it (with the
    site's plot pictures), so the site test builds from them instead of running everything again."""
    folder = tmp_path_factory.getbasetemp() / "executed-notebooks"
    folder.mkdir(exist_ok=True)
    return folder
