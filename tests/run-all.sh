#!/bin/bash
# Runs every test tier and sums the results into one closing line.
# usage: tests/run-all.sh OUTDIR
set -u
OUT=${1:?usage: run-all.sh OUTDIR}
SRC=$(cd "$(dirname "$0")/.." && pwd)
export OUT
tp=0 tf=0 ts=0 failed_suites=""

run() {	# run NAME CMD...: a suite prints "NAME: N passed, M failed[, K skipped]"
	local name=$1; shift
	local log="$OUT/tests/$name.log" t0=$SECONDS rc
	mkdir -p "$OUT/tests"
	echo "=== $name"
	# the failure lines of both result formats (testlib.h: "  FAIL", testlib.sh: "FAIL")
	"$@" 2>&1 | tee "$log" | grep -E '^(not ok|skip|  FAIL|FAIL |[a-z0-9_-]+: [0-9]+ passed)' 
	rc=${PIPESTATUS[0]}
	local line p f s
	line=$(grep -E '^[a-z0-9_-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	p=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed.*/\1/p'); p=${p:-0}
	f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-0}
	s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi	# crashed or no summary
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
	[ "$rc" = 0 ] || failed_suites="$failed_suites $name"
	echo "    ($((SECONDS - t0)) s, log: $log)"
}

run build "$SRC/tests/test_build.sh"
run unit "$OUT/tests/test_range"
run chan "$OUT/tests/test_chan"
run vfio "$OUT/tests/test_vfio"
run bpf "$OUT/tests/test_bpf"
run fuzz "$SRC/tests/fuzz/run-fuzz.sh" "$OUT" 15
run lifecycle "$SRC/tests/test_lifecycle.sh"
run cli "$SRC/tests/test_cli.sh"
for t in "$SRC"/tests/vm/test_*.sh; do
	[ -x "$t" ] || continue
	run "vm-$(basename "$t" .sh | sed 's/^test_//')" "$t"
done

# the real KVM stack, in a guest that plays the host (nested SVM under TCG).
# Nested KVM on emulation fails now and then outside pviommu: L2's QEMU exits
# without a word (~1 run in 10), L1's KVM soft-locks before pviommu is even
# loaded (seen once), or L1's vCPU thread dies in KVM_RUN of recursive page
# faults on a %gs access until its stack guard page (seen once; no BPF frame,
# the next two runs passed). One retry, said out loud, and only for those.
l1_run() {
	"$SRC/tests/l1/test_l1_kvm.sh" >"$OUT/tests/l1-kvm.try1.log" 2>&1 && { cat "$OUT/tests/l1-kvm.try1.log"; return 0; }
	if grep -q -e '--- L2 qemu.out' -e 'watchdog: BUG: soft lockup' \
		-e 'BUG: TASK stack guard page was hit' "$OUT/tests/l1-kvm.try1.log"; then
		echo "l1-kvm: nested KVM under TCG lost L2 or locked up on the first try; retrying once:"
		grep -E '^(not ok|FAIL|  L2)' "$OUT/tests/l1-kvm.try1.log" | head -5
		"$SRC/tests/l1/test_l1_kvm.sh"
	else
		cat "$OUT/tests/l1-kvm.try1.log"
		return 1
	fi
}
run l1-kvm l1_run
run l1-vfio "$SRC/tests/l1/test_l1_vfio.sh"
# an assigned device under a nested guest: plain QEMU (the negative control), then under
# pviommuctl run with the IOMMU following the guest (one L1 boot, ~8-14 min here)
run l1-assign "$SRC/tests/l1/test_l1_assign.sh"

[ -n "$failed_suites" ] && echo "failed suites:$failed_suites"
echo "all: $tp passed, $tf failed, $ts skipped"
[ "$tf" = 0 ] && [ -z "$failed_suites" ]
