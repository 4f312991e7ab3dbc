#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iSCSI/SCSI conformance (issue 4, "Tests"): libiscsi's iscsi-test-cu, families SCSI and iSCSI,
# with --dataloss --allow-sanitize and two initiator names, against three cairn volumes and, for
# comparison, the same three configurations on tgt. docs/conformance.md describes the
# configurations, the rules and the allowed skips, and carries the latest results.
#
#   run-iscsi-test-cu.sh [--no-tgt] [--tgt-only] [--logs DIR] CAIRND CAIRN
#
# Configurations (one LUN each):
#   thin512  writable thin volume, 512-byte logical blocks, 4 KiB chunks (LBPPB 8)
#   native4k writable volume with 4096-byte logical blocks
#   readonly read-only volume; only the tests that write nothing run there (RO_PATTERNS)
# On the writable LUNs every SCSI and iSCSI suite runs in one iscsi-test-cu invocation, and the
# MultipathIO suite in a second one that is given the LUN's URL twice (two sessions, one per
# initiator name: cairn allows several sessions per target, which is how Linux multipaths).
#
# Exit status 0 when cairn has no failed or missing test and every test that skipped in all of
# its configurations is in the allowed-skips list of docs/conformance.md (test_cu_report.py
# enforces the rules). tgt's results are printed next to cairn's and never fail the test. The
# raw outputs stay in --logs DIR (default ./iscsi-test-cu-logs). Exits 77 ("SKIPPED") when
# iscsi-test-cu is missing; under CI=true a missing tool (tgtd too) is a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
doc="$repo/docs/conformance.md"
report="$here/test_cu_report.py"
logs="$PWD/iscsi-test-cu-logs"
use_tgt=1
use_cairn=1

usage() {
  echo "usage: run-iscsi-test-cu.sh [--no-tgt] [--tgt-only] [--logs DIR] CAIRND CAIRN" >&2
  exit 2
}
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-tgt) use_tgt=0 && shift ;;
    --tgt-only) use_cairn=0 && shift ;;
    --logs) logs="${2:?}" && shift 2 ;;
    -*) usage ;;
    *) args+=("$1") && shift ;;
  esac
