#!/bin/bash
# Chunk data on a raw block device (store.data_path): a loop device stands in for a disk.
# The store takes the device's whole size as its fixed capacity, keeps its index journal and
# metadata in the data directory, and finds every byte again after a restart.
#
# usage: raw_device_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
source "$(dirname "$0")/lib.sh"
require python3 python3
require losetup mount
[ "$(id -u)" = 0 ] || skip "attaching a loop device needs root"

backing=$(mktemp /tmp/cairn-rawdev-XXXXXX.img)
truncate -s 192M "$backing"
loopdev=$(losetup --find --show "$backing") || skip "no loop device available"
detach() {
  stop_node
  losetup -d "$loopdev" 2>/dev/null || true
  rm -f "$backing"
}
node_args=(--set store.data_path="$loopdev")
start_node
trap detach EXIT

img=$(mktemp /tmp/cairn-rawdev-in-XXXXXX)
head -c 24M /dev/urandom >"$img"
trap 'detach; rm -f "$img"' EXIT

expect_ok "${C[@]}" volume create disk 64M
expect_ok "${C[@]}" --quiet import "$img" disk
expect_ok "${C[@]}" --json stats
# The first block of the data file is reserved (docs/on-disk-format.md).
[ "$(json_get "$out" 'd["store"]["capacity_bytes"]')" = $(((192 << 20) - 4096)) ] ||
  fail "capacity is not the device's size: $out"
[ "$(json_get "$out" 'd["store"]["physical_bytes"] >= 24 << 20')" = True ] ||
  fail "the data did not reach the store: $out"
[ -e "$dir/data/chunks.data" ] && fail "chunks.data was created although data_path names a device"
[ -e "$dir/data/chunks-index.log" ] || fail "no index journal in the data directory"
data_dir=$dir

# Restart on the same device and data directory: everything imported is there.
kill -TERM "$pid"
wait "$pid" || fail "cairnd exited $? after SIGTERM"
pid=
"$cairnd" --set node.data_dir="$data_dir/data" --set nbd.address=127.0.0.1 \
  --set nbd.port="$nbd_port" --set admin.port="$admin_port" --set node.reactors=2 \
  --set iscsi.address=127.0.0.1 --set iscsi.port="$iscsi_port" "${node_args[@]}" \
  >>"$dir/cairnd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$admin_port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "cairnd exited during the restart"
  sleep 0.1
done
expect_ok "${C[@]}" --quiet export disk "$dir/out.raw"
cmp -n $((24 << 20)) "$img" "$dir/out.raw" || fail "data read back after restart differs"
[ "$(head -c $((64 << 20)) "$dir/out.raw" | tail -c $((40 << 20)) | tr -d '\0' | wc -c)" = 0 ] ||
  fail "the unwritten tail is not zeroes"
finish_node
echo "PASS: 24 MiB on $loopdev survived a restart; capacity = device size"
