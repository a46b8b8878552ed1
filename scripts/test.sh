#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): installs what is missing, builds
# with warnings as errors under AddressSanitizer + UBSan, and runs every test (unit tests, and
# integration tests against real PostgreSQL servers the tests start themselves, and the Docker tests
# against testpool's own dockerd, started by scripts/start-dockerd.sh, in the base image built by
# scripts/build-base-image.sh, and docker-compose.yml end to end), then runs the fuzz targets for a
# bounded time (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

# The Docker tests run against testpool's own engine; an engine that cannot start fails the run
# here, before the build, rather than as a skipped test.
echo "== docker engine"
if ! docker_sock=$(./scripts/start-dockerd.sh); then
  echo "test.sh: FAILED to start testpool's dockerd (scripts/start-dockerd.sh, log above);" \
       "the Docker tests need it" >&2
  exit 1
fi
export DOCKER_HOST="unix://$docker_sock"

# The PostgreSQL image the Docker tests run, built from Debian packages (no registry); a no-op when
# the engine already has it from the same inputs, a few seconds from the cached tarball, about a
# minute from scratch.
echo "== base image"
export TESTPOOL_DOCKER_IMAGE=${TESTPOOL_BASE_IMAGE:-testpool/base:pg15-bookworm}
if ! ./scripts/build-base-image.sh >/dev/null; then
  echo "test.sh: FAILED to build the base image $TESTPOOL_DOCKER_IMAGE (scripts/build-base-image.sh," \
       "log above); the Docker tests need it" >&2
  exit 1
fi

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
cd ..

# The parsers of untrusted input under libFuzzer (clang, ASan + UBSan), each target for a bounded
# time over its seed corpus (fuzz/corpus/); about 4 minutes with the clang build. A crash fails
# the run and names the input. TESTPOOL_FUZZ_SECONDS sets the time per target (0 skips the step).
fuzz_seconds=${TESTPOOL_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ]; then
  start=$(date +%s)
  ./scripts/fuzz.sh "$fuzz_seconds"
  echo "== fuzz step took $(( $(date +%s) - start )) s"
fi
