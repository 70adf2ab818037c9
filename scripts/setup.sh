#!/usr/bin/env bash
# Create .venv and install seqnet with its dev tools. Idempotent: reinstalls
# only when pyproject.toml, setup.py or the C source of the state tree's
# native rebuild changed since the last successful install (the editable
# install builds that extension in place).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.seqnet-installed
want=$(cat pyproject.toml setup.py sequencer_net/execution/_tree_native.c | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing seqnet and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
# The L1 toolchain (solc for contracts/, anvil for local chains and tests),
# pinned in package-lock.json. Reinstalls only when the lock file changed.
if command -v npm >/dev/null 2>&1; then
    npm_stamp=node_modules/.seqnet-installed
    npm_want=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_want" ]; then
        echo "==> installing the L1 toolchain (solc, anvil) into node_modules"
        npm ci --no-audit --no-fund
        echo "$npm_want" > "$npm_stamp"
    fi
else
    echo "==> npm not found: skipping the L1 toolchain (solc, anvil); L1 tests will skip" >&2
fi
