#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Kernel iSCSI initiator test (issue 4, "Kernel initiator"): boots Debian's kernel under qemu with
# the busybox initramfs of build-image.sh, whose init (guest-init.sh, cairn.test=iscsi) starts
# iscsid and, with open-iscsi's iscsiadm:
#   - discovers the targets (SendTargets must advertise the portal the guest can reach);
#   - is refused without CHAP credentials and with a wrong CHAP secret;
#   - logs in with CHAP -> /dev/sdX -> mkfs.ext4 -> mount -> write files -> logout -> login ->
#     verify the files -> fio --verify on the raw device -> logout;
#   - on a second target with mutual CHAP: refuses a target that proves the wrong secret, then
#     logs in with CRC32C header and data digests and runs fio --verify.
#
#   iscsi-kernel-test.sh [--cache DIR] [--timeout SECONDS] CAIRND CAIRN
#   iscsi-kernel-test.sh [--cache DIR] [--timeout SECONDS] --tgt   (develops the harness only)
#
# cairnd runs with a fresh data directory on free ports and --set iscsi.portal=10.0.2.2:PORT (the
# host as qemu's user network shows it to the guest). Its volumes get their access rules with
# `cairn volume access`: vmiscsi (256 MiB, 512-byte blocks) CHAP and an initiator allow-list,
# vmiscsi2 (64 MiB, 4096-byte blocks) CHAP and mutual CHAP. Exits 0 only when the guest prints
# its PASS line and cairnd then stops cleanly; on failure prints the tails of the guest and
# server logs, which stay in <cache>/logs/iscsi. Exits 77 ("SKIPPED: ...") when qemu or a
# package the image needs is missing; under CI=true that is a failure.
#
# Environment: CAIRN_VM_CACHE (image cache, default <repo>/build/vm-cache), CAIRN_VM_TIMEOUT,
# CAIRN_VM_ACCEL=tcg (never try KVM).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${CAIRN_VM_CACHE:-$repo/build/vm-cache}"
timeout_s="${CAIRN_VM_TIMEOUT:-300}"
mode=""
cairnd=""
cairn=""
readonly size1=$((256 * 1024 * 1024))
readonly size2=$((64 * 1024 * 1024))
readonly guest_iqn=iqn.2026-01.org.cairn:vm-guest # build-image.sh's initiatorname.iscsi
readonly chap_cred=vmuser:cairn-secret-01
readonly mutual_cred=cairn-target:cairn-mutual-02

usage() {
  echo "usage: iscsi-kernel-test.sh [--cache DIR] [--timeout SECONDS] CAIRND CAIRN|--tgt" >&2
  exit 2
}

args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cache) cache="${2:?}" && shift 2 ;;
    --timeout) timeout_s="${2:?}" && shift 2 ;;
    --tgt) mode=tgt && shift ;;
    -*) usage ;;
    *) args+=("$1") && shift ;;
  esac
