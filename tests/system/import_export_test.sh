#!/bin/bash
# cairn import and export through libnbd against a real cairnd: a file with data, zero runs,
# holes and an unaligned tail goes in and comes out byte-identical; zero and hole ranges are
# skipped (the exported file is sparse); volume-to-volume copies by NBD URI; overwriting
# data with zeroes; size and connection errors; dedup and byte counters visible afterwards.
#
# usage: import_export_test.sh PATH-TO-CAIRND PATH-TO-CAIRN
set -euo pipefail
cairnd=$1
cairn=$2
source "$(dirname "$0")/lib.sh"
require python3 python3
require curl curl
require script bsdutils
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "/usr/bin/python3 lacks nbd (python3-libnbd)"
start_node

# 40 MiB + 1000 bytes: random, zeroes, random, a hole, random, and an unaligned tail.
img="$dir/in.raw"
head -c 8M /dev/urandom >"$img"
head -c 8M /dev/zero >>"$img"
head -c 4M /dev/urandom >>"$img"
truncate -s 36M "$img"
head -c 4M /dev/urandom >>"$img"
head -c 1000 /dev/urandom >>"$img"
size=$(stat -c %s "$img")

expect_ok "${C[@]}" volume create disk 64M
expect_ok "${C[@]}" volume create small 16M

echo "== import"
expect_ok "${C[@]}" import "$img" disk
echo "$out"
[[ $out == "imported 40.0 MiB from $img to nbd://127.0.0.1:$nbd_port/disk in "* ]] ||
  fail "import summary: $out"
grep -q "cairn: importing 100%" "$dir/stderr" || fail "no progress lines: $(cat "$dir/stderr")"

echo "== export"
expect_ok "${C[@]}" --json export disk "$dir/out.raw"
[ "$(json_get "$out" 'd["total_bytes"]')" = $((64 << 20)) ] || fail "export --json: $out"
zero=$(json_get "$out" 'd["zero_bytes"]')
data=$(json_get "$out" 'd["data_bytes"]')
[ $((zero + data)) = $((64 << 20)) ] || fail "data + zero != total: $out"
# At most the 16 MiB + 1000 bytes of random data need writing; everything else is skipped.
[ "$data" -le $(((16 << 20) + 4096)) ] || fail "export wrote $data bytes of data: $out"
[ "$(stat -c %s "$dir/out.raw")" = $((64 << 20)) ] || fail "exported file has the wrong size"
cp --sparse=always "$img" "$dir/expected.raw"
truncate -s 64M "$dir/expected.raw"
cmp "$dir/expected.raw" "$dir/out.raw" || fail "export differs from the imported image"
allocated=$(($(stat -c %b "$dir/out.raw") * $(stat -c %B "$dir/out.raw")))
[ "$allocated" -lt $((24 << 20)) ] || fail "exported file is not sparse: $allocated bytes"
echo "round trip byte-identical; $data data bytes, $zero zero bytes skipped"

echo "== volume to volume by NBD URI, and dedup"
expect_ok "${C[@]}" volume create copy 64M
expect_ok "${C[@]}" --quiet import "nbd://127.0.0.1:$nbd_port/disk" copy
[ ! -s "$dir/stderr" ] || fail "--quiet printed progress: $(cat "$dir/stderr")"
expect_ok "${C[@]}" export copy "$dir/copy.raw"
cmp "$dir/expected.raw" "$dir/copy.raw" || fail "volume copy differs"
expect_ok "${C[@]}" --json volume info copy
ratio=$(json_get "$out" 'd["store"]["dedup_ratio"]')
python3 -c "import sys; sys.exit(0 if $ratio >= 1.8 else 1)" ||
  fail "two identical volumes give dedup ratio $ratio"
mapped=$(json_get "$out" 'd["stats"]["mapped_bytes"]')
[ "$mapped" -ge $((16 << 20)) ] || fail "copy maps only $mapped bytes"

echo "== overwrite with zeroes"
head -c 48M /dev/zero >"$dir/zero.raw"
expect_ok "${C[@]}" import "$dir/zero.raw" copy
expect_ok "${C[@]}" export copy "$dir/copy2.raw"
truncate -s 64M "$dir/zero.raw"
cmp "$dir/zero.raw" "$dir/copy2.raw" || fail "zeroes did not replace old data"

