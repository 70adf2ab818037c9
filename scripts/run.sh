#!/usr/bin/env bash
# Set up and run the main job. Until the validator testnet lands this runs the
# deterministic consensus simulator over many seeds with Byzantine validators.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/seqnet sim --validators 4 --byzantine 1 --seeds 100 "$@"
