#!/usr/bin/env bash
# Build the executed workbook as a static website (Sphinx + myst-nb); the last line printed is the
# path of its index.html, which any static web server (or a browser, from file://) can show.
# Usage: bash scripts/site.sh [OUT]     (default OUT: _site; the pages go to OUT/html)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh requirements-site.txt
exec .venv/bin/python -m natsdemo site --out "${1:-_site}"
