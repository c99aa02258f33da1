#!/bin/bash
# mkinitramfs.sh - initramfs images for the pviommu VM test guest.
#
#   mkinitramfs.sh base OUTDIR
#       OUTDIR/guest/base.cpio.gz (newc, gzip): busybox-static + applet links, /init,
#       /lib/pviommu-vm.sh, and the guest modules (with dependencies, from modules.dep) for
#       e1000, virtio_pci/net/blk, nvme, 9p over virtio. Needs fetch-kernel.sh OUTDIR first.
#   mkinitramfs.sh extra OUTDIR OUT.cpio.gz --script FILE [--file SRC[:DEST]]... [--module NAME]...
#       a small per-test archive appended to the base: FILE as /test/run.sh, each SRC at DEST
#       (default /test/<basename>; directories are copied recursively), and extra guest modules
#       NAME (with dependencies) loaded by /init after the base ones.
# Linux unpacks concatenated archives in order: cat base.cpio.gz extra.cpio.gz > initrd.
set -eu

die() { echo "mkinitramfs: error: $*" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
if [ -z "${GUEST_KREL:-}" ]; then
	GUEST_KABI=$(sed -n 's/^GUEST_KABI *:= *//p' "$SRC/mk/guest.mk")
	[ -n "$GUEST_KABI" ] || die "cannot read GUEST_KABI from $SRC/mk/guest.mk"
	GUEST_KREL=$GUEST_KABI-amd64
fi

# modules in the base image (names as in modules.dep, '-' and '_' both accepted)
# (the crc generics first: nvme's crc64-rocksoft/crc-t10dif look them up when they load)
BASE_MODULES="crc64_rocksoft_generic crct10dif_generic e1000 virtio_pci virtio_net virtio_blk nvme
	9pnet_virtio 9p netfs fscache"

BUSYBOX=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	for b in /bin/busybox /usr/bin/busybox; do
		if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi
	done
	ldd "$BUSYBOX" >/dev/null 2>&1 && die "$BUSYBOX is dynamically linked; install busybox-static"
fi

# resolve_modules MODDIR NAME... -> module paths (relative to MODDIR), dependencies first, no dups
resolve_modules() {
	local moddir=$1; shift
	awk -v want="$*" '
	function norm(s) { gsub("-", "_", s); return s }
	BEGIN { n = split(want, w, /[ \t\n]+/); for (i = 1; i <= n; i++) if (w[i] != "") W[norm(w[i])] = 1 }
	{
		path = $1; sub(/:$/, "", path)
		name = path; sub(/.*\//, "", name); sub(/\.ko(\.[a-z]+)?$/, "", name); name = norm(name)
		if (!(name in W)) next
		found[name] = 1
		line[name] = $0
	}
	END {
		for (k in W) if (!(k in found)) { print "missing " k > "/dev/stderr"; bad = 1 }
		if (bad) exit 1
		# emit in the order requested; each module after its dependencies (modules.dep lists
		# dependencies so that the last one must be loaded first)
		for (i = 1; i <= n; i++) {
			k = norm(w[i]); if (k == "" || done[k]) continue
			m = split(line[k], f, /[ \t]+/)
			for (j = m; j >= 2; j--) if (!(f[j] in seen)) { seen[f[j]] = 1; print f[j] }
			p = f[1]; sub(/:$/, "", p)
			if (!(p in seen)) { seen[p] = 1; print p }
			done[k] = 1
		}
	}' "$moddir/modules.dep"
}

# add_modules ROOTDIR MODDIR LISTFILE NAME...: copy modules (+deps) into ROOTDIR, append load list
add_modules() {
	local root=$1 moddir=$2 list=$3; shift 3
	local mods m dst
	mods=$(resolve_modules "$moddir" "$@") || die "modules not found in $moddir (see above)"
	for m in $mods; do
		dst=$root/lib/modules/$GUEST_KREL/$m
		mkdir -p "$(dirname "$dst")"
		case $m in
		*.ko) cp "$moddir/$m" "$dst" ;;
		*.ko.xz) xz -dc "$moddir/$m" >"${dst%.xz}"; m=${m%.xz} ;;
		*.ko.zst) zstd -qdc "$moddir/$m" >"${dst%.zst}"; m=${m%.zst} ;;
		*.ko.gz) gzip -dc "$moddir/$m" >"${dst%.gz}"; m=${m%.gz} ;;
		*) die "unknown module format: $m" ;;
		esac
		echo "/lib/modules/$GUEST_KREL/$m" >>"$list"
	done
}

