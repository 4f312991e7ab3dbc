#!/usr/bin/env bash
# dedup.sh: measures cairnd's deduplication (issue 2, M6). Not part of CI.
#
#   benchmarks/dedup.sh [--size SIZE] [--bs SIZE] [--image SIZE] [--volumes N] [--out FILE]
#                       [--cairnd PATH] [--no-build] [--workdir DIR] [--keep]
#
# 1. fio writes SIZE (default 1G) sequentially, bs --bs (default 64k) at QD16, to a fresh
#    cairnd twice: once with unique random data (--refill_buffers) and once with
#    --dedupe_percentage=50. Reports logical bytes, the store's physical bytes, their ratio
#    and the write throughput of each.
# 2. A random image of --image bytes (default 256M) is copied with nbdcopy into --volumes
#    (default 10) volumes of one fresh cairnd. Reports logical bytes against physical bytes
#    after the first copy and after all of them, and each copy's throughput.
#
# Physical bytes come from the admin API (GET /v1/stats, store.physical_bytes) and, as a
# cross-check, from the growth of the data dir on disk (du). Markdown goes to stdout and --out.
# The whole script is one compound command, so bash parses all of it before running any of
# it: editing this file while a run is in progress cannot change that run.
{
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bench_name=dedup.sh
# shellcheck source=lib.sh
source "$here/lib.sh"

size=1G
bs=64k
image=256M
volumes=10
out_file=""
cairnd_bin=""
build=1
workdir_arg=""

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --bs) bs="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --volumes) volumes="$2"; shift 2 ;;
    --out) out_file="$2"; shift 2 ;;
    --cairnd) cairnd_bin="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --workdir) workdir_arg="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; bench_die "unknown argument '$1'" ;;
  esac
done

size_bytes="$(bench_size "$size")"
bs_bytes="$(bench_size "$bs")"
image_bytes="$(bench_size "$image")"
[[ "$volumes" =~ ^[1-9][0-9]*$ ]] || bench_die "--volumes must be a positive integer"
((size_bytes % bs_bytes == 0 && bs_bytes % 4096 == 0)) ||
  bench_die "--bs must be a multiple of 4k that divides --size"
((image_bytes % (1024 * 1024) == 0)) || bench_die "--image must be a multiple of 1M"
bench_need fio nbdinfo nbdcopy python3 numfmt du curl

bench_workdir "$workdir_arg"
machine_start="$(bench_machine)"
date_start="$(date -u '+%Y-%m-%d %H:%M UTC')"
[[ -n "$cairnd_bin" ]] || cairnd_bin="$repo/build/bench/tools/cairnd"
if ((build == 1)); then
  bench_build_cairnd "$repo"
fi
[[ -x "$cairnd_bin" ]] || bench_die "no cairnd at $cairnd_bin (build it or pass --cairnd)"

# physical NAME: "store_physical_bytes<TAB>du_bytes" for a running cairnd.
physical() {
  local stat
  stat="$(bench_store_stat "$1" physical_bytes)"
  printf '%s\t%s\n' "${stat:-n/a}" "$(bench_disk_bytes "${datadir[$1]}")"
}

# delta AFTER BEFORE: AFTER - BEFORE, or n/a.
delta() {
  if [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]]; then
    echo $(($1 - $2))
  else
    echo n/a
  fi
}

# ratio NUM DEN: NUM/DEN with two decimals, or n/a.
ratio() {
  if [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[1-9][0-9]*$ ]]; then
    python3 -c "print(f'{$1 / $2:.2f}')"
  else
    echo n/a
  fi
}

num() {
  if [[ "$1" =~ ^[0-9]+$ ]]; then
    python3 -c "print(f'{$1:,}')"
  else
    echo "$1"
  fi
}

report=()
emit() {
  report+=("$*")
}

