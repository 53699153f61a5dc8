#!/usr/bin/env bash
# Builds teamd and teamdctl from Debian's libteam 1.31-1 source with SONiC's
# patch series on top, and then, unless told not to, teamdwarm's own series
# (libteam/series here), into PREFIX. See libteam/README.md.
#
# usage: libteam/build.sh [--sonic-only] PREFIX
# env:   SONIC_LIBTEAM  directory holding SONiC's patch/series and patches:
#                       ../shared/sonic-libteam (default), or a
#                       sonic-buildimage checkout's src/libteam
#        WORKDIR        build directory (default: PREFIX.build)
#        JOBS           make -j (default: nproc)
#        FORCE=1        rebuild even if PREFIX holds this very build
#
# Runs as root (apt-get build-dep, a deb-src entry). A second run with the
# same inputs (both series, every patch, this script) does nothing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SONIC_LIBTEAM=$(cd "${SONIC_LIBTEAM:-$HERE/../../shared/sonic-libteam}" 2>/dev/null && pwd) ||
	SONIC_LIBTEAM=${SONIC_LIBTEAM:-$HERE/../../shared/sonic-libteam}
OURS=$HERE
SONIC_ONLY=0
if [ "${1:-}" = --sonic-only ]; then
	SONIC_ONLY=1
	shift
fi
PREFIX=${1:?usage: libteam/build.sh [--sonic-only] PREFIX}
WORKDIR=${WORKDIR:-$PREFIX.build}
JOBS=${JOBS:-$(nproc)}
VERSION=1.31
VERSION_FULL=1.31-1 # what SONiC builds (sonic-buildimage rules/libteam.mk)

log() { printf 'libteam: %s\n' "$*" >&2; }
die() { printf 'libteam/build.sh: error: %s\n' "$*" >&2; exit 1; }

case $PREFIX in /*) ;; *) die "PREFIX must be an absolute path: $PREFIX" ;; esac
[ "$PREFIX" != / ] || die "refusing PREFIX=/"

# series DIR: the enabled patches of DIR/series (or DIR/patch/series), in
# order, as full paths. Lines starting with # are disabled, as for stg.
series() {
	local dir=$1 file line
	for file in "$dir/series" "$dir/patch/series"; do
		[ -f "$file" ] || continue
		while IFS= read -r line || [ -n "$line" ]; do
			line=${line%%$'\r'}
			case $line in '' | '#'*) continue ;; esac
			[ -f "$(dirname "$file")/$line" ] || die "$file names a missing patch: $line"
			printf '%s\n' "$(dirname "$file")/$line"
		done <"$file"
		return 0
	done
	return 1
}

list=$(series "$SONIC_LIBTEAM") ||
	die "no SONiC libteam series in $SONIC_LIBTEAM (want patch/series there): set SONIC_LIBTEAM to ../shared/sonic-libteam or to a sonic-buildimage checkout's src/libteam"
mapfile -t SONIC <<<"$list"
[ -n "$list" ] || die "SONiC's series in $SONIC_LIBTEAM enables no patch"
OWN=()
if [ "$SONIC_ONLY" = 0 ]; then
	list=$(series "$OURS") || die "no series in $OURS"
	[ -z "$list" ] || mapfile -t OWN <<<"$list"
fi

# The build's identity: every input that changes its output.
SUM=$({
	sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
	for p in "${SONIC[@]}" ${OWN[@]+"${OWN[@]}"}; do printf '%s ' "$(basename "$p")"; sha256sum <"$p" | cut -d' ' -f1; done
} | sha256sum | cut -d' ' -f1)
STAMP=$PREFIX/share/teamdwarm-libteam/build-info
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && grep -qx "sum=$SUM" "$STAMP" &&
	"$PREFIX/bin/teamd" --version >/dev/null 2>&1; then
	log "$PREFIX is up to date ($(grep '^patches=' "$STAMP" | cut -d= -f2 | wc -w) patches); nothing to do"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root (apt-get build-dep, deb-src entries)"
if [ -d "$PREFIX" ] && [ ! -f "$STAMP" ] && [ -n "$(ls -A "$PREFIX")" ]; then
	die "$PREFIX is not empty and holds no earlier build of this script; refusing to replace it"
fi

# Source entries, derived from the machine's own apt sources if missing.
if ! grep -qsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list &&
	! grep -qsiE '^[[:space:]]*Types:.*deb-src' /etc/apt/sources.list.d/*.sources; then
	out=/etc/apt/sources.list.d/teamdwarm-deb-src.sources
	log "no deb-src entries; writing $out from the deb entries"
	shopt -s nullglob
	srcs=(/etc/apt/sources.list.d/*.sources)
	shopt -u nullglob
	if [ ${#srcs[@]} -gt 0 ]; then
		awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)Types:[^\n]*deb/ && !/(^|\n)Enabled: *no/ {
			sub(/Types:[^\n]*/, "Types: deb-src"); print }' "${srcs[@]}" >"$out.tmp"
	else
		sed -n 's/^[[:space:]]*deb\([[:space:]]\)/deb-src\1/p' /etc/apt/sources.list >"${out%.sources}.list.tmp"
		out=${out%.sources}.list
	fi
	[ -s "$out.tmp" ] || { rm -f "$out.tmp"; die "no deb entries to derive deb-src entries from"; }
	mv "$out.tmp" "$out"
