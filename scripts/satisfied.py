"""Exit 0 if this venv already has every pinned requirement and this checkout's natsdemo installed.

Used by scripts/setup-venv.sh to skip pip on a second start (which then works offline and takes
seconds). Standard library only: it runs before anything is installed. Prints what is missing.
Usage: .venv/bin/python scripts/satisfied.py REQUIREMENTS_FILE
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            out += pins(path.parent / line[3:].strip())
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if not m:
            out.append((line, ""))  # not a pin: cannot be checked offline, so never "satisfied"
            continue
        out.append((m.group(1), m.group(3)))
    return out


def missing(req: Path) -> list[str]:
    problems = []
    for name, version in pins(req):
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        if have != version:
            problems.append(f"{name} {have} installed, {version or 'a pin'} wanted")
    wanted = re.search(r'__version__ = "([^"]+)"', (ROOT / "natsdemo" / "__init__.py").read_text())
    try:
        have = md.version("natsdemo")
        if wanted and have != wanted.group(1):
            problems.append(f"natsdemo {have} installed, this checkout is {wanted.group(1)}")
        import natsdemo

        if Path(natsdemo.__file__).resolve().parent != ROOT / "natsdemo":
            problems.append(f"natsdemo is installed from {natsdemo.__file__}, not from this checkout")
    except (md.PackageNotFoundError, ImportError):
        problems.append("natsdemo is not installed")
    return problems


if __name__ == "__main__":
    found = missing(Path(sys.argv[1]))
    for line in found:
        print(f"setup: {line}", file=sys.stderr)
    sys.exit(1 if found else 0)
