#!/usr/bin/env bash
# Kernel NBD client test (issue 2, M4): boots Debian's kernel under qemu with a busybox initramfs
# (build-image.sh) whose init (guest-init.sh) attaches a cairn volume as /dev/nbd0 with
# nbd-client, puts ext4 on it, writes files, disconnects, reconnects, verifies the files, and runs
# fio --verify on the raw device.
#
#   nbd-kernel-test.sh [--cache DIR] [--timeout SECONDS] CAIRND
#   nbd-kernel-test.sh [--cache DIR] [--timeout SECONDS] --nbdkit    (develops the harness only)
#
# Starts CAIRND with a fresh data directory, free ports and a 256 MiB demo volume, runs the guest
# with its serial console captured to a log, and exits 0 only when the guest prints its PASS line
# and cairnd then stops cleanly. On failure prints the tails of the guest and cairnd logs. Exits 77
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
readonly volume=vmtest
readonly size_bytes=$((256 * 1024 * 1024))

usage() {
  echo "usage: nbd-kernel-test.sh [--cache DIR] [--timeout SECONDS] CAIRND|--nbdkit" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cache) cache="${2:?}" && shift 2 ;;
    --timeout) timeout_s="${2:?}" && shift 2 ;;
    --nbdkit) server=nbdkit && shift ;;
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
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  # The logs of the last run stay next to the image for inspection.
  mkdir -p "$cache/logs"
  cp "$work"/*.log "$cache/logs/" 2>/dev/null || true
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
  # A sanitizer report is more useful from its start than from its tail.
  if grep -aqE "ERROR: [A-Za-z]+Sanitizer|runtime error:" "$work/server.log" 2>/dev/null; then
    echo "---- server log (sanitizer report) ----" >&2
    grep -aE -m1 -A40 "ERROR: [A-Za-z]+Sanitizer|runtime error:" "$work/server.log" >&2
  else
    echo "---- server log (tail) ----" >&2
    tail -n 40 "$work/server.log" >&2 2>/dev/null || true
  fi
}

fail() {
  echo "FAIL: $*" >&2
  show_logs
  echo "full logs: $cache/logs/" >&2
  exit 1
}

start_server() {
  local port="$1"
  if [[ "$server" == nbdkit ]]; then
    nbdkit -f -i 127.0.0.1 -p "$port" memory "$size_bytes" \
      >"$work/server.log" 2>&1 &
  else
    "$server" --set node.data_dir="$work/data" --set nbd.address=127.0.0.1 \
      --set nbd.port="$port" --set admin.port="$(free_port)" \
      --demo-volume "$volume:$size_bytes" >"$work/server.log" 2>&1 &
  fi
  server_pid=$!
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited before listening"
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
    sleep 0.1
  done
  fail "the server does not listen on port $port after 30 s"
}

stop_server() {
  kill -TERM "$server_pid"
  local rc=0 i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && fail "the server did not stop within 30 s of SIGTERM"
  wait "$server_pid" || rc=$?
  server_pid=""
  [[ $rc -eq 0 ]] ||
    fail "the guest passed, but the server exited with status $rc after SIGTERM"
}

# Boots the guest once with the given accelerator ("kvm" or "tcg"); the serial console goes to
# $work/guest.log. Returns qemu's status (124 or 137 on timeout).
boot() {
  local accel="$1" port="$2" limit_s="$3"
  local kernel="$cache/vmlinux"
  [[ -f "$kernel" ]] || kernel="$cache/vmlinuz"
  local append="console=ttyS0 panic=-1 cairn.test=nbd cairn.host=10.0.2.2"
  append+=" cairn.port=$port cairn.volume=$volume cairn.size=$size_bytes"
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
  local port="$1" rc=0
  local kvm_verdict="$cache/kvm-broken" host_id
  host_id="$(uname -r) $(qemu-system-x86_64 --version | head -n1)"
  if [[ -r /dev/kvm && -w /dev/kvm && "${CAIRN_VM_ACCEL:-auto}" != tcg ]] &&
    [[ "$(cat "$kvm_verdict" 2>/dev/null)" != "$host_id" ]]; then
    boot kvm "$port" "$timeout_s" &
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
  boot tcg "$port" "$timeout_s" || rc=$?
  check_qemu_status "$rc"
}

check_qemu_status() {
  local rc="$1"
  [[ $rc -eq 124 || $rc -eq 137 ]] && fail "the guest did not finish within $timeout_s s"
  [[ $rc -eq 0 ]] || fail "qemu exited with status $rc"
}

main() {
  local port start end
  port="$(free_port)"
  start_server "$port"
  echo "server ($server) listening on 127.0.0.1:$port; booting the guest" >&2
  start=$(date +%s.%N)
  run_guest "$port"
  end=$(date +%s.%N)
  # The guest's own result line; the kernel command line never contains it.
  if ! grep -aq "CAIRN-VM-RESULT: PASS nbd" "$work/guest.log"; then
    local why
    why="$(grep -a "CAIRN-VM-RESULT:" "$work/guest.log" | tail -n1 || true)"
    fail "the guest did not pass: ${why:-no result line}"
  fi
  stop_server
  grep -a "cairn-vm:" "$work/guest.log" | tail -n 3 >&2
  awk -v s="$start" -v e="$end" -v a="$accel" \
    'BEGIN { printf "PASS: kernel NBD client test (guest run %.1f s, %s)\n", e - s, a }'
}

main
