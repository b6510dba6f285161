#!/usr/bin/env bash
# Create .venv (if missing) and install what the workbook needs; used by the two README commands.
# Usage: scripts/setup-venv.sh [requirements file]
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQ"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