done
if [[ $use_cairn -eq 1 ]]; then
  [[ ${#args[@]} -eq 2 ]] || usage
  # Used by tests/system/lib.sh.
  # shellcheck disable=SC2034
  cairnd="${args[0]}"
  # shellcheck disable=SC2034
  cairn="${args[1]}"
fi

# shellcheck source=../system/lib.sh
source "$repo/tests/system/lib.sh"
# shellcheck source=tgt.sh
source "$here/tgt.sh"

require iscsi-test-cu libiscsi-bin
require python3 python3
if [[ $use_tgt -eq 1 ]] && ! command -v tgtd >/dev/null; then
  [[ "${CI:-}" == true ]] && fail "tgtd is not installed (Debian package tgt); CI needs it"
  echo "note: tgtd is not installed (Debian package tgt): no comparison with tgt"
  use_tgt=0
fi

readonly initiator1=iqn.2026-11.io.cairn.test:conformance-1
readonly initiator2=iqn.2026-11.io.cairn.test:conformance-2
readonly iqn_prefix=iqn.2026-11.io.cairn
# Tests that write nothing: the ones that apply to a read-only LUN. ReadOnly checks that every
# write command fails with DATA PROTECT; the rest read, verify against what they read, or ask.
readonly RO_PATTERNS=(SCSI.ReadOnly SCSI.Inquiry SCSI.Mandatory SCSI.TestUnitReady
  SCSI.ReadCapacity10 SCSI.ReadCapacity16 SCSI.Read6 SCSI.Read10 SCSI.Read12 SCSI.Read16
  SCSI.Verify10 SCSI.Verify12 SCSI.Verify16 SCSI.Prefetch10 SCSI.Prefetch16
  SCSI.GetLBAStatus.Simple SCSI.GetLBAStatus.BeyondEol SCSI.ModeSense6.AllPages
  SCSI.ModeSense6.Control SCSI.ModeSense6.Control-D_SENSE SCSI.ModeSense6.Residuals
  SCSI.ReadDefectData10 SCSI.ReadDefectData12 SCSI.ReportSupportedOpcodes SCSI.PrinReadKeys
  SCSI.PrinServiceactionRange SCSI.PrinReportCapabilities iSCSI.iSCSIcmdsn
  'iSCSI.iSCSIResiduals.Read*')

rm -rf "$logs"
mkdir -p "$logs"
logs="$(cd "$logs" && pwd)"

# The test lists: every SCSI and iSCSI test but MultipathIO ("main"), MultipathIO, and the
# read-only set; each writable configuration leaves out the tests docs/conformance.md lists as
# not applicable to it. `plan` writes LABEL.txt (the tests) and LABEL.patterns (for -t).
iscsi-test-cu -l >"$logs/all-tests.txt"
plan() {
  python3 "$report" plan "$logs/all-tests.txt" "$doc" "$logs" "$@" ||
    fail "cannot make the test list for $1"
}
plan thin512 SCSI iSCSI -SCSI.MultipathIO
plan native4k SCSI iSCSI -SCSI.MultipathIO
plan multipath SCSI.MultipathIO
plan readonly "${RO_PATTERNS[@]}"
for label in thin512 native4k; do
  cat "$logs/$label.txt" "$logs/multipath.txt" >"$logs/$label-all.txt"
done
echo "tests: $(wc -l <"$logs/thin512-all.txt") on thin512," \
  "$(wc -l <"$logs/native4k-all.txt") on native4k, $(wc -l <"$logs/readonly.txt") on readonly"

# run_tool LOG URL PATTERNS [URL2]: one iscsi-test-cu invocation, output to $logs/LOG.
run_tool() {
  local log="$1" url="$2" patterns="$3" url2="${4:-}" rc=0 start=$SECONDS
  # shellcheck disable=SC2086
  timeout -k 10 600 iscsi-test-cu -V --dataloss --allow-sanitize -i "$initiator1" \
    -I "$initiator2" -t "$patterns" "$url" $url2 >"$logs/$log" 2>&1 || rc=$?
  local summary
  summary="$(grep -E '^\s+tests\s+[0-9]' "$logs/$log" | tr -s ' ' || true)"
  echo "  $log: ${summary:-no summary} ($((SECONDS - start)) s, exit $rc)"
  [[ $rc -eq 124 || $rc -eq 137 ]] && echo "  $log: iscsi-test-cu timed out after 600 s"
  return 0
}

# run_lun LABEL CONFIG URL: the invocations for one configuration (CONFIG: thin512, native4k or
# readonly); writes the reporter's --config argument to $logs/LABEL.config.
run_lun() {
  local label="$1" config="$2" url="$3"
  if [[ "$config" == readonly ]]; then
    run_tool "$label.out" "$url" "$logs/readonly.patterns"
    echo "$config=$logs/readonly.txt:$logs/$label.out" >"$logs/$label.config"
  else
    run_tool "$label.out" "$url" "$logs/$config.patterns"
    run_tool "$label-multipath.out" "$url" "$logs/multipath.patterns" "$url"
    echo "$config=$logs/$config-all.txt:$logs/$label.out,$logs/$label-multipath.out" \
      >"$logs/$label.config"
  fi
}

# Every configuration of both targets runs at once: the suite mostly waits for round trips.
run_pids=()
run_bg() {
  run_lun "$@" >"$logs/$1.progress" 2>&1 &
  run_pids+=($!)
}

wait_port() {
  local port="$1"
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

report_args=()
labels=()
if [[ $use_cairn -eq 1 ]]; then
  start_node
  trap 'tgt_stop; stop_node' EXIT
  wait_port "$iscsi_port" || fail "cairnd does not listen for iSCSI on port $iscsi_port"
  expect_ok "${C[@]}" volume create conf-thin512 128M --block-size 512 --chunk-size 4K
  expect_ok "${C[@]}" volume create conf-native4k 128M --block-size 4096 --chunk-size 4K
  expect_ok "${C[@]}" volume create conf-readonly 64M --block-size 512 --read-only
  echo "cairn: cairnd on 127.0.0.1:$iscsi_port"
  for config in thin512 native4k readonly; do
    run_bg "$config" "$config" "iscsi://127.0.0.1:$iscsi_port/$iqn_prefix:conf-$config/0"
  done
  labels+=(cairn thin512 native4k readonly)
fi

if [[ $use_tgt -eq 1 ]]; then
  tgt_dir="$logs/tgt"
  mkdir -p "$tgt_dir"
  trap 'tgt_stop; stop_node' EXIT
  if tgt_start "$tgt_dir"; then
    truncate -s 128M "$tgt_dir/thin512.img" "$tgt_dir/native4k.img"
    truncate -s 64M "$tgt_dir/readonly.img"
    # tgt's thin_provisioning=1 breaks its 16-byte CDBs (LBA out of range), so its writable
    # 512-byte LUN is the default, fully provisioned one (the BRIEF's reference run).
    if ! tgt_lun 1 iqn.2026-11.io.tgt:thin512 "$tgt_dir/thin512.img" "" ||
      ! tgt_lun 2 iqn.2026-11.io.tgt:native4k "$tgt_dir/native4k.img" "" --blocksize 4096 ||
      ! tgt_lun 3 iqn.2026-11.io.tgt:readonly "$tgt_dir/readonly.img" readonly=1; then
      fail "tgtadm could not configure tgtd's LUNs"
    fi
    echo "tgt: tgtd on 127.0.0.1:$tgt_port"
    for config in thin512 native4k readonly; do
      run_bg "tgt-$config" "$config" "iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.tgt:$config/1"
    done
    labels+=(tgt tgt-thin512 tgt-native4k tgt-readonly)
  else
    [[ "${CI:-}" == true ]] && fail "tgtd did not start; CI needs the comparison"
    echo "note: tgtd did not start: no comparison with tgt"
  fi
fi

for p in "${run_pids[@]}"; do
  wait "$p" || true
done
for label in "${labels[@]}"; do
  case "$label" in
    cairn | tgt) report_args+=(--target "$label") ;;
    *)
      cat "$logs/$label.progress"
      report_args+=(--config "$(cat "$logs/$label.config")")
      ;;
  esac
done
if [[ $use_cairn -eq 1 ]]; then
  cp "$dir/cairnd.log" "$logs/cairnd.log"
  finish_node
fi
if [[ $use_tgt -eq 1 ]]; then
  tgt_stop
  rm -f "$tgt_dir"/*.img
fi

enforce=()
[[ $use_cairn -eq 1 ]] && enforce=(--enforce cairn)
rc=0
python3 "$report" report --allowed "$doc" --markdown "$logs/summary.md" "${enforce[@]}" \
  "${report_args[@]}" || rc=$?
echo "raw outputs and summary.md: $logs"
exit $rc
