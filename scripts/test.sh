#!/usr/bin/env bash
# One command: set up, then run the whole test suite (what .ci/run calls).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/venv.sh test
exec .venv/bin/python -m pytest -q "$@"
