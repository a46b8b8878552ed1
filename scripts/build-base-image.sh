#!/usr/bin/env bash
# Builds testpool's PostgreSQL base image (default testpool/base:pg15-bookworm) from Debian's own
# packages, with no container registry: debootstrap a minimal bookworm from the machine's apt
# mirror, install PostgreSQL 15 and the libraries the testpool binary links, trim, `docker import`.
# Prints the image id on stdout; progress (one line per step, with elapsed seconds) goes to stderr.
#
#   export DOCKER_HOST=unix://$(./scripts/start-dockerd.sh)
#   ./scripts/build-base-image.sh
#
# What the Docker backend and docker-compose.yml rely on, checked in every image before it is
# tagged: /bin/sh; initdb, postgres, pg_ctl, pg_isready in /usr/lib/postgresql/15/bin (on PATH);
# a user `postgres` whose home /var/lib/postgresql it owns and can write; a writable /tmp; no
# cluster made by the package; `initdb --locale=C.UTF-8 -E UTF8` working as `postgres`; the
# shared libraries of the testpool daemon. The default user stays root: the daemon picks the user
# of each container.
#
# Caching: the image carries the label testpool.base_inputs, a hash of this script, the package
# list, the mirror and the suite. An image with the current hash is kept as it is; otherwise a
# tarball of the same hash in the cache directory is imported; otherwise the root file system is
# built (a few minutes) and its tarball written to the cache first. Run as root (debootstrap and
# chroot need it). Idempotent.
#
# Settings (environment):
#   TESTPOOL_BASE_IMAGE     image name (default testpool/base:pg15-bookworm)
#   TESTPOOL_IMAGE_CACHE    tarball cache directory (default /var/cache/testpool)
#   TESTPOOL_DEBIAN_MIRROR  Debian mirror (default: the first apt source of the suite on this machine)
#   DOCKER_HOST             the engine (default: testpool's own, unix:///run/testpool-docker.sock)
set -euo pipefail

image=${TESTPOOL_BASE_IMAGE:-testpool/base:pg15-bookworm}
cache_dir=${TESTPOOL_IMAGE_CACHE:-/var/cache/testpool}
export DOCKER_HOST=${DOCKER_HOST:-unix:///run/testpool-docker.sock}
suite=bookworm
pg_major=15
self=$(readlink -f "${BASH_SOURCE[0]}")

# PostgreSQL, and what `testpool serve` needs at run time: the DT_NEEDED libraries of a Release
# build that are not already in a minbase system, mapped to packages with `dpkg -S` (libcrypto and
# libssl are both libssl3; their own dependencies come with them).
packages=(
  postgresql-15 postgresql-client-15
  libpq5 libssl3 libboost-program-options1.74.0 libboost-filesystem1.74.0 libcpp-httplib0.11
)

start_s=$SECONDS
say() { echo "build-base-image: [$(( SECONDS - start_s )) s] $*" >&2; }
die() { echo "build-base-image: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it): sudo $0"
command -v docker >/dev/null || die "docker (the client) not found: run scripts/install-deps.sh"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST (start testpool's: scripts/start-dockerd.sh)"

# The Debian mirror of this machine, read from its apt sources (one-line *.list files and deb822
# *.sources files, in the order apt reads them): the first `deb` source whose suites include
# $suite exactly (so not bookworm-security). Never a hard-coded host: a machine that can only
# reach its own mirror must build from it.
find_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options…] URI SUITE COMPONENT…   (the options may hold spaces inside the brackets)
    awk -v suite="$suite" '
      $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas of "Key: value" lines separated by blank lines; continuation lines start with a space.
    awk -v suite="$suite" '
      function flush() {
        if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ") && uris != "") {
          split(uris, u, " "); print u[1]; found = 1
        }
        types = suites = uris = ""; enabled = "yes"
      }
      BEGIN { enabled = "yes" }
      /^#/ { next }
      /^[ \t]*$/ { flush(); if (found) exit; next }
      /^[ \t]/ { next }
      {
        key = tolower($0); sub(/:.*/, "", key)
        val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types") types = val
        else if (key == "suites") suites = val
        else if (key == "uris") uris = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { if (!found) flush() }' "$f"
  done
}
mirror=${TESTPOOL_DEBIAN_MIRROR:-$(find_mirror | head -n 1)}
mirror=${mirror%/}
[ -n "$mirror" ] || die "no apt source for suite '$suite' in /etc/apt/sources.list{,.d/*.list,.d/*.sources};" \
  "set TESTPOOL_DEBIAN_MIRROR=http://…/debian"
case $mirror in
  http://*) ;;
  # apt in the image must verify the mirror's certificate.
  https://*) packages+=(ca-certificates) ;;
  *) die "mirror '$mirror' is not an http(s) URI debootstrap can use; set TESTPOOL_DEBIAN_MIRROR" ;;
esac

