#!/usr/bin/env bash
# bubblewrap, the sandbox model-written code runs in (code tasks): Debian's `bubblewrap`
# by package name, once per machine. Prints `export ASSAY_BWRAP=...`.
set -euo pipefail

if ! command -v bwrap >/dev/null; then
  echo "installing bubblewrap with apt-get (once)" >&2
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    bubblewrap >&2
fi
echo "export ASSAY_BWRAP=$(command -v bwrap)"
