#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): installs what is missing, builds
# with warnings as errors under AddressSanitizer + UBSan, and runs every test (unit tests, and
# integration tests against real PostgreSQL servers the tests start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

start=$(date +%s)
echo "== build (sanitizers, -Werror): build-asan"
./scripts/build.sh build-asan -DTESTPOOL_WERROR=ON -DTESTPOOL_SANITIZE=ON
echo "== build took $(( $(date +%s) - start )) s"

# ASan's leak checker needs ptrace-like rights some sandboxes lack; everything else stays on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "== tests"
cd build-asan
ctest --output-on-failure -j2 --timeout 900
echo "== tests took $(( $(date +%s) - start )) s in all"
