#!/usr/bin/env bash
# Set everything up and run the main job on the bundled MNIST: the beta-range study (the
# coursework's question), at most 20 minutes on 2 CPU cores; rerunning continues it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ablate run studies/beta_range.toml "$@"
.venv/bin/ablate report studies/beta_range.toml
