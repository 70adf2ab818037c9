#!/usr/bin/env bash
# Set up and run the main job: a local 4-validator testnet (real processes over
# libp2p on 127.0.0.1) and its L1 (anvil with the seqnet contracts), with a load
# generator and a live view. Ctrl-C stops it. Extra arguments go to
# `seqnet testnet up` (e.g. --manifest testnet/crash-restart.toml, --duration 60,
# --no-l1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/seqnet testnet up -n 4 --fresh "$@"
