#!/usr/bin/env bash
# Runs the pytest plugin's own tests: a venv (with Debian's system packages: pytest, pytest-xdist,
# psycopg, redis) gets the plugin installed offline, then pytest runs tests/ against a daemon it
# starts from $TESTPOOL_BIN. The source tree is copied first, so no build artefacts land in it.
set -euo pipefail
src=${TESTPOOL_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
export TESTPOOL_SOURCE_DIR=$src  # the shop example test finds examples/ there
export TESTPOOL_BIN=${TESTPOOL_BIN:?set TESTPOOL_BIN to the testpool binary}
work=${TESTPOOL_PYTEST_WORK:-$PWD/pytest_plugin}
rm -rf "$work"
mkdir -p "$work"
cp -r "$src/clients/python" "$work/src"
rm -rf "$work/src/build" "$work/src/"*.egg-info
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-index --no-build-isolation --disable-pip-version-check "$work/src"
cd "$work/src"
exec "$work/venv/bin/python" -m pytest -p no:cacheprovider -p no:xdist -q -rfE --basetemp "$work/tmp" tests "$@"
