#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan, the layers instrumented) in
# build-fuzz/, then runs each for SECONDS_PER_TARGET (default 30), two at a time, over a copy of
# its seed corpus fuzz/corpus/<target>/. What the fuzzers find stays under build-fuzz/fuzz-runs/
# (never in the repository). Prints per target: runs, execs/s, corpus size, new coverage features;
# exits non-zero if any target crashed, leaked, timed out or broke a contract, naming the input
# that did it (add that input to fuzz/corpus/<target>/ once the bug is fixed).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]   (targets: codec scram sql_classify …)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]" >&2
  exit 2
fi
all_targets=$(sed -n 's/^testpool_fuzz_target(\([a-z_]*\) .*/\1/p' fuzz/CMakeLists.txt)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$(echo $all_targets)"
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all_targets" || { echo "fuzz.sh: no target '$t' (have: $(echo $all_targets))" >&2; exit 2; }
done

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ is missing; scripts/install-deps.sh installs it" >&2
  exit 1
fi
dir=build-fuzz
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
start=$(date +%s)
echo "== fuzz build (clang, libFuzzer + ASan + UBSan, -Werror): $dir"
# -O1 and line tables only: the instrumented layers build in about half the time of -O2 -g, and
# sanitizer reports still name file and line.
CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DTESTPOOL_FUZZ=ON -DTESTPOOL_BUILD_TESTS=OFF -DTESTPOOL_BUILD_BENCH=OFF -DTESTPOOL_WERROR=ON \
  "${launcher[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" --target fuzz
echo "== fuzz build took $(( $(date +%s) - start )) s"

runs=$dir/fuzz-runs
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# One target: a fresh copy of its seeds, then libFuzzer for $seconds. Its log is $runs/<t>/log.
run_target() {
  local t=$1 out=$runs/$1
  rm -rf "$out"
  mkdir -p "$out/corpus" "$out/artifacts"
  cp fuzz/corpus/"$t"/* "$out/corpus/"
  local dict=()
  if [[ $t == sql_* ]]; then dict=(-dict=fuzz/sql.dict); fi
  "$dir/fuzz/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="$out/artifacts/" "$out/corpus" >"$out/log" 2>&1
}

# The summary line of one finished target, from its log; returns 1 when it failed.
report() {
  local t=$1 rc=$2 out=$runs/$1 log=$runs/$1/log
  local executed per_sec ft0 ft1 corpus
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  per_sec=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  ft0=$(sed -n 's/.*INITED .* ft: \([0-9]*\).*/\1/p' "$log" | head -1)
  ft1=$(grep -o ' ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  # libFuzzer's last "corp: <inputs>/<bytes>" (the inputs it keeps, seeds included).
  corpus=$(grep -o ' corp: [0-9]*/[0-9]*[KMG]*b' "$log" | tail -1 | sed 's/ corp: //' || true)
  printf '%-14s runs %10s  %6s exec/s  corpus %14s  new coverage features %6s  %s\n' \
    "$t" "${executed:-?}" "${per_sec:-?}" "${corpus:-?}" "$(( ${ft1:-0} - ${ft0:-0} ))" \
    "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)"
  if [ "$rc" -ne 0 ]; then
    grep -E 'ERROR:|contract broken|threw an undocumented|SUMMARY' "$log" | head -5 | sed 's/^/    /'
    grep -o 'Test unit written to .*' "$log" | sed 's/^/    /' || true
    echo "    log: $log"
    return 1
  fi
}

start=$(date +%s)
echo "== fuzzing ${#targets[@]} targets for $seconds s each, two at a time"
declare -A running=()
failed=0
next=0
while [ $next -lt ${#targets[@]} ] || [ ${#running[@]} -gt 0 ]; do
  while [ $next -lt ${#targets[@]} ] && [ ${#running[@]} -lt 2 ]; do
    t=${targets[$next]}
    run_target "$t" &
    running[$!]=$t
    next=$((next + 1))
  done
  rc=0
  wait -n -p done_pid "${!running[@]}" || rc=$?
  report "${running[$done_pid]}" "$rc" || failed=1
  unset "running[$done_pid]"
done
echo "== fuzzing took $(( $(date +%s) - start )) s"
if [ $failed -ne 0 ]; then
  echo "fuzz.sh: FAILED (the inputs above reproduce it: $dir/fuzz/<target>_fuzz <input>)" >&2
  exit 1
fi
