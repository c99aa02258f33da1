#!/bin/bash
# test_build.sh - the build's own rules: every target that runs tests depends on what it runs.
# Make expands a rule's prerequisites when it reads the rule, so a fragment of mk/ included before
# the one that defines a name gets an empty prerequisite (check-unit once depended on nothing and
# ran stale binaries). Reads make's database (make -pn), builds nothing.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
NAME=build
# shellcheck source=tests/testlib.sh
. "$SRC/tests/testlib.sh"
db=$(mktemp)
trap 'rm -f "$db"' EXIT
make -C "$SRC" -pn check-unit >"$db" 2>/dev/null
# deps TARGET: the prerequisites make recorded for TARGET
deps() { sed -n "s|^$1: *||p" "$db" | head -n1; }
# want TARGET FILE...: TARGET depends on each FILE (a path under the build dir)
want() {
	local t=$1 d miss=""; shift
	d=" $(deps "$t") "
	for f in "$@"; do case $d in *"/$f "*) ;; *) miss="$miss $f" ;; esac; done
	if [ -z "$miss" ]; then ok "$t depends on what it runs"; else nok "$t depends on what it runs" "missing:$miss (has:$d)"; fi
}
want check-unit tests/test_range tests/test_chan tests/test_vfio
want check-bpf tests/test_bpf
want fuzz tests/test_bpf tests/fuzz_policy
want vm-module guest-module/pviommu.ko pviommuctl guest/vmlinuz guest/base.cpio.gz
want guest guest-module/pviommu.ko guest-attack/pvattack.ko guest/vmlinuz guest/base.cpio.gz
# the host parts build without the guest's kernel headers (a KVM host has none): nothing of the
# guest is a prerequisite of 'all', and 'make all' with no such headers plans no guest build
alld=" $(deps all) "
case $alld in
*/guest-module/*|*/guest-attack/*|*/guest/*) nok "all is the host parts only" "has:$alld" ;;
*) case $alld in *"/pviommuctl "*"/libpviommu-qemu.so "*|*"/libpviommu-qemu.so "*"/pviommuctl "*)
	ok "all is the host parts only" ;; *) nok "all is the host parts only" "has:$alld" ;; esac ;;
esac
tmpo=$(mktemp -d)
trap 'rm -f "$db"; rm -rf "$tmpo"' EXIT
if plan=$(make -C "$SRC" -n all GUEST_KHDR=/nonexistent/headers O="$tmpo" 2>&1); then
	case $plan in *linux-headers*|*pviommu.ko*) nok "make all plans no guest build" "$(echo "$plan" | grep -m1 -E 'linux-headers|pviommu.ko')" ;;
	*) ok "make all plans no guest build (no guest headers)" ;; esac
else
	nok "make all plans no guest build" "make -n all failed: $(echo "$plan" | tail -n 2)"
fi
# the pattern rule of the benchmarks (bench_core, bench_inproc's BPF side) wants the skeletons
bench=$(grep -E '^/[^:]*/tests/%: /[^ ]*/tests/bench/%\.c' "$db" | head -n1)
case " $bench " in *"/pviommu.skel.h "*) ok "the benchmarks' pattern rule depends on the skeletons" ;;
*) nok "the benchmarks' pattern rule depends on the skeletons" "${bench:-no such rule}" ;; esac
finish
