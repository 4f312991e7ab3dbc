#!/bin/bash
# The cairn CLI against a real cairnd: volume create, list, info, resize and delete, human
# and --json output, and the errors an operator will meet (bad name, bad size, duplicate,
# unknown volume, cairnd not running).
#
# usage: cli_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
source "$(dirname "$0")/lib.sh"
require python3 python3
start_node

echo "== create"
expect_ok "${C[@]}" volume create alpha 1G --description "first volume"
[[ $out == "created volume alpha (1.0 GiB, 4096-byte blocks, 4.0 KiB chunks, write-back)" ]] ||
  fail "create printed: $out"
expect_ok "${C[@]}" --json volume create beta 64M --block-size 512 --chunk-size 16K \
  --write-through --read-only
[ "$(json_get "$out" 'd["size_bytes"], d["block_size_bytes"], d["chunk_size_bytes"]')" = \
  "(67108864, 512, 16384)" ] || fail "create --json answered: $out"
[ "$(json_get "$out" 'd["durability"], d["read_only"]')" = "('write-through', True)" ] ||
  fail "create --json answered: $out"

echo "== list"
expect_ok "${C[@]}" volume list
echo "$out"
[ "$(head -1 <<<"$out" | awk '{print $1, $2}')" = "NAME SIZE" ] || fail "no header: $out"
grep -Eq '^alpha +1\.0 GiB +4096 +4\.0 KiB +write-back +rw +first volume$' <<<"$out" ||
  fail "alpha row wrong: $out"
grep -Eq '^beta +64\.0 MiB +512 +16\.0 KiB +write-through +ro$' <<<"$out" ||
  fail "beta row wrong: $out"
expect_ok "${C[@]}" volume list --json
[ "$(json_get "$out" 'sorted(v["name"] for v in d["volumes"])')" = "['alpha', 'beta']" ] ||
  fail "list --json: $out"

echo "== info"
expect_ok "${C[@]}" volume info alpha
echo "$out"
grep -Eq '^size +1\.0 GiB \(1073741824 bytes\)$' <<<"$out" || fail "info size: $out"
grep -Eq '^description +first volume$' <<<"$out" || fail "info description: $out"
expect_ok "${C[@]}" --json volume info alpha
[ "$(json_get "$out" 'd["stats"]["logical_bytes"]')" = 1073741824 ] || fail "info --json: $out"
json_get "$out" 'd["store"]["dedup_ratio"]' >/dev/null || fail "info --json lacks store: $out"

echo "== resize"
expect_ok "${C[@]}" volume resize alpha 2G
[ "$out" = "resized volume alpha to 2.0 GiB" ] || fail "resize printed: $out"
expect_ok "${C[@]}" --json volume info alpha
[ "$(json_get "$out" 'd["size_bytes"]')" = 2147483648 ] || fail "size after resize: $out"
expect_fail 1 "size must be a positive multiple of the block size" \
  "${C[@]}" volume resize alpha 1000
expect_fail 1 "no volume named 'ghost'" "${C[@]}" volume resize ghost 1G
echo "== access"
expect_ok "${C[@]}" volume access alpha
[ "$out" = $'initiators   any\nchap         off\nmutual chap  off' ] || fail "access: $out"
expect_ok "${C[@]}" volume access alpha --allow iqn.2026-11.org.example:a,iqn.2026-11.org.example:b \
  --chap alice:alice-secret-1 --mutual-chap cairn:cairn-secret-2
[ "$out" = $'initiators   iqn.2026-11.org.example:a, iqn.2026-11.org.example:b\nchap         user alice\nmutual chap  user cairn' ] ||
  fail "access set: $out"
expect_ok "${C[@]}" --json volume info alpha
[ "$(json_get "$out" 'd["access"]["chap"], d["access"]["mutual_chap"]')" = "(True, True)" ] ||
  fail "info --json access: $out"
grep -q 'secret' <<<"$out" && fail "the API returned a secret: $out"
expect_fail 1 "a CHAP secret must be 12 to 255 bytes" "${C[@]}" volume access alpha --chap bob:short
expect_fail 1 "must differ from the initiator's" "${C[@]}" volume access alpha \
  --mutual-chap cairn:alice-secret-1
expect_fail 2 "--chap takes USER:SECRET" "${C[@]}" volume access alpha --chap nocolon
expect_fail 1 "must be an iqn., eui. or naa. name" "${C[@]}" volume access alpha --allow host1
expect_ok "${C[@]}" volume access alpha --clear
[ "$out" = $'initiators   any\nchap         off\nmutual chap  off' ] || fail "access --clear: $out"

echo "== errors"
expect_fail 2 "volume name 'Bad_Name' must match" "${C[@]}" volume create Bad_Name 1G
expect_fail 2 "'12Q' is not a size" "${C[@]}" volume create gamma 12Q
expect_fail 1 "block size must be 512 or 4096" "${C[@]}" volume create gamma 1G --block-size 1024
expect_fail 1 "chunk size must be a power of two" "${C[@]}" volume create gamma 1G \
  --chunk-size 128K
expect_fail 1 "size must be a positive multiple" "${C[@]}" volume create gamma 0
expect_fail 1 "volume 'alpha' already exists" "${C[@]}" volume create alpha 1G
expect_fail 1 "no volume named 'ghost'" "${C[@]}" volume info ghost
expect_fail 1 "no volume named 'ghost'" "${C[@]}" volume delete ghost
expect_fail 2 "unknown command 'frobnicate'" "${C[@]}" frobnicate
expect_fail 2 "unknown option --bogus" "${C[@]}" volume list --bogus
expect_fail 2 "missing volume name" "${C[@]}" volume info
expect_fail 2 "--admin expects HOST:PORT" "$cairn" --admin nowhere volume list
dead_port=$(free_port)
expect_fail 1 "cannot reach cairnd at 127.0.0.1:$dead_port: connection refused\. Is cairnd running\?" \
  "$cairn" --admin "127.0.0.1:$dead_port" volume list

echo "== delete"
expect_ok "${C[@]}" volume delete beta
[ "$out" = "deleted volume beta" ] || fail "delete printed: $out"
expect_ok "${C[@]}" --json volume list
[ "$(json_get "$out" '[v["name"] for v in d["volumes"]]')" = "['alpha']" ] ||
  fail "beta still listed: $out"
expect_ok "${C[@]}" volume delete alpha
expect_ok "${C[@]}" volume list
[ "$out" = "no volumes" ] || fail "list after deleting all: $out"

echo "== stats"
expect_ok "${C[@]}" --json stats
[ "$(json_get "$out" 'd["volumes"]')" = 0 ] || fail "stats: $out"

finish_node
echo "PASS"
