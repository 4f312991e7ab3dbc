#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop with qemu's iSCSI block driver (libiscsi, Debian's qemu-block-extra): `qemu-img
# convert` of an image into iscsi://HOST:PORT/IQN/0 and back out must give the same bytes.
#
#   qemu-img-iscsi.sh CAIRND CAIRN
#   qemu-img-iscsi.sh --tgt         (the same against tgt: develops the harness only)
#
# The image mixes random data, zeroed stretches (qemu-img writes those with WRITE SAME or skips
# them) and data that is not aligned to 4 KiB, and is written to a 512-byte-block thin volume and
# to a 4K-native one. After the round trip through iSCSI the volume is also read back over NBD
# with `cairn export` and compared, so both front ends see the same bytes. Exits 77 when a tool
# is missing; under CI=true that is a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
use_tgt=0
if [[ "${1:-}" == "--tgt" ]]; then
  use_tgt=1
elif [[ $# -eq 2 ]]; then
  # Used by tests/system/lib.sh.
  # shellcheck disable=SC2034
  cairnd="$1"
  # shellcheck disable=SC2034
  cairn="$2"
else
  echo "usage: qemu-img-iscsi.sh CAIRND CAIRN | --tgt" >&2
  exit 2
fi

source "$repo/tests/system/lib.sh"
source "$here/tgt.sh"

require qemu-img qemu-utils
require cmp diffutils
# qemu-img lists the protocols its modules provide; iscsi comes from qemu-block-extra.
qemu-img --help 2>/dev/null | grep -qw iscsi ||
  skip "qemu-img has no iscsi driver (Debian package qemu-block-extra)"

readonly size_mib=48

# make_image FILE: $size_mib MiB: random data, zeroed stretches, and a run of odd-sized pieces.
make_image() {
  local f="$1"
  head -c $((size_mib << 20)) /dev/urandom >"$f"
  # 4 MiB of zeros at 8 MiB, 1 MiB at 20 MiB + 512 bytes (not 4 KiB aligned), the last 2 MiB.
  dd if=/dev/zero of="$f" bs=1M seek=8 count=4 conv=notrunc status=none
  dd if=/dev/zero of="$f" bs=512 seek=$(((20 << 11) + 1)) count=2048 conv=notrunc status=none
  dd if=/dev/zero of="$f" bs=1M seek=$((size_mib - 2)) count=2 conv=notrunc status=none
}

# round_trip NAME URL: writes the image to URL and reads it back.
round_trip() {
  local name="$1" url="$2" src="$work/$1.src" out="$work/$1.out"
  make_image "$src"
  qemu-img convert -n -f raw -O raw "$src" "$url" 2>"$work/err" ||
    fail "qemu-img convert into $url failed: $(cat "$work/err")"
  qemu-img convert -f raw -O raw "$url" "$out" 2>"$work/err" ||
    fail "qemu-img convert out of $url failed: $(cat "$work/err")"
  cmp "$src" "$out" || fail "$name: the image read back over iSCSI differs from the one written"
  local info
  info="$(qemu-img info -f raw "$url" 2>&1)" || fail "qemu-img info $url failed: $info"
  grep -q "virtual size: .*($((size_mib << 20)) bytes)" <<<"$info" ||
    fail "$name: qemu-img info reports another size: $info"
  echo "ok: $name: $size_mib MiB into $url and back, identical"
}

work="$(mktemp -d /tmp/cairn-qemu-img-XXXXXX)"
if [[ $use_tgt -eq 1 ]]; then
  require tgtd tgt
  trap 'tgt_stop; rm -rf "$work"' EXIT
  tgt_start "$work" || fail "tgtd did not start"
  truncate -s $((size_mib << 20)) "$work/lun512.img" "$work/lun4k.img"
  tgt_lun 1 iqn.2026-11.io.tgt:q512 "$work/lun512.img" ""
  tgt_lun 2 iqn.2026-11.io.tgt:q4k "$work/lun4k.img" "" --blocksize 4096
  round_trip tgt-512 "iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.tgt:q512/1"
  round_trip tgt-4k "iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.tgt:q4k/1"
  exit 0
fi

start_node
trap 'stop_node; rm -rf "$work"' EXIT
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$iscsi_port") 2>/dev/null && break
  sleep 0.1
done
expect_ok "${C[@]}" volume create qimg512 "${size_mib}M" --block-size 512 --chunk-size 4K
expect_ok "${C[@]}" volume create qimg4k "${size_mib}M" --block-size 4096
for vol in qimg512 qimg4k; do
  round_trip "$vol" "iscsi://127.0.0.1:$iscsi_port/iqn.2026-11.io.cairn:$vol/0"
  # The same bytes over NBD.
  expect_ok "${C[@]}" --quiet export "$vol" "$work/$vol.nbd"
  cmp "$work/$vol.src" "$work/$vol.nbd" ||
    fail "$vol: the volume read over NBD differs from the image written over iSCSI"
  echo "ok: $vol: the same bytes over NBD"
done
finish_node
echo "PASS: qemu-img convert into and out of iscsi:// is byte-identical"
