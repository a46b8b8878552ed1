#!/usr/bin/env bash
# Installs what testpool needs to build, test and run, from Debian 12's own packages (the
# machine's configured apt sources; no other source). Installs only what is missing. Run as root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libpq-dev libboost-dev libboost-program-options-dev libboost-filesystem-dev
  libcpp-httplib-dev nlohmann-json3-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # scripts/fuzz.sh: clang and its libFuzzer + sanitizer runtimes (only recommended by clang-14)
  clang libclang-rt-14-dev
  postgresql-15 postgresql-client-15 postgresql-contrib
  python3 python3-psycopg curl procps
  # the pytest plugin (clients/python) and its tests: an offline venv install, xdist, a real Redis
  python3-venv python3-pip python3-setuptools python3-pytest python3-pytest-xdist python3-redis redis-server
  docker.io busybox-static debootstrap
  # docker-compose.yml and its test (scripts/compose-test.sh); Debian's 1.29, which reads the
  # Compose Specification.
  docker-compose
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
# testpool runs its own PostgreSQL; keep the package from creating and starting a system cluster.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/testpool.conf
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
