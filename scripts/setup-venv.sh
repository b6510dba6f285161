#!/usr/bin/env bash
# Create .venv (if missing) and install what the workbook needs; used by the two README commands.
# When the venv already has every pinned requirement and this checkout installed, pip is skipped:
# a second start works offline and takes seconds.
# Usage: scripts/setup-venv.sh [requirements file]     (PYTHON=python3.12 picks another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv; then
    echo "setup: '$PY -m venv' failed; on Debian or Ubuntu install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  fi
fi
# JupyterLab settings shipped with the project (no news pop-up): defaults for this venv only
mkdir -p .venv/share/jupyter/lab/settings
cp jupyter/overrides.json .venv/share/jupyter/lab/settings/overrides.json
if .venv/bin/python scripts/satisfied.py "$REQ" 2>/dev/null; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQ"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
