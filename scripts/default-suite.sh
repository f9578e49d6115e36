#!/usr/bin/env bash
# The main job: the default suite, mteb-lite (one or two staged MTEB tasks per task type:
# classification, pair classification, clustering, summarization, STS, retrieval), on the
# staged all-MiniLM-L6-v2, printing the score table and writing reports/<run-id>/.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/fetch-models.sh)"
assets="${ASSAY_ASSETS:-$(cd .. && pwd)/shared/assets}"
cargo run --release --quiet -- run --suite mteb-lite \
  --model "dir:$ASSAY_MINILM_DIR" --data-root "$assets/data" "$@"
