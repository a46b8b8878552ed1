#!/usr/bin/env bash
# Installs IntegreSQL's JavaScript client (pinned, package.json) from the npm registry into a work
# directory and runs flow.js against a daemon started from $TESTPOOL_BIN.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export TESTPOOL_BIN=${TESTPOOL_BIN:?set TESTPOOL_BIN to the testpool binary}
work=${TESTPOOL_JS_WORK:-$PWD/integresql_js}
mkdir -p "$work"
cp "$here/package.json" "$here/flow.js" "$work/"
cd "$work"
npm install --no-audit --no-fund --silent
exec node flow.js
