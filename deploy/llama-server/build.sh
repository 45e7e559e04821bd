#!/usr/bin/env bash
# Builds llama.cpp's `llama-server`, and its `llama-quantize` (the default model is requantized
# with it at install time: services/llm/avatarchat_llm/models.py), from the llama.cpp source
# vendored in the llama-cpp-python sdist on PyPI (pinned by hash below), into PREFIX (default:
# .venv/lib/llama-server).
#
# Why these flags (issue "Runs on every machine"):
# - GGML_NATIVE=OFF: a -march=native build on a Sapphire Rapids+ Xeon compiles llama.cpp's AMX
#   path, which segfaults on the first decode (ggml-org/llama.cpp#20824), and a native build from
#   one machine dies with SIGILL on an older one.
# - GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS: the CPU backend is built several times, for several
#   instruction sets, and llama-server loads the best one the CPU has at start (runtime dispatch).
#   We keep only the AVX2 (haswell), AVX-512 (skylakex) and AVX-512 VNNI/VBMI (icelake) variants:
#   every x86-64 CPU with AVX2 runs, AVX-512 is used where present, and the AMX variant
#   (sapphirerapids) is never built, so an AMX CPU runs the icelake kernels. Building three
#   variants instead of seventeen also keeps the build to a few minutes on 2 cores.
# - No OpenSSL, no curl, no prebuilt web UI: nothing is downloaded at build or run time.
# Usage: deploy/llama-server/build.sh [PREFIX]
set -euo pipefail

VERSION=0.3.36   # llama-cpp-python; vendors llama.cpp (MIT) with ggml 0.25.3
URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-${VERSION}.tar.gz"
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
X86_VARIANTS=(haswell skylakex icelake)

PREFIX=$(realpath -m "${1:-.venv/lib/llama-server}")
WORK=$(realpath -m "${LLAMA_BUILD_DIR:-build/llama-server}")
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
mkdir -p "$WORK"

sdist="$WORK/llama_cpp_python-${VERSION}.tar.gz"
if ! echo "$SHA256  $sdist" | sha256sum -c --status 2>/dev/null; then
  echo ">> downloading llama-cpp-python ${VERSION} sdist (llama.cpp source) from PyPI"
  curl -fsSL --retry 3 -o "$sdist.part" "$URL"
  echo "$SHA256  $sdist.part" | sha256sum -c --quiet
  mv "$sdist.part" "$sdist"
fi
src="$WORK/src"
if [ ! -f "$src/.extracted-$VERSION" ]; then
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=3 "llama_cpp_python-${VERSION}/vendor/llama.cpp"
  touch "$src/.extracted-$VERSION"
fi

flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF
       -DCMAKE_BUILD_RPATH='$ORIGIN' -DCMAKE_INSTALL_RPATH='$ORIGIN'
       -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
       -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF)
targets=(llama-server llama-quantize)
if [ "$(uname -m)" = x86_64 ]; then
  # Keep only our variants in the list GGML_CPU_ALL_VARIANTS builds (ggml/src/CMakeLists.txt).
  keep=$(IFS='|'; echo "${X86_VARIANTS[*]}")
  sed -E -i "/^\s*ggml_add_cpu_backend_variant\((x64|sse42|sandybridge|ivybridge|piledriver|haswell|skylakex|cannonlake|cascadelake|icelake|cooperlake|zen4|alderlake|sapphirerapids)\b/{/\((${keep})\b/!d}" \
    "$src/ggml/src/CMakeLists.txt"
  flags+=(-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON)
fi

cmake -S "$src" -B "$WORK/cmake" "${flags[@]}" >"$WORK/configure.log" || { cat "$WORK/configure.log"; exit 1; }
echo ">> building ${targets[*]} (${X86_VARIANTS[*]} CPU variants) with $JOBS jobs"
cmake --build "$WORK/cmake" -j "$JOBS" --target "${targets[@]}" >"$WORK/build.log" 2>&1 || { tail -50 "$WORK/build.log"; exit 1; }

rm -rf "$PREFIX.tmp" && mkdir -p "$PREFIX.tmp"
cp -a "$WORK/cmake/bin/llama-server" "$WORK/cmake/bin/llama-quantize" "$WORK"/cmake/bin/*.so* "$PREFIX.tmp/"
cp "$src/LICENSE" "$PREFIX.tmp/LICENSE.llama.cpp"
rm -rf "$PREFIX" && mv "$PREFIX.tmp" "$PREFIX"
"$PREFIX/llama-server" --version 2>&1 | tail -2
echo ">> installed $PREFIX/llama-server"
