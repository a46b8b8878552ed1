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

step "6. the warm pool: databases cloned and prepared ahead of demand"
for _ in $(seq 1 300); do
  ready=$("$tp" status --json | python3 -c 'import json,sys; print(sum(p["ready"] for p in json.load(sys.stdin)["pools"] if p["template"]=="app" and p["current"]))')
  [ "$ready" -ge 4 ] && break
  sleep 0.1
done
show "$tp" status

step "7. four workers lease at once: each gets its own database and credentials"
pids=()
for i in 1 2 3 4; do
  ( start=$(date +%s%N); "$tp" lease app --holder "worker$i" --ttl 300 --json > "$work/lease$i.json";
    echo "worker$i: leased in $(( ($(date +%s%N) - start) / 1000000 )) ms (CLI process start included)" ) &
  pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: the daemon is a child of this script too
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
for i in 1 2 3 4; do
  f="$work/lease$i.json"
  echo "  worker$i: database $(field "$f" database)  user $(field "$f" user)  token $(field "$f" token)"
done
dsn() { field "$work/lease$1.json" dsn; }
id() { field "$work/lease$1.json" id; }

step "8. isolation: worker1 buys the last item in stock; nobody else sees it"
psql -X -q "$(dsn 1)" -c "INSERT INTO orders (customer_id) SELECT min(id) FROM customers" \
  -c "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) SELECT max(o.id), p.id, 1, p.price_cents FROM orders o, products p WHERE p.sku = 'LST-0001' GROUP BY p.id, p.price_cents"
for i in 1 2 3 4; do
  printf '  worker%s sees LST-0001 stock = %s\n' "$i" "$(psql -X -A -t "$(dsn $i)" -c "SELECT stock FROM products WHERE sku = 'LST-0001'")"
done
echo "  worker2 tries to reach worker1's database with its own credentials:"
w2_in_w1="postgresql://$(field "$work/lease2.json" user):$(field "$work/lease2.json" password)@$(field "$work/lease1.json" host):$(field "$work/lease1.json" port)/$(field "$work/lease1.json" database)"
psql -X "$w2_in_w1" -c "SELECT 1" 2>&1 | sed 's/^/    /' || true

step "9. release: credentials cut off at once; written databases re-cloned, clean ones reused"
for i in 1 2 3 4; do "$tp" release "$(id $i)"; done
echo "  worker1's old DSN after release:"
psql -X "$(dsn 1)" -c "SELECT 1" 2>&1 | sed 's/^/    /' || true
sleep 1
show "$tp" status

step "10. testpool run: lease, run a command with DATABASE_URL and PG* set, release whatever happens"
show "$tp" run --template app -- sh -c 'echo "  PGUSER=$PGUSER PGDATABASE=$PGDATABASE (DATABASE_URL set too)"; psql -X -A -t -c "SELECT count(*) || '"'"' products in '"'"' || current_database() FROM products"'

step "11. record pools: shared rows reserved atomically (the premium customers of one shared database)"
"$tp" lease app --holder staging --json >"$work/staging.json"  # stands in for a shared staging database
show "$tp" record-pool define premium --lease "$(field "$work/staging.json" id)" --table customers --key id \
  --match profile_type=premium
row_email() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["row"]["email"])' "$1"; }
for w in 1 2; do
  "$tp" claim premium --holder "worker$w" --ttl 60 --json >"$work/claim$w.json"
  echo "  worker$w holds customer $(field "$work/claim$w.json" key) ($(row_email "$work/claim$w.json")), token $(field "$work/claim$w.json" token)"
done
echo "  worker3 asks (waiting up to 1 s) while both premium customers are held:"
"$tp" claim premium --holder worker3 --wait 1 2>&1 | sed 's/^/    /' || true
"$tp" unclaim "$(field "$work/claim1.json" id)"
echo "  worker1 is done and unclaims; worker3 asks again and gets that customer, with a higher token:"
"$tp" claim premium --holder worker3 --json >"$work/claim3.json"
echo "  worker3 holds customer $(field "$work/claim3.json" key) ($(row_email "$work/claim3.json")), token $(field "$work/claim3.json" token)"
show "$tp" record-pool show premium

step "12. builders: fresh, valid rows from recipes (templates/builders), unique per namespace"
show "$tp" build payment --lease "$(field "$work/staging.json" id)" --count 1000 --seed 42
staging_dsn=$(field "$work/staging.json" dsn)
echo "  every row passed the schema's own checks (IBAN mod-97, postal code per country, E.164 phone):"
psql -X -A -t "$staging_dsn" -c "SELECT '    ' || count(*) || ' payments, ' || count(DISTINCT iban) || ' distinct IBANs, e.g. ' || min(iban) FROM payments" \
  -c "SELECT '    ' || count(*) || ' customers in ' || count(DISTINCT country) || ' countries, e.g. ' || min(email) || ' ' || min(postal_code) FROM customers WHERE email LIKE '%@%.test' OR email LIKE '%@example.%'"
"$tp" release "$(field "$work/staging.json" id)"  # its claims, pools and built rows go with it

step "13. savepoint mode: a template with \"recycle\": \"rollback\" leases databases through testpool's wire proxy"
show "$tp" template create app_rb --file templates/app.json --recycle rollback --min-ready 2 --max 4
"$tp" lease app_rb --holder worker5 --json >"$work/lease5.json"
echo "  worker5's DSN points at the proxy (port $(field "$work/lease5.json" port)), not at PostgreSQL:"
echo "    $(dsn 5 | sed 's/:[^:@]*@/:***@/')"
psql -X -q "$(dsn 5)" -c "INSERT INTO orders (customer_id) SELECT min(id) FROM customers" \
  -c "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) SELECT max(o.id), p.id, 1, p.price_cents FROM orders o, products p WHERE p.sku = 'LST-0001' GROUP BY p.id, p.price_cents"
psql -X -A -t "$(dsn 5)" -c "SELECT '  after the purchase: LST-0001 stock = ' || stock FROM products WHERE sku = 'LST-0001'" \
  -c "SELECT '  orders: ' || count(*) || ', next order id would be ' || nextval('orders_id_seq') FROM orders"
start=$(date +%s%N)
"$tp" reset "$(id 5)" >/dev/null
echo "  testpool reset: $(( ($(date +%s%N) - start) / 1000000 )) ms (CLI process start included; the daemon logs the reset itself)"
psql -X -A -t "$(dsn 5)" -c "SELECT '  after the reset: LST-0001 stock = ' || stock FROM products WHERE sku = 'LST-0001'" \
  -c "SELECT '  orders: ' || count(*) || ', next order id would be ' || nextval('orders_id_seq') FROM orders"
[ -f "$log" ] && grep 'lease.reset' "$log" | tail -1 | sed 's/^/  daemon: /' || true
"$tp" release "$(id 5)"
sleep 0.5
echo "  released: the transaction is rolled back and the slot is ready again without a clone:"
"$tp" status --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print("    recycles: rollback", c["recycles_rolled_back"], " clone", c["recycles_cloned"], " skip", c["recycles_skipped"])'

step "done"
echo "The daemon keeps running at $TESTPOOL_URL (pid ${daemon_pid:-?}, log $log)."
echo "Try: $tp template list    |  curl -s $TESTPOOL_URL/v1/templates/app"
echo "Stop it with: kill ${daemon_pid:-<pid>}   (it stops its PostgreSQL cleanly)"
