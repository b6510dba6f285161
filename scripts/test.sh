#!/usr/bin/env bash
# One command for the whole test suite on a fresh machine: installs the Python packages and
# Debian's chromium (for the browser test), then runs lint and pytest. CI runs exactly this.
# Usage: scripts/test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh requirements-test.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
# two workers (the machines have two cores, and most tests wait on servers and timers); the
# notebook and site tests share one worker, the browser tests another (tests/conftest.py)
exec .venv/bin/python -m pytest -n "${NATSDEMO_TEST_WORKERS:-2}" --dist loadscope "$@"
