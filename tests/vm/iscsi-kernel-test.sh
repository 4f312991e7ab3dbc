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
source "$here/lib.sh" # sets repo, and cache and timeout_s from the environment
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

if [[ "$mode" == tgt ]]; then
  command -v tgtd >/dev/null || skip "tgtd is missing (apt-get install -y tgt)"
elif [[ ! -x "$cairnd" || ! -x "$cairn" ]]; then
  echo "FAIL: '$cairnd' or '$cairn' is not executable" >&2
  exit 1
fi
vm_prepare_image

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
  vm_keep_logs
}
trap cleanup EXIT

source "$repo/tests/conformance/tgt.sh"

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
  if grep -aqE "$vm_sanitizer_report" "$work/server.log"; then
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

# Boots the guest once with accelerator $1 against the two targets.
boot() {
  local accel="$1"
  local append="console=ttyS0 panic=-1 cairn.test=iscsi cairn.host=10.0.2.2"
  append+=" cairn.port=$iscsi_port cairn.volume=$iqn1 cairn.size=$size1"
  append+=" cairn.chap=$chap_cred cairn.volume2=$iqn2 cairn.size2=$size2"
  append+=" cairn.mutual=$mutual_cred"
  [[ "$mode" == tgt ]] && append+=" cairn.static=1"
  vm_qemu "$accel" "$append"
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
  vm_check_result iscsi
  [[ "$mode" == tgt ]] || stop_cairn
  grep -a "cairn-vm:" "$work/guest.log" | tail -n 3 >&2
  awk -v s="$start" -v e="$end" -v a="$accel" -v m="$mode" 'BEGIN {
    printf "PASS: kernel iSCSI initiator test against %s (guest run %.1f s, %s)\n", m, e - s, a }'
}

main