# --- 1. fio with and without dedupable data ---------------------------------------------------
fio_write() {
  local name="$1" label="$2" before_store before_du after_store after_du summary mbps p99
  shift 2
  bench_start_cairnd "$name" "$cairnd_bin" bench "$size_bytes" ||
    bench_die "cairnd did not serve; see $workdir/$name.log"
  IFS=$'\t' read -r before_store before_du < <(physical "$name")
  bench_log "$label: writing $size to ${uri[$name]}"
  fio --name="$name" --ioengine=nbd --uri="${uri[$name]}" --rw=write --bs="$bs_bytes" \
    --iodepth=16 --size="$size_bytes" --refill_buffers "$@" --end_fsync=1 \
    --output-format=json --output="$workdir/$name.json" >/dev/null || bench_die "fio failed"
  IFS=$'\t' read -r after_store after_du < <(physical "$name")
  summary="$(python3 "$here/fio_json.py" summary "$workdir/$name.json")"
  IFS=$'\t' read -r _ mbps p99 <<<"$summary"
  local phys
  phys="$(delta "$after_store" "$before_store")"
  emit "| $label | $(num "$size_bytes") | $(num "$phys") | $(ratio "$phys" "$size_bytes")" \
    "| $(num "$(delta "$after_du" "$before_du")") | $mbps | $p99 |"
  bench_stop "$name"
}

emit "### fio sequential write of $size, bs $bs, QD16, \`--refill_buffers\`"
emit ""
emit "| data | logical bytes | physical bytes (store) | physical/logical" \
  "| data dir growth (du) | write MB/s | p99 µs |"
emit "|---|---:|---:|---:|---:|---:|---:|"
fio_write unique "unique random data" 
fio_write dedup50 "\`--dedupe_percentage=50\`" --dedupe_percentage=50

# --- 2. the same image in N volumes ----------------------------------------------------------
bench_log "making a random $image image"
head -c "$image_bytes" /dev/urandom >"$workdir/image.raw"
name=images
bench_start_cairnd "$name" "$cairnd_bin" img0 "$image_bytes" ||
  bench_die "cairnd did not serve; see $workdir/$name.log"
for ((i = 1; i < volumes; i++)); do
  bench_admin "$name" POST /v1/volumes "{\"name\": \"img$i\", \"size\": $image_bytes}" \
    >/dev/null || bench_die "cannot create volume img$i through the admin API"
done
IFS=$'\t' read -r base_store base_du < <(physical "$name")
emit ""
emit "### One random $image image copied into $volumes volumes with nbdcopy --flush"
emit ""
emit "| after copy | logical bytes | physical bytes (store) | physical/logical" \
  "| data dir growth (du) | copy MB/s |"
emit "|---|---:|---:|---:|---:|---:|"
for ((i = 0; i < volumes; i++)); do
  target="$(bench_nbd_uri "$name" "img$i")"
  start_ns="$(date +%s%N)"
  nbdcopy --flush "$workdir/image.raw" "$target" || bench_die "nbdcopy into img$i failed"
  end_ns="$(date +%s%N)"
  mbps="$(python3 -c "print(f'{$image_bytes / (($end_ns - $start_ns) / 1e9) / 1e6:.0f}')")"
  IFS=$'\t' read -r store du < <(physical "$name")
  logical=$(((i + 1) * image_bytes))
  phys="$(delta "$store" "$base_store")"
  emit "| $((i + 1)) | $(num "$logical") | $(num "$phys") | $(ratio "$phys" "$logical")" \
    "| $(num "$(delta "$du" "$base_du")") | $mbps |"
done
# Read one copy back through NBD to check the volume holds the image.
nbdcopy "$(bench_nbd_uri "$name" "img$((volumes - 1))")" "$workdir/readback.raw"
if cmp -s "$workdir/image.raw" "$workdir/readback.raw"; then
  readback="img$((volumes - 1)) read back byte-identical"
else
  readback="img$((volumes - 1)) DID NOT read back identical"
fi
bench_stop "$name"

# --- report -----------------------------------------------------------------------------------
{
  echo "## Dedup, $date_start to $(date -u '+%H:%M UTC')"
  echo ""
  echo "- machine: $machine_start"
  echo "- cairnd: commit $(git -C "$repo" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
  echo "- cairnd's store at this commit: $(bench_store_note "$repo")"
  echo "- physical bytes are growth during the step; n/a means the admin API did not answer"
  echo "- check: $readback"
  tree_note="$(bench_tree_note "$repo")"
  [[ -z "$tree_note" ]] || echo "- NOTE: $tree_note"
  for note in "${notes[@]+"${notes[@]}"}"; do
    echo "- NOTE: $note"
  done
  echo ""
  printf '%s\n' "${report[@]}"
} >"$workdir/report.md"
cat "$workdir/report.md"
if [[ -n "$out_file" ]]; then
  cp "$workdir/report.md" "$out_file"
  bench_log "wrote $out_file"
fi
exit
}
