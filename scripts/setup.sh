#!/usr/bin/env bash
# Set up ablate from nothing: a virtual environment in .venv holding PyTorch, ablate (editable)
# and its test tools. Safe to run again: it only installs what is missing.
#   --system   also install the Debian packages the end-to-end tests use (needs root + apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--system" ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        # chromium: the browser tests; dataset-fashion-mnist: examples/ablate-fashion-mnist;
        # postgresql: the server the distributed-study tests start (initdb, pg_ctl)
        missing=()
        command -v chromium >/dev/null || missing+=(chromium)
        compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
        [[ -d /usr/share/datasets/fashion-mnist ]] || missing+=(dataset-fashion-mnist)
        if (( ${#missing[@]} )); then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
    else
        echo "setup: not root or no apt-get: skipping Debian packages (browser," \
             "Fashion-MNIST and PostgreSQL tests will skip)" >&2
    fi
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# PyTorch first, pinned: on the project's machines pip takes it from the local disk copy.
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    "${pip[@]}" install torch==2.14.1 torchvision==0.29.1
fi
"${pip[@]}" install -e ".[test]"
