#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iscsi-perf.sh: cairnd's iSCSI target against tgt on this machine, in one run (issue 4,
# "Benchmarks"). Not part of CI.
#
#   benchmarks/iscsi-perf.sh [--runs N] [--runtime S] [--size SIZE] [--out FILE] [--section]
#                            [--cairnd PATH] [--iscsi-write PATH] [--no-build] [--workdir DIR]
#                            [--keep]
#
# Targets, all at once on loopback ports, each LUN SIZE (default 1G) except tgt null:
#   cairnd     a release cairnd, volume with 4096-byte blocks, read cache above the LUN size
#              (hot data); iscsi-perf -b 1 is 4 KiB
#   tgt-file   tgtd, 512-byte LUN on a raw file (the page cache holds it: hot); -b 8 is 4 KiB
#   tgt-null   tgtd --bstype null, 512-byte LUN: tgt's protocol ceiling here; -b 8
# Every LUN but tgt-null is filled with random data and read once first. Cells, each run N
# times (default 3) interleaved target by target, median reported, S seconds each (default 10):
#   4K random read at QD32 and QD1   libiscsi's iscsi-perf -r
#   4K random write at QD32 and QD1, cairn_iscsi_write (benchmarks/iscsi-write/, 1 s ramp):
#   4K sequential write at QD32      every write carries unique random bytes, so cairnd's dedup
#                                    cannot skip any (iscsi-perf only reads, Debian's fio has no
#                                    libiscsi engine, and qemu-img bench writes one pattern)
# cairn_iscsi_write is looked for next to cairnd (BUILD/benchmarks/) and built there if missing,
# or given with --iscsi-write. cairnd's store must count no dedup hit during the write cells.
# Prints a markdown report (also to --out FILE); --section prints it as a "###" section for
# benchmarks/peers.sh, which calls this script after its NBD matrix.
{
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

runs=3
runtime_s=10
size=1G
out_file=""
section=0
cairnd_bin=""
iscsi_write_bin=""
build=1
workdir_arg=""

bench_name=iscsi-perf.sh
source "$here/lib.sh"
source "$repo/tests/conformance/tgt.sh"
free_port() { bench_free_port; }

usage() {
  sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --runtime) runtime_s="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --out) out_file="$2"; shift 2 ;;
    --section) section=1; shift ;;
    --cairnd) cairnd_bin="$2"; build=0; shift 2 ;;
    --iscsi-write) iscsi_write_bin="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --workdir) workdir_arg="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; bench_die "unknown argument '$1'" ;;
  esac
done

[[ "$runs" =~ ^[1-9][0-9]*$ ]] || bench_die "--runs must be a positive integer"
[[ "$runtime_s" =~ ^[1-9][0-9]*$ ]] || bench_die "--runtime must be a positive number of seconds"
size_bytes="$(bench_size "$size")"
((size_bytes >= 64 * 1024 * 1024 && size_bytes % (1024 * 1024) == 0)) ||
  bench_die "--size must be a multiple of 1M and at least 64M"
bench_need iscsi-perf qemu-img tgtd tgtadm fio nbdinfo python3

bench_workdir "$workdir_arg"
machine_start="$(bench_machine)"
date_start="$(date -u '+%Y-%m-%d %H:%M UTC')"
results="$workdir/results"
rm -rf "$results"
mkdir -p "$results"
readonly initiator=iqn.2026-11.io.cairn.bench:iscsi-perf

if [[ -z "$cairnd_bin" ]]; then
  cairnd_bin="$repo/build/bench/tools/cairnd"
fi
if ((build == 1)); then
  bench_build_cairnd "$repo"
