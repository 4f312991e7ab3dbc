#!/usr/bin/env bash
# scaling.sh: IOPS of one cairnd export with 1 and 2 reactor threads (node.reactors) and with
# 1, 2 and 4 client connections (fio --numjobs with the nbd engine, one connection per job),
# 4K random reads at QD32 per connection from a working set held in the read cache. Also
# records each cairnd's peak RSS (VmHWM). Not part of CI.
#
#   benchmarks/scaling.sh --cairnd PATH [--runs 3] [--runtime 5] [--size 1G] [--out FILE]
set -euo pipefail
cairnd=""
runs=3
runtime_s=5
size=1G
out_file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cairnd) cairnd="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --runtime) runtime_s="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --out) out_file="$2"; shift 2 ;;
    *) echo "scaling.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -x "$cairnd" ]] || { echo "scaling.sh: --cairnd PATH is required" >&2; exit 2; }
size_bytes="$(numfmt --from=iec "$size")"
work="$(mktemp -d)"
trap 'kill "${server_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
iops() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(sum(j["read"]["iops"] for j in d["jobs"])))' "$1"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
report="| reactors | connections | IOPS (median of $runs) | runs | peak RSS MiB |"$'\n'"|---:|---:|---:|---|---:|"
for reactors in 1 2; do
  port="$(free_port)"
  admin="$(free_port)"
  rm -rf "$work/data"
  mkdir -p "$work/data"
  "$cairnd" --set "node.data_dir=$work/data" --set nbd.address=127.0.0.1 --set "nbd.port=$port" \
    --set admin.address=127.0.0.1 --set "admin.port=$admin" --set "node.reactors=$reactors" \
    --set "cache.read_bytes=$((size_bytes * 5 / 4))" --demo-volume "bench:$size_bytes" \
    >"$work/cairnd.log" 2>&1 &
  server_pid=$!
  uri="nbd://127.0.0.1:$port/bench"
  for _ in $(seq 100); do nbdinfo --size "$uri" >/dev/null 2>&1 && break; sleep 0.1; done
  fio --name=pre --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size="$size" \
    --refill_buffers --end_fsync=1 --output-format=json >/dev/null
  fio --name=warm --ioengine=nbd --uri="$uri" --rw=read --bs=1M --iodepth=8 --size="$size" \
    --output-format=json >/dev/null
  for jobs in 1 2 4; do
    all=()
    for run in $(seq "$runs"); do
      fio --name=scale --ioengine=nbd --uri="$uri" --rw=randread --bs=4k --iodepth=32 \
        --numjobs="$jobs" --size="$size" --time_based --runtime="$runtime_s" \
        --ramp_time=1 --output-format=json --output="$work/r.json" >/dev/null
      all+=("$(iops "$work/r.json")")
    done
    med="$(printf '%s\n' "${all[@]}" | median)"
    rss="$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$server_pid/status")"
    report+=$'\n'"| $reactors | $jobs | $med | ${all[*]} | $rss |"
    echo "reactors=$reactors jobs=$jobs iops=${all[*]} median=$med rss=${rss}MiB" >&2
  done
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
done
echo "$report"
[[ -z "$out_file" ]] || echo "$report" >"$out_file"
