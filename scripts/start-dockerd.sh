#!/usr/bin/env bash
# Starts testpool's own Docker engine (Debian's dockerd, installed by scripts/install-deps.sh), or
# reuses it when it already runs, and prints its socket path on stdout (progress goes to stderr):
#
#   export DOCKER_HOST=unix://$(./scripts/start-dockerd.sh)
#
# The engine is separate from any system docker: its own data root, exec root, socket and pid
# file, no iptables rules and no default bridge (containers use host networking). dockerd starts
# its own containerd under the exec root. Run as root. Exits non-zero, with the tail of the
# engine's log, when the engine cannot be started.
#
# Settings (environment):
#   TESTPOOL_DOCKERD_TIMEOUT         seconds to wait for the engine to answer /_ping (default 60)
#   TESTPOOL_DOCKER_STORAGE_DRIVER   force a storage driver (default: overlay2, vfs if the kernel
#                                    cannot mount overlayfs on the data root)
set -euo pipefail

sock=/run/testpool-docker.sock
pidfile=/run/testpool-docker.pid
data_root=/var/lib/testpool-docker
exec_root=/run/testpool-docker
log=/var/log/testpool-dockerd.log
timeout_s=${TESTPOOL_DOCKERD_TIMEOUT:-60}

say() { echo "start-dockerd: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
log_tail() {
  if [ -f "$log" ]; then
    # The last attempt's lines, less containerd's gRPC chatter that hides the actual error.
    say "last lines of $log (gRPC lines left out):"
    awk '/^==== start-dockerd.sh/ { n = 0 } { lines[n++] = $0 } END { for (i = 0; i < n; i++) print lines[i] }' "$log" |
      grep -v 'module=grpc' | tail -n 25 | sed 's/^/  | /' >&2
  fi
}
ping_ok() { [ "$(curl -s --max-time 2 --unix-socket "$sock" http://localhost/_ping 2>/dev/null)" = "OK" ]; }
running_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  # A zombie has an empty cmdline, so it does not count as running.
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa dockerd "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (dockerd needs it): sudo $0"
command -v dockerd >/dev/null || die "dockerd not found: run scripts/install-deps.sh (Debian's docker.io)"
command -v containerd >/dev/null || die "containerd not found: run scripts/install-deps.sh (docker.io depends on it)"
command -v curl >/dev/null || die "curl not found: run scripts/install-deps.sh"

# Waits until the engine answers /_ping, reporting progress; fails if `pid` exits or time runs out.
wait_ready() {
  local pid=$1 start=$SECONDS last=$SECONDS
  until ping_ok; do
    if ! kill -0 "$pid" 2>/dev/null && ! running_pid >/dev/null; then
      say "dockerd (pid $pid) exited before answering on $sock"
      log_tail
      exit 1
    fi
    if (( SECONDS - start >= timeout_s )); then
      say "dockerd (pid $pid) did not answer GET /_ping on $sock within ${timeout_s} s"
      log_tail
      exit 1
    fi
    if (( SECONDS - last >= 5 )); then
      say "waiting for dockerd (pid $pid) to answer on $sock ($(( SECONDS - start )) s)"
      last=$SECONDS
    fi
    sleep 0.2
  done
}

# Already running (a second call, or an earlier test run): reuse it.
if pid=$(running_pid); then
  wait_ready "$pid"
  say "reusing the running dockerd (pid $pid)"
  echo "$sock"
  exit 0
fi
if ping_ok; then
  # Someone else's engine answers on our socket (no pid file of ours): use it, do not start another.
  say "an engine already answers on $sock (no live pid in $pidfile); reusing it"
  echo "$sock"
  exit 0
fi

mkdir -p "$data_root" "$exec_root" "$(dirname "$log")"

# overlay2 needs the kernel's overlayfs and an upper directory on a file system that supports it
# (not overlayfs itself, not some network file systems). Try a real mount on the data root.
overlay_works() {
  local d
  d=$(mktemp -d "$data_root/.overlay-probe.XXXXXX") || return 1
  mkdir -p "$d/lower" "$d/upper" "$d/work" "$d/merged"
  local ok=1
  if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" 2>/dev/null; then
    umount "$d/merged" && ok=0
  fi
  rm -rf "$d"
  return $ok
}
driver=${TESTPOOL_DOCKER_STORAGE_DRIVER:-}
if [ -z "$driver" ]; then
  if overlay_works; then
    driver=overlay2
  else
    driver=vfs
    say "WARNING: overlayfs cannot be mounted on $data_root ($(stat -f -c %T "$data_root") file system;" \
        "overlay in /proc/filesystems: $(grep -qw overlay /proc/filesystems && echo yes || echo no))."
    say "WARNING: falling back to the vfs storage driver: every image layer is a full copy (slow, large)."
  fi
fi

# Leftovers of a dockerd that died (SIGKILL, a crash): its pid may still exist as an unreaped
# zombie, which dockerd's own pid-file check takes for a running daemon.
if [ -f "$pidfile" ]; then
  say "removing the stale $pidfile (pid $(cat "$pidfile" 2>/dev/null || true) is not a live dockerd)"
  rm -f "$pidfile"
fi
rm -f "$sock"
say "starting dockerd (storage driver $driver, data root $data_root, log $log)"
echo "==== start-dockerd.sh $(date -u +%FT%TZ) storage-driver=$driver" >>"$log"
setsid dockerd \
  --storage-driver "$driver" \
  --iptables=false --bridge=none \
  --data-root "$data_root" \
  --exec-root "$exec_root" \
  --host "unix://$sock" \
  --pidfile "$pidfile" \
  </dev/null >>"$log" 2>&1 &
pid=$!
wait_ready "$pid"
pid=$(running_pid) || pid=$!
say "dockerd ready (pid $pid, $(curl -s --max-time 2 --unix-socket "$sock" http://localhost/version |
  sed -n 's/.*"ApiVersion":"\([^"]*\)".*/API \1/p'))"
echo "$sock"
