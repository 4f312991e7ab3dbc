#!/usr/bin/env bash
# Builds the guest image for the kernel-client tests (BRIEF, "Real clients you can run here"):
# Debian's kernel plus a busybox initramfs holding nbd-client, e2fsprogs, fio and open-iscsi.
#
#   build-image.sh OUTDIR
#
# Writes OUTDIR/vmlinuz (and OUTDIR/vmlinux, the same kernel uncompressed, when it can be
# extracted) and OUTDIR/initramfs.cpio; progress goes to stderr. The host is not modified: the
# kernel package is downloaded with `apt-get download` and unpacked with `dpkg -x` into OUTDIR;
# the user-space tools are copied from the host with the shared libraries `ldd` lists.
#
# The build is cached: OUTDIR/image.key records every input (kernel package and version, this
# script, the guest init, the host binaries and libraries with their sizes and mtimes), and
# nothing is rebuilt while it matches. Concurrent callers serialize on OUTDIR/.lock.
#
# Exit codes: 0 built or up to date; 77 a host package is missing (prints "SKIPPED: ..." with the
# packages to install); anything else is an error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
outdir="${1:?usage: build-image.sh OUTDIR}"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"

# Host packages the image copies from (kept in one place so the skip message can list them).
readonly host_packages=(busybox-static nbd-client e2fsprogs fio open-iscsi kmod xz-utils)
# Kernel modules the guest loads; their dependencies are resolved with the kernel's modules.dep.
readonly modules=(virtio_pci virtio_net nbd crc32c_generic ext4 sd_mod iscsi_tcp)
# Binaries copied into the guest's /bin, with their shared libraries.
readonly binaries=(/usr/sbin/nbd-client /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/bin/fio
  /usr/sbin/iscsiadm /usr/sbin/iscsid)

log() { echo "build-image: $*" >&2; }

skip() {
  echo "SKIPPED: $*" >&2
  exit 77
}

missing() {
  skip "$*; install with: apt-get install -y ${host_packages[*]}"
}

check_host() {
  local b
  for b in /bin/busybox "${binaries[@]}"; do
    [[ -x "$b" ]] || missing "$b is missing"
  done
  # busybox must be the static one: it runs in the guest before any library is there.
  if ldd /bin/busybox >/dev/null 2>&1; then
    missing "/bin/busybox is dynamically linked (busybox-static is not installed)"
  fi
  command -v depmod >/dev/null || missing "depmod is missing"
  command -v xz >/dev/null || missing "xz is missing"
  command -v modprobe >/dev/null || missing "modprobe is missing"
  command -v apt-get >/dev/null || missing "apt-get is missing"
}

resolve_kernel_package() {
  if [[ -n "${CAIRN_VM_KERNEL_PKG:-}" ]]; then
    echo "$CAIRN_VM_KERNEL_PKG $(apt-cache show --no-all-versions "$CAIRN_VM_KERNEL_PKG" \
      2>/dev/null | awk '$1 == "Version:" { print $2; exit }')"
  else
    # The meta package depends on exactly one version of the versioned package.
    apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | awk '
      $1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ && $3 == "(=" {
        sub(/\)$/, "", $4); print $2, $4; exit }'
  fi
}

# Prints "PACKAGE VERSION" of the versioned kernel package behind linux-image-amd64, e.g.
# "linux-image-6.1.0-56-amd64 6.1.192-2". CAIRN_VM_KERNEL_PKG names another package. apt-cache
# takes seconds here, so the answer is remembered until apt's package lists change.
kernel_package() {
  local lists_stamp memo="$outdir/apt.memo" line
  lists_stamp="$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo none) ${CAIRN_VM_KERNEL_PKG:-}"
  if [[ -f "$memo" ]] && [[ "$(head -n1 "$memo")" == "$lists_stamp" ]]; then
    tail -n1 "$memo"
    return
  fi
  line="$(resolve_kernel_package)"
  if [[ ! "$line" =~ ^[^\ ]+\ [^\ ]+$ && "$(id -u)" == 0 ]]; then
    # Container images often ship without package lists.
    log "apt-cache does not know the kernel package; running apt-get update"
    apt-get update -q >&2 || true
    lists_stamp="$(stat -c %Y /var/lib/apt/lists) ${CAIRN_VM_KERNEL_PKG:-}"
    line="$(resolve_kernel_package)"
  fi
  [[ "$line" =~ ^[^\ ]+\ [^\ ]+$ ]] ||
    skip "apt-cache cannot resolve the kernel package (run apt-get update)"
  printf '%s\n%s\n' "$lists_stamp" "$line" >"$memo"
  echo "$line"
}