# pack DIR OUT.cpio.gz: newc archive of DIR, owned by root, gzip
pack() {
	local dir=$1 out=$2
	(cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) |
		gzip -n -6 >"$out.tmp"
	mv "$out.tmp" "$out"
}

MODDIR_OF() { echo "$1/guest/root/lib/modules/$GUEST_KREL"; }

build_base() {
	local outdir=$1 moddir stage a
	moddir=$(MODDIR_OF "$outdir")
	[ -s "$moddir/modules.dep" ] || die "$moddir/modules.dep missing: run tests/vm/fetch-kernel.sh $outdir first"
	stage=$outdir/guest/base.stage
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/pviommu-vm,lib,proc,sys,dev,tmp,run,mnt,root,test}
	cp "$BUSYBOX" "$stage/bin/busybox"
	for a in $("$BUSYBOX" --list-full); do
		[ "$a" = bin/busybox ] && continue
		mkdir -p "$stage/$(dirname "$a")"
		ln -sf /bin/busybox "$stage/$a"
	done
	[ -e "$stage/bin/sh" ] || ln -s busybox "$stage/bin/sh"
	install -m 0755 "$HERE/guest/init" "$stage/init"
	install -m 0644 "$HERE/guest/pviommu-vm.sh" "$stage/lib/pviommu-vm.sh"
	: >"$stage/etc/pviommu-vm/modules"
	# shellcheck disable=SC2086
	add_modules "$stage" "$moddir" "$stage/etc/pviommu-vm/modules" $BASE_MODULES
	# full module index so that modprobe (and the kernel's request_module) work for added modules
	for a in modules.dep modules.alias modules.softdep modules.builtin modules.order modules.symbols; do
		[ -f "$moddir/$a" ] && cp "$moddir/$a" "$stage/lib/modules/$GUEST_KREL/"
	done
	echo "root:x:0:0:root:/root:/bin/sh" >"$stage/etc/passwd"
	echo "root:x:0:" >"$stage/etc/group"
	echo "pviommu-guest" >"$stage/etc/hostname"
	pack "$stage" "$outdir/guest/base.cpio.gz"
	rm -rf "$stage"
}

build_extra() {
	local outdir=$1 out=$2; shift 2
	local script="" files=() modules=() stage spec s d moddir
	while [ $# -gt 0 ]; do
		case $1 in
		--script) script=$2; shift 2 ;;
		--file) files+=("$2"); shift 2 ;;
		--module) modules+=("$2"); shift 2 ;;
		*) die "extra: unknown option $1" ;;
		esac
	done
	stage=$out.stage
	rm -rf "$stage"
	mkdir -p "$stage/test" "$stage/etc/pviommu-vm"
	if [ -n "$script" ]; then
		[ -f "$script" ] || die "test script not found: $script"
		install -m 0755 "$script" "$stage/test/run.sh"
	fi
	for spec in "${files[@]+"${files[@]}"}"; do
		case $spec in
		*:*) s=${spec%%:*}; d=${spec#*:} ;;
		*) s=$spec; d=/test/$(basename "$spec") ;;
		esac
		[ -e "$s" ] || die "file not found: $s"
		case $d in /*) ;; *) d=/test/$d ;; esac
		case $d in */) d=$d$(basename "$s") ;; esac
		mkdir -p "$stage$(dirname "$d")"
		cp -a "$s" "$stage$d"
	done
	if [ ${#modules[@]} -gt 0 ]; then
		moddir=$(MODDIR_OF "$outdir")
		: >"$stage/etc/pviommu-vm/modules.extra"
		add_modules "$stage" "$moddir" "$stage/etc/pviommu-vm/modules.extra" "${modules[@]}"
	fi
	pack "$stage" "$out"
	rm -rf "$stage"
}

[ $# -ge 2 ] || die "usage: $0 base OUTDIR | extra OUTDIR OUT.cpio.gz [--script F] [--file S[:D]]... [--module M]..."
mode=$1; shift
case $mode in
base) build_base "$1" ;;
extra) build_extra "$@" ;;
*) die "unknown mode $mode" ;;
esac
