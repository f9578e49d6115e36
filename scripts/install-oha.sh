#!/usr/bin/env bash
# Installs the oha HTTP load generator (the reference for `assay bench-harness`) from
# crates.io, once per machine, into a cache outside the repo keyed by version. Prints
# `export ASSAY_OHA=...`.
set -euo pipefail

version=1.16.0
root="${ASSAY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/assay/tools}/oha-$version"
if [ ! -x "$root/bin/oha" ]; then
  echo "installing oha $version into $root (a few minutes, once)" >&2
  cargo install oha --version "$version" --locked --root "$root" >&2
fi
echo "export ASSAY_OHA=$root/bin/oha"
