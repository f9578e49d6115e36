#!/usr/bin/env bash
# Headless Chromium for the HTML report test, and the fonts the plots are drawn with:
# Debian's `chromium` and `fonts-dejavu-core` by package name, once per machine.
# Prints `export ASSAY_CHROMIUM=...`.
set -euo pipefail

find_chromium() { command -v chromium || command -v chromium-browser || true; }

if [ -z "$(find_chromium)" ] || ! fc-list 2>/dev/null | grep -qi dejavu; then
  echo "installing chromium and fonts-dejavu-core with apt-get (once)" >&2
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core fontconfig >&2
fi
echo "export ASSAY_CHROMIUM=$(find_chromium)"