fi
export DEBIAN_FRONTEND=noninteractive
log "apt-get update, build-dep libteam=$VERSION_FULL (and libzmq3-dev, as SONiC's build image has)"
apt-get update -qq
apt-get build-dep -y -qq "libteam=$VERSION_FULL" >/dev/null
apt-get install -y -qq --no-install-recommends libzmq3-dev >/dev/null

rm -rf "$WORKDIR"
mkdir -p "$WORKDIR"
cd "$WORKDIR"
SRC=$WORKDIR/libteam-$VERSION
if ! apt-get source -q "libteam=$VERSION_FULL" >apt-source.log 2>&1 || [ ! -d "$SRC" ]; then
	# Some archive copies lack the .debian.tar.xz. Debian 1.31-1 carries no
	# patches of its own, so the orig tarball is the same upstream tree;
	# apt checked the .dsc against the signed index, the tarball is checked
	# against the .dsc here.
	log "the full source package is not available; using the .orig tarball the .dsc lists"
	rm -rf "$SRC"
	orig=libteam_$VERSION.orig.tar.xz
	dsc=libteam_$VERSION_FULL.dsc
	[ -f "$dsc" ] && [ -f "$orig" ] || apt-get source -q --download-only "libteam=$VERSION_FULL" >>apt-source.log 2>&1 || true
	[ -f "$dsc" ] && [ -f "$orig" ] || die "could not download $dsc and $orig (see $WORKDIR/apt-source.log)"
	want=$(awk -v f="$orig" '/^Checksums-Sha256:/ { s = 1; next } /^[^ ]/ { s = 0 } s && $3 == f { print $1 }' "$dsc")
	got=$(sha256sum "$orig" | cut -d' ' -f1)
	[ -n "$want" ] && [ "$want" = "$got" ] || die "$orig: sha256 $got does not match $dsc ($want)"
	tar -xJf "$orig"
fi
[ -d "$SRC" ] || die "no $SRC after unpacking"

cd "$SRC"
apply() { # apply WHO PATCH...
	local who=$1 p
	shift
	for p in "$@"; do
		patch -p1 --forward --batch --fuzz=0 --dry-run <"$p" >"$WORKDIR/patch.log" 2>&1 ||
			{ cat "$WORKDIR/patch.log" >&2; die "$who patch $(basename "$p") does not apply with --fuzz=0"; }
		patch -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch --quiet <"$p"
	done
	log "applied $# patches of $who"
}
apply "SONiC's ($SONIC_LIBTEAM)" "${SONIC[@]}"
[ ${#OWN[@]} -eq 0 ] || apply "teamdwarm's" "${OWN[@]}"

# Debian's configure flags and build flags (debian/rules), plus the
# ZeroMQ and D-Bus APIs SONiC's build enables; RUNPATH points at PREFIX/lib
# so that teamd loads this libteam, not the distribution's.
eval "$(dpkg-buildflags --export=sh)"
export LDFLAGS="$LDFLAGS -Wl,-rpath,$PREFIX/lib"
log "configure + make -j$JOBS"
{ autoreconf -fi && ./configure --prefix="$PREFIX" --sysconfdir=/etc --localstatedir=/var --runstatedir=/run \
	--disable-silent-rules --enable-static=no --enable-dbus --enable-zmq; } >"$WORKDIR/configure.log" 2>&1 ||
	{ tail -30 "$WORKDIR/configure.log" >&2; die "configure failed"; }
make -j"$JOBS" >"$WORKDIR/make.log" 2>&1 || { grep -E 'error|Error' "$WORKDIR/make.log" | head -20 >&2; die "make failed"; }
STAGE=$WORKDIR/stage
make install DESTDIR="$STAGE" >"$WORKDIR/install.log" 2>&1 || die "make install failed"
find "$STAGE$PREFIX" -name '*.la' -delete
rm -rf "$PREFIX"
mkdir -p "$(dirname "$PREFIX")"
cp -a "$STAGE$PREFIX" "$PREFIX"
"$PREFIX/bin/teamd" --version >/dev/null 2>&1 || die "$PREFIX/bin/teamd --version does not run"
mkdir -p "$(dirname "$STAMP")"
{
	echo "sum=$SUM"
	echo "libteam=$VERSION_FULL"
	echo "sonic=$SONIC_LIBTEAM"
	echo "patches=$(for p in "${SONIC[@]}" ${OWN[@]+"${OWN[@]}"}; do printf '%s ' "$(basename "$p")"; done)"
	echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAMP"
log "built $("$PREFIX/bin/teamd" --version 2>&1) into $PREFIX (SONiC's ${#SONIC[@]} patches, teamdwarm's ${#OWN[@]})"