fi
[[ -x "$cairnd_bin" ]] || bench_die "no cairnd at $cairnd_bin (build it or pass --cairnd)"
if [[ -z "$iscsi_write_bin" ]]; then
  cairnd_build="$(cd "$(dirname "$cairnd_bin")/.." && pwd)"
  iscsi_write_bin="$cairnd_build/benchmarks/cairn_iscsi_write"
  if [[ ! -x "$iscsi_write_bin" && -f "$cairnd_build/build.ninja" ]]; then
    bench_log "building cairn_iscsi_write in $cairnd_build"
    ninja -C "$cairnd_build" cairn_iscsi_write >&2 || bench_die "cannot build cairn_iscsi_write"
  fi
fi
[[ -x "$iscsi_write_bin" ]] ||
  bench_die "no cairn_iscsi_write at $iscsi_write_bin (libiscsi-dev, or pass --iscsi-write)"

# --- targets --------------------------------------------------------------------------------
declare -A url blocks
# shellcheck disable=SC2317  # a trap handler
stop_tgt_on_exit() {
  local status=$?
  tgt_stop
  # bench_cleanup keeps the work dir when the script failed: hand it the script's status.
  (exit "$status") || true
  bench_cleanup
}
trap stop_tgt_on_exit EXIT

iscsi_port="$(bench_free_port)"
hot_cache=$((size_bytes + size_bytes / 4))
bench_start_cairnd cairnd "$cairnd_bin" bench "$size_bytes" --set "cache.read_bytes=$hot_cache" \
  --set iscsi.address=127.0.0.1 --set "iscsi.port=$iscsi_port" ||
  bench_die "cairnd did not start"
url[cairnd]="iscsi://127.0.0.1:$iscsi_port/iqn.2026-11.io.cairn:bench/0"
blocks[cairnd]=1

truncate -s "$size_bytes" "$workdir/tgt-file.img"
tgt_start "$workdir" || bench_die "tgtd did not start"
tgt_lun 1 iqn.2026-11.io.tgt:file "$workdir/tgt-file.img" "" ||
  bench_die "cannot create tgt's file LUN"
tgt_lun 2 iqn.2026-11.io.tgt:null null "" --bstype null || bench_die "cannot create tgt's null LUN"
url[tgt-file]="iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.tgt:file/1"
url[tgt-null]="iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.tgt:null/1"
blocks[tgt-file]=8
blocks[tgt-null]=8

# --- preconditioning: random data, then one sequential read ---------------------------------
bench_log "preconditioning cairnd (over NBD) and tgt's file with random data"
# --randrepeat=0: with fio's fixed default seed the buffers repeat from run to run, and later
# writes of the same bytes would dedup against these.
fio --name=precondition --ioengine=nbd --uri="${uri[cairnd]}" --rw=write --bs=1M --iodepth=8 \
  --size="$size_bytes" --refill_buffers --randrepeat=0 --end_fsync=1 --output-format=json \
  --output="$workdir/cairnd.precondition.json" >/dev/null || bench_die "preconditioning failed"
physical="$(bench_store_stat cairnd physical_bytes)"
if [[ -z "$physical" ]]; then
  notes+=("cairnd's admin API did not answer, so its preconditioning was not checked for dedup")
elif ((physical < size_bytes * 99 / 100)); then
  notes+=("cairnd stored $physical bytes for the $size_bytes it was preconditioned with:" \
    "fio's data deduplicated")
fi
head -c "$size_bytes" /dev/urandom | dd of="$workdir/tgt-file.img" bs=1M conv=notrunc \
  iflag=fullblock status=none
targets=()
for name in cairnd tgt-file; do
  if ! qemu-img convert -f raw -O raw "${url[$name]}" "$workdir/warm.img" 2>"$workdir/err"; then
    bench_log "warm-up read of $name over iSCSI failed: $(head -n1 "$workdir/err")"
    notes+=("$name: no rows, its LUN could not be read over iSCSI: $(head -n1 "$workdir/err")")
    continue
  fi
  # The LUN's content must have arrived: random data does not compress.
  [[ "$(gzip -1 -c "$workdir/warm.img" | wc -c)" -gt $((size_bytes * 9 / 10)) ]] ||
    bench_die "$name does not hold the random data it was filled with"
  rm -f "$workdir/warm.img"
  targets+=("$name")
