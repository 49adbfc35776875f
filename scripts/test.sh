#!/bin/bash
# The test command (README, .ci/run): install dependencies, build from
# scratch, run the whole default suite. Must run as root (namespaces, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then echo "test.sh: run as root (the tests create namespaces and mounts)" >&2; exit 1; fi
start=$(date +%s)
scripts/deps.sh
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 300 -j1 2>&1 | tee ctest.log
rc=${PIPESTATUS[0]}
echo "test.sh: suite took $(( $(date +%s) - start )) s (build included)"
exit "$rc"
