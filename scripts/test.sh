#!/usr/bin/env bash
# The whole test suite: fetches the real models, builds llama-server and installs headless
# Chromium (all cached outside the repo, once per machine), starts a one-node Slurm
# cluster on 127.0.0.1 (for the sharded-run tests), then runs every test in
# release mode (candle is far too slow unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/fetch-models.sh)"
eval "$(scripts/build-llama-server.sh)"
eval "$(scripts/install-chromium.sh)"
eval "$(scripts/install-bubblewrap.sh)"
eval "$(scripts/python-reference.sh)"
eval "$(scripts/python-sklearn.sh)"
eval "$(scripts/start-slurm.sh)"
export ASSAY_ASSETS="${ASSAY_ASSETS:-$(cd .. && pwd)/shared/assets}"
cargo test --release "$@"
