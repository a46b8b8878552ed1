#!/usr/bin/env bash
# examples/gtest built the two ways another project uses the client: against an installed package
# config (clients/cpp built on its own and installed into a temporary prefix) and through
# add_subdirectory. Each example binary then runs against a port where no daemon listens and must
# fail at the Environment's SetUp, naming the URL. Usage: example_build_test.sh SOURCE_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/testpool-example-XXXXXX)
trap 'rm -rf "$work"' EXIT
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

cmake -S "$src/clients/cpp" -B "$work/client" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build "$work/client" -j2 >/dev/null
cmake --install "$work/client" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/lib/cmake/testpoolClient/testpoolClientConfig.cmake" || \
  test -f "$work/prefix/lib64/cmake/testpoolClient/testpoolClientConfig.cmake"

cmake -S "$src/examples/gtest" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" >/dev/null
cmake --build "$work/installed" -j2 >/dev/null
cmake -S "$src/examples/gtest" -B "$work/subdir" -DTESTPOOL_CLIENT_SOURCE_DIR="$src/clients/cpp" "${launcher[@]}" >/dev/null
cmake --build "$work/subdir" -j2 >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for b in installed subdir; do
  if TESTPOOL_URL="http://127.0.0.1:$port" "$work/$b/shop_test" >"$work/$b.out" 2>&1; then
    echo "$b: shop_test passed without a daemon"; cat "$work/$b.out"; exit 1
  fi
  grep -q "cannot reach the testpool daemon at http://127.0.0.1:$port" "$work/$b.out" || { cat "$work/$b.out"; exit 1; }
done
echo "example built and run both ways"
