# lib.sh: helpers shared by benchmarks/peers.sh and benchmarks/dedup.sh. Source it; it
# defines functions and these globals, which the sourcing script uses:
#   bench_name          prefix for messages
#   workdir, keep       the work dir and whether to keep it on exit
#   pid[NAME] uri[NAME] admin_port[NAME] datadir[NAME]   per started server
#   started=(NAME...)   servers to stop on exit
#   notes=(...)         sentences for the report
# shellcheck shell=bash

declare -A pid uri admin_port datadir
started=()
notes=()
workdir=""
keep=0
bench_name="${bench_name:-bench}"

bench_log() {
  echo "$bench_name: $*" >&2
}

bench_die() {
  echo "$bench_name: $*" >&2
  exit 1
}

bench_need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || bench_die "'$tool' is not installed (tools/install-deps)"
  done
}

# bench_size TEXT: "1G" -> bytes, or dies.
bench_size() {
  numfmt --from=iec "${1^^}" 2>/dev/null || bench_die "'$1' is not a size (e.g. 1G, 256M)"
}

# bench_workdir [DIR]: creates the work dir (a fresh temporary one by default).
bench_workdir() {
  if [[ -z "${1:-}" ]]; then
    workdir="$(mktemp -d "${TMPDIR:-/tmp}/cairn-$bench_name.XXXXXX")"
  else
    workdir="$1"
    mkdir -p "$workdir"
  fi
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Stops every server this script started (by its own pid only), then removes the work dir
# unless --keep was given or the script failed (its fio files and logs are then worth a look).
bench_cleanup() {
  local status=$? name
  if ((status != 0)); then
    keep=1
  fi
  for name in "${started[@]+"${started[@]}"}"; do
    bench_stop "$name"
  done
  if ((keep == 0)) && [[ -n "$workdir" ]]; then
    rm -rf "$workdir"
  elif [[ -n "$workdir" ]]; then
    bench_log "kept $workdir"
  fi
}

bench_stop() {
  local name="$1"
  if [[ -n "${pid[$name]:-}" ]]; then
    kill "${pid[$name]}" 2>/dev/null || true
    wait "${pid[$name]}" 2>/dev/null || true
    unset "pid[$name]"
  fi
}

bench_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until NAME's export answers, or the server exits, or 60 s pass.
bench_wait_ready() {
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

# bench_start NAME COMMAND...: runs a server in the background (log in the work dir) whose
# uri[NAME] is already set, and waits for its export. On failure, records a note and returns 1.
bench_start() {
  local name="$1"
  shift
  "$@" >"$workdir/$name.log" 2>&1 &
  pid[$name]=$!
  started+=("$name")
  if ! bench_wait_ready "$name"; then
    bench_log "$name did not start; its log:"
    tail -n 20 "$workdir/$name.log" >&2 || true
    notes+=("$name did not serve an export: $(tail -n 1 "$workdir/$name.log")")
    bench_stop "$name"
    unset "uri[$name]"
    return 1
  fi
  bench_log "$name serving ${uri[$name]}"
}

# bench_build_cairnd REPO: builds the release cairnd in REPO/build/bench.
bench_build_cairnd() {
  bench_log "building the release cairnd in build/bench"
  (cd "$1" && cmake --preset release -B build/bench >/dev/null &&
    ninja -C build/bench cairnd >&2) || bench_die "cannot build cairnd"
}

# bench_start_cairnd NAME BINARY VOLUME SIZE_BYTES [--set k=v ...]: a cairnd with a fresh
# data dir in the work dir, exporting the demo volume VOLUME on a free loopback port.
bench_start_cairnd() {
  local name="$1" bin="$2" volume="$3" size_bytes="$4" port
  shift 4
  port="$(bench_free_port)"
  admin_port[$name]="$(bench_free_port)"
  datadir[$name]="$workdir/$name-data"
  rm -rf "${datadir[$name]}"
  mkdir -p "${datadir[$name]}"
  uri[$name]="nbd://127.0.0.1:$port/$volume"
  bench_start "$name" "$bin" --set "node.data_dir=${datadir[$name]}" \
    --set nbd.address=127.0.0.1 --set "nbd.port=$port" --set admin.address=127.0.0.1 \
    --set "admin.port=${admin_port[$name]}" --set "iscsi.port=$(bench_free_port)" "$@" \
    --demo-volume "$volume:$size_bytes"
}

# bench_nbd_uri NAME VOLUME: the URI of another export of server NAME.
bench_nbd_uri() {
  echo "${uri[$1]%/*}/$2"
}

# bench_admin NAME METHOD PATH [JSON]: calls cairnd's admin API; prints the body, fails on
# HTTP errors or when curl is missing.
bench_admin() {
  local name="$1" method="$2" path="$3" body="${4:-}"
  command -v curl >/dev/null || return 1
  if [[ -n "$body" ]]; then
    curl -sf -X "$method" -H 'Content-Type: application/json' -d "$body" \
      "http://127.0.0.1:${admin_port[$name]}$path"
  else
    curl -sf -X "$method" "http://127.0.0.1:${admin_port[$name]}$path"
  fi
}

# bench_store_stat NAME KEY: a number from the "store" object of GET /v1/stats (e.g.
# physical_bytes), or nothing when the admin API does not answer.
bench_store_stat() {
  bench_admin "$1" GET /v1/stats 2>/dev/null | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)["store"][sys.argv[1]]
    print(int(v))
except Exception:
    pass' "$2" || true
}

# bench_disk_bytes PATH: bytes allocated on disk under PATH.
bench_disk_bytes() {
  du -sB1 "$1" | cut -f1
}

# Bytes BLOCK_STATUS (base:allocation) reports as data, not hole.
bench_allocated_bytes() {
  nbdinfo --map "$1" | awk '{ if (int($3) % 2 == 0) sum += $2 } END { printf "%d\n", sum }'
}

# bench_machine: one line describing this machine and its load right now.
bench_machine() {
  local cpu
  cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "$(nproc) cores ($cpu), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM," \
    "kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_store_note REPO: which chunk store cairnd wires at the checked-out tree, and the last
# commits that touched the store and the daemon, for the report's caveat.
bench_store_note() {
  local kind
  kind="$(grep -oE 'io::[A-Z][A-Za-z]+ChunkStore' "$1/tools/node.cc" 2>/dev/null | sort -u |
    paste -sd, -)"
  echo "tools/node.cc wires ${kind:-an unknown store};" \
    "last io/ commit $(git -C "$1" log -1 --format='%h %s (%cs)' -- io/ 2>/dev/null);" \
    "last tools/ commit $(git -C "$1" log -1 --format='%h %s (%cs)' -- tools/ 2>/dev/null)"
}

# bench_tree_note REPO: a sentence if the binary may include uncommitted source changes.
bench_tree_note() {
  local changed
  changed="$(git -C "$1" status --porcelain -- base io blockmap target net tools 2>/dev/null |
    wc -l)"
  if ((changed > 0)); then
    echo "the working tree had $changed uncommitted or untracked source files when this ran," \
      "so the binary may differ from the commit named"
  fi
}
