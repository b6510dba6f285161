"""The package's layout is a promise: layers that import only downward, small typed modules,
docstrings that name the notebook that really teaches them, and a library without Jupyter."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

PKG = ROOT / "natsdemo"
PATTERNS = ("tls", "ticks", "drain", "reservations", "coupons")
LIBRARY = ("core", *PATTERNS)  # what `pip install .` is for, and what mypy checks
# the one sideways arrow among patterns: a drain is triggered by ticks
SIDEWAYS = {("drain", "ticks")}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every natsdemo module ``path`` imports, at any depth (lazy and TYPE_CHECKING imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "natsdemo"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "natsdemo":
            for alias in node.names:  # `from natsdemo import tls` imports the module natsdemo.tls
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def layer(module: str) -> tuple[int, str]:
    """(rank, group): core 0, a pattern 1, the workbook 2, the command line 3."""
    parts = module.split(".")
    group = parts[1] if len(parts) > 1 else ""
    if group == "core":
        return 0, group
    if group in PATTERNS:
        return 1, group
    if group == "workbook":
        return 2, group
    return 3, group  # natsdemo, natsdemo.cli, natsdemo.__main__


def test_every_import_goes_downward():
    upward = []
    for mod, deps in GRAPH.items():
        rank, group = layer(mod)
        for dep in deps:
            drank, dgroup = layer(dep)
            if drank > rank or (drank == rank == 1 and dgroup != group and (group, dgroup) not in SIDEWAYS):
                upward.append(f"{mod} -> {dep}")
    assert not upward, f"imports that do not go downward: {upward}"


def test_the_layer_rule_catches_an_upward_import():
    """The check above can fail: a core module importing the workbook is reported."""
    rank, _ = layer("natsdemo.core.connect")
    drank, _ = layer("natsdemo.workbook.server")
    assert drank > rank
    assert layer("natsdemo.drain.drainer")[1] != layer("natsdemo.reservations.wire")[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert _cycles(GRAPH) == []
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # the check can fail


def test_no_module_is_over_300_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_library_needs_no_jupyter():
    """No module of core or a pattern imports Jupyter, widgets, plotting or the server launcher."""
    banned = re.compile(r"^\s*(?:import|from)\s+(ipywidgets|IPython|matplotlib|ipympl|jupyter\w*|nbclient|psutil)\b",
                        re.M)
    offenders = [n for n, p in MODULES.items() if layer(n)[0] <= 1 and banned.search(p.read_text())]
    assert not offenders


# ------------------------------------------------------------------ docstrings
def _notebooks() -> dict[str, tuple[str, str]]:
    """notebook path -> (its code, its markdown)."""
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code, text = ("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == k)
                      for k in ("code", "markdown"))
        out[f"notebooks/{nb.name}"] = (code, text)
    return out


NOTEBOOKS = _notebooks()
COMMAND_OF = {}  # module -> the CLI command it implements
for _line in (PKG / "cli.py").read_text().splitlines():
    if (_m := re.match(r'\s+"(\w+)": \("(natsdemo[\w.]+)"', _line)):
        COMMAND_OF.setdefault(_m.group(2), []).append(_m.group(1))
NOT_TAUGHT = "Not taught on its own:"


def _public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name) and not t.id.startswith("_")}
    return names


def _teaches(notebook: tuple[str, str], module: str, path: Path) -> bool:
    """The notebook imports the module, uses one of its names through a package facade, runs its
    command (``python -m natsdemo CMD``, or a service process started with ``["CMD", "--..."]`` by the
    notebook or a lab it imports), or names the module in its text."""
    code, text = notebook
    if re.search(rf"\b{re.escape(module)}\b", code + text):
        return True
    labs = " ".join(p.read_text() for n, p in MODULES.items() if n.startswith("natsdemo.workbook.labs.") and n in code)
    for cmd in COMMAND_OF.get(module, []):
        if re.search(rf"natsdemo {cmd}\b", code + text) or f'"{cmd}", "--' in code + labs:
            return True
    package = module.rsplit(".", 1)[0]
    used = set(re.findall(r"\b[A-Za-z_]\w*\b", code))
    facade = re.search(rf"\bfrom {re.escape(package)} import\b|\bimport {re.escape(package)}\b|"
                       rf"\bfrom natsdemo import [^\n]*\b{re.escape(package.rsplit('.', 1)[-1])}\b", code)
    return bool(facade) and bool(_public_names(path) & used)


DOCUMENTED = {n: p for n, p in MODULES.items() if not p.name.startswith("__") and "benchmarks" not in n}


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_module_docstring_names_a_notebook_that_really_teaches_it(module: str):
    path = DOCUMENTED[module]
    doc = (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    last = doc.splitlines()[-1] if doc else ""
    if last.startswith(NOT_TAUGHT):
        teaching = [nb for nb, both in NOTEBOOKS.items() if _teaches(both, module, path)]
        assert not teaching, f"{module} says {last!r}, but {teaching} teach it: name one of them"
        return
    m = re.fullmatch(r"Defined in (notebooks/\d\d_\w+\.ipynb)", last)
    assert m, f"{module}: the docstring's last line is {last!r}"
    assert m.group(1) in NOTEBOOKS, f"{module}: no notebook {m.group(1)}"
    assert _teaches(NOTEBOOKS[m.group(1)], module, path), f"{m.group(1)} does not use {module}"


# ------------------------------------------------------------------ types
def test_mypy_is_clean_on_the_library():
    out = subprocess.run(
        [sys.executable, "-m", "mypy", *(f"natsdemo/{p}" for p in LIBRARY)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_package_is_marked_typed():
    assert (PKG / "py.typed").exists()


# ------------------------------------------------------------------ packaging by layer
@pytest.mark.slow
def test_the_library_installs_and_runs_without_the_workbook(tmp_path: Path):
    """A venv with only `pip install .`: every pattern imports, every service's --help works,
    no Jupyter, ipywidgets or matplotlib is installed, and a workbook command says what to install."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    install = subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    code = (
        "import importlib.util, natsdemo.core.service, natsdemo.tls, natsdemo.ticks, natsdemo.drain, "
        "natsdemo.reservations, natsdemo.coupons\n"
        "print([m for m in ('ipywidgets', 'matplotlib', 'jupyterlab', 'IPython', 'psutil') "
        "if importlib.util.find_spec(m)])"
    )
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    services = (("tick", "--server"), ("drain", "--server"), ("reservations", "--server"), ("certs", "--out"),
                ("coupons", "watch"))
    for command, flag in services:
        helped = subprocess.run([py, "-m", "natsdemo", command, "--help"], capture_output=True, text=True,
                                timeout=60, env=env, cwd=tmp_path)
        assert helped.returncode == 0 and flag in helped.stdout, (command, helped.stdout[-500:], helped.stderr[-1500:])
    workbook = subprocess.run([py, "-m", "natsdemo", "doctor"], capture_output=True, text=True, timeout=60,
                              env=env, cwd=tmp_path)
    assert workbook.returncode == 1 and "natsdemo[workbook]" in workbook.stderr, workbook.stderr
    assert len(workbook.stderr.strip().splitlines()) == 1, workbook.stderr
