#!/usr/bin/env bash
# Set everything up (including the browser for end-to-end tests) and run the checks: lint, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system
.venv/bin/ruff check ablate plugins tests benchmarks
.venv/bin/python -m pytest "$@"