# Every shared library the binaries need, with the dynamic loader, as resolved paths.
libraries() {
  local b
  for b in "${binaries[@]}"; do
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | sort -u
}

# One line per input that, when changed, must change the image.
image_key() {
  local pkg="$1" version="$2"
  echo "kernel $pkg $version"
  echo "modules ${modules[*]}"
  sha256sum "$here/build-image.sh" "$here/guest-init.sh"
  dpkg-query -W -f='${Package} ${Version}\n' "${host_packages[@]}" 2>/dev/null || true
  # shellcheck disable=SC2046
  stat -L -c '%n %s %Y' /bin/busybox "${binaries[@]}" $(libraries)
}

# Downloads (once) and unpacks the whole kernel package; prints the unpacked tree.
fetch_kernel() {
  local pkg="$1" version="$2"
  local debdir="$outdir/debs"
  mkdir -p "$debdir"
  local deb
  deb="$(ls "$debdir/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
  if [[ -z "$deb" ]]; then
    log "downloading $pkg $version"
    rm -f "$debdir"/*.deb
    # apt-get download writes to the current directory; the _apt sandbox warning is harmless.
    (cd "$debdir" && apt-get download -q "$pkg" >&2 2>/dev/null) ||
      skip "apt-get download $pkg failed (no network to the Debian archive?)"
    deb="$(ls "$debdir/${pkg}_"*.deb | head -n1)"
  fi
  local tree="$outdir/kernel-tree"
  rm -rf "$tree"
  log "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$tree"
  echo "$tree"
}

# The uncompressed ELF kernel inside a bzImage. qemu boots it directly through its PVH entry
# point, which skips the BIOS boot path and the kernel's self-decompression: under software
# emulation that saves about 10 s per boot. Debian's kernel is xz-compressed; on any other
# format no vmlinux is written and the driver boots the bzImage.
extract_vmlinux() {
  local bzimage="$1" out="$2" offset
  rm -f "$out"
  offset="$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$bzimage" | head -n1 | cut -d: -f1 || true)"
  [[ -n "$offset" ]] || return 0
  # xz complains about the data after the stream; the stream itself is complete.
  tail -c +"$((offset + 1))" "$bzimage" | xz -dc >"$out" 2>/dev/null || true
  if [[ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" != '177ELF' ]]; then
    log "could not extract vmlinux; booting the bzImage"
    rm -f "$out"
  fi
}

# Copies vmlinuz, vmlinux and the needed modules (with their dependencies, and their load order
# in etc/modules.order) from the unpacked package into $stage.
stage_kernel() {
  local tree="$1" stage="$2"
  local kver root="$stage/root"
  kver="$(basename "$(ls -d "$tree"/lib/modules/*/ | head -n1)")"
  cp "$tree/boot/vmlinuz-$kver" "$stage/vmlinuz"
  extract_vmlinux "$stage/vmlinuz" "$stage/vmlinux"
  depmod -b "$tree" "$kver"
  mkdir -p "$root/etc"
  local order="$root/etc/modules.order"
  : >"$order"
  local m line path rel
  for m in "${modules[@]}"; do
    # -C /dev/null ignores the host's modprobe.d; the guest passes its own options.
    modprobe -C /dev/null -d "$tree" -S "$kver" --show-depends "$m" |
      while read -r line; do
        case "$line" in
          insmod\ *) path="${line#insmod }" && path="${path%% *}" ;;
          builtin\ *) continue ;;
          *) echo "unexpected modprobe output: $line" >&2 && return 1 ;;
        esac
        rel="${path#"$tree"}"
        mkdir -p "$root$(dirname "$rel")"
        cp -n "$path" "$root$rel"
        grep -qxF "$rel" "$order" || echo "$rel" >>"$order"
      done
  done
  cp "$tree/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} \
    "$root/lib/modules/$kver/"
  depmod -b "$root" "$kver"
}

