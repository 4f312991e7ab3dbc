#!/bin/bash
# Real iSCSI initiators (libiscsi's tools, qemu's iscsi driver) against the real cairnd:
# discovery (iscsi-ls), INQUIRY, a qemu-img round trip in and out of iscsi:// compared byte for
# byte, CHAP, mutual CHAP and wrong secrets, allowed and denied initiators, a read-only volume,
# an unknown target, and the same data seen over NBD.
#
# usage: clients_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../system/lib.sh"

for tool in iscsi-ls iscsi-inq qemu-img; do
  require "$tool" "libiscsi-bin, qemu-utils"
done
qemu-img --help | grep -qw iscsi || skip "qemu-img has no iscsi driver (qemu-block-extra)"

start_node
prefix=iqn.2026-11.io.cairn
portal=127.0.0.1:$iscsi_port
url() { echo "iscsi://${2:-}$portal/$prefix:$1/0"; }

expect_ok "${C[@]}" volume create disk 64M --block-size 512
expect_ok "${C[@]}" volume create disk4k 32M
expect_ok "${C[@]}" volume create ro 8M --read-only

# Discovery lists every target with the portal, and iscsi-ls -s logs in to each (LUN 0).
expect_ok iscsi-ls -s "iscsi://$portal"
for t in disk disk4k ro; do
  grep -q "Target:$prefix:$t Portal:$portal,1" <<<"$out" || fail "iscsi-ls lacks $t: $out"
done
grep -q "Lun:0 *Type:DIRECT_ACCESS (Size:63M)" <<<"$out" || fail "iscsi-ls: no 64M LUN: $out"

expect_ok iscsi-inq "$(url disk)"
grep -q "Vendor:CAIRN" <<<"$out" || fail "iscsi-inq: $out"

# Unknown target: login fails with "target not found".
rc=0
iscsi-inq "$(url nosuch)" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
[ "$rc" != 0 ] || fail "login to an unknown target succeeded"
grep -qi "not found" "$dir/stderr" || fail "unknown target: $(cat "$dir/stderr")"

# qemu-img into and out of iscsi://, byte for byte, on both block sizes.
head -c $((24 << 20)) /dev/urandom >"$dir/src.img"
for v in disk disk4k; do
  expect_ok qemu-img convert -n -f raw -O raw "$dir/src.img" "$(url "$v")"
  expect_ok qemu-img convert -f raw -O raw "$(url "$v")" "$dir/back.img"
  cmp -n $((24 << 20)) "$dir/src.img" "$dir/back.img" || fail "$v: data read back differs"
done
# The same bytes over NBD.
expect_ok "${C[@]}" --quiet export disk "$dir/nbd.img"
cmp -n $((24 << 20)) "$dir/src.img" "$dir/nbd.img" || fail "NBD sees other data than iSCSI wrote"

# A read-only volume refuses writes (DATA PROTECT) and serves reads.
rc=0
qemu-img convert -n -f raw -O raw "$dir/src.img" "$(url ro)" >"$dir/stdout" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "write to a read-only volume succeeded"
expect_ok qemu-img convert -f raw -O raw "$(url ro)" "$dir/ro.img"

# CHAP: no credentials and a wrong secret fail with "authentication failure"; the right one
# logs in.
expect_ok "${C[@]}" volume access disk --chap alice:alicesecret12
for creds in "" "alice%wrongsecret12@" "bob%alicesecret12@"; do
  rc=0
  iscsi-inq "$(url disk "$creds")" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
  [ "$rc" != 0 ] || fail "CHAP login with '$creds' succeeded"
  grep -qi "authentication" "$dir/stderr" || fail "'$creds': $(cat "$dir/stderr")"
done
expect_ok iscsi-inq "$(url disk alice%alicesecret12@)"
grep -q "Vendor:CAIRN" <<<"$out" || fail "CHAP login: $out"
expect_ok qemu-img convert -f raw -O raw "$(url disk alice%alicesecret12@)" "$dir/back.img"
cmp -n $((24 << 20)) "$dir/src.img" "$dir/back.img" || fail "CHAP session reads other data"

# Mutual CHAP: the target proves the mutual secret; a wrong expectation fails the login.
expect_ok "${C[@]}" volume access disk --chap alice:alicesecret12 --mutual-chap tgt:targetsecret1
mutual="?target_user=tgt&target_password=targetsecret1"
expect_ok iscsi-inq "$(url disk alice%alicesecret12@)$mutual"
rc=0
iscsi-inq "$(url disk alice%alicesecret12@)?target_user=tgt&target_password=notthesecret" \
  >"$dir/stdout" 2>"$dir/stderr" || rc=$?
[ "$rc" != 0 ] || fail "mutual CHAP with a wrong target secret succeeded"

# Allowed initiators: others get "authorization failure" and do not see the target.
expect_ok "${C[@]}" volume access disk --clear
expect_ok "${C[@]}" volume access disk --allow iqn.2026-11.io.test:allowed
expect_ok iscsi-inq -i iqn.2026-11.io.test:allowed "$(url disk)"
rc=0
iscsi-inq -i iqn.2026-11.io.test:other "$(url disk)" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
[ "$rc" != 0 ] || fail "a denied initiator logged in"
grep -qi "authoriz" "$dir/stderr" || fail "denied initiator: $(cat "$dir/stderr")"
expect_ok iscsi-ls -i iqn.2026-11.io.test:other "iscsi://$portal"
grep -q ":disk " <<<"$out" && fail "discovery shows a denied initiator the target: $out"

finish_node
echo "PASS: iSCSI clients"
