#!/usr/bin/env bash
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
repo="$(cd "$here/../.." && pwd)"
cache="${CAIRN_VM_CACHE:-$repo/build/vm-cache}"
timeout_s="${CAIRN_VM_TIMEOUT:-300}"
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

skip() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAIL: $* (a skip is a failure under CI=true)" >&2
    exit 1
  fi
  echo "SKIPPED: $*" >&2
  exit 77
}

command -v qemu-system-x86_64 >/dev/null ||
  skip "qemu-system-x86_64 is missing (apt-get install -y qemu-system-x86)"
if [[ "$server" == nbdkit ]]; then
  command -v nbdkit >/dev/null || skip "nbdkit is missing"
elif [[ ! -x "$server" ]]; then
  echo "FAIL: cairnd '$server' is not executable" >&2
  exit 1
fi

rc=0
"$here/build-image.sh" "$cache" || rc=$?
if [[ $rc -eq 77 ]]; then
  skip "the guest image cannot be built (see above)"
elif [[ $rc -ne 0 ]]; then
  echo "FAIL: build-image.sh exited $rc" >&2
  exit 1
fi

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
  # The logs of the last run stay next to the image for inspection.
  mkdir -p "$logdir"
  rm -f "$logdir"/*.log
  cp "$work"/*.log "$logdir/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); \
print(s.getsockname()[1])' 2>/dev/null && return
  # Without python: a random high port that nothing listens on.
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] && echo "$p" && return
  done
}

show_logs() {
  echo "---- guest log (tail) ----" >&2
  tail -n 80 "$work/guest.log" >&2 2>/dev/null || true
  local log
  for log in "$work"/server*.log; do
    [[ -f "$log" ]] || continue
    # A sanitizer report is more useful from its start than from its tail.
    if grep -aqE "ERROR: [A-Za-z]+Sanitizer|runtime error:" "$log"; then
      echo "---- $(basename "$log") (sanitizer report) ----" >&2
      grep -aE -m1 -A40 "ERROR: [A-Za-z]+Sanitizer|runtime error:" "$log" >&2
    else
      echo "---- $(basename "$log") (tail) ----" >&2
      tail -n 40 "$log" >&2
    fi
  done
}

fail() {
  echo "FAIL: $*" >&2
  show_logs
  echo "full logs: $logdir/" >&2
  exit 1
}

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

# Boots the guest once with the given accelerator ("kvm" or "tcg"); the serial console goes to
# $work/guest.log. Returns qemu's status (124 or 137 on timeout).
boot() {
  local accel="$1" port="$2" limit_s="$3" port2="${4:-}"
  local kernel="$cache/vmlinux"
  [[ -f "$kernel" ]] || kernel="$cache/vmlinuz"
  local append="console=ttyS0 panic=-1 cairn.test=nbd cairn.host=10.0.2.2"
  append+=" cairn.port=$port cairn.volume=$volume cairn.size=$size_bytes"
  [[ -z "$port2" ]] || append+=" cairn.port2=$port2"
  timeout -k 10 "$limit_s" qemu-system-x86_64 -accel "$accel" -m 1024 -smp 1 \
    -kernel "$kernel" -initrd "$cache/initramfs.cpio" -append "$append" \
    -nographic -vga none -no-reboot -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,romfile= \
    </dev/null >"$work/guest.log" 2>&1
}

# Nested KVM can accept a guest and then never run it (seen on this project's machines), so a
# KVM boot that prints no kernel banner within 10 s falls back to software emulation, and that
# verdict is remembered in the cache for this host kernel and qemu. CAIRN_VM_ACCEL=tcg skips KVM.
accel=""
run_guest() {
  local port="$1" port2="${2:-}" rc=0
  local kvm_verdict="$cache/kvm-broken" host_id
  host_id="$(uname -r) $(qemu-system-x86_64 --version | head -n1)"
  if [[ -r /dev/kvm && -w /dev/kvm && "${CAIRN_VM_ACCEL:-auto}" != tcg ]] &&
    [[ "$(cat "$kvm_verdict" 2>/dev/null)" != "$host_id" ]]; then
    boot kvm "$port" "$timeout_s" "$port2" &
    local qemu=$! i
    for ((i = 0; i < 100; i++)); do
      grep -aq "Linux version" "$work/guest.log" 2>/dev/null && break
      kill -0 "$qemu" 2>/dev/null || break
      sleep 0.1
    done
    if grep -aq "Linux version" "$work/guest.log" 2>/dev/null; then
      accel=kvm
      wait "$qemu" || rc=$?
      check_qemu_status "$rc"
      return
    fi
    kill -TERM "$qemu" 2>/dev/null || true
    wait "$qemu" || true
    cp "$work/guest.log" "$work/guest-kvm.log"
    echo "$host_id" >"$kvm_verdict"
    echo "KVM did not boot the guest within 10 s; using software emulation from now on" \
      "(delete $kvm_verdict to retry KVM)" >&2
  fi
  accel=tcg
  boot tcg "$port" "$timeout_s" "$port2" || rc=$?
  check_qemu_status "$rc"
}

check_qemu_status() {
  local rc="$1"
  [[ $rc -eq 124 || $rc -eq 137 ]] && fail "the guest did not finish within $timeout_s s"
  [[ $rc -eq 0 ]] || fail "qemu exited with status $rc"
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
  # The guest's own result line; the kernel command line never contains it.
  if ! grep -aq "CAIRN-VM-RESULT: PASS nbd" "$work/guest.log"; then
    local why
    why="$(grep -a "CAIRN-VM-RESULT:" "$work/guest.log" | tail -n1 || true)"
    fail "the guest did not pass: ${why:-no result line}"
  fi
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