# Makes $outdir/kernel hold the staged kernel for this package and module list. Unpacking the
# package takes most of a rebuild, so the stage is kept while only the user space changes.
# Bump kernel_stage_format when stage_kernel changes.
readonly kernel_stage_format=1
kernel_stage() {
  local pkg="$1" version="$2"
  local stage="$outdir/kernel"
  local key="format $kernel_stage_format; $pkg $version; ${modules[*]}"
  if [[ -f "$stage/stage.key" && "$(cat "$stage/stage.key")" == "$key" ]]; then
    return 0
  fi
  local tree
  tree="$(fetch_kernel "$pkg" "$version")"
  rm -rf "$stage" "$stage.new"
  mkdir -p "$stage.new"
  stage_kernel "$tree" "$stage.new"
  rm -rf "$tree"
  echo "$key" >"$stage.new/stage.key"
  mv "$stage.new" "$stage"
}

# Copies a host file (following symlinks) to a new path inside the image.
put() {
  local src="$1" dst="$2"
  if [[ -e "$dst" || -L "$dst" ]]; then
    [[ -L "$dst" ]] && echo "refusing to copy $src over symlink $dst" >&2 && return 1
    return 0
  fi
  cp -L "$src" "$dst"
}

stage_userspace() {
  local root="$1"
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,run,etc/iscsi,var/lib/iscsi}
  # Every copy goes to a path that does not exist yet (`put`), so nothing is ever written
  # through a symlink to a host file.
  put /bin/busybox "$root/bin/busybox"
  local b
  for b in "${binaries[@]}"; do
    put "$b" "$root/bin/$(basename "$b")"
  done
  ln -s mke2fs "$root/bin/mkfs.ext4"
  # Busybox applets for every name the real tools above do not take.
  local applet
  for applet in $(/bin/busybox --list); do
    [[ -e "$root/bin/$applet" || -L "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  ln -s bin "$root/sbin"
  local lib
  for lib in $(libraries); do
    mkdir -p "$root$(dirname "$lib")"
    put "$lib" "$root$lib"
  done
  [[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"
  echo "InitiatorName=iqn.2026-01.org.cairn:vm-guest" >"$root/etc/iscsi/initiatorname.iscsi"
  # open-iscsi's defaults, except: nothing starts by itself, and a refused login is not retried
  # for minutes (the iSCSI test expects some logins to fail).
  cat >"$root/etc/iscsi/iscsid.conf" <<'CONF'
node.startup = manual
node.session.auth.authmethod = None
node.session.initial_login_retry_max = 1
node.conn[0].timeo.login_timeout = 15
node.session.timeo.replacement_timeout = 30
node.conn[0].timeo.noop_out_interval = 5
node.conn[0].timeo.noop_out_timeout = 10
CONF
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  install -m 0755 "$here/guest-init.sh" "$root/init"
}

build() {
  local pkg="$1" version="$2" key="$3"
  kernel_stage "$pkg" "$version"
  local root="$outdir/root.new"
  rm -rf "$root"
  cp -a "$outdir/kernel/root" "$root"
  stage_userspace "$root"
  log "packing initramfs"
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    /bin/busybox cpio -o -H newc -R 0:0 >"$outdir/initramfs.cpio.new")
  rm -rf "$root"
  ln -f "$outdir/kernel/vmlinuz" "$outdir/vmlinuz"
  rm -f "$outdir/vmlinux"
  if [[ -f "$outdir/kernel/vmlinux" ]]; then
    ln -f "$outdir/kernel/vmlinux" "$outdir/vmlinux"
  fi
  mv "$outdir/initramfs.cpio.new" "$outdir/initramfs.cpio"
  printf '%s\n' "$key" >"$outdir/image.key"
}

main() {
  check_host
  exec 9>"$outdir/.lock"
  flock 9
  local kernel pkg version key
  kernel="$(kernel_package)"
  read -r pkg version <<<"$kernel"
  key="$(image_key "$pkg" "$version")"
  if [[ -f "$outdir/vmlinuz" && -f "$outdir/initramfs.cpio" && -f "$outdir/image.key" ]] &&
    [[ "$(cat "$outdir/image.key")" == "$key" ]]; then
    log "image up to date ($pkg $version)"
    return 0
  fi
  # A changed kernel package means a new download; drop the old one.
  if [[ -f "$outdir/image.key" ]] && ! grep -qxF "kernel $pkg $version" "$outdir/image.key"; then
    rm -f "$outdir"/debs/*.deb
  fi
  log "building image ($pkg $version)"
  rm -f "$outdir/image.key"
  build "$pkg" "$version" "$key"
  log "image ready: $(du -h "$outdir/initramfs.cpio" | cut -f1) initramfs"
}

main
