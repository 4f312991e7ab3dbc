#!/usr/bin/env bash
# peers.sh: compares cairnd with other NBD servers on this machine, in one run, with fio's
# nbd engine (issue 2, M6; BRIEF, "Measuring honestly"). Not part of CI.
#
#   benchmarks/peers.sh [--runs N] [--runtime S] [--ramp S] [--size SIZE] [--out FILE]
#                       [--servers LIST] [--cairnd PATH] [--no-build] [--workdir DIR] [--keep]
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
# sequentially. Then, N times: for each cell of the matrix, each server in turn. The report
# (markdown, to stdout and --out) gives medians and cairnd/peer ratios.
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
workdir=""
keep=0

usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  echo "peers.sh: $*" >&2
  exit 1
}

log() {
  echo "peers.sh: $*" >&2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --runtime) runtime_s="$2"; shift 2 ;;
    --ramp) ramp_s="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --out) out_file="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --cairnd) cairnd_bin="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --workdir) workdir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ "$runtime_s" =~ ^[1-9][0-9]*$ ]] || die "--runtime must be a positive number of seconds"
[[ "$ramp_s" =~ ^[0-9]+$ ]] || die "--ramp must be a number of seconds"
size_bytes="$(numfmt --from=iec "$size")" || die "--size '$size' is not a size (e.g. 1G)"
((size_bytes >= 64 * 1024 * 1024 && size_bytes % (1024 * 1024) == 0)) ||
  die "--size must be a multiple of 1M and at least 64M"

for tool in fio nbdinfo nbdkit qemu-nbd python3 numfmt du; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (tools/install-deps installs it)"
done

# --- work dir and cleanup -------------------------------------------------------------------
if [[ -z "$workdir" ]]; then
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-peers.XXXXXX")"
else
  mkdir -p "$workdir"
fi
results="$workdir/results"
rm -rf "$results"
mkdir -p "$results"

declare -A pid uri datadir
started=()

