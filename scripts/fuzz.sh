#!/bin/bash
# Fuzz smoke run: builds the libFuzzer targets (fuzz/) with clang, ASan and
# UBSan in build-fuzz/, then runs each for SECONDS (default 60) from its seed
# corpus (fuzz/corpus/TARGET; what it finds grows build-fuzz/corpus/TARGET).
# Prints one line per target; exit 1 if any target crashed (the input is
# kept as build-fuzz/crashes/TARGET-*; rerun it with build-fuzz/fuzz/fuzz_TARGET FILE).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
CLANG=${CLANG:-clang++-16}
if ! command -v "$CLANG" >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-16 libclang-rt-16-dev >/dev/null
fi
B=build-fuzz
cmake -S . -B "$B" -G Ninja -DSD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CLANG" -DCMAKE_C_COMPILER="${CLANG/++/}" >/dev/null
ninja -C "$B" >/dev/null
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(xl_cfg policy host rings ctl_msg control_request)
mkdir -p "$B/crashes"
rc=0
printf '%-16s %10s %8s %8s %8s  %s\n' target runs cov ft corpus result
for t in "${targets[@]}"; do
  mkdir -p "$B/corpus/$t"
  log="$B/fuzz_$t.log"
  set +e
  "$B/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$B/crashes/$t-" \
    "$B/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
  status=$?
  set -e
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [[ $status == 0 ]]; then result=ok; else result="CRASH (exit $status, see $log)"; rc=1; fi
  printf '%-16s %10s %8s %8s %8s  %s\n' "$t" "${runs:--}" "${cov:--}" "${ft:--}" "${corp:--}" "$result"
done
exit $rc