done
targets+=(tgt-null)

# --- cells ----------------------------------------------------------------------------------
cells=(read-qd32 read-qd1 randwrite-qd32 randwrite-qd1 write-qd32)
declare -A cell_label=(
  [read-qd32]="4K random read QD32 (iscsi-perf)"
  [read-qd1]="4K random read QD1 (iscsi-perf)"
  [randwrite-qd32]="4K random write QD32 (cairn_iscsi_write)"
  [randwrite-qd1]="4K random write QD1 (cairn_iscsi_write)"
  [write-qd32]="4K sequential write QD32 (cairn_iscsi_write)"
)

# run_cell NAME CELL RUN: appends "NAME CELL IOPS" to results/iops.tsv.
run_cell() {
  local name="$1" cell="$2" run="$3" out="$results/$1.$2.$3.log" iops="" qd rc=0
  qd="${cell##*-qd}"
  case "$cell" in
    read-*)
      timeout -k 5 $((runtime_s + 30)) iscsi-perf -i "$initiator" -m "$qd" -b "${blocks[$name]}" \
        -r -t "$runtime_s" "${url[$name]}" >"$out" 2>&1 || true
      iops="$(tr '\r' '\n' <"$out" | grep -oE 'iops average [0-9]+' | tail -n1 |
        awk '{ print $3 }')"
      ;;
    *write-*)
      timeout -k 5 $((runtime_s + 60)) "$iscsi_write_bin" --initiator "$initiator" --qd "$qd" \
        --bs 4096 --rw "${cell%-qd*}" --ramp 1 --runtime "$runtime_s" "${url[$name]}" \
        >"$out" 2>&1 || rc=$?
      if ((rc != 0)); then
        # A failed write spoils the cell: no figure, and the report says why.
        notes+=("$name, $cell, run $run: cairn_iscsi_write exited $rc: $(tail -n1 "$out")")
      else
        iops="$(grep -m1 -oE '"iops":[0-9]+' "$out" | cut -d: -f2 || true)"
      fi
      ;;
  esac
  if [[ -z "$iops" ]]; then
    bench_log "no result: $name $cell run $run (see $out)"
    return 0
  fi
  printf '%s\t%s\t%s\n' "$name" "$cell" "$iops" >>"$results/iops.tsv"
}

dedup_hits_before="$(bench_store_stat cairnd dedup_hits)"
for ((run = 1; run <= runs; run++)); do
  for cell in "${cells[@]}"; do
    for name in "${targets[@]}"; do
      bench_log "run $run/$runs: $cell on $name"
      run_cell "$name" "$cell" "$run"
    done
  done
done
# Proof that the write cells measured writes, not dedup hits: cairnd's store counts none.
dedup_hits_after="$(bench_store_stat cairnd dedup_hits)"
dedup_hits=unknown
if [[ -z "$dedup_hits_before" || -z "$dedup_hits_after" ]]; then
  notes+=("cairnd's admin API did not answer, so its dedup hits were not checked")
else
  dedup_hits=$((dedup_hits_after - dedup_hits_before))
  ((dedup_hits == 0)) || notes+=("cairnd's store counted $dedup_hits dedup hits during the" \
    "cells: some writes were not unique, so its write figures are inflated")
fi

# --- report ---------------------------------------------------------------------------------
commit="$(git -C "$repo" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
tree_note="$(bench_tree_note "$repo")"
[[ -z "$tree_note" ]] || notes+=("$tree_note")
for note in "${notes[@]+"${notes[@]}"}"; do
  printf '%s\n' "${note//$'\n'/ }"
done >"$results/notes.txt"
tgt_version="$(dpkg-query -W -f='${Version}' tgt 2>/dev/null || echo unknown)"
libiscsi_version="$(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null || echo unknown)"
for cell in "${cells[@]}"; do
  printf '%s\t%s\n' "$cell" "${cell_label[$cell]}"
