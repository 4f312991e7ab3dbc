#!/bin/bash
# SIGTERM with clients still connected: cairnd (two reactors, ASan in the dev build) must end
# every NBD connection and iSCSI session on its own reactor, flush, and exit 0 promptly with no
# sanitizer report. Each round keeps open: an NBD connection in transmission (libnbd, idle), an
# iSCSI session doing reads (iscsi-perf), an iSCSI session in the full feature phase that is
# idle (libiscsi's iscsi-test-cu waiting in a test's sleep), and raw TCP connections still in
# the NBD handshake and the iSCSI login. Once cairnd exited with a heap-use-after-free here.
#
# usage: shutdown_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
source "$(dirname "$0")/lib.sh"
require python3 python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "/usr/bin/python3 lacks nbd (python3-libnbd)"
require iscsi-perf libiscsi-bin
require iscsi-test-cu libiscsi-bin

readonly prefix=iqn.2026-11.io.cairn
readonly rounds=2

# nbd_idle EXPORT: an NBD client (libnbd) that connects and then does nothing.
nbd_idle() {
  exec /usr/bin/python3 -c 'import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
time.sleep(120)' "nbd://127.0.0.1:$nbd_port/$1"
}

clients=()
stop_clients() {
  # SIGKILL: libiscsi's tools keep reconnecting to a stopped target and ignore SIGTERM.
  for p in "${clients[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  clients=()
}
trap 'stop_clients; stop_node' EXIT

for round in $(seq "$rounds"); do
  echo "== round $round"
  start_node
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$iscsi_port") 2>/dev/null && break
    sleep 0.1
  done
  # Several volumes, so that sessions land on both reactors.
  for v in a b c d; do
    expect_ok "${C[@]}" volume create "vol-$v" 16M
  done
  nbd_idle vol-a &
  clients+=($!)
  nbd_idle vol-b &
  clients+=($!)
  iscsi-perf -r -n -i iqn.2026-11.io.test:perf "iscsi://127.0.0.1:$iscsi_port/$prefix:vol-c/0" \
    >"$dir/perf.log" 2>&1 &
  clients+=($!)
  # Reserve6.TargetWarmReset sleeps 3 s after its reset with both sessions logged in.
  iscsi-test-cu --dataloss -i iqn.2026-11.io.test:cu1 -I iqn.2026-11.io.test:cu2 \
    -t SCSI.Reserve6.TargetWarmReset "iscsi://127.0.0.1:$iscsi_port/$prefix:vol-d/0" \
    >"$dir/cu.log" 2>&1 &
  clients+=($!)
  exec 5<>"/dev/tcp/127.0.0.1/$nbd_port"
  exec 6<>"/dev/tcp/127.0.0.1/$iscsi_port"
  # Wait until the iSCSI sessions are in the full feature phase.
  for _ in $(seq 100); do
    [ "$(grep -c "logged in to" "$dir/cairnd.log")" -ge 2 ] && break
    sleep 0.1
  done
  [ "$(grep -c "logged in to" "$dir/cairnd.log")" -ge 2 ] ||
    fail "the iSCSI sessions did not log in: $(cat "$dir/perf.log" "$dir/cu.log")"
  sleep 0.5
  for p in "${clients[@]:0:2}"; do
    kill -0 "$p" 2>/dev/null || fail "an NBD client could not connect"
  done
  started=$SECONDS
  finish_node
  elapsed=$((SECONDS - started))
  exec 5>&- 6>&-
  [ "$elapsed" -le 8 ] || fail "cairnd took $elapsed s to stop with clients connected"
  if grep -q "connections still open" "$dir/cairnd.log"; then
    fail "cairnd did not end its connections: $(grep "still open" "$dir/cairnd.log")"
  fi
  # The sessions ended on their reactors before those stopped (not destroyed suspended).
  for v in vol-c vol-d; do
    grep -q "session of .* on '$v' ended" "$dir/cairnd.log" ||
      fail "the iSCSI session on $v was not ended before cairnd stopped"
  done
  echo "stopped in ${elapsed} s with clients connected"
  stop_clients
  rm -rf "$dir"
done
echo "PASS"
