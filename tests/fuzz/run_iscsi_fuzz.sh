#!/bin/bash
# Runs iscsi_fuzz for a bounded time (default 60 s) from the seed corpus; fails on any crash,
# leak, hang or sanitizer report (UBSan findings are made fatal here).
#
# usage: tests/fuzz/run_iscsi_fuzz.sh BUILD-DIR [SECONDS]
set -euo pipefail
build=$1
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/cairn-iscsi-fuzz-XXXXXX)
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p "$work/corpus"
if ! "$build/tests/fuzz/iscsi_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -dict="$here/iscsi.dict" -artifact_prefix="$work/" "$work/corpus" "$here/corpus/iscsi" \
  >"$work/fuzz.log" 2>&1; then
  tail -60 "$work/fuzz.log"
  echo "FAIL: iscsi_fuzz found a problem; the input is kept in $work"
  exit 1
fi
tail -3 "$work/fuzz.log"
rm -rf "$work"
echo "iscsi_fuzz: clean for $seconds s"
