#!/usr/bin/env bash
# Runs the purchase suite twice with the same number of xdist workers and prints failures and
# wall time for both:
#   naive:    every worker shares one database holding the golden data (how a team without
#             testpool runs it): tests collide on the last units in stock;
#   testpool: each worker leases its own database (pytest-testpool), the golden data is a
#             checkpoint, every test starts from it.
# Needs a running daemon ($TESTPOOL_URL, default http://127.0.0.1:7432), the `testpool` binary
# ($TESTPOOL_BIN or on PATH), psql, and a python with pytest, pytest-xdist, psycopg 3 and the
# plugin ($PYTHON; e.g. a venv made by `python3 -m venv --system-site-packages` with
# `pip install --no-index --no-build-isolation clients/python`).
#
# usage: run.sh [WORKERS]   (default 20). Exit status: 1 when the testpool run had a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
workers=${1:-20}
python=${PYTHON:-python3}
testpool=${TESTPOOL_BIN:-testpool}
export TESTPOOL_URL=${TESTPOOL_URL:-http://127.0.0.1:7432}
template=shop_pytest
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${naive_lease:-}" ] && "$testpool" release "$naive_lease" >/dev/null 2>&1 || true' EXIT

# The testpool run's template (built once per schema hash): rollback mode by default, so a test's
# reset is a savepoint rollback through testpool's wire proxy ($RECYCLE=clone re-clones instead).
"$testpool" template create "$template" --migrations "$here/schema" --recycle "${RECYCLE:-rollback}" \
  --min-ready "$workers" --max "$((workers + 2))" >/dev/null
# The naive run's shared database: a plain database of the same schema (a clone-mode lease reaches
# the server directly), golden data loaded once, before the clock starts.
"$testpool" template create "${template}_shared" --migrations "$here/schema" --min-ready 1 --max 2 >/dev/null
naive=$("$testpool" lease "${template}_shared" --ttl 1800 --holder "shop-pytest naive run" --json)
naive_lease=$("$python" -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$naive")
naive_dsn=$("$python" -c 'import json,sys; print(json.load(sys.stdin)["dsn"])' <<<"$naive")
psql -q -v ON_ERROR_STOP=1 "$naive_dsn" -f "$here/golden.sql"

# Runs pytest; prints "<failed> <passed> <seconds>".
run() {
  local junit=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$here" && "$python" -m pytest -q -p no:cacheprovider -n "$workers" --junitxml "$junit" "$@" >"$junit.log" 2>&1) || true
  t1=$(date +%s.%N)
  "$python" - "$junit" "$t0" "$t1" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
tests, failed = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
print(failed, tests - failed - int(suite.get("skipped", 0)), f"{float(sys.argv[3]) - float(sys.argv[2]):.2f}")
PY
}

read -r naive_failed naive_passed naive_s < <(SHOP_NAIVE_DSN="$naive_dsn" run "$work/naive.xml" -p no:testpool)
read -r tp_failed tp_passed tp_s < <(run "$work/testpool.xml" --testpool-template "$template")
if [ "$tp_failed" != 0 ]; then tail -40 "$work/testpool.xml.log"; fi

total=$((naive_failed + naive_passed))
printf 'purchase suite, %d tests, %d workers\n' "$total" "$workers"
printf '%-10s %8s %8s %10s %9s\n' run failed passed "fail rate" "wall s"
printf '%-10s %8d %8d %9.1f%% %9.2f\n' naive "$naive_failed" "$naive_passed" \
  "$("$python" -c "print(100 * $naive_failed / max($total, 1))")" "$naive_s"
printf '%-10s %8d %8d %9.1f%% %9.2f\n' testpool "$tp_failed" "$tp_passed" \
  "$("$python" -c "print(100 * $tp_failed / max($total, 1))")" "$tp_s"
printf 'testpool wall time = %sx the naive run (target <= 1.05x); failures %s (target 0)\n' \
  "$("$python" -c "print(f'{$tp_s / $naive_s:.2f}')")" "$tp_failed"
[ "$tp_failed" = 0 ]
