#!/bin/bash
# test_dkms.sh - the guest module through DKMS, as the pviommu-dkms package ships it: 'make
# dkms-src' gives the source tree (/usr/src/pviommu-VERSION), Debian's dkms adds, builds and
# installs it for the pinned guest kernel from its headers (no running guest needed; private dkms
# and install trees, nothing of the host's changes), then the VM harness runs the module's tests
# (tests/vm/test_guest_module.sh) with the DKMS-built module. A second guest kernel ABI
# (GUEST_KABI_ALT) the same way: built, installed, booted with it, the module's tests run.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$SRC/build}
NAME=dkms
# shellcheck source=tests/testlib.sh
. "$SRC/tests/testlib.sh"
need_cmds dkms modinfo make
KREL=$(sed -n 's/^GUEST_KABI *:= *//p' "$SRC/mk/guest.mk")-amd64
VER=$(cat "$SRC/VERSION")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
D=(--dkmstree "$tmp/tree" --sourcetree "$tmp/src")
mkdir -p "$tmp/tree" "$tmp/src" "$tmp/inst/$KREL/kernel"

if make -C "$SRC" --no-print-directory O="$OUT" dkms-src >"$tmp/make.out" 2>&1; then
	ok "make dkms-src"
else
	nok "make dkms-src" "$(tail -n 3 "$tmp/make.out")"; finish
fi
cp -a "$OUT/dkms/pviommu-$VER" "$tmp/src/"
for f in dkms.conf Kbuild pviommu.c pviommu.h; do
	[ -f "$tmp/src/pviommu-$VER/$f" ] && ok "source tree has $f" || nok "source tree has $f"
done
grep -qx "PACKAGE_VERSION=\"$VER\"" "$tmp/src/pviommu-$VER/dkms.conf" &&
	ok "dkms.conf carries VERSION ($VER)" || nok "dkms.conf carries VERSION ($VER)"
dkms add "${D[@]}" -m pviommu -v "$VER" >"$tmp/add.out" 2>&1 && ok "dkms add" || nok "dkms add" "$(tail -n 3 "$tmp/add.out")"
if dkms build "${D[@]}" -m pviommu -v "$VER" -k "$KREL" >"$tmp/build.out" 2>&1; then
	ok "dkms build for $KREL"
else
	nok "dkms build for $KREL" "$(tail -n 5 "$tmp/build.out")"; finish
fi
ko=$(find "$tmp/tree/pviommu/$VER/$KREL" -name 'pviommu.ko*' | head -n 1)
[ -n "$ko" ] && ok "built module present" || { nok "built module present"; finish; }
case $ko in *.xz) xz -dc "$ko" >"$tmp/pviommu.ko" ;; *.zst) zstd -qdc "$ko" >"$tmp/pviommu.ko" ;; *) cp -p "$ko" "$tmp/pviommu.ko" ;; esac
# the guest-module test checks that the build log is not older than the module: dkms signs the
# module after its make (the log's time is the build's)
blog="$tmp/tree/pviommu/$VER/$KREL/x86_64/log/make.log"
[ -f "$blog" ] && ok "dkms kept its build log" || nok "dkms kept its build log"
touch -r "$blog" "$tmp/pviommu.ko" 2>/dev/null
vm=$(modinfo -F vermagic "$tmp/pviommu.ko" 2>/dev/null)
case $vm in "$KREL "*) ok "vermagic is the guest kernel's ($KREL)" ;; *) nok "vermagic is the guest kernel's" "$vm" ;; esac
# the same module as the tree's build: the same parameters, the same ABI strings
if [ -f "$OUT/guest-module/pviommu.ko" ]; then
	[ "$(modinfo -F parm "$tmp/pviommu.ko" | sort)" = "$(modinfo -F parm "$OUT/guest-module/pviommu.ko" | sort)" ] &&
		ok "same parameters as the tree's build" || nok "same parameters as the tree's build"
fi
if dkms install "${D[@]}" --installtree "$tmp/inst" -m pviommu -v "$VER" -k "$KREL" >"$tmp/inst.out" 2>&1 &&
	[ -n "$(find "$tmp/inst/$KREL/updates/dkms" -name 'pviommu.ko*' 2>/dev/null)" ]; then
	ok "dkms install into updates/dkms"
else
	nok "dkms install into updates/dkms" "$(tail -n 3 "$tmp/inst.out")"