echo "== progress bar on a terminal"
script -qec "$(printf '%q ' "${C[@]}") import $img small2" /dev/null >"$dir/tty.txt" 2>&1 &&
  fail "import into a missing volume succeeded on a terminal"
expect_ok "${C[@]}" volume create small2 48M
script -qec "$(printf '%q ' "${C[@]}") import $img small2" /dev/null >"$dir/tty.txt" 2>&1 ||
  fail "import on a terminal failed: $(cat "$dir/tty.txt")"
grep -q $'\rimporting \[#\{30\}\] 100%' "$dir/tty.txt" ||
  fail "no progress bar on a terminal: $(cat -v "$dir/tty.txt")"

echo "== a volume in use cannot be deleted"
/usr/bin/python3 -c '
import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("connected", flush=True)
time.sleep(5)
' "nbd://127.0.0.1:$nbd_port/small2" >"$dir/holder.txt" &
holder=$!
for _ in $(seq 50); do grep -q connected "$dir/holder.txt" && break; sleep 0.1; done
grep -q connected "$dir/holder.txt" || fail "the NBD client did not connect"
expect_fail 1 "volume 'small2' is in use by a client; disconnect it first" \
  "${C[@]}" volume delete small2
wait "$holder"
expect_ok "${C[@]}" volume delete small2

echo "== errors"
expect_fail 1 "holds only 16777216; make it larger first" "${C[@]}" import "$img" small
expect_fail 1 "cannot connect to nbd://127.0.0.1:$nbd_port/ghost" "${C[@]}" import "$img" ghost
expect_fail 1 "cannot open $dir/missing.raw" "${C[@]}" import "$dir/missing.raw" disk
expect_fail 2 "volume name 'Disk' must match" "${C[@]}" export Disk "$dir/x.raw"
dead=$(free_port)
expect_fail 1 "cannot connect to nbd://127.0.0.1:$dead/disk" \
  "$cairn" --nbd "127.0.0.1:$dead" export disk "$dir/x.raw"

echo "== metrics after I/O"
curl -s "http://127.0.0.1:$admin_port/metrics" >"$dir/metrics"
written=$(sed -n 's/^cairn_volume_bytes_total{volume="disk",direction="write"} //p' "$dir/metrics")
[ -n "$written" ] && [ "$written" -ge $((16 << 20)) ] ||
  fail "cairn_volume_bytes_total for disk writes is '$written'"
read_bytes=$(sed -n 's/^cairn_volume_bytes_total{volume="disk",direction="read"} //p' "$dir/metrics")
[ -n "$read_bytes" ] && [ "$read_bytes" -ge $((16 << 20)) ] ||
  fail "cairn_volume_bytes_total for disk reads is '$read_bytes'"

# The NBD front end's own metrics: requests by command, bytes, and latency histograms.
nbd_writes=$(sed -n 's/^cairn_nbd_requests_total{command="write"} //p' "$dir/metrics")
[ -n "$nbd_writes" ] && [ "$nbd_writes" -gt 0 ] || fail "cairn_nbd_requests_total write: '$nbd_writes'"
hist_writes=$(sed -n 's/^cairn_nbd_request_duration_seconds_count{command="write"} //p' "$dir/metrics")
[ "$hist_writes" = "$nbd_writes" ] || fail "write latency count $hist_writes != $nbd_writes writes"
inf=$(sed -n 's/^cairn_nbd_request_duration_seconds_bucket{command="write",le="+Inf"} //p' \
  "$dir/metrics")
[ "$inf" = "$nbd_writes" ] || fail "write latency +Inf bucket $inf != $nbd_writes writes"
nbd_in=$(sed -n 's/^cairn_nbd_bytes_total{direction="write"} //p' "$dir/metrics")
[ -n "$nbd_in" ] && [ "$nbd_in" -ge $((16 << 20)) ] || fail "cairn_nbd_bytes_total write: '$nbd_in'"
zeroes=$(sed -n 's/^cairn_nbd_requests_total{command="write_zeroes"} //p' "$dir/metrics")
[ -n "$zeroes" ] && [ "$zeroes" -gt 0 ] || fail "import sent no WRITE_ZEROES: '$zeroes'"

finish_node
echo "PASS"
