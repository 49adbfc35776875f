#!/bin/bash
# The main job on one machine (README): bring the demo host up, show the
# driver domains, inject a fault, show the recovery, shut down cleanly.
# Usage: scripts/demo.sh [FAULT]   (FAULT: kill | segv | hang | sigsys; default kill)
set -euo pipefail
cd "$(dirname "$0")/.."
FAULT=${1:-kill}
if [[ $(id -u) != 0 ]]; then echo "demo.sh: run as root" >&2; exit 1; fi
BUILD_DIR=${BUILD_DIR:-build}
if [[ ! -x $BUILD_DIR/dom0_shadow/shadowd ]]; then
  scripts/deps.sh
  scripts/build.sh
fi
SHADOWD=$BUILD_DIR/dom0_shadow/shadowd
SHADOWCTL=$BUILD_DIR/dom0_shadow/shadowctl
HOST=config/examples/demo-host/host.yaml
SOCK=/run/shadowd/shadowd.sock
ctl() { echo "\$ shadowctl $*"; "$SHADOWCTL" --socket "$SOCK" "$@"; }

echo "== checking $HOST"
"$SHADOWD" --config "$HOST" --check
echo "== starting shadowd"
"$SHADOWD" --config "$HOST" --socket "$SOCK" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$SHADOWCTL" --socket "$SOCK" list >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 0.3
ctl list
echo
ctl inject-fault netdd "$FAULT"
# Wait for the recovery to be logged (hang needs the heartbeat timeout).
for _ in $(seq 100); do
  "$SHADOWCTL" --socket "$SOCK" --json status netdd | grep -q '"restarts":1' && \
    "$SHADOWCTL" --socket "$SOCK" --json status netdd | grep -q '"state":"running"' && break
  sleep 0.05
done
echo
ctl status netdd
echo
ctl devices
echo
ctl events -n 10
echo
ctl shutdown
wait $PID
rc=$?
trap - EXIT
echo "== shadowd exited with status $rc"
