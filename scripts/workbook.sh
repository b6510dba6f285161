#!/usr/bin/env bash
# One command for attendees and instructors: install everything, check the machine, open JupyterLab.
# Usage: scripts/workbook.sh [extra jupyter lab options, e.g. --port 8899 --ip 0.0.0.0]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh requirements.txt
.venv/bin/python -m natsdemo doctor || echo "doctor found a problem (see above); the notebooks may still work"
EXTRA=()
if [ "$(id -u)" = "0" ]; then EXTRA+=(--allow-root); fi  # JupyterLab refuses root without it
exec .venv/bin/jupyter lab "${EXTRA[@]}" notebooks/00_start_here.ipynb "$@"
