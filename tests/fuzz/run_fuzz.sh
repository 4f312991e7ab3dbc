#!/bin/bash
# Runs one fuzz target for a bounded time (default 60 s) from its seed corpus and dictionary
# (corpus/NAME, NAME.dict); fails on any crash, leak, hang or sanitizer report (UBSan findings
# are made fatal here). run_nbd_fuzz.sh and run_iscsi_fuzz.sh call this.
#
# usage: tests/fuzz/run_fuzz.sh NAME BUILD-DIR [SECONDS]    (NAME: nbd or iscsi)
set -euo pipefail
name=$1
build=$2
seconds=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "/tmp/cairn-$name-fuzz-XXXXXX")
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p "$work/corpus"
if ! "$build/tests/fuzz/${name}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -dict="$here/$name.dict" -artifact_prefix="$work/" "$work/corpus" "$here/corpus/$name" \
  >"$work/fuzz.log" 2>&1; then
  tail -60 "$work/fuzz.log"
  echo "FAIL: ${name}_fuzz found a problem; the input is kept in $work"
  exit 1
fi
tail -3 "$work/fuzz.log"
rm -rf "$work"
echo "${name}_fuzz: clean for $seconds s"
