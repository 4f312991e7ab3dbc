#!/bin/busybox sh
# shellcheck shell=dash
# /init of the test guest (built into the initramfs by build-image.sh). Runs one kernel-client test
# against a cairn node on the host and reports on the serial console, then powers off.
#
# Kernel command line parameters:
#   cairn.test=nbd      which test to run (nbd or iscsi)
#   cairn.host=IP       the node's address (qemu user networking: the host's loopback is 10.0.2.2)
#   cairn.port=N        the node's NBD (or iSCSI) port
#   cairn.volume=NAME   the volume (NBD export name)
#   cairn.size=BYTES    the volume's size, checked against the attached device
#   cairn.port2=N       optional: after the first disconnect, print CAIRN-VM-RESTART and reconnect
#                       to this port instead, retrying while the host restarts the node there
#
# cairn.test=iscsi (the node's iSCSI port in cairn.port, the target IQN in cairn.volume, LUN
# size in cairn.size) also takes:
#   cairn.chap=USER:SECRET    CHAP credentials the target requires for cairn.volume
#   cairn.volume2=IQN         a second target, which requires CHAP (cairn.chap) and proves
#   cairn.size2=BYTES         itself with mutual CHAP (cairn.mutual); its size
#   cairn.mutual=USER:SECRET
#   cairn.static=1            create the node records instead of taking the portal discovery
#                             advertises (for a peer target that advertises its loopback)
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
  if [ -s /tmp/iscsid.log ]; then
    echo "---- iscsid log (tail) ----"
    tail -n 40 /tmp/iscsid.log
  fi
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

# --- iSCSI ---------------------------------------------------------------------------------

# The sd device (e.g. sda) of the one logged-in session's disk, once it has the expected size.
iscsi_disk() {
  local want_bytes="$1" i=0 dev
  while :; do
    for dev in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
      [ -e "$dev" ] || continue
      dev="$(basename "$dev")"
      if [ "$(($(cat "/sys/block/$dev/size") * 512))" = "$want_bytes" ]; then
        echo "$dev"
        return 0
      fi
    done
    i=$((i + 1))
    if [ "$i" -gt 200 ]; then
      ls -R /sys/class/iscsi_session/ >&2 2>/dev/null
      fail "no iSCSI disk of $want_bytes bytes appeared within 20 s"
    fi
    sleep 0.1
  done
}

iscsi_no_session() {
  local i=0
  while ls /sys/class/iscsi_session/session* >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "an iSCSI session is still there: $(ls /sys/class/iscsi_session/)"
    sleep 0.1
  done
}

# node IQN KEY VALUE: sets a key of the node record of target IQN at the node's portal.
node() {
  run iscsiadm -m node -T "$1" -p "$portal" -o update -n "$2" -v "$3"
}

iscsi_login() {
  run iscsiadm -m node -T "$1" -p "$portal" --login
}

iscsi_logout() {
  run iscsiadm -m node -T "$1" -p "$portal" --logout
  iscsi_no_session
}

# The login must fail (a wrong secret, no CHAP where the target requires it): iscsiadm exits
# non-zero and no session is left.
iscsi_login_fails() {
  local why="$2" rc=0
  say "\$ iscsiadm -m node -T $1 -p $portal --login (must fail: $why)"
  iscsiadm -m node -T "$1" -p "$portal" --login >/tmp/login.out 2>&1 || rc=$?
  cat /tmp/login.out
  [ "$rc" != 0 ] || fail "login succeeded with $why"
  say "login refused as it should be (iscsiadm exit $rc)"
  iscsi_no_session
}

# chap IQN USER:SECRET [USER_IN:SECRET_IN]: the node record's CHAP credentials.
chap() {
  local iqn="$1" cred="$2" mutual="${3:-}"
  node "$iqn" node.session.auth.authmethod CHAP
  node "$iqn" node.session.auth.username "${cred%%:*}"
  node "$iqn" node.session.auth.password "${cred#*:}"
  if [ -n "$mutual" ]; then
    node "$iqn" node.session.auth.username_in "${mutual%%:*}"
    node "$iqn" node.session.auth.password_in "${mutual#*:}"
  fi
}

iscsi_start() {
  [ -d /sys/module/iscsi_tcp ] || fail "iscsi_tcp module not loaded"
  mkdir -p /etc/iscsi/nodes /etc/iscsi/send_targets /etc/iscsi/ifaces /run/lock/iscsi /var/lock
  # In the foreground with debug level 1, so that a failing login explains itself (fail()
  # prints the tail of this log).
  say "\$ iscsid -f -d 1 &"
  iscsid -f -d 1 >/tmp/iscsid.log 2>&1 &
  local i=0 rc
  # iscsiadm exits 21 (no objects found) once iscsid answers and nothing is logged in.
  while :; do
    rc=0
    iscsiadm -m session >/dev/null 2>&1 || rc=$?
    [ "$rc" = 21 ] && break
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "iscsid does not answer (iscsiadm -m session exits $rc)"
    sleep 0.1
  done
}

