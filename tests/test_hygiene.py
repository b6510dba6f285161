"""Repository hygiene: lint clean, no private key tracked by git (module docstrings: test_layout)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_ruff_is_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "natsdemo", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_private_key_is_tracked_or_committable():
    """git ls-files (tracked plus untracked-but-not-ignored) holds no private key."""
    pem_key = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    offenders = []
    for name in _tracked():
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        if pem_key.search(path.read_bytes()) or name.endswith(("-key.pem", ".key")):
            offenders.append(name)
    assert not offenders, f"private keys would be committed: {offenders}"


def test_certs_folder_only_tracks_its_readme():
    assert [n for n in _tracked() if n.startswith("certs/")] == ["certs/README.md"]
