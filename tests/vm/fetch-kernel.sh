#!/bin/sh
# fetch-kernel.sh OUTDIR - fetch and unpack the pinned Debian guest kernel (idempotent).
#   OUTDIR/guest/debs/linux-image-<KREL>*.deb   the package (cached)
#   OUTDIR/guest/root/                          dpkg-deb -x tree (boot/vmlinuz-*, lib/modules/*)
#   OUTDIR/guest/vmlinuz                        copy of the kernel image (fresh mtime, for make)
#   OUTDIR/guest/root/.unpacked                 stamp (unpack + depmod done), holds the .deb name
# The ABI is pinned only in mk/guest.mk (GUEST_KABI); override with GUEST_KREL=... in the environment.
set -eu

die() { echo "fetch-kernel: error: $*" >&2; exit 2; }
say() { [ "${V:-0}" = 1 ] && echo "fetch-kernel: $*" >&2; return 0; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUTDIR=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)

if [ -z "${GUEST_KREL:-}" ]; then
	GUEST_KABI=$(sed -n 's/^GUEST_KABI *:= *//p' "$SRC/mk/guest.mk")
	[ -n "$GUEST_KABI" ] || die "cannot read GUEST_KABI from $SRC/mk/guest.mk"
	GUEST_KREL=$GUEST_KABI-amd64
fi

G=$OUTDIR/guest
DEBS=$G/debs
ROOT=$G/root
STAMP=$ROOT/.unpacked
mkdir -p "$DEBS"

find_deb() {
	for f in "$DEBS"/linux-image-"$GUEST_KREL"_*.deb "$DEBS"/linux-image-"$GUEST_KREL"-unsigned_*.deb; do
		[ -s "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

download() {
	# the signed and the unsigned package hold the same kernel and modules; take whichever exists
	for p in "linux-image-$GUEST_KREL" "linux-image-$GUEST_KREL-unsigned"; do
		if (cd "$DEBS" && apt-get download -q "$p") >"$DEBS/.apt.log" 2>&1; then
			return 0
		fi
	done
	return 1
}

if ! deb=$(find_deb); then
	command -v apt-get >/dev/null || die "apt-get not found (Debian host needed to fetch the guest kernel)"
	say "downloading linux-image-$GUEST_KREL"
	if ! download; then
		# package lists may be missing/stale (clean container): refresh once and retry
		echo "fetch-kernel: apt-get download failed, running apt-get update" >&2
		if [ "$(id -u)" = 0 ]; then
			apt-get update -qq >/dev/null 2>&1 || true
		fi
		download || { cat "$DEBS/.apt.log" >&2; die "cannot download linux-image-$GUEST_KREL (is the ABI still in the archive? see mk/guest.mk)"; }
	fi
	# apt-get download runs as _apt when possible and may leave a partial file on failure
	deb=$(find_deb) || die "download reported success but no .deb in $DEBS"
fi

if [ "$(cat "$STAMP" 2>/dev/null)" != "$(basename "$deb")" ]; then
	say "unpacking $(basename "$deb")"
	rm -rf "$ROOT.tmp"
	mkdir -p "$ROOT.tmp"
	dpkg-deb -x "$deb" "$ROOT.tmp"
	MODDIR=$ROOT.tmp/lib/modules/$GUEST_KREL
	[ -d "$MODDIR" ] || die "$deb has no lib/modules/$GUEST_KREL"
	[ -f "$ROOT.tmp/boot/vmlinuz-$GUEST_KREL" ] || die "$deb has no boot/vmlinuz-$GUEST_KREL"
	if command -v depmod >/dev/null 2>&1; then
		depmod -b "$ROOT.tmp" "$GUEST_KREL"
	else
		busybox depmod -b "$ROOT.tmp" "$GUEST_KREL"
	fi
	[ -s "$MODDIR/modules.dep" ] || die "depmod did not produce $MODDIR/modules.dep"
	rm -rf "$ROOT"
	mv "$ROOT.tmp" "$ROOT"
	basename "$deb" >"$STAMP"
	rm -f "$G/vmlinuz"
fi

if [ ! -f "$G/vmlinuz" ] || ! cmp -s "$ROOT/boot/vmlinuz-$GUEST_KREL" "$G/vmlinuz"; then
	cp "$ROOT/boot/vmlinuz-$GUEST_KREL" "$G/vmlinuz.tmp"
	mv "$G/vmlinuz.tmp" "$G/vmlinuz"
fi
exit 0
