#!/usr/bin/env bash
# The main job: the default suite (STS-B and SciFact test sets) on the staged
# all-MiniLM-L6-v2, printing the score table and writing reports/<run-id>/.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/fetch-models.sh)"
assets="${ASSAY_ASSETS:-$(cd .. && pwd)/shared/assets}"
cargo run --release --quiet -- run --task stsb --task scifact \
  --model "dir:$ASSAY_MINILM_DIR" --data-root "$assets/data" "$@"