fi
dkms status "${D[@]}" -m pviommu 2>/dev/null | grep -q "pviommu/$VER, $KREL, x86_64: installed" &&
	ok "dkms status: installed" || nok "dkms status: installed" "$(dkms status "${D[@]}" -m pviommu 2>&1)"

# another guest kernel ABI (mk/guest.mk GUEST_KABI_ALT): dkms builds and installs for it as well
ALT=$(sed -n 's/^GUEST_KABI_ALT *:= *//p' "$SRC/mk/guest.mk")-amd64
mkdir -p "$tmp/inst/$ALT/kernel"
if dkms build "${D[@]}" -m pviommu -v "$VER" -k "$ALT" >"$tmp/build-alt.out" 2>&1 &&
	dkms install "${D[@]}" --installtree "$tmp/inst" -m pviommu -v "$VER" -k "$ALT" >>"$tmp/build-alt.out" 2>&1
then ok "dkms build and install for a second guest kernel ($ALT)"
else nok "dkms build and install for $ALT" "$(tail -n 5 "$tmp/build-alt.out")"; fi
ko2=$(find "$tmp/inst/$ALT/updates/dkms" -name 'pviommu.ko*' 2>/dev/null | head -n 1)
mkdir -p "$tmp/alt"	# the guest loads /test/pviommu.ko: the file keeps its name
case $ko2 in *.xz) xz -dc "$ko2" >"$tmp/alt/pviommu.ko" ;; *.zst) zstd -qdc "$ko2" >"$tmp/alt/pviommu.ko" ;; ?*) cp "$ko2" "$tmp/alt/pviommu.ko" ;; esac
vm=$(modinfo -F vermagic "$tmp/alt/pviommu.ko" 2>/dev/null)
case $vm in "$ALT "*) ok "... its vermagic is that kernel's ($ALT)" ;; *) nok "... its vermagic is that kernel's" "${vm:-no module}" ;; esac
# ... and that kernel boots with it: its image and initramfs in $OUT/guest-alt (cached like the
# pinned one's), the module's own tests with the DKMS build for it
ALTOUT=$OUT/guest-alt
if GUEST_KREL=$ALT "$SRC/tests/vm/fetch-kernel.sh" "$ALTOUT" >"$tmp/alt-kernel.out" 2>&1 &&
	GUEST_KREL=$ALT "$SRC/tests/vm/mkinitramfs.sh" base "$ALTOUT" >>"$tmp/alt-kernel.out" 2>&1
then ok "the second guest kernel and its initramfs ($ALTOUT/guest)"
else nok "the second guest kernel and its initramfs" "$(tail -n 3 "$tmp/alt-kernel.out")"; fi
alog="$tmp/tree/pviommu/$VER/$ALT/x86_64/log/make.log"
touch -r "$alog" "$tmp/alt/pviommu.ko" 2>/dev/null
if GUEST_VMLINUZ="$ALTOUT/guest/vmlinuz" GUEST_INITRD_BASE="$ALTOUT/guest/base.cpio.gz" \
	PVIOMMU_KO="$tmp/alt/pviommu.ko" PVIOMMU_KO_BUILD_LOG="$alog" \
	"$SRC/tests/vm/test_guest_module.sh" >"$tmp/vm-alt.out" 2>&1; then
	ok "module tests pass on $ALT with its DKMS build ($(grep -E '^guest_module: ' "$tmp/vm-alt.out" | tail -n 1))"
else
	nok "module tests pass on $ALT with its DKMS build" "$(grep -E '^(FAIL|not ok)|^guest_module: ' "$tmp/vm-alt.out" | head -n 5 | tr '\n' '|')"
fi

# the module's own tests, with the DKMS-built module in the guest
if PVIOMMU_KO="$tmp/pviommu.ko" PVIOMMU_KO_BUILD_LOG="$blog" \
	"$SRC/tests/vm/test_guest_module.sh" >"$tmp/vm.out" 2>&1; then
	ok "module tests pass with the DKMS build ($(grep -E '^guest_module: ' "$tmp/vm.out" | tail -n 1))"
else
	nok "module tests pass with the DKMS build" "$(grep -E '^(FAIL|not ok)|^guest_module: ' "$tmp/vm.out" | head -n 5 | tr '\n' '|')"
fi
dkms remove "${D[@]}" -m pviommu -v "$VER" --all >/dev/null 2>&1
finish
