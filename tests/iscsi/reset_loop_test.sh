#!/bin/bash
# Regression test for a hang seen once in the conformance run: libiscsi's SCSI.Reserve6 suite
# (ITNexusLoss, TargetColdReset, TargetWarmReset, ... : sessions of two initiators logging in
# and out around resets that drop sessions) on two volumes of one two-reactor cairnd at once,
# several times over. In CI a TARGET COLD RESET on one volume closed a session whose cancelled
# read completed a session of the other volume instead (Asio 1.81's io_uring cancel carried a
# stale user data; base/asio_uring_fix.h), the dropped session never ended, and the next
# test's second login (TargetWarmReset) never got an answer. Every run must pass every test,
# and cairnd must log no failed read or write and stop cleanly. About 25 s.
#
# usage: reset_loop_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
source "$(dirname "$(dirname "$0")")/system/lib.sh"
require iscsi-test-cu libiscsi-bin

readonly prefix=iqn.2026-11.io.cairn
readonly iterations=2

start_node
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$iscsi_port") 2>/dev/null && break
  sleep 0.1
done
expect_ok "${C[@]}" volume create reset-thin512 64M --block-size 512 --chunk-size 4K
expect_ok "${C[@]}" volume create reset-native4k 64M --block-size 4096 --chunk-size 4K

# run_suite VOLUME: the Reserve6 suite, `iterations` times; its outputs in $dir/VOLUME.N.
run_suite() {
  local volume=$1
  for i in $(seq "$iterations"); do
    local rc=0
    timeout -k 5 60 iscsi-test-cu -V --dataloss -i iqn.2026-11.io.test:reset-1 \
      -I iqn.2026-11.io.test:reset-2 -t SCSI.Reserve6 \
      "iscsi://127.0.0.1:$iscsi_port/$prefix:$volume/0" >"$dir/$volume.$i" 2>&1 || rc=$?
    echo "$volume run $i: exit $rc, $(grep -E '^\s+tests\s+[0-9]' "$dir/$volume.$i" | tr -s ' ')"
    [ "$rc" = 0 ] || return 1
  done
}

pids=()
for volume in reset-thin512 reset-native4k; do
  run_suite "$volume" >"$dir/$volume.progress" 2>&1 &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do
  wait "$p" || failed=1
done
cat "$dir"/*.progress
for volume in reset-thin512 reset-native4k; do
  for i in $(seq "$iterations"); do
    f="$dir/$volume.$i"
    [ -f "$f" ] || continue
    # Every test of the suite ran and passed: "tests N N N 0 0" (run, succeeded, failed...).
    grep -Eq '^\s+tests\s+7\s+7\s+7\s+0\s+0' "$f" ||
      { echo "--- $f"; tail -n 30 "$f"; failed=1; }
  done
done
[ "$failed" = 0 ] || fail "iscsi-test-cu SCSI.Reserve6 failed or hung"
if grep -E "(read|write) failed" "$dir/cairnd.log"; then
  fail "a session failed a read or write while others were reset"
fi
finish_node
echo "PASS"
