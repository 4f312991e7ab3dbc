#!/bin/bash
# docs/configuration.md documents every setting: each key Config::set() accepts has a row in
# the docs, each documented key is accepted by cairnd (--set with its documented default),
# and an unknown key is refused with exit status 2 and a sentence naming it.
#
# usage: config_doc_test.sh PATH-TO-CAIRND SOURCE-DIR
set -euo pipefail
cairnd=$1
src=$2
doc="$src/docs/configuration.md"

keys=$(grep -o 'key == "[a-z_]*\.[a-z_]*"' "$src/base/config.cc" | sed 's/key == "\(.*\)"/\1/' |
  sort -u)
[ "$(echo "$keys" | wc -l)" -ge 10 ] || { echo "FAIL: found too few keys in config.cc"; exit 1; }
for key in $keys; do
  grep -q "^| \`$key\` |" "$doc" || { echo "FAIL: $key is not documented in $doc"; exit 1; }
done

# Each documented key with its documented default must be accepted: cairnd parses every
# --set before start-up, so an unknown key or bad default fails fast with status 2. A bad
# admin address then makes start-up fail (status 1) without binding anything.
args=()
while IFS='|' read -r _ key default _; do
  key=$(echo "$key" | tr -d ' `')
  default=$(echo "$default" | tr -d ' `')
  [ "$default" = empty ] && default=""
  grep -qx "$key" <<<"$keys" || { echo "FAIL: $doc documents unknown key $key"; exit 1; }
  args+=(--set "$key=$default")
done < <(grep -E '^\| `[a-z_]+\.[a-z_]+` \|' "$doc")
dir=$(mktemp -d /tmp/cairn-config-XXXXXX)
trap 'rm -rf "$dir"' EXIT
rc=0
"$cairnd" "${args[@]}" --set node.data_dir="$dir/data" --set admin.address=not-an-address \
  --set nbd.port=0 --set iscsi.port=0 >"$dir/log" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "cannot listen for the admin API on not-an-address" "$dir/log" ||
  { echo "FAIL: documented defaults: exit $rc"; cat "$dir/log"; exit 1; }

rc=0
"$cairnd" --set node.colour=blue >"$dir/log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "unknown setting 'node.colour'" "$dir/log" ||
  { echo "FAIL: unknown key: exit $rc"; cat "$dir/log"; exit 1; }
echo "PASS: $(echo "$keys" | wc -l) settings documented and accepted"
