#!/bin/bash
# The main job on one machine (README): an application runs through a guest's
# network device while faults are injected into the driver domain behind it;
# `shadowctl demo` brings up the demo host (unless a shadowd already runs),
# runs iperf3 from guest1 and guest2 to the wire netns at once, injects the
# faults, reports each recovery and whether either guest's iperf3 noticed, and
# shuts down cleanly.
#
# Usage: scripts/demo.sh [KIND[,KIND...]] [shadowctl demo options...]
#   KIND: kill | segv | hang | sigsys | stall | bad-id | bad-prod | bad-grant | garbage
#         (default: kill,segv,hang,garbage round-robin)
#   e.g.  scripts/demo.sh;  scripts/demo.sh segv;  scripts/demo.sh --duration 60 --faults 10
#         scripts/demo.sh --classes vsnd   (aplay through each guest's sound card; gaps per fault)
#         scripts/demo.sh --classes vbd    (fio write+verify through each guest's disk; needs fio)
# Exit status: that of shadowctl demo (0: transparent to the application).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then echo "demo.sh: run as root" >&2; exit 1; fi
BUILD_DIR=${BUILD_DIR:-build}
SHADOWD=$BUILD_DIR/dom0_shadow/shadowd
SHADOWCTL=$BUILD_DIR/tools/shadowctl/shadowctl
HOST=config/examples/demo-host/host.yaml

if [[ ! -x $SHADOWD || ! -x $SHADOWCTL ]]; then
  scripts/deps.sh
  scripts/build.sh
elif ! "$SHADOWCTL" demo --help >/dev/null 2>&1 || ! command -v iperf3 >/dev/null || ! command -v fio >/dev/null; then
  # A build from before `shadowctl demo`, or iperf3 missing: bring both up to date.
  scripts/deps.sh
  ninja -C "$BUILD_DIR" shadowctl shadowd drvdom sd-netfront asound_module_pcm_shadow sd-blkfront
fi

ARGS=(--classes vif --duration 20 --faults 5)
if [[ $# -gt 0 && $1 != -* ]]; then
  ARGS+=(--fault-kinds "$1")   # the old form: scripts/demo.sh segv
  shift
fi
ARGS+=("$@")

echo "== checking $HOST"
"$SHADOWD" --config "$HOST" --check
# Every guest's disk (the target= in guest1.cfg, guest2.cfg) must exist before shadowd opens it.
for img in $(grep -ho "target=[^,' ]*" "$(dirname "$HOST")"/*.cfg | cut -d= -f2); do
  if [[ ! -e $img ]]; then mkdir -p "$(dirname "$img")" && truncate -s 1G "$img"; fi
done
echo
echo "\$ shadowctl demo ${ARGS[*]}"
rc=0
"$SHADOWCTL" demo "${ARGS[@]}" || rc=$?

# A shadowd that was already running is still up: show where it stands.
if "$SHADOWCTL" list >/dev/null 2>&1; then
  echo
  echo "\$ shadowctl list"
  "$SHADOWCTL" list
  echo
  echo "\$ shadowctl events -n 10"
  "$SHADOWCTL" events -n 10
fi
exit $rc
