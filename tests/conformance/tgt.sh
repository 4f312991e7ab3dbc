# shellcheck shell=bash
# Helpers to run tgt (the Linux SCSI target daemon, Debian package tgt) as the comparison peer of
# the iSCSI conformance test and benchmark: one private tgtd in the foreground on a free portal
# port, with its own control port, so that it never touches a system tgtd. Source this file; it
# needs `free_port` (tests/system/lib.sh or benchmarks/lib.sh).
#
#   tgt_start DIR        starts tgtd; its log is DIR/tgtd.log. Sets tgt_port, tgt_ctl, tgt_pid.
#   tgt_lun TID IQN BACKING [PARAMS [tgtadm logicalunit options...]]
#                        creates target TID named IQN with LUN 1 on BACKING (a file, or "null"
#                        with --bstype null), sets the LUN's PARAMS (e.g. readonly=1; "" for
#                        none) and lets every initiator in
#   tgt_stop             stops tgtd
#
# LUN 0 of every tgt target is its controller; the disk is LUN 1.

tgt_pid=""
tgt_port=""
tgt_ctl=""
tgt_tids=()

tgt_adm() {
  tgtadm -C "$tgt_ctl" --lld iscsi "$@"
}

tgt_start() {
  local dir="$1" i
  tgt_port=$(free_port)
  # tgtd's control channel is the unix socket /var/run/tgtd/socket.<control port>.
  for ((i = 0; i < 100; i++)); do
    tgt_ctl=$((20000 + RANDOM % 12000)) # tgtd takes at most 32767
    [[ -e "/var/run/tgtd/socket.$tgt_ctl" ]] || break
  done
  mkdir -p /var/run/tgtd 2>/dev/null || true
  tgtd -f -C "$tgt_ctl" --iscsi portal="127.0.0.1:$tgt_port" >"$dir/tgtd.log" 2>&1 &
  tgt_pid=$!
  for ((i = 0; i < 100; i++)); do
    if tgtadm -C "$tgt_ctl" --op show --mode sys >/dev/null 2>&1 &&
      (exec 3<>"/dev/tcp/127.0.0.1/$tgt_port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$tgt_pid" 2>/dev/null; then
      echo "tgtd exited during start-up:" >&2
      tail -n 5 "$dir/tgtd.log" >&2
      tgt_pid=""
      return 1
    fi
    sleep 0.1
  done
  echo "tgtd did not start within 10 s" >&2
  tgt_stop
  return 1
}

tgt_lun() {
  local tid="$1" iqn="$2" backing="$3" params="${4:-}"
  shift 3
  [[ $# -gt 0 ]] && shift
  tgt_tids+=("$tid")
  tgt_adm --op new --mode target --tid "$tid" -T "$iqn" &&
    tgt_adm --op new --mode logicalunit --tid "$tid" --lun 1 -b "$backing" "$@" &&
    { [[ -z "$params" ]] ||
      tgt_adm --op update --mode logicalunit --tid "$tid" --lun 1 --params "$params"; } &&
    tgt_adm --op bind --mode target --tid "$tid" -I ALL
}

# tgtd ignores SIGTERM while it has targets; it exits on "delete system" once they are gone.
tgt_stop() {
  [[ -n "$tgt_pid" ]] || return 0
  local tid i
  for tid in "${tgt_tids[@]}"; do
    tgt_adm --op delete --mode target --tid "$tid" --force >/dev/null 2>&1 || true
  done
  tgt_tids=()
  tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1 || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$tgt_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$tgt_pid" 2>/dev/null || true
  wait "$tgt_pid" 2>/dev/null || true
  tgt_pid=""
}
