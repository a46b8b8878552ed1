#!/usr/bin/env bash
# End-to-end test of docker-compose.yml, for real: validates the file, builds the base image if the
# engine lacks it, builds and starts the stack (project testpool-ci), waits for the daemon, puts a
# template through the HTTP API, leases a database, writes and reads a row in it with psql,
# releases the lease (and checks its DSN is refused afterwards). The stack is always taken down
# again (`down -v`), with the services' last log lines shown when something failed. Exits non-zero
# with a message naming the step that failed. Registered in CTest as `compose_test` (label docker).
#
# Needs the engine in DOCKER_HOST (default: testpool's own, scripts/start-dockerd.sh), and
# docker-compose, curl, psql and python3 on the host (scripts/install-deps.sh). The ports are free
# ones picked at random unless TESTPOOL_COMPOSE_PG_PORT, TESTPOOL_COMPOSE_PORT or
# TESTPOOL_COMPOSE_PROXY_PORT say otherwise. TESTPOOL_COMPOSE_TIMEOUT bounds the wait for the
# daemon to answer (seconds, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."

export DOCKER_HOST=${DOCKER_HOST:-unix:///run/testpool-docker.sock}
project=testpool-ci
base_image=${TESTPOOL_BASE_IMAGE:-testpool/base:pg15-bookworm}
timeout_s=${TESTPOOL_COMPOSE_TIMEOUT:-120}
template=compose_ci

start_s=$SECONDS
say() { echo "compose-test: [$(( SECONDS - start_s )) s] $*" >&2; }
die() { echo "compose-test: FAILED: $*" >&2; exit 1; }

for tool in docker docker-compose curl psql python3; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST (start testpool's: scripts/start-dockerd.sh)"

# Free loopback ports, held together while they are chosen so that the three differ.
free_ports() {
  python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}
read -r p1 p2 p3 < <(free_ports)
export TESTPOOL_COMPOSE_PG_PORT=${TESTPOOL_COMPOSE_PG_PORT:-$p1}
export TESTPOOL_COMPOSE_PORT=${TESTPOOL_COMPOSE_PORT:-$p2}
export TESTPOOL_COMPOSE_PROXY_PORT=${TESTPOOL_COMPOSE_PROXY_PORT:-$p3}
api=http://127.0.0.1:$TESTPOOL_COMPOSE_PORT
compose() { docker-compose -p "$project" "$@"; }

# JSON field of stdin (a top-level key), for the API's answers.
field() { python3 -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"; }
# curl that prints the body, then the HTTP status on a line of its own.
http() { curl -sS --max-time 120 -w '\n%{http_code}' "$@"; }

say "docker-compose config"
compose config -q || die "docker-compose.yml does not validate (docker-compose config -q)"

if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  say "base image $base_image missing; building it (scripts/build-base-image.sh)"
  ./scripts/build-base-image.sh >/dev/null || die "scripts/build-base-image.sh failed (its output above)"
fi

log=$(mktemp /tmp/compose-test.XXXXXX.log)
ok=0
finish() {
  local rc=$?
  if [ "$ok" -ne 1 ]; then
    echo "compose-test: the services' last log lines:" >&2
    compose logs --no-color --tail 50 >&2 2>&1 || true
  fi
  say "docker-compose down -v"
  compose down -v --remove-orphans >/dev/null 2>&1 || echo "compose-test: WARNING: docker-compose down failed" >&2
  rm -f "$log"
  exit "$rc"
}
trap finish EXIT

say "docker-compose up -d --build (project $project; postgres on $TESTPOOL_COMPOSE_PG_PORT, API on" \
    "$TESTPOOL_COMPOSE_PORT, proxy on $TESTPOOL_COMPOSE_PROXY_PORT; a fresh image build compiles" \
    "testpool: minutes)"
# The build's steps as progress; the whole output is kept for a failure.
if ! compose up -d --build 2>&1 | tee "$log" |
     grep --line-buffered -E '^(Step [0-9]+/[0-9]+ : (FROM|RUN|COPY)|Successfully|(Creating|Starting) .* done)' |
     cut -c1-110 | sed -u 's/^/  | /' >&2; then
  echo "compose-test: last lines of docker-compose up:" >&2
  tail -n 40 "$log" | sed 's/^/  | /' >&2
  die "docker-compose up -d --build failed"
fi

say "waiting for $api/healthz (up to $timeout_s s)"
wait_start=$SECONDS
last=$SECONDS
until curl -sf --max-time 2 "$api/healthz" >/dev/null 2>&1; do
  cid=$(compose ps -q testpool)
  if [ -n "$cid" ] && [ "$(docker inspect -f '{{.State.Running}}' "$cid")" != "true" ]; then
    die "the testpool container exited ($(docker inspect -f 'status {{.State.ExitCode}}' "$cid")) before answering"
  fi
  (( SECONDS - wait_start < timeout_s )) || die "$api/healthz did not answer within $timeout_s s"
  if (( SECONDS - last >= 5 )); then
    say "still waiting for the daemon ($(( SECONDS - wait_start )) s)"
    last=$SECONDS
  fi
  sleep 0.5
done
say "daemon up: $(curl -sS --max-time 5 "$api/healthz")"

# PUT waits for the build by default (?wait=false would answer 202 at once).
say "PUT /v1/templates/$template"
out=$(http -X PUT -H 'Content-Type: application/json' \
  --data '{"migrations":[{"name":"0001_t.sql","sql":"CREATE TABLE t (id int PRIMARY KEY);"}]}' \
  "$api/v1/templates/$template") || die "PUT /v1/templates/$template: no answer"
status=${out##*$'\n'} body=${out%$'\n'*}
[ "$status" = 201 ] || [ "$status" = 200 ] || die "PUT /v1/templates/$template answered $status: $body"
[ "$(field state <<<"$body")" = ready ] || die "template $template not ready after PUT: $body"
say "template ready: database $(field database <<<"$body"), built in $(field build_ms <<<"$body") ms"

say "POST /v1/templates/$template/leases"
out=$(http -X POST -H 'Content-Type: application/json' --data '{"ttl_s":300,"wait_s":60,"holder":"compose-test"}' \
  "$api/v1/templates/$template/leases") || die "POST /v1/templates/$template/leases: no answer"
status=${out##*$'\n'} body=${out%$'\n'*}
[ "$status" = 201 ] || die "lease request answered $status: $body"
lease=$(field id <<<"$body")
dsn=$(field dsn <<<"$body")
if [ -z "$lease" ] || [ -z "$dsn" ]; then die "lease answer without id or dsn: $body"; fi
say "lease $lease on database $(field database <<<"$body") as $(field user <<<"$body")"

got=$(psql "$dsn" -X -v ON_ERROR_STOP=1 -Atq -c "INSERT INTO t VALUES (42)" -c "SELECT id FROM t") ||
  die "psql on the leased DSN failed"
[ "$got" = 42 ] || die "SELECT on the leased database gave '$got', not 42"
say "psql: inserted and read back a row"

say "DELETE /v1/leases/$lease"
out=$(http -X DELETE "$api/v1/leases/$lease") || die "DELETE /v1/leases/$lease: no answer"
status=${out##*$'\n'}
[ "$status" = 204 ] || die "release answered $status: ${out%$'\n'*}"
if psql "$dsn" -X -Atq -c "SELECT 1" >/dev/null 2>&1; then
  die "the released lease's DSN still connects"
fi
say "released; its DSN is refused"

ok=1
say "PASSED in $(( SECONDS - start_s )) s"
