#!/usr/bin/env bash
# Builds (optimised) and runs every benchmark; each prints its figures beside the raw PostgreSQL
# primitive measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build-release -DCMAKE_BUILD_TYPE=Release -DTESTPOOL_BUILD_TESTS=OFF
./build-release/bench/template_bench "$PWD" "${ROUNDS:-20}"
./build-release/bench/lease_bench "$PWD" "$PWD/build-release/testpool" "${LEASES:-2000}"
./build-release/bench/claims_bench "$PWD/build-release/testpool" "${CLAIMS:-4000}"
./build-release/bench/builders_bench "$PWD" "${BUILD_ROWS:-100000}"
./build-release/bench/seed_bench "$PWD" "$PWD/build-release/testpool" "${SEED_TESTS:-100}"
./build-release/bench/reset_bench "${CLONE_RESETS:-200}"
./build-release/bench/integresql_bench "$PWD/build-release/testpool" "${ISQL_ROUNDS:-20}"
./build-release/bench/proxy_bench  # sizes from $RESETS and $PGBENCH_S
# The chaos run (issue 17 §2): 200 client processes for 60 s, the daemon SIGKILLed 5 times, 10
# clients SIGKILLed mid-lease, the postmaster SIGKILLed once; CHAOS_* override the sizes.
CHAOS_CLIENTS=${CHAOS_CLIENTS:-200} CHAOS_SECONDS=${CHAOS_SECONDS:-60} CHAOS_DAEMON_KILLS=${CHAOS_DAEMON_KILLS:-5} \
  CHAOS_CLIENT_KILLS=${CHAOS_CLIENT_KILLS:-10} CHAOS_POSTMASTER_KILL=${CHAOS_POSTMASTER_KILL:-1} \
  ./build-release/bench/chaos_bench --binary "$PWD/build-release/testpool"
export DOCKER_HOST="unix://$(./scripts/start-dockerd.sh)"
./scripts/build-base-image.sh >/dev/null
./build-release/bench/docker_bench "$PWD/build-release/testpool" "${DOCKER_LEASES:-300}" "${DOCKER_RECYCLES:-30}"