done
if [[ -z "$mode" ]]; then
  [[ ${#args[@]} -eq 2 ]] || usage
  mode=cairn
  cairnd="${args[0]}"
  cairn="${args[1]}"
fi

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
if [[ "$mode" == tgt ]]; then
  command -v tgtd >/dev/null || skip "tgtd is missing (apt-get install -y tgt)"
elif [[ ! -x "$cairnd" || ! -x "$cairn" ]]; then
  echo "FAIL: '$cairnd' or '$cairn' is not executable" >&2
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

work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-vm-iscsi.XXXXXX")"
logdir="$cache/logs/iscsi"
server_pid=""
cleanup() {
  if [[ "$mode" == tgt ]]; then
    tgt_stop
  elif [[ -n "$server_pid" ]]; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
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
print(s.getsockname()[1])'
}

source "$repo/tests/conformance/tgt.sh"

show_logs() {
  echo "---- guest log (tail) ----" >&2
  tail -n 80 "$work/guest.log" >&2 2>/dev/null || true
  local log
  for log in "$work"/server.log "$work"/tgtd.log; do
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

wait_port() {
  local port="$1" i
  for ((i = 0; i < 300; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    [[ -z "$server_pid" ]] || kill -0 "$server_pid" 2>/dev/null ||
      fail "the server exited during start-up"
    sleep 0.1
  done
  fail "nothing listens on port $port after 30 s"
}

# Sets iscsi_port and iqn1/iqn2, the two targets, with their access rules.
start_cairn() {
  iscsi_port="$(free_port)"
  local admin_port
  admin_port="$(free_port)"
  "$cairnd" --set node.data_dir="$work/data" --set nbd.address=127.0.0.1 \
    --set nbd.port="$(free_port)" --set admin.port="$admin_port" \
    --set iscsi.address=127.0.0.1 --set iscsi.port="$iscsi_port" \
    --set iscsi.portal="10.0.2.2:$iscsi_port" >"$work/server.log" 2>&1 &
  server_pid=$!
  wait_port "$admin_port"
  wait_port "$iscsi_port"
  local cli=("$cairn" --admin "127.0.0.1:$admin_port")
  if ! "${cli[@]}" volume create vmiscsi "$size1" --block-size 512 --chunk-size 4K ||
    ! "${cli[@]}" volume create vmiscsi2 "$size2" --block-size 4096 ||
    ! "${cli[@]}" volume access vmiscsi --chap "$chap_cred" --allow "$guest_iqn" ||
    ! "${cli[@]}" volume access vmiscsi2 --chap "$chap_cred" --mutual-chap "$mutual_cred"; then
    fail "cannot create the volumes and their access rules with the cairn CLI"
  fi
  iqn1=iqn.2026-11.io.cairn:vmiscsi
  iqn2=iqn.2026-11.io.cairn:vmiscsi2
}

stop_cairn() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  [[ $rc -eq 0 ]] || fail "the guest passed, but cairnd exited with status $rc after SIGTERM"
  if grep -aqE "ERROR: [A-Za-z]+Sanitizer|runtime error:" "$work/server.log"; then
    fail "cairnd logged a sanitizer report"
  fi
}

# tgt with the same two targets and accounts (tgt offers digests only when told to). tgt
# advertises its own (loopback) portal in SendTargets, so the guest creates its node records
# itself (cairn.static=1).
start_tgt() {
  tgt_start "$work" || fail "tgtd did not start"
  iscsi_port="$tgt_port"
  truncate -s "$size1" "$work/lun1.img"
  truncate -s "$size2" "$work/lun2.img"
  iqn1=iqn.2026-11.io.tgt:vmiscsi
  iqn2=iqn.2026-11.io.tgt:vmiscsi2
  if ! tgt_lun 1 "$iqn1" "$work/lun1.img" "" ||
    ! tgt_lun 2 "$iqn2" "$work/lun2.img" "" --blocksize 4096 ||
    ! tgt_adm --op new --mode account --user "${chap_cred%%:*}" --password "${chap_cred#*:}" ||
    ! tgt_adm --op new --mode account --user "${mutual_cred%%:*}" \
      --password "${mutual_cred#*:}" ||
    ! tgt_adm --op bind --mode account --tid 1 --user "${chap_cred%%:*}" ||
    ! tgt_adm --op bind --mode account --tid 2 --user "${chap_cred%%:*}" ||
    ! tgt_adm --op bind --mode account --tid 2 --user "${mutual_cred%%:*}" --outgoing ||
    ! tgt_adm --op update --mode target --tid 2 -n HeaderDigest -v CRC32C,None ||
    ! tgt_adm --op update --mode target --tid 2 -n DataDigest -v CRC32C,None; then
    fail "tgtadm could not set up the targets"
  fi
}

# Boots the guest once with the given accelerator ("kvm" or "tcg"); the serial console goes to
# $work/guest.log. Returns qemu's status (124 or 137 on timeout).
boot() {
  local accel="$1"
  local kernel="$cache/vmlinux"
  [[ -f "$kernel" ]] || kernel="$cache/vmlinuz"
  local append="console=ttyS0 panic=-1 cairn.test=iscsi cairn.host=10.0.2.2"
  append+=" cairn.port=$iscsi_port cairn.volume=$iqn1 cairn.size=$size1"
  append+=" cairn.chap=$chap_cred cairn.volume2=$iqn2 cairn.size2=$size2"
  append+=" cairn.mutual=$mutual_cred"
  [[ "$mode" == tgt ]] && append+=" cairn.static=1"
  timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel "$accel" -m 1024 -smp 1 \
    -kernel "$kernel" -initrd "$cache/initramfs.cpio" -append "$append" \
    -nographic -vga none -no-reboot -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,romfile= \
    </dev/null >"$work/guest.log" 2>&1
}

check_qemu_status() {
  local rc="$1"
  [[ $rc -eq 124 || $rc -eq 137 ]] && fail "the guest did not finish within $timeout_s s"
  [[ $rc -eq 0 ]] || fail "qemu exited with status $rc"
}

# As in nbd-kernel-test.sh: a KVM boot that prints no kernel banner within 10 s falls back to
# software emulation, and that verdict is remembered in the cache for this host kernel and qemu.
accel=""
run_guest() {
  local rc=0
  local kvm_verdict="$cache/kvm-broken" host_id
  host_id="$(uname -r) $(qemu-system-x86_64 --version | head -n1)"
  if [[ -r /dev/kvm && -w /dev/kvm && "${CAIRN_VM_ACCEL:-auto}" != tcg ]] &&
    [[ "$(cat "$kvm_verdict" 2>/dev/null)" != "$host_id" ]]; then
    boot kvm &
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
    echo "$host_id" >"$kvm_verdict"
    echo "KVM did not boot the guest within 10 s; using software emulation from now on" \
      "(delete $kvm_verdict to retry KVM)" >&2
  fi
  accel=tcg
  boot tcg || rc=$?
  check_qemu_status "$rc"
}

main() {
  local start end
  if [[ "$mode" == tgt ]]; then
    start_tgt
  else
    start_cairn
  fi
  echo "$mode serves iSCSI on 127.0.0.1:$iscsi_port; booting the guest" >&2
  start=$(date +%s.%N)
  run_guest
  end=$(date +%s.%N)
  # The guest's own result line; the kernel command line never contains it.
  if ! grep -aq "CAIRN-VM-RESULT: PASS iscsi" "$work/guest.log"; then
    local why
    why="$(grep -a "CAIRN-VM-RESULT:" "$work/guest.log" | tail -n1 || true)"
    fail "the guest did not pass: ${why:-no result line}"
  fi
  [[ "$mode" == tgt ]] || stop_cairn
  grep -a "cairn-vm:" "$work/guest.log" | tail -n 3 >&2
  awk -v s="$start" -v e="$end" -v a="$accel" -v m="$mode" 'BEGIN {
    printf "PASS: kernel iSCSI initiator test against %s (guest run %.1f s, %s)\n", m, e - s, a }'
}

main
