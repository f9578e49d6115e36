#!/usr/bin/env bash
# The whole test suite: fetches the real models (cached outside the repo), then runs every
# test in release mode (candle is far too slow unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/fetch-models.sh)"
export ASSAY_ASSETS="${ASSAY_ASSETS:-$(cd .. && pwd)/shared/assets}"
cargo test --release "$@"
