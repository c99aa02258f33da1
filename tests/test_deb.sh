#!/bin/bash
# test_deb.sh - the Debian packages: 'make deb' builds pviommu and pviommu-dkms with debhelper and
# dh-dkms; dpkg unpacks both into a clean root of its own (a fresh dpkg database, no maintainer
# script runs on this host), and the installed pviommuctl loads, reports status, finds the
# installed QEMU library for 'run', and unloads, from the files the packages put there.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$SRC/build}
NAME=deb
# shellcheck source=tests/testlib.sh
. "$SRC/tests/testlib.sh"
VER=$(cat "$SRC/VERSION")
root=$(mktemp -d)
export PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-deb-$$
cleanup() {
	[ -x "$root/usr/sbin/pviommuctl" ] && "$root/usr/sbin/pviommuctl" unload --force >/dev/null 2>&1
	rm -rf "$root"
}
FINISH_HOOK=cleanup
trap cleanup EXIT

if make -C "$SRC" --no-print-directory O="$OUT" deb >"$root.make" 2>&1; then ok "make deb"
else nok "make deb" "$(tail -n 5 "$root.make")"; rm -f "$root.make"; finish; fi
rm -f "$root.make"
host=$OUT/deb/pviommu_${VER}_amd64.deb dkms=$OUT/deb/pviommu-dkms_${VER}_all.deb
assert "pviommu_${VER}_amd64.deb built" [ -f "$host" ]
assert "pviommu-dkms_${VER}_all.deb built" [ -f "$dkms" ]
for f in usr/sbin/pviommuctl usr/lib/pviommu/libpviommu-qemu.so usr/share/man/man8/pviommuctl.8.gz \
	usr/share/man/man4/pviommu.4.gz usr/share/bash-completion/completions/pviommuctl \
	lib/systemd/system/pviommu.service lib/systemd/system/pviommu-events.service \
	etc/libvirt/hooks/qemu.d/pviommu usr/share/pviommu/libvirt-domain-snippet.xml; do
	assert "pviommu ships /$f" sh -c "dpkg-deb -c '$host' | grep ' ./$f\$' >/dev/null"
done
for f in dkms.conf Kbuild pviommu.c pviommu.h; do
	assert "pviommu-dkms ships /usr/src/pviommu-$VER/$f" sh -c "dpkg-deb -c '$dkms' | grep ' ./usr/src/pviommu-$VER/$f\$' >/dev/null"
done
assert "pviommu depends on libbpf (computed by dh_shlibdeps)" sh -c "dpkg-deb -f '$host' Depends | grep -q libbpf"
# README's install command: apt resolves the host package's dependencies from this system's archive
assert "apt-get install --simulate ./pviommu_${VER}_amd64.deb resolves" \
	sh -c "apt-get install --simulate '$host' >/dev/null 2>&1"
assert "pviommu-dkms registers with dkms at install (dh_dkms postinst)" sh -c "dpkg-deb -I '$dkms' postinst | grep -q dkms"
# Debian's own checker: no error, no warning (the overrides in packaging/debian/*.lintian-overrides
# say why each remaining tag is right)
lintian --tag-display-limit 0 "$host" "$dkms" >"$root.lintian" 2>&1
if ! grep -qE '^[EW]: ' "$root.lintian"; then ok "lintian: no error or warning ($(grep -c '^[IN]: ' "$root.lintian") info/notes)"
else nok "lintian: no error or warning" "$(grep -E '^[EW]: ' "$root.lintian" | head -n 5 | tr '\n' '|')"; fi
rm -f "$root.lintian"

# a clean root: dpkg's own database and a static shell for the maintainer scripts dpkg runs in
# it (chrooted: nothing runs on this host), nothing else
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/bin"
cp /bin/busybox "$root/bin/sh"
: >"$root/var/lib/dpkg/status"
: >"$root/var/lib/dpkg/available"
if dpkg --root="$root" --log=/dev/null --force-depends --unpack "$host" "$dkms" >"$root/dpkg.out" 2>&1
then ok "dpkg --root unpacks both"; else nok "dpkg --root unpacks both" "$(tail -n 3 "$root/dpkg.out")"; fi
assert "dpkg lists both in the root" sh -c "dpkg --root='$root' -l pviommu pviommu-dkms 2>/dev/null | grep -c '^.U' | grep -qx 2"
CTL=$root/usr/sbin/pviommuctl
out=$("$CTL" --version 2>&1)
case $out in *"$VER"*) ok "installed pviommuctl --version ($out)" ;; *) nok "installed pviommuctl --version" "$out" ;; esac
if "$CTL" load >"$root/load.out" 2>&1; then ok "installed pviommuctl load"; else nok "installed pviommuctl load" "$(tail -n 2 "$root/load.out")"; fi
assert "installed pviommuctl status: loaded" sh -c "'$CTL' -j status | grep -q '\"loaded\":true'"
# shellcheck disable=SC2016
pre=$("$CTL" run -- sh -c 'echo "$LD_PRELOAD"' 2>&1)
assert "installed run preloads the installed library" [ "$pre" = "$(realpath "$root/usr/lib/pviommu/libpviommu-qemu.so")" ]
assert "installed pviommuctl unload" "$CTL" unload
finish