done >"$results/cells.tsv"
report="$(META_DATE="$date_start to $(date -u '+%H:%M UTC')" \
  META_MACHINE="$machine_start; at the end: load average $(cut -d' ' -f1-3 /proc/loadavg)" \
  META_COMMIT="$commit" META_RUNS="$runs" META_RUNTIME="$runtime_s" \
  META_SIZE="$size_bytes" META_HOT="$hot_cache" META_TGT="$tgt_version" \
  META_LIBISCSI="$libiscsi_version" META_DEDUP="$dedup_hits" \
  META_SECTION="$section" python3 - "$results" <<'PY'
import os, statistics, sys
e = os.environ
res = sys.argv[1]
cells = [l.rstrip("\n").split("\t") for l in open(os.path.join(res, "cells.tsv"))]
samples = {}
path = os.path.join(res, "iops.tsv")
if os.path.exists(path):
    for line in open(path):
        name, cell, iops = line.split()
        samples.setdefault((name, cell), []).append(float(iops))
med = {k: statistics.median(v) for k, v in samples.items()}
def iops(name, cell):
    v = med.get((name, cell))
    return f"{v:,.0f}" if v else "-"
def ratio(a, b, invert=False):
    if not a or not b:
        return "-"
    return f"{(b / a if invert else a / b):.2f}"
h = "###" if e["META_SECTION"] == "1" else "##"
out = [f"{h} iSCSI: cairnd against tgt, {e['META_DATE']}", ""]
out += [f"- machine: {e['META_MACHINE']}",
        f"- cairnd: commit {e['META_COMMIT']}; 4096-byte LUN, cache.read_bytes={e['META_HOT']}"
        " (hot), filled with random data over NBD and read once over iSCSI",
        f"- tgt {e['META_TGT']}: 512-byte LUNs, one on a raw file (random data, in the page "
        "cache) and one `--bstype null` (tgt's protocol ceiling)",
        f"- reads: iscsi-perf (libiscsi {e['META_LIBISCSI']}) -r, -b 1 on cairnd and -b 8 on "
        f"tgt (4 KiB either way), {e['META_RUNTIME']} s per run; writes: cairn_iscsi_write "
        "(benchmarks/iscsi-write/, libiscsi async WRITE(16), 1 s ramp then "
        f"{e['META_RUNTIME']} s), every 4 KiB write unique random bytes; cairnd's store counted "
        f"{e['META_DEDUP']} dedup hits over all cells",
        f"- LUN size {int(e['META_SIZE']):,} bytes; median of {e['META_RUNS']} runs, "
        "interleaved target by target within each cell"]
for note in open(os.path.join(res, "notes.txt")):
    if note.strip():
        out.append(f"- NOTE: {note.strip()}")
out += ["", "| cell | cairnd IOPS | tgt file IOPS | tgt null IOPS | cairnd/tgt file "
        "| cairnd/tgt null |", "|---|---:|---:|---:|---:|---:|"]
for cell, label in cells:
    a, f, n = (med.get((t, cell)) for t in ("cairnd", "tgt-file", "tgt-null"))
    out.append(f"| {label} | {iops('cairnd', cell)} | {iops('tgt-file', cell)} "
               f"| {iops('tgt-null', cell)} | {ratio(a, f)} | {ratio(a, n)} |")
    if cell.endswith("-qd1"):
        lat = lambda v: f"{1e6 / v:,.0f}" if v else "-"
        out.append(f"| {label.replace('QD1', 'QD1 mean latency µs')} | {lat(a)} | {lat(f)} "
                   f"| {lat(n)} | {ratio(a, f, True)} | {ratio(a, n, True)} |")
out += ["", "IOPS ratios above 1 favour cairnd; latency ratios are cairnd's latency over the "
        "peer's, so below 1 favours cairnd."]
print("\n".join(out))
PY
)"
printf '%s\n' "$report"
if [[ -n "$out_file" ]]; then
  printf '%s\n' "$report" >"$out_file"
  bench_log "wrote $out_file"
fi
exit
}
