# shellcheck shell=bash
# shellcheck disable=SC2154  # work and logdir come from the sourcing script
# What the kernel-client tests (nbd-kernel-test.sh, iscsi-kernel-test.sh) share: skipping, the
# guest image, free ports, log reporting, and booting the guest under qemu with a KVM fallback.
# Sourced, never run. Sets repo, cache (the image cache, build-image.sh's output) and timeout_s
# (the guest's time limit). The sourcing script sets, before it calls any of these functions:
#   work       a scratch directory; the guest's console goes to $work/guest.log, the server
#              logs are $work/server*.log (and $work/tgtd.log)
#   logdir     where the logs of the last run are kept
# and defines `boot ACCEL [ARGS...]`, which boots the guest once (vm_qemu does the boot itself).

# The repository, and the defaults of the image cache and the guest's time limit (the sourcing
# script's options may override them).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${CAIRN_VM_CACHE:-$repo/build/vm-cache}"
timeout_s="${CAIRN_VM_TIMEOUT:-300}"

# Exits 77 with a SKIPPED line; under CI=true a skip is a failure instead (CI installs
# every package).
skip() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAIL: $* (a skip is a failure under CI=true)" >&2
    exit 1
  fi
  echo "SKIPPED: $*" >&2
  exit 77
}

# Skips without qemu; builds (or reuses) the guest image in $cache, skipping when the host lacks
# a package the image needs.
vm_prepare_image() {
  command -v qemu-system-x86_64 >/dev/null ||
    skip "qemu-system-x86_64 is missing (apt-get install -y qemu-system-x86)"
  local rc=0
  "$(dirname "${BASH_SOURCE[0]}")/build-image.sh" "$cache" || rc=$?
  if [[ $rc -eq 77 ]]; then
    skip "the guest image cannot be built (see above)"
  elif [[ $rc -ne 0 ]]; then
    echo "FAIL: build-image.sh exited $rc" >&2
    exit 1
  fi
}

# Keeps the logs of the last run next to the image for inspection and removes $work.
vm_keep_logs() {
  mkdir -p "$logdir"
  rm -f "$logdir"/*.log
  cp "$work"/*.log "$logdir/" 2>/dev/null || true
  rm -rf "$work"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); \
print(s.getsockname()[1])' 2>/dev/null && return
  # Without python: a random high port that nothing listens on.
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] && echo "$p" && return
  done
}

readonly vm_sanitizer_report="ERROR: [A-Za-z]+Sanitizer|runtime error:"

show_logs() {
  echo "---- guest log (tail) ----" >&2
  tail -n 80 "$work/guest.log" >&2 2>/dev/null || true
  local log
  for log in "$work"/server*.log "$work"/tgtd.log; do
    [[ -f "$log" ]] || continue
    # A sanitizer report is more useful from its start than from its tail.
    if grep -aqE "$vm_sanitizer_report" "$log"; then
      echo "---- $(basename "$log") (sanitizer report) ----" >&2
      grep -aE -m1 -A40 "$vm_sanitizer_report" "$log" >&2
    else
      echo "---- $(basename "$log") (tail) ----" >&2
      tail -n 40 "$log" >&2
    fi
  done
}

fail() {
  echo "FAIL: $*" >&2
  show_logs
  echo "full logs: $logdir/" >&2
  exit 1
}

# Boots the guest image with accelerator $1 ("kvm" or "tcg") and kernel command line $2, the
# serial console to $work/guest.log. Returns qemu's status (124 or 137 on timeout).
vm_qemu() {
  local accel="$1" append="$2"
  local kernel="$cache/vmlinux"
  [[ -f "$kernel" ]] || kernel="$cache/vmlinuz"
  timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel "$accel" -m 1024 -smp 1 \
    -kernel "$kernel" -initrd "$cache/initramfs.cpio" -append "$append" \
    -nographic -vga none -no-reboot -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,romfile= \
    </dev/null >"$work/guest.log" 2>&1
}

check_qemu_status() {
  local rc="$1"
  [[ $rc -eq 124 || $rc -eq 137 ]] && fail "the guest did not finish within $timeout_s s"
  [[ $rc -eq 0 ]] || fail "qemu exited with status $rc"
}

# Runs the guest to the end with `boot ACCEL "$@"`; sets accel to the accelerator used.
# Nested KVM can accept a guest and then never run it (seen on this project's machines), so a
# KVM boot that prints no kernel banner within 10 s falls back to software emulation, and that
# verdict is remembered in the cache for this host kernel and qemu. CAIRN_VM_ACCEL=tcg skips KVM.
accel=""
run_guest() {
  local rc=0
  local kvm_verdict="$cache/kvm-broken" host_id
  host_id="$(uname -r) $(qemu-system-x86_64 --version | head -n1)"
  if [[ -r /dev/kvm && -w /dev/kvm && "${CAIRN_VM_ACCEL:-auto}" != tcg ]] &&
    [[ "$(cat "$kvm_verdict" 2>/dev/null)" != "$host_id" ]]; then
    boot kvm "$@" &
    local qemu=$! i
    for ((i = 0; i < 100; i++)); do
      grep -aq "Linux version" "$work/guest.log" 2>/dev/null && break
      kill -0 "$qemu" 2>/dev/null || break
      sleep 0.1
    done
    if grep -aq "Linux version" "$work/guest.log" 2>/dev/null; then
      accel=kvm
      wait "$qemu" || rc=$?
      check_qemu_status "$rc"
      return
    fi
    kill -TERM "$qemu" 2>/dev/null || true
    wait "$qemu" || true
    cp "$work/guest.log" "$work/guest-kvm.log"
    echo "$host_id" >"$kvm_verdict"
    echo "KVM did not boot the guest within 10 s; using software emulation from now on" \
      "(delete $kvm_verdict to retry KVM)" >&2
  fi
  accel=tcg
  boot tcg "$@" || rc=$?
  check_qemu_status "$rc"
}

# Fails unless the guest printed its own PASS line for test $1 (the kernel command line never
# contains it).
vm_check_result() {
  if ! grep -aq "CAIRN-VM-RESULT: PASS $1" "$work/guest.log"; then
    local why
    why="$(grep -a "CAIRN-VM-RESULT:" "$work/guest.log" | tail -n1 || true)"
    fail "the guest did not pass: ${why:-no result line}"
  fi
}
