#!/usr/bin/env bash
# Set everything up and run the main job on the bundled MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ablate train configs/coursework.toml "$@"
