#!/usr/bin/env bash
# peers.sh: compares cairnd with other NBD servers on this machine, in one run, with fio's
# nbd engine (issue 2, M6; BRIEF, "Measuring honestly"). Not part of CI.
#
#   benchmarks/peers.sh [--runs N] [--runtime S] [--ramp S] [--size SIZE] [--out FILE]
#                       [--servers LIST] [--cells LIST] [--cairnd PATH] [--no-build]
#                       [--workdir DIR] [--keep]
#
# Cells (--cells, comma-separated; default all): 4k-randread-qd32, 4k-randread-qd1,
#   4k-randread-qd32-2jobs, 1m-read-qd8, 4k-randwrite-qd32, 4k-randwrite-qd1, 1m-write-qd8.
#   With --cells the iSCSI section (benchmarks/iscsi-perf.sh) is skipped.
#
# Servers (--servers, comma-separated; default all):
#   cairnd       two instances of the release build, each on its own data dir in the work dir:
#                "hot" (cache.read_bytes above the export size) and "cold" (a cache of 1/8 of
#                the export, so the working set is 8x the cache)
#   qemu-nbd     qemu-nbd --cache=none --aio=io_uring on a raw file (O_DIRECT: the cold peer)
#   nbdkit-file  nbdkit file on a raw file (page cache: the hot peer)
#   nbdkit-null  nbdkit null: what the client can do at all on this machine
#
# All servers run at once on loopback ports; every export is preconditioned with random data
# (fio --refill_buffers), checked for physical bytes and BLOCK_STATUS allocation, and read once
# sequentially (and read so again before every later run). Every fio run passes --randrepeat=0: with fio's default fixed seed each run
# fills its buffers with the same byte stream, so the write cells would rewrite the
# preconditioning data and cairnd would deduplicate them (a byte comparison, no write). Then, N times: for each cell of the matrix, each server in turn, a different server first in each run. The report
# (markdown, to stdout and --out) gives medians and cairnd/peer ratios.
# The whole script is one compound command, so bash parses all of it before running any of
# it: editing this file while a run is in progress cannot change that run.
{
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

runs=3
runtime_s=5
ramp_s=1
size=1G
out_file=""
servers="cairnd,qemu-nbd,nbdkit-file,nbdkit-null"
cairnd_bin=""
build=1
workdir_arg=""
cells_arg=""

bench_name=peers.sh
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
  sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --runtime) runtime_s="$2"; shift 2 ;;
    --ramp) ramp_s="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --out) out_file="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --cells) cells_arg="$2"; shift 2 ;;
    --cairnd) cairnd_bin="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --workdir) workdir_arg="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; bench_die "unknown argument '$1'" ;;
  esac
done

[[ "$runs" =~ ^[1-9][0-9]*$ ]] || bench_die "--runs must be a positive integer"
[[ "$runtime_s" =~ ^[1-9][0-9]*$ ]] || bench_die "--runtime must be a positive number of seconds"
[[ "$ramp_s" =~ ^[0-9]+$ ]] || bench_die "--ramp must be a number of seconds"
size_bytes="$(bench_size "$size")"
((size_bytes >= 64 * 1024 * 1024 && size_bytes % (1024 * 1024) == 0)) ||
  bench_die "--size must be a multiple of 1M and at least 64M"
bench_need fio nbdinfo nbdkit qemu-nbd python3 numfmt du

bench_workdir "$workdir_arg"
machine_start="$(bench_machine)"
date_start="$(date -u '+%Y-%m-%d %H:%M UTC')"
results="$workdir/results"
rm -rf "$results"
mkdir -p "$results"

start_qemu_nbd() {
  local port
  port="$(bench_free_port)"
  truncate -s "$size_bytes" "$workdir/qemu-nbd.img"
  datadir["qemu-nbd"]="$workdir/qemu-nbd.img"
  uri["qemu-nbd"]="nbd://127.0.0.1:$port/bench"
  # --shared: the 2-job cell opens two connections; --persistent: survive disconnects.
  bench_start qemu-nbd qemu-nbd --cache=none --aio=io_uring --format=raw --bind=127.0.0.1 \
    --port="$port" --export-name=bench --shared=16 --persistent "$workdir/qemu-nbd.img" || true
}

