#!/usr/bin/env bash
# Installs and caches what the real-kernel lab (make lab) needs, from
# Debian's packages: qemu (software emulation), busybox-static (the VM's
# first init), kmod (depmod), Debian's teamd (libteam-utils); Debian's own
# kernel, unpacked into the cache; SONiC's teamd, built from Debian's
# libteam source with SONiC's series, and teamdwarm's, with the project's
# series on top (libteam/build.sh). A second run finds
# everything in place and takes a second.
#
# env: LAB_CACHE       the cache (default /var/cache/teamdwarm-lab)
#      SONIC_LIBTEAM   SONiC's libteam series (default ../shared/sonic-libteam)
#
# Prints the kernel's directory in the cache on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LAB_CACHE:-/var/cache/teamdwarm-lab}
log() { printf 'lab-deps: %s\n' "$*" >&2; }
die() { printf 'lab-deps: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "the lab needs root (packages, kernel modules in a VM, network namespaces)"

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx switch_root || need+=(busybox-static)
command -v depmod >/dev/null 2>&1 || need+=(kmod)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v file >/dev/null 2>&1 || need+=(file)
[ -x /usr/bin/teamd ] && [ -x /usr/bin/teamdctl ] || need+=(libteam-utils)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
file /bin/busybox 2>/dev/null | grep -q 'statically linked' || ldd /bin/busybox 2>&1 | grep -q 'not a dynamic' ||
	die "/bin/busybox is not the static one (busybox-static): the VM runs it before any library is there"

# Debian's kernel: the one linux-image-amd64 depends on.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'); }
[ -n "$pkg" ] || die "cannot tell which kernel linux-image-amd64 depends on"
ver=${pkg#linux-image-}
kdir=$CACHE/kernel/$ver
if [ ! -f "$kdir/vmlinuz" ] || [ ! -f "$kdir/lib/modules/$ver/modules.dep" ]; then
	log "fetching $pkg"
	mkdir -p "$CACHE/kernel"
	tmp=$(mktemp -d "$CACHE/kernel/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) || { apt-get update -qq; (cd "$tmp" && apt-get download "$pkg" >/dev/null); }
	dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/root"
	depmod -b "$tmp/root" "$ver"
	mkdir -p "$tmp/out/lib/modules"
	mv "$tmp/root/boot/vmlinuz-$ver" "$tmp/out/vmlinuz"
	# The bzImage decompresses itself, which takes software emulation 5 s;
	# qemu boots the uncompressed ELF (Debian's kernel has PVH) at once.
	off=$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$tmp/out/vmlinuz" | head -1 | cut -d: -f1)
	if [ -n "$off" ] && tail -c +$((off + 1)) "$tmp/out/vmlinuz" | xz -dc 2>/dev/null >"$tmp/out/vmlinux.part"; [ -s "$tmp/out/vmlinux.part" ] &&
		file "$tmp/out/vmlinux.part" | grep -q 'ELF 64-bit'; then
		mv "$tmp/out/vmlinux.part" "$tmp/out/vmlinux"
	else
		rm -f "$tmp/out/vmlinux.part"
		log "could not extract an ELF vmlinux from the bzImage; the VM boots the bzImage (slower)"
	fi
	mv "$tmp/root/lib/modules/$ver" "$tmp/out/lib/modules/"
	rm -rf "$kdir"
	mv "$tmp/out" "$kdir"
	rm -rf "$tmp"
	trap - EXIT
fi

# SONiC's teamd, as shipped: Debian's libteam + SONiC's series; and
# teamdwarm's: the same with the project's series on top (libteam/).
libteam/build.sh --sonic-only "$CACHE/teamd-sonic"
libteam/build.sh "$CACHE/teamd-hld"
echo "$kdir"
