#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Kernel NBD client test (issue 2, M4): boots Debian's kernel under qemu with a busybox initramfs
# (build-image.sh) whose init (guest-init.sh) attaches a cairn volume as /dev/nbd0 with
# nbd-client, puts ext4 on it, writes files, disconnects, reconnects, verifies the files, and runs
# fio --verify on the raw device.
#
#   nbd-kernel-test.sh [--cache DIR] [--timeout SECONDS] [--restart] CAIRND
#   nbd-kernel-test.sh [--cache DIR] [--timeout SECONDS] --nbdkit    (develops the harness only)
#
# With --restart, the server is killed with SIGKILL while the guest is disconnected and started
# again on the same data directory, so the files the guest verifies after reconnecting must have
# survived a crash of the daemon (issue 2: attach, mkfs, kill, restart, find every flushed byte).
#
# Starts CAIRND with a fresh data directory, free ports and a 256 MiB demo volume, runs the guest
# with its serial console captured to a log, and exits 0 only when the guest prints its PASS line
# and cairnd then stops cleanly. On failure prints the tails of the guest and cairnd logs; the
# logs of the last run stay in <cache>/logs/nbd (or nbd-restart). Exits 77
# ("SKIPPED: ...") when qemu or a package the image needs is missing; under CI=true that is a
# failure instead, because CI installs every package.
#
# Environment: CAIRN_VM_CACHE (image cache, default <repo>/build/vm-cache), CAIRN_VM_TIMEOUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh" # sets repo, and cache and timeout_s from the environment
server=""
restart=0
readonly volume=vmtest
readonly size_bytes=$((256 * 1024 * 1024))

usage() {
  echo "usage: nbd-kernel-test.sh [--cache DIR] [--timeout SECONDS] [--restart]" \
    "CAIRND|--nbdkit" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cache) cache="${2:?}" && shift 2 ;;
    --timeout) timeout_s="${2:?}" && shift 2 ;;
    --nbdkit) server=nbdkit && shift ;;
    --restart) restart=1 && shift ;;
    -*) usage ;;
    *) server="$1" && shift ;;
  esac
done
[[ -n "$server" ]] || usage

if [[ "$server" == nbdkit ]]; then
  command -v nbdkit >/dev/null || skip "nbdkit is missing"
elif [[ ! -x "$server" ]]; then
  echo "FAIL: cairnd '$server' is not executable" >&2
  exit 1
fi
vm_prepare_image

work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-vm.XXXXXX")"
logdir="$cache/logs/nbd$([[ $restart -eq 1 ]] && echo -restart || true)"
watcher_pid=""
cleanup() {
  if [[ -n "$watcher_pid" ]]; then
    kill "$watcher_pid" 2>/dev/null || true
    wait "$watcher_pid" 2>/dev/null || true
  fi
  if [[ -f "$work/server.pid" && ! -f "$work/server.rc" ]]; then
    kill -KILL "$(cat "$work/server.pid")" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [[ -f "$work/server.rc" ]] && break
      sleep 0.1
    done
  fi
  vm_keep_logs
}
trap cleanup EXIT

# Starts the server in the background on $1 with its log in $work/$2. The server's pid goes to
# $work/server.pid and, when it exits, its status to $work/server.rc: the server may be
# restarted by the restart watcher (another subshell), so `wait` cannot be used on it.
start_server() {
  local port="$1" log="$work/$2"
  rm -f "$work/server.rc" "$work/server.pid"
  (
    if [[ "$server" == nbdkit ]]; then
      nbdkit -f -i 127.0.0.1 -p "$port" memory "$size_bytes" >"$log" 2>&1 &
    else
      "$server" --set node.data_dir="$work/data" --set nbd.address=127.0.0.1 \
        --set nbd.port="$port" --set admin.port="$(free_port)" --set iscsi.port="$(free_port)" \
        --demo-volume "$volume:$size_bytes" >"$log" 2>&1 &
    fi
    echo $! >"$work/server.pid"
    rc=0
    wait $! 2>/dev/null || rc=$?
    echo "$rc" >"$work/server.rc"
  ) &
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -f "$work/server.rc" ]] && fail "the server exited before listening"
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
    sleep 0.1
  done
  fail "the server does not listen on port $port after 30 s"
}

# Sends signal $1 to the server and waits up to 30 s for it to exit; prints its exit status.
signal_server() {
  local signal="$1" i
  kill "-$signal" "$(cat "$work/server.pid")" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    [[ -f "$work/server.rc" ]] && cat "$work/server.rc" && return 0
    sleep 0.1
  done
  return 1
}

stop_server() {
  local rc
  rc="$(signal_server TERM)" || fail "the server did not stop within 30 s of SIGTERM"
  [[ "$rc" == 0 ]] ||
    fail "the guest passed, but the server exited with status $rc after SIGTERM"
}

# The restart mode: when the guest has written its files, unmounted and disconnected, it prints
# CAIRN-VM-RESTART and keeps trying to connect to the second port. This watcher then kills the
# server with SIGKILL (a crash: only what was flushed may survive) and starts it again on the
# second port with the same data directory. Nothing listens on the second port before, so the
# guest cannot reach the old server by mistake.
restart_watcher() {
  local port2="$1" i
  for ((i = 0; i < timeout_s * 10; i++)); do
    if grep -aq "CAIRN-VM-RESTART" "$work/guest.log" 2>/dev/null; then
      echo "guest disconnected; kill -9 the server and restart it on port $port2" >&2
      signal_server KILL >/dev/null || {
        echo "the server did not die of SIGKILL" >&2
        return 1
      }
      start_server "$port2" server-restarted.log
      return 0
    fi
    sleep 0.1
  done
}

# Boots the guest once with accelerator $1 against the server on port $2 (and, in the restart
# mode, port $3 after the restart).
boot() {
  local accel="$1" port="$2" port2="${3:-}"
  local append="console=ttyS0 panic=-1 cairn.test=nbd cairn.host=10.0.2.2"
  append+=" cairn.port=$port cairn.volume=$volume cairn.size=$size_bytes"
  [[ -z "$port2" ]] || append+=" cairn.port2=$port2"
  vm_qemu "$accel" "$append"
}

main() {
  local port port2="" start end
  port="$(free_port)"
  start_server "$port" server.log
  if [[ $restart -eq 1 ]]; then
    port2="$(free_port)"
    restart_watcher "$port2" &
    watcher_pid=$!
  fi
  echo "server ($server) listening on 127.0.0.1:$port; booting the guest" >&2
  start=$(date +%s.%N)
  run_guest "$port" "$port2"
  end=$(date +%s.%N)
  vm_check_result nbd
  if [[ $restart -eq 1 ]]; then
    wait "$watcher_pid" || fail "the restart watcher failed"
    watcher_pid=""
    [[ -f "$work/server-restarted.log" ]] || fail "the server was never restarted"
  fi
  stop_server
  grep -a "cairn-vm:" "$work/guest.log" | tail -n 3 >&2
  awk -v s="$start" -v e="$end" -v a="$accel" -v r="$restart" 'BEGIN {
    printf "PASS: kernel NBD client test%s (guest run %.1f s, %s)\n",
      r ? " with a kill -9 and restart" : "", e - s, a }'
}

main