cleanup() {
  local name
  for name in "${started[@]}"; do
    kill "${pid[$name]}" 2>/dev/null || true
  done
  for name in "${started[@]}"; do
    wait "${pid[$name]}" 2>/dev/null || true
  done
  if ((keep == 0)); then
    rm -rf "$workdir"
  else
    log "kept $workdir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the export answers, or the server exits, or 60 s pass.
wait_ready() {
  local name="$1" i
  for ((i = 0; i < 600; i++)); do
    if ! kill -0 "${pid[$name]}" 2>/dev/null; then
      return 1
    fi
    if nbdinfo --size "${uri[$name]}" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

notes=()

# start NAME COMMAND...: runs a server in the background, logging to the work dir.
start() {
  local name="$1"
  shift
  "$@" >"$workdir/$name.log" 2>&1 &
  pid[$name]=$!
  started+=("$name")
  if ! wait_ready "$name"; then
    log "$name did not start; its log:"
    tail -n 20 "$workdir/$name.log" >&2 || true
    notes+=("$name did not serve an export, so it has no rows: $(tail -n 1 "$workdir/$name.log")")
    kill "${pid[$name]}" 2>/dev/null || true
    unset "uri[$name]"
    return 1
  fi
  log "$name serving ${uri[$name]}"
}

start_cairnd() {
  local name="$1" cache_bytes="$2" port admin
  port="$(free_port)"
  admin="$(free_port)"
  datadir[$name]="$workdir/$name-data"
  mkdir -p "${datadir[$name]}"
  uri[$name]="nbd://127.0.0.1:$port/bench"
  start "$name" "$cairnd_bin" --set "node.data_dir=${datadir[$name]}" \
    --set nbd.address=127.0.0.1 --set "nbd.port=$port" --set "admin.port=$admin" \
    --set "cache.read_bytes=$cache_bytes" --demo-volume "bench:$size_bytes" || true
}

start_qemu_nbd() {
  local port
  port="$(free_port)"
  truncate -s "$size_bytes" "$workdir/qemu-nbd.img"
  datadir[qemu-nbd]="$workdir/qemu-nbd.img"
  uri[qemu-nbd]="nbd://127.0.0.1:$port/bench"
  # --shared: the 2-job cell opens two connections; --persistent: survive disconnects.
  start qemu-nbd qemu-nbd --cache=none --aio=io_uring --format=raw --bind=127.0.0.1 \
    --port="$port" --export-name=bench --shared=16 --persistent "$workdir/qemu-nbd.img" || true
}

start_nbdkit() {
  local name="$1" port
  shift
  port="$(free_port)"
  uri[$name]="nbd://127.0.0.1:$port/bench"
  start "$name" nbdkit --foreground --exit-with-parent --ipaddr=127.0.0.1 --port="$port" \
    "$@" || true
}

# --- cairnd build ---------------------------------------------------------------------------
want() { [[ ",$servers," == *",$1,"* ]]; }

if want cairnd; then
  if [[ -z "$cairnd_bin" ]]; then
    cairnd_bin="$repo/build/bench/tools/cairnd"
  fi
  if ((build == 1)); then
    log "building the release cairnd in build/bench"
    (cd "$repo" && cmake --preset release -B build/bench >/dev/null &&
      ninja -C build/bench cairnd >&2) || die "cannot build cairnd"
  fi
  [[ -x "$cairnd_bin" ]] || die "no cairnd at $cairnd_bin (build it or pass --cairnd)"
fi

# --- start everything -----------------------------------------------------------------------
hot_cache=$((size_bytes + size_bytes / 4))
cold_cache=$((size_bytes / 8))
if want cairnd; then
  start_cairnd cairnd-hot "$hot_cache"
  start_cairnd cairnd-cold "$cold_cache"
fi
if want qemu-nbd; then
  start_qemu_nbd
fi
if want nbdkit-file; then
  truncate -s "$size_bytes" "$workdir/nbdkit-file.img"
  datadir[nbdkit-file]="$workdir/nbdkit-file.img"
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
((${#active[@]} > 0)) || die "no server is serving"

# --- preconditioning ------------------------------------------------------------------------
disk_bytes() {
  du -sB1 "$1" | cut -f1
}

# Bytes BLOCK_STATUS (base:allocation) reports as data, not hole.
allocated_bytes() {
  nbdinfo --map "$1" | awk '{ if (int($3) % 2 == 0) sum += $2 } END { printf "%d\n", sum }'
}

precondition() {
  local name="$1" before after physical method allocated
  before=0
  method="du of the backing file"
  if [[ -n "${datadir[$name]:-}" ]]; then
    before="$(disk_bytes "${datadir[$name]}")"
    [[ "$name" == cairnd-* ]] && method="growth of du of the data dir"
  fi
  log "preconditioning $name with random data"
  fio --name=precondition --ioengine=nbd --uri="${uri[$name]}" --rw=write --bs=1M --iodepth=8 \
    --size="$size_bytes" --refill_buffers --end_fsync=1 --output-format=json \
    --output="$workdir/$name.precondition.json" >/dev/null ||
    die "preconditioning $name failed"
  physical="n/a"
  if [[ -n "${datadir[$name]:-}" ]]; then
    after="$(disk_bytes "${datadir[$name]}")"
    physical=$((after - before))
  else
    method="(no backing store)"
  fi
  allocated="$(allocated_bytes "${uri[$name]}" 2>/dev/null || echo n/a)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$size_bytes" "$physical" "$allocated" "$method" \
    >>"$results/precondition.tsv"
  # One sequential read so that "hot" servers hold the working set.
  fio --name=warm --ioengine=nbd --uri="${uri[$name]}" --rw=read --bs=1M --iodepth=8 \
    --size="$size_bytes" --output-format=json --output="$workdir/$name.warm.json" >/dev/null ||
    die "warm-up read of $name failed"
}

for name in "${active[@]}"; do
  precondition "$name"
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

run_cell() {
  local name="$1" cell="$2" run="$3"
  # shellcheck disable=SC2086  # cell_args holds several words on purpose
  fio --name="$cell" --ioengine=nbd --uri="${uri[$name]}" ${cell_args[$cell]} \
    --size="$size_bytes" --time_based --runtime="$runtime_s" --ramp_time="$ramp_s" \
    --refill_buffers --group_reporting --output-format=json \
    --output="$results/$name.$cell.$run.json" >/dev/null ||
    log "fio failed: $name $cell run $run"
}

for ((run = 1; run <= runs; run++)); do
  for cell in "${cells[@]}"; do
    for name in "${active[@]}"; do
      # The cold instance exists for read cells only.
      if [[ "$name" == cairnd-cold && "$cell" == *write* ]]; then
        continue
      fi
      log "run $run/$runs: $cell on $name"
      run_cell "$name" "$cell" "$run"
    done
  done
done

# --- report ---------------------------------------------------------------------------------
commit="$(git -C "$repo" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
store_note="$(git -C "$repo" log -1 --format='%h %s (%cs)' -- io/ 2>/dev/null || echo unknown)"
store_note="last io/ commit: $store_note"
machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
machine="$machine, $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, kernel $(uname -r)"
machine="$machine, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${notes[@]+"${notes[@]}"}" >"$results/notes.txt"
META_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" META_MACHINE="$machine" META_FIO="$(fio --version)" \
  META_COMMIT="$commit" META_STORE="$store_note" META_RUNS="$runs" META_RUNTIME="$runtime_s" \
  META_RAMP="$ramp_s" META_SIZE="$size_bytes" META_HOT="$hot_cache" META_COLD="$cold_cache" \
  python3 - "$results" <<'PY'
import json, os, sys
e = os.environ
notes = [l.strip() for l in open(os.path.join(sys.argv[1], "notes.txt")) if l.strip()]
meta = {
    "date": e["META_DATE"], "machine": e["META_MACHINE"], "fio": e["META_FIO"],
    "runs": int(e["META_RUNS"]), "runtime_s": int(e["META_RUNTIME"]),
    "ramp_s": int(e["META_RAMP"]), "size_bytes": int(e["META_SIZE"]),
    "commit": e["META_COMMIT"], "store_note": e["META_STORE"],
    "cairnd_hot_cache": e["META_HOT"], "cairnd_cold_cache": e["META_COLD"], "notes": notes,
}
with open(os.path.join(sys.argv[1], "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
PY

report="$(python3 "$here/fio_json.py" peers "$results")"
printf '%s\n' "$report"
if [[ -n "$out_file" ]]; then
  printf '%s\n' "$report" >"$out_file"
  log "wrote $out_file"
fi
