#!/bin/bash
# cairnd's admin API over raw HTTP: status codes and JSON errors, Prometheus /metrics, and
# hostile input (garbage, oversized headers and bodies, a stalled client, a connection flood)
# that must be answered or dropped while the node keeps serving.
#
# usage: admin_http_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
source "$(dirname "$0")/lib.sh"
require curl curl
require python3 python3
start_node
base="http://127.0.0.1:$admin_port"

# http METHOD PATH [BODY]: sets code and body.
http() {
  local args=(-s -o "$dir/body" -w '%{http_code}' -X "$1" "$base$2")
  if [ $# -ge 3 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$3")
  fi
  code=$(curl "${args[@]}") || fail "curl $1 $2 failed"
  body=$(cat "$dir/body")
}

# expect_status CODE METHOD PATH [BODY]
expect_status() {
  local want=$1
  shift
  http "$@"
  [ "$code" = "$want" ] || fail "$1 $2 answered $code, expected $want: $body"
}

# expect_error CODE SENTENCE-REGEX METHOD PATH [BODY]: a JSON {"error": ...} answer.
expect_error() {
  local want=$1 pattern=$2
  shift 2
  expect_status "$want" "$@"
  local sentence
  sentence=$(json_get "$body" 'd["error"]') || fail "$1 $2: error body is not JSON: $body"
  grep -Eq "$pattern" <<<"$sentence" || fail "$1 $2: error '$sentence' lacks /$pattern/"
}

echo "== status codes"
expect_status 200 GET /v1/volumes
[ "$(json_get "$body" 'd["volumes"]')" = "[]" ] || fail "fresh node lists volumes: $body"
expect_status 201 POST /v1/volumes '{"name": "web", "size": "256M", "chunk_size": 8192}'
[ "$(json_get "$body" 'd["chunk_size_bytes"]')" = 8192 ] || fail "create answered: $body"
expect_error 409 "already exists" POST /v1/volumes '{"name": "web", "size": 4096}'
expect_error 400 "not valid JSON" POST /v1/volumes '{"name": '
expect_error 400 "must be a JSON object" POST /v1/volumes '[1, 2]'
expect_error 400 'unknown field "colour"' POST /v1/volumes '{"name": "x", "size": 4096, "colour": 1}'
expect_error 400 'needs a "name" and a "size"' POST /v1/volumes '{"name": "x"}'
expect_error 400 '"read_only" must be true or false' POST /v1/volumes \
  '{"name": "x", "size": 4096, "read_only": "yes"}'
expect_error 400 "must match" POST /v1/volumes '{"name": "-x", "size": 4096}'
expect_error 400 "must match" GET /v1/volumes/UPPER
expect_error 404 "no volume named 'nope'" GET /v1/volumes/nope
expect_error 404 "no volume named 'nope'" DELETE /v1/volumes/nope
expect_error 404 "no such endpoint" GET /v2/volumes
expect_error 404 "no such endpoint" GET /v1/volumes/web/explode
expect_error 405 "not allowed" PUT /v1/volumes
expect_error 405 "not allowed" POST /metrics
expect_error 400 'resize needs "size"' POST /v1/volumes/web/resize '{}'
expect_status 200 POST /v1/volumes/web/resize '{"size": 536870912}'
expect_status 200 GET /v1/volumes/web
[ "$(json_get "$body" 'd["size_bytes"], d["stats"]["logical_bytes"]')" = \
  "(536870912, 536870912)" ] || fail "info after resize: $body"
expect_status 200 GET /v1/stats
json_get "$body" 'd["store"]["physical_bytes"]' >/dev/null || fail "stats: $body"

echo "== /metrics"
ctype=$(curl -s -o "$dir/metrics" -w '%{content_type}' "$base/metrics")
[[ $ctype == text/plain* ]] || fail "/metrics content type is '$ctype'"
for family in cairn_store_dedup_ratio cairn_store_physical_bytes cairn_store_referenced_bytes \
  cairn_store_cache_hit_ratio cairn_volumes cairn_volume_size_bytes cairn_admin_requests_total \
  cairn_volume_map_cache_hit_ratio cairn_volume_mapped_bytes cairn_volume_operations_total; do
  grep -q "^# TYPE $family " "$dir/metrics" || fail "/metrics lacks $family"
done
grep -qx 'cairn_volume_size_bytes{volume="web"} 536870912' "$dir/metrics" ||
  fail "/metrics has the wrong size for web: $(grep cairn_volume_size "$dir/metrics")"
grep -qx 'cairn_volumes 1' "$dir/metrics" || fail "/metrics counts volumes wrongly"
ok_before=$(sed -n 's/^cairn_admin_requests_total{outcome="ok"} //p' "$dir/metrics")
curl -s -o /dev/null "$base/v1/volumes"
ok_after=$(curl -s "$base/metrics" | sed -n 's/^cairn_admin_requests_total{outcome="ok"} //p')
[ "$ok_after" -gt "$ok_before" ] || fail "admin request counter did not grow"
# Every sample line is "name{labels} value" with a number.
grep -v '^#' "$dir/metrics" | grep -Ev '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+(Inf)?$' &&
  fail "malformed sample lines in /metrics"

echo "== hostile input"
python3 - "$admin_port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])

def talk(payload, read=True, timeout=15):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(payload)
    data = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    s.close()
    return data

def status(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None

def expect(name, payload, codes):
    got = status(talk(payload))
    if got not in codes:
        sys.exit(f"FAIL: {name}: answered {got}, expected one of {codes}")
    print(f"{name}: {got}")

expect("garbage", b"\x00\xff\x13garbage\r\n\r\n", {400})
expect("bad request line", b"GET\r\n\r\n", {400})
expect("bad version", b"GET / HTTP/9.9\r\n\r\n", {400})
expect("huge header", b"GET /v1/volumes HTTP/1.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n",
       {431})
expect("many headers", b"GET /v1/volumes HTTP/1.1\r\n" + b"X-A: b\r\n" * 20000 + b"\r\n",
       {431})
expect("huge body", b"POST /v1/volumes HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n",
       {413})
expect("bad content length", b"POST /v1/volumes HTTP/1.1\r\nContent-Length: -5\r\n\r\n", {400})
expect("bad chunking", b"POST /v1/volumes HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       {400})
talk(b"GET /v1/vol", read=False)          # hang up mid-request
talk(b"", read=False)                      # connect and leave

# A stalled client holds a connection only until the read deadline; meanwhile others work.
stalled = socket.create_connection(("127.0.0.1", port))
stalled.sendall(b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\n")
answer = talk(b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
if status(answer) != 200:
    sys.exit(f"FAIL: a stalled client blocked another: {answer[:80]!r}")

# A flood past the connection cap: extra connections are closed, and once the flood ends
# the node serves again.
flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
time.sleep(0.5)
for s in flood:
    s.close()
stalled.close()
time.sleep(0.5)
answer = talk(b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
if status(answer) != 200:
    sys.exit(f"FAIL: not serving after the flood: {answer[:80]!r}")

# Keep-alive: two requests on one connection get two answers.
answer = talk(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
if answer.count(b"HTTP/1.1 200 OK") != 2:
    sys.exit(f"FAIL: keep-alive answered {answer.count(b'HTTP/1.1 200 OK')} of 2")
print("stalled client, flood and keep-alive: ok")
PY

expect_status 200 GET /v1/volumes
[ "$(json_get "$body" '[v["name"] for v in d["volumes"]]')" = "['web']" ] ||
  fail "volumes changed under hostile input: $body"
bad=$(curl -s "$base/metrics" | sed -n 's/^cairn_admin_bad_requests_total //p')
[ "$bad" -ge 8 ] || fail "cairn_admin_bad_requests_total is $bad after 8 bad requests"
rejected=$(curl -s "$base/metrics" | sed -n 's/^cairn_admin_rejected_connections_total //p')
[ "$rejected" -ge 1 ] || fail "a flood of 100 connections was not capped (rejected: $rejected)"
# Stopping with connections still open (one mid-request, one idle) must be clean too.
python3 -c '
import socket, sys, time
a = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
a.sendall(b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\n")
b = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("open", flush=True)
time.sleep(3)
' "$admin_port" >"$dir/open.txt" &
opener=$!
for _ in $(seq 50); do grep -q open "$dir/open.txt" && break; sleep 0.1; done
finish_node
wait "$opener" || true
echo "PASS"
