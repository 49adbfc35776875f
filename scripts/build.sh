#!/bin/bash
# Configures and builds from scratch into BUILD_DIR (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [[ ${FRESH:-1} == 1 ]]; then rm -rf "$BUILD_DIR"; fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
ninja -C "$BUILD_DIR" -j"$(nproc)"
