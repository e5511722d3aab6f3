#!/usr/bin/env bash
# Installs rdx into a temporary prefix and builds a consumer against it twice: with CMake
# (find_package(rdx) -> rdx::rdx) and with pkg-config. Both must build and run.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/cmake/consumer"
libdir=$(ls -d "$tmp"/prefix/lib*/pkgconfig | head -1)
export PKG_CONFIG_PATH=$libdir
cc "$src/consumer.c" -o "$tmp/consumer_pc" $(pkg-config --cflags --libs rdx)
LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/consumer_pc"
echo "install_test: find_package and pkg-config consumers both ran"