inputs=$( { sha256sum <"$self"; printf '%s\n' "${packages[@]}" "$mirror" "$suite"; } | sha256sum | cut -c1-64)
tarball="$cache_dir/base-$inputs.tar"
say "image $image, inputs ${inputs:0:12} (mirror $mirror, suite $suite, engine $DOCKER_HOST)"

current_inputs=$(docker image inspect -f '{{index .Config.Labels "testpool.base_inputs"}}' "$image" 2>/dev/null || true)
if [ "$current_inputs" = "$inputs" ]; then
  say "base image up to date"
  docker image inspect -f '{{.Id}}' "$image"
  exit 0
fi
if [ -n "$current_inputs" ]; then
  say "the engine's $image was built from other inputs (${current_inputs:0:12}); replacing it"
fi

command -v debootstrap >/dev/null || die "debootstrap not found: run scripts/install-deps.sh"

work=""
cleanup() {
  if [ -n "$work" ] && [ -d "$work" ]; then
    # Nothing is mounted in the chroot; refuse to delete through a mount if something ever is.
    if grep -q " $work/" /proc/mounts; then
      echo "build-base-image: WARNING: mounts left under $work; not deleting it" >&2
    else
      rm -rf "$work"
    fi
  fi
  rm -f "$tarball.tmp.$$"
}
trap cleanup EXIT

# Runs a build step, its output in $work/<name>.log; on failure says which step failed and shows
# the log's tail (and debootstrap's own log, which names the package that broke).
run_step() {
  local name=$1; shift
  local log="$work/$name.log"
  if ! "$@" >"$log" 2>&1; then
    echo "build-base-image: ERROR: step '$name' failed after $(( SECONDS - start_s )) s: $*" >&2
    echo "build-base-image: last lines of its output:" >&2
    tail -n 30 "$log" | sed 's/^/  | /' >&2
    if [ -f "$work/rootfs/debootstrap/debootstrap.log" ]; then
      echo "build-base-image: last lines of debootstrap's own log:" >&2
      tail -n 30 "$work/rootfs/debootstrap/debootstrap.log" | sed 's/^/  | /' >&2
    fi
    exit 1
  fi
}

