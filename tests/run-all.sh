#!/bin/bash
# Runs every test tier and sums the results into one closing line.
# usage: tests/run-all.sh OUTDIR
set -u
OUT=${1:?usage: run-all.sh OUTDIR}
SRC=$(cd "$(dirname "$0")/.." && pwd)
export OUT
# Suites run side by side in CHECK_LANES lanes (default: one per CPU): most of a suite's time is one
# TCG vCPU or a wait, so a second lane roughly halves the wall time. Each suite keeps its VMs'
# state in its own directory ($OUT/vm/SUITE, VM_RUNS), its pins in its own bpffs directory
# (PVIOMMU_PIN_DIR) and its host listeners on ports of its own; its lines reach the output in one
# block when it ends. The suites that attach to every QEMU of a binary (lifecycle, cli: attach
# --qemu) or that time a lock against the clock (bpf) run first, alone.
LANES=${CHECK_LANES:-$(nproc 2>/dev/null || echo 1)}
[ "$LANES" -ge 1 ] 2>/dev/null || LANES=1
if [ "$LANES" -gt 1 ] && { [ "${BASH_VERSINFO[0]}" -lt 5 ] ||
	{ [ "${BASH_VERSINFO[0]}" = 5 ] && [ "${BASH_VERSINFO[1]}" -lt 1 ]; }; }; then
	echo "run-all: bash $BASH_VERSION has no 'wait -n -p' (5.1+): one lane"
	LANES=1
fi
T0=$SECONDS

suite() {	# suite NAME CMD...: a suite prints "NAME: N passed, M failed[, K skipped]"
	local name=$1; shift
	local log="$OUT/tests/$name.log" t0=$SECONDS rc
	mkdir -p "$OUT/tests"
	echo "=== $name"
	# the failure lines of both result formats (testlib.h: "  FAIL", testlib.sh: "FAIL")
	VM_RUNS="$OUT/vm/$name" "$@" 2>&1 | tee "$log" |
		grep -E '^(not ok|skip|  FAIL|FAIL |[a-z0-9_-]+: [0-9]+ passed)'
	rc=${PIPESTATUS[0]}
	local line p f s
	line=$(grep -E '^[a-z0-9_-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	p=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed.*/\1/p'); p=${p:-0}
	f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-0}
	s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi	# crashed or no summary
	echo "$p $f $s $rc" >"$OUT/tests/$name.res"
	echo "    ($((SECONDS - t0)) s, log: $log)"
	# a failed suite's own words reach whoever reads only this output (a CI console)
	if [ "$rc" != 0 ]; then
		echo "    --- last ${TAIL_LINES:-60} lines of $log:"
		tail -n "${TAIL_LINES:-60}" "$log" | tr -d '\r' | sed 's/^/    | /'
	fi
}

ORDER=()	# suite names in the order they were started
run() {		# run NAME CMD...: one suite, now, alone
	ORDER+=("$1")
	suite "$@"
}
declare -A JOB=()	# pid -> suite name, of the suites running side by side
reap() {	# reap: wait for one side-by-side suite to end and print its block
	local pid name
	wait -n -p pid
	name=${JOB[$pid]}
	unset "JOB[$pid]"
	cat "$OUT/tests/$name.block"
}
lane() {	# lane NAME CMD...: start a suite in a free lane (waits for one)
	if [ "$LANES" = 1 ]; then run "$@"; return; fi
	while [ "${#JOB[@]}" -ge "$LANES" ]; do reap; done
	ORDER+=("$1")
	echo "--- $1 started ($((SECONDS - T0)) s)"
	suite "$@" >"$OUT/tests/$1.block" 2>&1 &
	JOB[$!]=$1
}
lanes_done() { while [ "${#JOB[@]}" -gt 0 ]; do reap; done; }

# the real KVM stack, in a guest that plays the host (nested SVM under TCG): its runs are tried
# again on the failures of nested KVM under TCG itself (tests/l1/flake.sh says which)
# shellcheck source=tests/l1/flake.sh
. "$SRC/tests/l1/flake.sh"
RETRIED=$OUT/tests/retried.list	# l1_retry runs in run's pipeline (a subshell): a file
mkdir -p "$OUT/tests"
: >"$RETRIED"
rm -f "$OUT"/tests/*.res "$OUT"/tests/*.block	# a suite that leaves none failed
l1_retry() {	# l1_retry NAME SCRIPT: up to L1_TRIES (3) runs while each failure is such a flake
	local name=$1 script=$2 try=1 log why serial
	while :; do
		log="$OUT/tests/$name.try$try.log"
		"$script" >"$log" 2>&1 && { cat "$log"; return 0; }
		why=$(l1_flake "$log")
		if [ -z "$why" ] || [ "$try" -ge "${L1_TRIES:-3}" ]; then
			cat "$log"
			return 1
		fi
		echo "$name: try $try failed ($why: nested KVM under TCG, outside pviommu); trying again:"
		grep -E '^(not ok|FAIL)' "$log" | head -5
		echo "$name($why)" >>"$RETRIED"
		serial=$(l1_serial "$log")
		[ -n "$serial" ] && cp "$serial" "$OUT/tests/$name.try$try.serial.log" 2>/dev/null
		try=$((try + 1))
	done
}
# alone: the unit tests, the BPF programs (a lock timed against the clock), the CLI (attach --qemu)
run build "$SRC/tests/test_build.sh"
run unit "$OUT/tests/test_range"
run chan "$OUT/tests/test_chan"
run vfio "$OUT/tests/test_vfio"
run bpf "$OUT/tests/test_bpf"
run lifecycle "$SRC/tests/test_lifecycle.sh"
run cli "$SRC/tests/test_cli.sh"

# side by side, the longest first (measured here): the nested runs, then the VM suites
[ "$LANES" -gt 1 ] && echo "--- $LANES lanes"
lane l1-assign l1_retry l1-assign "$SRC/tests/l1/test_l1_assign.sh"
lane vm-attacks "$SRC/tests/vm/test_attacks.sh"
lane l1-kvm l1_retry l1-kvm "$SRC/tests/l1/test_l1_kvm.sh"
lane vm-inproc "$SRC/tests/vm/test_inproc.sh"
lane dkms "$SRC/tests/test_dkms.sh"
for t in "$SRC"/tests/vm/test_*.sh; do
	[ -x "$t" ] || continue
	n="vm-$(basename "$t" .sh | sed 's/^test_//')"
	case " ${ORDER[*]} " in *" $n "*) continue ;; esac
	lane "$n" "$t"
done
lane deb "$SRC/tests/test_deb.sh"
lane libvirt "$SRC/tests/test_libvirt.sh"
lane l1-vfio "$SRC/tests/l1/test_l1_vfio.sh"
lane fuzz "$SRC/tests/fuzz/run-fuzz.sh" "$OUT" 15
lanes_done

tp=0 tf=0 ts=0 failed_suites=""
for n in "${ORDER[@]}"; do
	read -r p f s rc <"$OUT/tests/$n.res" 2>/dev/null || { p=0 f=1 s=0 rc=1; }
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
	[ "$rc" = 0 ] || failed_suites="$failed_suites $n"
done
[ -n "$failed_suites" ] && echo "failed suites:$failed_suites"
retried=$(tr '\n' ' ' <"$RETRIED")
[ -n "$retried" ] && echo "retried after a nested-KVM failure: $retried"
echo "all: $tp passed, $tf failed, $ts skipped, $(wc -l <"$RETRIED") retried ($((SECONDS - T0)) s, $LANES lanes)"
[ "$tf" = 0 ] && [ -z "$failed_suites" ]
