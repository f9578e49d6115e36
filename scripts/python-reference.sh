#!/usr/bin/env bash
# A Python with the reference image processors (transformers' CLIPImageProcessor on
# Pillow; no torch needed), in a venv cached outside the repo and keyed by the pinned
# versions. Prints `export ASSAY_PYTHON=...` for the caller to eval.
set -euo pipefail

packages="transformers==4.57.1 pillow==11.0.0 numpy==2.1.3"
key=$(echo "$packages" | sha256sum | cut -c1-12)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/assay/tools/pyref-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ok" ]; then
  echo "installing $packages into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $packages >&2
  touch "$venv/.ok"
fi
echo "export ASSAY_PYTHON=$venv/bin/python"