start_nbdkit() {
  local name="$1" port
  shift
  port="$(bench_free_port)"
  uri[$name]="nbd://127.0.0.1:$port/bench"
  bench_start "$name" nbdkit --foreground --exit-with-parent --ipaddr=127.0.0.1 \
    --port="$port" "$@" || true
}

# --- cairnd build ---------------------------------------------------------------------------
want() { [[ ",$servers," == *",$1,"* ]]; }

if want cairnd; then
  if [[ -z "$cairnd_bin" ]]; then
    cairnd_bin="$repo/build/bench/tools/cairnd"
  fi
  if ((build == 1)); then
    bench_build_cairnd "$repo"
  fi
  [[ -x "$cairnd_bin" ]] || bench_die "no cairnd at $cairnd_bin (build it or pass --cairnd)"
fi

# --- start everything -----------------------------------------------------------------------
hot_cache=$((size_bytes + size_bytes / 4))
cold_cache=$((size_bytes / 8))
# The other two caches, set explicitly so the peak-RSS table can name the configured total.
map_cache=$((64 << 20))
index_cache=$((64 << 20))
if want cairnd; then
  bench_start_cairnd cairnd-hot "$cairnd_bin" bench "$size_bytes" \
    --set "cache.read_bytes=$hot_cache" --set "cache.map_bytes=$map_cache" \
    --set "cache.index_bytes=$index_cache" || true
  bench_start_cairnd cairnd-cold "$cairnd_bin" bench "$size_bytes" \
    --set "cache.read_bytes=$cold_cache" --set "cache.map_bytes=$map_cache" \
    --set "cache.index_bytes=$index_cache" || true
fi
if want qemu-nbd; then
  start_qemu_nbd
fi
if want nbdkit-file; then
  truncate -s "$size_bytes" "$workdir/nbdkit-file.img"
  datadir["nbdkit-file"]="$workdir/nbdkit-file.img"
  start_nbdkit nbdkit-file file "$workdir/nbdkit-file.img"
fi
if want nbdkit-null; then
  start_nbdkit nbdkit-null null "size=$size_bytes"
fi

active=()
for name in cairnd-hot cairnd-cold qemu-nbd nbdkit-file nbdkit-null; do
  if [[ -n "${uri[$name]:-}" ]]; then
    active+=("$name")
  fi