# SendTargets must list every target with the portal the host can be reached at.
iscsi_discover() {
  say "\$ iscsiadm -m discovery -t sendtargets -p $portal"
  iscsiadm -m discovery -t sendtargets -p "$portal" >/tmp/discovery.out 2>&1 ||
    { cat /tmp/discovery.out; fail "discovery failed"; }
  cat /tmp/discovery.out
  local iqn
  for iqn in "$volume" $volume2; do
    if [ "$static" = 1 ]; then
      grep -q " $iqn\$" /tmp/discovery.out || fail "discovery does not list $iqn"
      run iscsiadm -m node -o new -T "$iqn" -p "$portal"
    else
      grep -q "^$portal,[0-9]* $iqn\$" /tmp/discovery.out ||
        fail "discovery does not list $iqn at portal $portal"
    fi
  done
}

test_iscsi() {
  portal="$host:$port"
  local chap_cred mutual_cred volume2_size dev
  chap_cred="$(param cairn.chap)" || fail "no cairn.chap="
  volume2="$(param cairn.volume2)" || fail "no cairn.volume2="
  volume2_size="$(param cairn.size2)" || fail "no cairn.size2="
  mutual_cred="$(param cairn.mutual)" || fail "no cairn.mutual="
  static="$(param cairn.static)" || static=0

  iscsi_start
  iscsi_discover

  say "CHAP is required: no credentials and a wrong secret must both be refused"
  iscsi_login_fails "$volume" "no CHAP credentials"
  chap "$volume" "${chap_cred%%:*}:wrong-secret-0123"
  iscsi_login_fails "$volume" "a wrong CHAP secret"

  say "login with CHAP, mkfs, write"
  chap "$volume" "$chap_cred"
  iscsi_login "$volume"
  dev="$(iscsi_disk "$size_bytes")"
  say "the disk is /dev/$dev"
  run /bin/mkfs.ext4 -q -F -b 4096 "/dev/$dev"
  run mount -t ext4 "/dev/$dev" /mnt
  write_files
  run umount /mnt
  run e2fsck -f -n "/dev/$dev"
  iscsi_logout "$volume"

  echo 3 >/proc/sys/vm/drop_caches
  say "login again and verify"
  iscsi_login "$volume"
  dev="$(iscsi_disk "$size_bytes")"
  run mount -t ext4 "/dev/$dev" /mnt
  verify_files
  run umount /mnt
  run e2fsck -f -n "/dev/$dev"

  say "fio --verify on the raw device"
  run fio --name=raw --filename="/dev/$dev" --thread --direct=1 --ioengine=libaio --iodepth=16 \
    --rw=randwrite --bsrange=4k-64k --size=32M --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --randrepeat=0
  run fio --name=seq --filename="/dev/$dev" --thread --direct=1 --ioengine=libaio --iodepth=4 \
    --rw=write --bs=1M --offset=128M --size=16M --verify=crc32c --verify_fatal=1 \
    --do_verify=1
  iscsi_logout "$volume"

  say "mutual CHAP with CRC32C header and data digests"
  chap "$volume2" "$chap_cred" "${mutual_cred%%:*}:wrong-secret-4567"
  iscsi_login_fails "$volume2" "a target that does not know the mutual secret we expect"
  chap "$volume2" "$chap_cred" "$mutual_cred"
  node "$volume2" "node.conn[0].iscsi.HeaderDigest" CRC32C
  node "$volume2" "node.conn[0].iscsi.DataDigest" CRC32C
  iscsi_login "$volume2"
  iscsiadm -m session -P 2 >/tmp/session.out 2>&1 || fail "iscsiadm -m session -P 2 failed"
  if ! grep -q "HeaderDigest: CRC32C" /tmp/session.out ||
    ! grep -q "DataDigest: CRC32C" /tmp/session.out; then
    cat /tmp/session.out
    fail "the session did not negotiate CRC32C digests"
  fi
  dev="$(iscsi_disk "$volume2_size")"
  say "the disk is /dev/$dev"
  run fio --name=mutual --filename="/dev/$dev" --thread --direct=1 --ioengine=libaio \
    --iodepth=8 --rw=randwrite --bsrange=4k-128k --size=16M --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --randrepeat=0
  iscsi_logout "$volume2"
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
    iscsi) test_iscsi ;;
    *) fail "unknown test" ;;
  esac
  say "done"
  echo "CAIRN-VM-RESULT: PASS $test_name"
  finish
}

main
