#!/bin/bash
# Real NBD clients against the real cairnd: qemu-img convert in and out (byte-identical),
# nbdcopy both ways, and fio's nbd engine with --verify over several connections (multi-conn).
#
# usage: tools_test.sh PATH-TO-CAIRND
set -euo pipefail
cairnd=$1

skip() {
  echo "SKIPPED: $*"
  if [ "${CI:-}" = true ]; then
    echo "CI=true: a skipped test is a failure"
    exit 1
  fi
  exit 77
}
for tool in qemu-img nbdcopy fio; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (qemu-utils, libnbd-bin, fio)"
done
fio --enghelp 2>/dev/null | grep -qw nbd || skip "this fio has no nbd engine"

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

dir=$(mktemp -d /tmp/cairn-nbd-tools-XXXXXX)
port=$(free_port)
"$cairnd" --set node.data_dir="$dir/data" --set nbd.address=127.0.0.1 --set nbd.port="$port" \
  --set admin.port="$(free_port)" --set iscsi.port="$(free_port)" --set node.reactors=2 \
  --demo-volume vol:64M >"$dir/cairnd.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$dir/cairnd.log"; echo "FAIL: cairnd exited"; exit 1; }
  sleep 0.1
done
uri="nbd://127.0.0.1:$port/vol"

# An image with data, an explicit zero run and a sparse tail.
head -c 40M /dev/urandom >"$dir/in.raw"
head -c 8M /dev/zero >>"$dir/in.raw"
head -c 4M /dev/urandom >>"$dir/in.raw"
truncate -s 64M "$dir/in.raw"

echo "== qemu-img convert in and out"
qemu-img convert -n -f raw -O raw "$dir/in.raw" "$uri"
qemu-img convert -f raw -O raw "$uri" "$dir/out.raw"
cmp "$dir/in.raw" "$dir/out.raw"
echo "qemu-img round trip: byte-identical"

echo "== nbdcopy"
nbdcopy "$uri" "$dir/copy.raw"
cmp "$dir/in.raw" "$dir/copy.raw"
head -c 64M /dev/urandom >"$dir/in2.raw"
nbdcopy --connections=4 "$dir/in2.raw" "$uri"
nbdcopy "$uri" "$dir/copy2.raw"
cmp "$dir/in2.raw" "$dir/copy2.raw"
echo "nbdcopy round trip: byte-identical"

echo "== fio --verify, 4 jobs (4 connections)"
fio --name=verify --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --size=8M \
  --offset_increment=8M --numjobs=4 --iodepth=16 --verify=crc32c --do_verify=1 \
  --verify_fatal=1 --group_reporting --output="$dir/fio.txt"
grep -E "err= *0" "$dir/fio.txt" >/dev/null || { cat "$dir/fio.txt"; echo "FAIL: fio errors"; exit 1; }
grep -E "WRITE:|READ:" "$dir/fio.txt" || true

kill -0 "$pid" || { echo "FAIL: cairnd died"; exit 1; }
if grep -E "ERROR|AddressSanitizer|runtime error" "$dir/cairnd.log"; then
  echo "FAIL: cairnd logged errors"
  exit 1
fi
echo "PASS"
