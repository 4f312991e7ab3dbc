#!/bin/bash
# cairn_iscsi_write against a real cairnd: it reports writes and no errors, the store grows by
# about the bytes it wrote with no dedup hit (proof that every write carried unique data), it
# works on 512-byte LUNs with random offsets, and a write the target refuses (a read-only volume)
# is counted, reported and makes the exit code 1.
#
# usage: iscsi_write_test.sh PATH-TO-CAIRN_ISCSI_WRITE PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
tool=$1
cairnd=$2
cairn=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../tests/system/lib.sh"

[ -x "$tool" ] || skip "cairn_iscsi_write was not built (libiscsi-dev, tools/install-deps)"

start_node
prefix=iqn.2026-11.io.cairn
url() { echo "iscsi://127.0.0.1:$iscsi_port/$prefix:$1/0"; }
store() { # store KEY: a number from the store's statistics
  "${C[@]}" --json stats |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["store"][sys.argv[1]])' "$1"
}

expect_ok "${C[@]}" volume create seq 1G
expect_ok "${C[@]}" volume create rand512 64M --block-size 512
expect_ok "${C[@]}" volume create ro 8M --read-only

# Sequential 4 KiB writes on a fresh 1 GiB volume: no write lands twice in 2 s on a dev build,
# so every byte written must be stored once, and none of it may dedup.
physical_before=$(store physical_bytes)
hits_before=$(store dedup_hits)
expect_ok "$tool" --qd 4 --runtime 2 --ramp 0.2 --rw write "$(url seq)"
echo "$out"
json=$(head -n1 <<<"$out")
[ "$(json_get "$json" 'd["iops"] > 0 and d["writes"] > 0 and d["errors"] == 0')" = True ] ||
  fail "no writes or some errors: $out"
written=$(json_get "$json" 'd["bytes_all"]')
physical=$(($(store physical_bytes) - physical_before))
hits=$(($(store dedup_hits) - hits_before))
echo "bytes written $written, physical growth $physical, dedup hits $hits"
[ "$hits" = 0 ] || fail "$hits writes were dedup hits: the data was not unique"
if [ "$physical" -lt $((written * 99 / 100)) ] || [ "$physical" -gt $((written * 101 / 100)) ]; then
  fail "the store grew by $physical bytes for $written bytes written"
fi

# Random 4 KiB writes on 512-byte blocks (8 LBAs per write).
expect_ok "$tool" --qd 4 --runtime 1 --rw randwrite "$(url rand512)"
echo "$out"
[ "$(json_get "$(head -n1 <<<"$out")" 'd["iops"] > 0 and d["errors"] == 0')" = True ] ||
  fail "randwrite on 512-byte blocks: $out"

# A refused write is an error: counted, named, and the exit code says so.
rc=0
"$tool" --qd 2 --runtime 0.5 "$(url ro)" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
cat "$dir/stdout"
[ "$rc" = 1 ] || fail "writes to a read-only volume: exit $rc, expected 1"
[ "$(json_get "$(head -n1 "$dir/stdout")" 'd["errors"] > 0 and d["writes"] == 0')" = True ] ||
  fail "writes to a read-only volume were not counted as errors: $(cat "$dir/stdout")"
grep -q "DATA PROTECTION / WRITE_PROTECTED" "$dir/stdout" ||
  fail "the refused write's sense is not reported"

# Bad arguments and an unknown target exit 2.
expect_fail 2 "usage" "$tool" --bs 1000 "$(url seq)"
expect_fail 2 "login failed" "$tool" --runtime 1 "$(url nosuch)"

finish_node
echo PASS
