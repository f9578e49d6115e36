#!/usr/bin/env bash
# A Python with faiss-cpu (and numpy), the reference side of `assay bench-search`
# (benches/faiss_search.py), in a venv cached outside the repo and keyed by the pinned
# versions. Prints `export ASSAY_FAISS_PYTHON=...` for the caller to eval:
#
#   eval "$(scripts/python-faiss.sh)"
set -euo pipefail

packages="faiss-cpu==1.15.1 numpy==2.4.6"
key=$(echo "$packages" | sha256sum | cut -c1-12)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/assay/tools/pyfaiss-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ok" ]; then
  echo "installing $packages into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $packages >&2
  touch "$venv/.ok"
fi
echo "export ASSAY_FAISS_PYTHON=$venv/bin/python"
