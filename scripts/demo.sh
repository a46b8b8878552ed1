#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs what is missing, builds,
# starts the testpool daemon on its embedded `local` backend, and runs a short demo against it.
# The daemon keeps running afterwards; the last lines say how to use and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

./scripts/install-deps.sh
echo "== building (build/)"
./scripts/build.sh build -DTESTPOOL_BUILD_TESTS=OFF -DTESTPOOL_BUILD_BENCH=OFF
tp="$top/build/testpool"
export TESTPOOL_URL=${TESTPOOL_URL:-http://127.0.0.1:7432}

work=$(mktemp -d /tmp/testpool-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. the daemon: testpool serve (embedded local PostgreSQL, no flags)"
if curl -fsS "$TESTPOOL_URL/healthz" >/dev/null 2>&1; then
  echo "a testpool daemon already answers at $TESTPOOL_URL; using it"
  daemon_pid=$(pgrep -f "testpool serve" | head -1 || true)
  log="(the running daemon's own log)"
else
  log=/tmp/testpool-daemon.log
  nohup "$tp" serve >"$log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "$TESTPOOL_URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || { echo "the daemon exited; its log:"; cat "$log"; exit 1; }
    sleep 0.1
  done
  curl -fsS "$TESTPOOL_URL/healthz" >/dev/null || { echo "the daemon did not answer; its log:"; cat "$log"; exit 1; }
  grep -E "backend.local.(initdb|started|adopted)|daemon.ready" "$log" | sed 's/^/  log: /' || true
fi
show curl -sS "$TESTPOOL_URL/healthz"; echo

step "2. build the demo shop template from migrations/ (templates/app.json)"
show "$tp" template create --file templates/app.json

step "3. ask again with the same files: same hash, nothing rebuilt"
show "$tp" template create --file templates/app.json

step "4. change one byte of one migration: a new hash, a new template (the old one is kept)"
cp -r migrations "$work/migrations"
printf '\n' >> "$work/migrations/0005_indexes.sql"
show "$tp" template create app --migrations "$work/migrations" --seed templates/seed/app_seed.sql
show "$tp" template list
echo "(back to the original files: their hash is still built, so no rebuild; then drop the other)"
"$tp" template create --file templates/app.json | tail -1
show "$tp" template drop app --old-only

step "5. a migration that fails: a clean error naming the file and line; no half-built template"
mkdir -p "$work/broken"
cp migrations/0001_customers.sql "$work/broken/"
printf -- '-- a typo on line 3\n\nINSERT INTO customer (email) VALUES (%s);\n' "'x@example.test'" > "$work/broken/0002_typo.sql"
set +e
show "$tp" template create broken --migrations "$work/broken"
echo "exit status: $?"
set -e
"$tp" template drop broken >/dev/null 2>&1 || true

step "6. what the template holds: clone it the raw way (what leases will hand out, pre-cloned)"
state=/var/lib/testpool
[ "$(id -u)" -eq 0 ] || state=${XDG_STATE_HOME:-$HOME/.local/state}/testpool
if [ -f "$state/pg/superuser.password" ]; then
  db=$("$tp" template show app | python3 -c 'import json,sys; print(json.load(sys.stdin)["database"])')
  export PGHOST="$state/pg/run" PGPORT=$(cat "$state/pg/port") PGUSER=postgres PGPASSWORD=$(cat "$state/pg/superuser.password")
  clone="tp_demo_clone_$$"
  psql -X -q -d postgres -c '\timing on' -c "CREATE DATABASE $clone TEMPLATE $db STRATEGY FILE_COPY" | sed 's/^/  /'
  psql -X -d "$clone" -c "SELECT sku, name, stock FROM products ORDER BY sku" | sed 's/^/  /'
  psql -X -q -d postgres -c "DROP DATABASE $clone"
else
  echo "(the daemon is not on this machine's default state dir; skipping the raw clone)"
fi

step "done"
echo "The daemon keeps running at $TESTPOOL_URL (pid ${daemon_pid:-?}, log $log)."
echo "Try: $tp template list    |  curl -s $TESTPOOL_URL/v1/templates/app"
echo "Stop it with: kill ${daemon_pid:-<pid>}   (it stops its PostgreSQL cleanly)"
