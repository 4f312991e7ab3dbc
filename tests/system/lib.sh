# Shared helpers for the system tests: start a real cairnd on free ports in a temporary data
# directory, run the cairn CLI against it, and check outcomes. Source it after setting
# `cairnd` and `cairn` to the binaries.

skip() {
  echo "SKIPPED: $*"
  if [ "${CI:-}" = true ]; then
    echo "CI=true: a skipped test is a failure"
    exit 1
  fi
  exit 77
}

fail() {
  echo "FAIL: $*"
  if [ -n "${dir:-}" ] && [ -f "$dir/cairnd.log" ]; then
    if grep -qE "Sanitizer|runtime error" "$dir/cairnd.log"; then
      echo "--- cairnd sanitizer report"
      grep -E -A 80 -m 1 "Sanitizer|runtime error" "$dir/cairnd.log"
    else
      echo "--- cairnd log (last 40 lines)"
      tail -n 40 "$dir/cairnd.log"
    fi
  fi
  exit 1
}

require() {
  command -v "$1" >/dev/null || skip "$1 is not installed (Debian package $2)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_node: starts cairnd in the background, with the settings in the array node_args
# added; sets dir, pid, nbd_port, admin_port, iscsi_port, C (the CLI with --admin and --nbd
# pointing at this node).
node_args=()
start_node() {
  dir=$(mktemp -d /tmp/cairn-system-XXXXXX)
  nbd_port=$(free_port)
  admin_port=$(free_port)
  iscsi_port=$(free_port)
  "$cairnd" --set node.data_dir="$dir/data" --set nbd.address=127.0.0.1 \
    --set nbd.port="$nbd_port" --set admin.port="$admin_port" --set node.reactors=2 \
    --set iscsi.address=127.0.0.1 --set iscsi.port="$iscsi_port" "${node_args[@]}" \
    >"$dir/cairnd.log" 2>&1 &
  pid=$!
  trap stop_node EXIT
  C=("$cairn" --admin "127.0.0.1:$admin_port" --nbd "127.0.0.1:$nbd_port")
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$admin_port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "cairnd exited during start-up"
    sleep 0.1
  done
  fail "cairnd's admin port $admin_port did not open within 30 s"
}

stop_node() {
  if [ -n "${pid:-}" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "${dir:-/nonexistent}"
}

# The node must still be alive and must not have logged a sanitizer report or an error.
check_node_healthy() {
  kill -0 "$pid" 2>/dev/null || fail "cairnd died"
  if grep -E "AddressSanitizer|runtime error|LeakSanitizer" "$dir/cairnd.log"; then
    fail "cairnd logged a sanitizer report"
  fi
}

# finish_node: the node must be healthy, stop cleanly on SIGTERM (exit 0) and report nothing
# from the sanitizers at shutdown (leaks, use after free of abandoned connections).
finish_node() {
  check_node_healthy
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=
  [ "$rc" = 0 ] || fail "cairnd exited $rc after SIGTERM"
  if grep -E "AddressSanitizer|runtime error|LeakSanitizer" "$dir/cairnd.log"; then
    fail "cairnd logged a sanitizer report at shutdown"
  fi
  return 0
}

# expect_ok CMD...: runs it; it must exit 0. Its stdout is left in $out.
expect_ok() {
  out=$("$@" 2>"$dir/stderr") || fail "'$*' exited $?: $(cat "$dir/stderr")"
}

# expect_fail CODE REGEX CMD...: it must exit CODE and print a line matching REGEX on stderr.
expect_fail() {
  local want=$1 pattern=$2
  shift 2
  local rc=0
  "$@" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want; stderr: $(cat "$dir/stderr")"
  grep -Eq -e "$pattern" "$dir/stderr" || fail "'$*' stderr lacks /$pattern/: $(cat "$dir/stderr")"
  [ -s "$dir/stdout" ] && fail "'$*' printed to stdout on failure: $(cat "$dir/stdout")"
  return 0
}

# json_get JSON PYTHON-EXPR: evaluates EXPR with `d` bound to the parsed JSON.
json_get() {
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
