#!/usr/bin/env bash
# A Python with the scientific stack MTEB's evaluators use (numpy, scipy, scikit-learn;
# no torch, no mteb; threadpoolctl comes with scikit-learn), in a venv cached outside
# the repo and keyed by the pinned versions. These are the versions the fixtures of
# tests/fixtures/mteb_metrics were made with. Used by tests/reference/mteb_reference.py
# and benches/sklearn_metrics.py.
# Prints `export ASSAY_SKLEARN_PYTHON=...` for the caller to eval:
#
#   eval "$(scripts/python-sklearn.sh)"
set -euo pipefail

packages="numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1"
key=$(echo "$packages" | sha256sum | cut -c1-12)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/assay/tools/pysklearn-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ok" ]; then
  echo "installing $packages into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $packages >&2
  touch "$venv/.ok"
fi
echo "export ASSAY_SKLEARN_PYTHON=$venv/bin/python"