# The root file system, from scratch.
build_rootfs() {
  local root=$work/rootfs
  say "debootstrap --variant=minbase $suite from $mirror (takes a minute or two)"
  run_step debootstrap debootstrap --variant=minbase "$suite" "$root" "$mirror"
  grep -q "^deb $mirror $suite main" "$root/etc/apt/sources.list" ||
    die "debootstrap left no 'deb $mirror $suite main' in the image's /etc/apt/sources.list"

  # Before any package goes in:
  # - no cluster: the Docker backend runs initdb in each container, as `postgres`, in its own dir;
  # - no services started in the chroot (policy-rc.d, removed again below);
  # - documentation, man pages and translations never unpacked, here nor in images built on this
  #   one (dpkg knows they were left out, so packages stay consistent); copyrights are kept, and
  #   PostgreSQL's own man pages too (postinst scripts register them with update-alternatives);
  # - no locale sources (~17 MB of the `locales` package, which postgresql-15 depends on): the
  #   Docker backend and docker-compose.yml use C.UTF-8, built into glibc; an image that wants
  #   another locale drops /etc/dpkg/dpkg.cfg.d/testpool-trim and reinstalls `locales`;
  # - no LLVM JIT: postgresql-15 depends on libllvm14 (~110 MB) for it; short test queries only
  #   lose by JIT compiling, and without the provider library PostgreSQL simply runs without JIT
  #   (libz3, ~23 MB, is there for LLVM alone).
  mkdir -p "$root/etc/postgresql-common/createcluster.d" "$root/etc/dpkg/dpkg.cfg.d"
  echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.d/testpool.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/testpool-trim" <<'EOF'
# testpool base image: no documentation, man pages, translations, locale sources or LLVM JIT
# (scripts/build-base-image.sh)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/i18n/locales/*
path-exclude=/usr/share/i18n/charmaps/*
path-exclude=/usr/lib/postgresql/*/lib/llvmjit*
path-exclude=/usr/lib/postgresql/*/lib/bitcode/*
path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM-*
path-exclude=/usr/lib/x86_64-linux-gnu/libz3.so*
EOF
  # Name resolution for apt inside the chroot (the host's; removed again below: the engine
  # provides /etc/resolv.conf, /etc/hosts and /etc/hostname to each container).
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"

  say "apt-get install ${packages[*]}"
  run_step apt-update chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get update
  run_step apt-install chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    apt-get install -y --no-install-recommends "${packages[@]}"

  say "trimming (apt lists and caches, logs, docs left by debootstrap, cluster leftovers)"
  run_step apt-clean chroot "$root" apt-get clean
  rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root/etc/hostname"
  rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/debconf/"*-old \
    "$root/var/lib/dpkg/"*-old "$root/var/log/"* "$root/tmp/"* "$root/var/tmp/"* "$root/debootstrap" \
    "$root/run/adduser" \
    "$root/root/".*history "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
  # Installed by debootstrap before the dpkg excludes existed.
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/locale/"* "$root/usr/share/lintian/"*
  # Belt and braces: a cluster made despite createcluster.d would be shared by every container.
  rm -rf "$root/etc/postgresql/$pg_major/main" "$root/var/lib/postgresql/$pg_major"
  : >"$root/etc/machine-id"

  say "writing $tarball ($(du -sh "$root" | cut -f1) unpacked)"
  mkdir -p "$cache_dir"
  run_step tar tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp.$$" .
}

# Imports a tarball as an untagged image, checks the contract in it, and only then tags it, so a
# broken image never carries the name (nor the label that would make the next run skip it).
import_and_check() {
  local tar=$1 id old
  say "docker import $(du -h "$tar" | cut -f1) tarball"
  id=$(docker import \
    --change "ENV PATH=/usr/lib/postgresql/$pg_major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "LABEL testpool.pg_major=$pg_major" \
    --change "LABEL testpool.base_inputs=$inputs" \
    --change 'CMD ["bash"]' \
    --message "testpool base: debootstrap $suite from $mirror + ${packages[*]}" \
    - <"$tar") || die "docker import of $tar failed"

  say "checking the image's contract (docker run --network host)"
  local out
  if ! out=$(docker run --rm --network host "$id" sh -euc '
      for b in initdb postgres pg_ctl pg_isready; do
        test -x /usr/lib/postgresql/'"$pg_major"'/bin/$b || { echo "missing /usr/lib/postgresql/'"$pg_major"'/bin/$b"; exit 1; }
      done
      test "$(command -v initdb)" = /usr/lib/postgresql/'"$pg_major"'/bin/initdb || { echo "initdb is not on PATH"; exit 1; }
      home=$(getent passwd postgres | cut -d: -f6) || { echo "no user postgres"; exit 1; }
      test "$home" = /var/lib/postgresql || { echo "postgres home is $home"; exit 1; }
      test "$(stat -c %U "$home")" = postgres || { echo "$home is not owned by postgres"; exit 1; }
      ! test -e /etc/postgresql/'"$pg_major"'/main || { echo "a cluster config exists"; exit 1; }
      ! test -e /var/lib/postgresql/'"$pg_major"' || { echo "a cluster data dir exists"; exit 1; }
      for lib in libpq.so.5 libssl.so.3 libcrypto.so.3 libboost_program_options.so.1.74.0 \
                 libboost_filesystem.so.1.74.0 libcpp-httplib.so.0.11; do
        ldconfig -p | grep -q "$lib " || { echo "missing $lib (testpool links it)"; exit 1; }
      done
      echo root checks ok' 2>&1); then
    docker rmi "$id" >/dev/null 2>&1 || true
    die "the image breaks the contract: $(echo "$out" | tail -n 5)"
  fi
  if ! out=$(docker run --rm --network host --user postgres "$id" sh -euc '
      touch /tmp/w "$HOME/w" && rm /tmp/w "$HOME/w"
      initdb -D /tmp/pgdata --locale=C.UTF-8 -E UTF8 -U postgres >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
      # Started on a private socket only (host networking: no TCP port taken), answered, stopped.
      pg_ctl -D /tmp/pgdata -l /tmp/pg.log -w -o "-c listen_addresses= -c unix_socket_directories=/tmp" start >/dev/null ||
        { cat /tmp/pg.log; exit 1; }
      pg_isready -q -h /tmp || { echo "pg_isready: not ready"; exit 1; }
      enc=$(psql -h /tmp -U postgres -At -F " " -c "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = current_database()")
      pg_ctl -D /tmp/pgdata -m fast -w stop >/dev/null
      test "$enc" = "UTF8 C.UTF-8" || { echo "postgres database is $enc"; exit 1; }
      echo postgres checks ok' 2>&1); then
    docker rmi "$id" >/dev/null 2>&1 || true
    die "the image breaks the contract (as user postgres): $(echo "$out" | tail -n 8)"
  fi

  old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  docker tag "$id" "$image"
  if [ -n "$old" ] && [ "$old" != "$id" ]; then
    # The previous build, now nameless; kept if a container still uses it.
    if docker rmi "$old" >/dev/null 2>&1; then say "removed the previous image ${old:7:12}"; fi
  fi
  say "tagged $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
  echo "$id"
}

if [ -f "$tarball" ]; then
  say "cached tarball $tarball found; importing it"
  import_and_check "$tarball"
  exit 0
fi

work=$(mktemp -d /var/tmp/testpool-base.XXXXXX)
build_rootfs
# Into the cache only once the image made from it passed its checks.
import_and_check "$tarball.tmp.$$" >"$work/id"
mv "$tarball.tmp.$$" "$tarball"
for stale in "$cache_dir"/base-*.tar; do
  [ "$stale" = "$tarball" ] || [ ! -f "$stale" ] || { rm -f "$stale"; say "removed the stale $stale"; }
done
say "done in $(( SECONDS - start_s )) s"
cat "$work/id"
