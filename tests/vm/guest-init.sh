#!/bin/busybox sh
# shellcheck shell=dash
# /init of the test guest (built into the initramfs by build-image.sh). Runs one kernel-client test
# against a cairn node on the host and reports on the serial console, then powers off.
#
# Kernel command line parameters:
#   cairn.test=nbd      which test to run
#   cairn.host=IP       the node's address (qemu user networking: the host's loopback is 10.0.2.2)
#   cairn.port=N        the node's NBD port
#   cairn.volume=NAME   the volume (NBD export name)
#   cairn.size=BYTES    the volume's size, checked against the attached device
#   cairn.port2=N       optional: after the first disconnect, print CAIRN-VM-RESTART and reconnect
#                       to this port instead, retrying while the host restarts the node there
#
# The last line of a run is exactly one of
#   CAIRN-VM-RESULT: PASS <test>
#   CAIRN-VM-RESULT: FAIL <test>: <reason>
# and the host driver treats anything but the PASS line as a failure.

export PATH=/bin:/sbin
test_name=unknown

say() { echo "cairn-vm: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }

finish() {
  sync
  # Give the console a moment to drain before the machine goes away.
  sleep 1
  poweroff -f
  # Not reached; if it were, init exiting panics the kernel and qemu (-no-reboot) exits.
  exit 1
}

fail() {
  echo "CAIRN-VM-RESULT: FAIL $test_name: $*"
  finish
}

# Runs a command, echoing it; fails the test with the command line when it fails.
run() {
  say "\$ $*"
  "$@" || fail "command failed (exit $?): $*"
}

param() {
  local name="$1" word
  for word in $(cat /proc/cmdline); do
    case "$word" in
      "$name="*) echo "${word#*=}" && return 0 ;;
    esac
  done
  return 1
}

setup_system() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  mkdir -p /dev/pts /dev/shm
  mount -t tmpfs tmpfs /tmp
  mount -t tmpfs tmpfs /dev/shm
  local kver mod
  kver="$(uname -r)"
  while read -r mod; do
    # A module the CPU cannot use (e.g. crc32c-intel under software emulation) may fail to load;
    # the tests fail later if something they need is really missing.
    insmod "$mod" 2>/dev/null || say "insmod $(basename "$mod") failed (ignored)"
  done </etc/modules.order
  [ -d "/lib/modules/$kver" ] || fail "modules for kernel $kver are not in the image"
}

# Every tool in the image starts (its shared libraries resolve) and reports its version. Busybox's
# shell prefers its own applets to PATH, and busybox has a mke2fs applet, hence the full path
# (the tests call e2fsprogs by path too).
check_tools() {
  run nbd-client -V
  run /bin/mke2fs -V
  run fio --version
  run iscsiadm --version
  run iscsid --version
}

setup_network() {
  ip link set lo up
  local i=0
  while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1))
    [ "$i" -gt 50 ] && fail "no eth0 (virtio_net not loaded?)"
    sleep 0.1
  done
  run ip link set eth0 up
  run ip addr add 10.0.2.15/24 dev eth0
  run ip route add default via 10.0.2.2
}

wait_for_size() {
  local dev="$1" want_bytes="$2" i=0 sectors
  while :; do
    sectors="$(cat "/sys/block/$dev/size" 2>/dev/null || echo 0)"
    [ "$((sectors * 512))" = "$want_bytes" ] && return 0
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "/dev/$dev has $((sectors * 512)) bytes, expected $want_bytes"
    sleep 0.1
  done
}

nbd_connect() {
  run nbd-client "$host" "$port" /dev/nbd0 -N "$volume" -b 4096
  wait_for_size nbd0 "$size_bytes"
}

# Waits (up to 120 s) for the restarted node to accept the connection.
nbd_connect_retry() {
  local i=0
  say "\$ nbd-client $host $port /dev/nbd0 -N $volume -b 4096 (retrying)"
  while ! nbd-client "$host" "$port" /dev/nbd0 -N "$volume" -b 4096 >/tmp/nbd-client.out 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
      cat /tmp/nbd-client.out
      fail "the restarted node did not accept a connection within 120 s"
    fi
    sleep 1
  done
  say "connected after $i retries"
  wait_for_size nbd0 "$size_bytes"
}

nbd_disconnect() {
  run nbd-client -d /dev/nbd0
  local i=0
  while [ "$(cat /sys/block/nbd0/size)" != 0 ]; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "/dev/nbd0 still attached after nbd-client -d"
    sleep 0.1
  done
}

# Files with known content: random data whose checksums are kept in guest RAM, plus a fixed text.
write_files() {
  run mkdir -p /mnt/dir/sub
  run dd if=/dev/urandom of=/mnt/random-1m bs=64k count=16
  run dd if=/dev/urandom of=/mnt/dir/random-8m bs=1M count=8
  run dd if=/dev/urandom of=/mnt/dir/sub/random-odd bs=1000 count=77
  echo "cairn kernel client test" >/mnt/dir/sub/hello.txt || fail "cannot write hello.txt"
  (cd /mnt && sha256sum random-1m dir/random-8m dir/sub/random-odd dir/sub/hello.txt) \
    >/tmp/sums || fail "cannot checksum the files"
  say "checksums written:"
  cat /tmp/sums
  run sync
}

verify_files() {
  (cd /mnt && sha256sum -c /tmp/sums) || fail "file contents differ after reconnect"
  [ "$(cat /mnt/dir/sub/hello.txt)" = "cairn kernel client test" ] || fail "hello.txt differs"
}

test_nbd() {
  [ -d /sys/module/nbd ] || fail "nbd module not loaded"
  [ -b /dev/nbd0 ] || fail "/dev/nbd0 does not exist"

  say "attach, mkfs, write"
  nbd_connect
  run /bin/mkfs.ext4 -q -F -b 4096 /dev/nbd0
  run mount -t ext4 /dev/nbd0 /mnt
  write_files
  run umount /mnt
  run e2fsck -f -n /dev/nbd0
  nbd_disconnect

  echo 3 >/proc/sys/vm/drop_caches
  if [ -n "$port2" ]; then
    say "reconnect to the restarted node and verify"
    echo "CAIRN-VM-RESTART"
    port="$port2"
    nbd_connect_retry
  else
    say "reconnect and verify"
    nbd_connect
  fi
  run mount -t ext4 /dev/nbd0 /mnt
  verify_files
  run umount /mnt
  run e2fsck -f -n /dev/nbd0

  say "fio --verify on the raw device"
  run fio --name=raw --filename=/dev/nbd0 --thread --direct=1 --ioengine=libaio --iodepth=16 \
    --rw=randwrite --bsrange=4k-64k --size=32M --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --randrepeat=0
  run fio --name=seq --filename=/dev/nbd0 --thread --direct=1 --ioengine=libaio --iodepth=4 \
    --rw=write --bs=1M --offset=128M --size=16M --verify=crc32c --verify_fatal=1 \
    --do_verify=1
  nbd_disconnect
}

main() {
  setup_system
  say "kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
  test_name="$(param cairn.test)" || fail "no cairn.test= on the kernel command line"
  host="$(param cairn.host)" || host=10.0.2.2
  port="$(param cairn.port)" || port=10809
  volume="$(param cairn.volume)" || fail "no cairn.volume="
  size_bytes="$(param cairn.size)" || fail "no cairn.size="
  port2="$(param cairn.port2)" || port2=""
  check_tools
  setup_network
  case "$test_name" in
    nbd) test_nbd ;;
    *) fail "unknown test" ;;
  esac
  say "done"
  echo "CAIRN-VM-RESULT: PASS $test_name"
  finish
}

main