done
((${#active[@]} > 0)) || bench_die "no server is serving"

# --- preconditioning ------------------------------------------------------------------------
# physical_bytes NAME: what NAME stores right now, and how that was measured (tab-separated).
physical_bytes() {
  local name="$1" stat
  if [[ "$name" == cairnd-* ]]; then
    stat="$(bench_store_stat "$name" physical_bytes)"
    if [[ -n "$stat" ]]; then
      printf '%s\t%s\n' "$stat" "growth of the store's physical_bytes (admin API)"
      return
    fi
    printf '%s\t%s\n' "$(bench_disk_bytes "${datadir[$name]}")" "growth of du of the data dir"
    return
  fi
  printf '%s\t%s\n' "$(bench_disk_bytes "${datadir[$name]}")" "du of the backing file"
}

# record_peak_rss NAME CELL RUN: cairnd's peak RSS (VmHWM) during the cell, then resets the
# high-water mark (clear_refs 5) so the next cell starts from the current RSS.
record_peak_rss() {
  local name="$1" cell="$2" run="$3" hwm
  hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/${pid[$name]}/status" 2>/dev/null || true)"
  [[ -n "$hwm" ]] || return 0
  printf '%s\t%s\t%s\t%s\n' "$name" "$cell" "$run" "$hwm" >>"$results/peak-rss.tsv"
  echo 5 >"/proc/${pid[$name]}/clear_refs" 2>/dev/null ||
    bench_log "cannot reset $name's VmHWM: later cells show the peak so far"
}

precondition() {
  local name="$1" before="" after method="(no backing store)" physical="n/a" allocated
  if [[ -n "${datadir[$name]:-}" ]]; then
    IFS=$'\t' read -r before method < <(physical_bytes "$name")
  fi
  bench_log "preconditioning $name with random data"
  fio --name=precondition --ioengine=nbd --uri="${uri[$name]}" --rw=write --bs=1M --iodepth=8 \
    --size="$size_bytes" --refill_buffers --randrepeat=0 --end_fsync=1 --output-format=json \
    --output="$workdir/$name.precondition.json" >/dev/null ||
    bench_die "preconditioning $name failed"
  if [[ -n "$before" ]]; then
    IFS=$'\t' read -r after method < <(physical_bytes "$name")
    physical=$((after - before))
  fi
  allocated="$(bench_allocated_bytes "${uri[$name]}" 2>/dev/null || echo n/a)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$size_bytes" "$physical" "$allocated" "$method" \
    >>"$results/precondition.tsv"
  warm "$name"
}

# warm NAME: one sequential read of the whole export, so that "hot" servers hold the working
# set. After preconditioning, and again before every later run: the write cells of a run
# replace the data, and cairnd's read cache does not take large writes (write-around), so
# without it runs 2..N of the read cells would find a hot cairnd cold.
warm() {
  local name="$1"
  fio --name=warm --ioengine=nbd --uri="${uri[$name]}" --rw=read --bs=1M --iodepth=8 \
    --size="$size_bytes" --output-format=json --output="$workdir/$name.warm.json" >/dev/null ||
    bench_die "warm-up read of $name failed"
}

for name in "${active[@]}"; do
  precondition "$name"
  if [[ "$name" == cairnd-* ]]; then
    record_peak_rss "$name" precondition 0
  fi
done

# --- the matrix -----------------------------------------------------------------------------
# cell id -> fio arguments
declare -A cell_args=(
  [4k-randread-qd32]="--rw=randread --bs=4k --iodepth=32 --numjobs=1"
  [4k-randread-qd1]="--rw=randread --bs=4k --iodepth=1 --numjobs=1"
  [4k-randread-qd32-2jobs]="--rw=randread --bs=4k --iodepth=32 --numjobs=2"
  [1m-read-qd8]="--rw=read --bs=1M --iodepth=8 --numjobs=1"
  [4k-randwrite-qd32]="--rw=randwrite --bs=4k --iodepth=32 --numjobs=1"
  [4k-randwrite-qd1]="--rw=randwrite --bs=4k --iodepth=1 --numjobs=1"
  [1m-write-qd8]="--rw=write --bs=1M --iodepth=8 --numjobs=1"
)
cells=(4k-randread-qd32 4k-randread-qd1 4k-randread-qd32-2jobs 1m-read-qd8
  4k-randwrite-qd32 4k-randwrite-qd1 1m-write-qd8)
if [[ -n "$cells_arg" ]]; then
  IFS=, read -r -a cells <<<"$cells_arg"
  for cell in "${cells[@]}"; do
    [[ -n "${cell_args[$cell]:-}" ]] || bench_die "unknown cell '$cell'"
  done
fi

run_cell() {
  local name="$1" cell="$2" run="$3"
  # shellcheck disable=SC2086  # cell_args holds several words on purpose
  fio --name="$cell" --ioengine=nbd --uri="${uri[$name]}" ${cell_args[$cell]} \
    --size="$size_bytes" --time_based --runtime="$runtime_s" --ramp_time="$ramp_s" \
    --refill_buffers --randrepeat=0 --group_reporting --output-format=json \
    --output="$results/$name.$cell.$run.json" >/dev/null ||
    bench_log "fio failed: $name $cell run $run"
  if [[ "$name" == cairnd-* ]]; then
    record_peak_rss "$name" "$cell" "$run"
  fi
}

for ((run = 1; run <= runs; run++)); do
  if ((run > 1)); then
    for name in "${active[@]}"; do
      bench_log "run $run/$runs: warm-up read of $name"
      warm "$name"
    done
  fi
  # The servers take turns going first (run r starts with the r-th): whoever runs right after
  # a write cell meets a disk still absorbing it, and a fixed order hands that to one server.
  order=()
  for ((i = 0; i < ${#active[@]}; i++)); do
    order+=("${active[(i + run - 1) % ${#active[@]}]}")
  done
  for cell in "${cells[@]}"; do
    for name in "${order[@]}"; do
      # The cold instance exists for read cells only.
      if [[ "$name" == cairnd-cold && "$cell" == *write* ]]; then
        continue
      fi
      bench_log "run $run/$runs: $cell on $name"
      run_cell "$name" "$cell" "$run"
    done
  done
done

# --- report ---------------------------------------------------------------------------------
commit="$(git -C "$repo" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
store_note="$(bench_store_note "$repo")"
tree_note="$(bench_tree_note "$repo")"
[[ -z "$tree_note" ]] || notes+=("$tree_note")
if [[ "$store_note" == *MemChunkStore* ]]; then
  notes+=("cairnd keeps chunks in RAM (MemChunkStore) at this commit: its cold rows are not
cold and its writes are not durable, so no cairnd row is comparable with qemu-nbd yet")
fi
# One note per line in notes.txt.
for note in "${notes[@]+"${notes[@]}"}"; do
  printf '%s\n' "${note//$'\n'/ }"
done >"$results/notes.txt"
machine_end="at the end: load average $(cut -d' ' -f1-3 /proc/loadavg)"
META_DATE="$date_start to $(date -u '+%H:%M UTC')" META_MACHINE="$machine_start; $machine_end" \
  META_FIO="$(fio --version)" \
  META_COMMIT="$commit" META_STORE="$store_note" META_RUNS="$runs" META_RUNTIME="$runtime_s" \
  META_RAMP="$ramp_s" META_SIZE="$size_bytes" META_HOT="$hot_cache" META_COLD="$cold_cache" \
  META_MAP="$map_cache" META_INDEX="$index_cache" \
  python3 - "$results" <<'PY'
import json, os, sys
e = os.environ
notes = [l.strip() for l in open(os.path.join(sys.argv[1], "notes.txt")) if l.strip()]
meta = {
    "date": e["META_DATE"], "machine": e["META_MACHINE"], "fio": e["META_FIO"],
    "runs": int(e["META_RUNS"]), "runtime_s": int(e["META_RUNTIME"]),
    "ramp_s": int(e["META_RAMP"]), "size_bytes": int(e["META_SIZE"]),
    "commit": e["META_COMMIT"], "store_note": e["META_STORE"],
    "cairnd_hot_cache": e["META_HOT"], "cairnd_cold_cache": e["META_COLD"],
    "cairnd_map_cache": e["META_MAP"], "cairnd_index_cache": e["META_INDEX"], "notes": notes,
}
with open(os.path.join(sys.argv[1], "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
PY

report="$(python3 "$here/fio_json.py" peers "$results")"
# The iSCSI rows, same run: cairnd's iSCSI target against tgt (benchmarks/iscsi-perf.sh).
if want cairnd && [[ -z "$cells_arg" ]] && command -v iscsi-perf >/dev/null && command -v tgtd >/dev/null; then
  report+=$'\n'"$("$here/iscsi-perf.sh" --section --cairnd "$cairnd_bin" --runs "$runs" \
    --size "$size" --workdir "$workdir/iscsi" || echo "(benchmarks/iscsi-perf.sh failed)")"
fi
printf '%s\n' "$report"
if [[ -n "$out_file" ]]; then
  printf '%s\n' "$report" >"$out_file"
  bench_log "wrote $out_file"
fi
exit
}
