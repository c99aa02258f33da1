# shellcheck shell=bash
# tests/l1/flake.sh - sourced by tests/run-all.sh and tests/bench/bench_vfio.sh: the failures of
# a nested run that come from nested KVM under TCG, not from pviommu, which both try again on.
#
# The real KVM stack runs in a guest that plays the host (nested SVM under TCG).
# Nested KVM on emulation fails now and then outside pviommu: an L2 guest resets before it prints
# a single line (its QEMU exits 0 with an empty serial log, ~1 run in 10, seen in l1-kvm and in
# l1-assign before pviommu.ko is even loaded) or after its first lines but before its ready
# marker, which comes before pviommu.ko is loaded (QEMU rc 0, no panic, oops or BUG in its log;
# seen in l1-assign), L1's KVM soft-locks (seen twice; tests/l1/lib.sh stops L1 90 s after it
# reports one, not at its hard timeout), an L1 CPU's timer stops firing (an RCU stall on an idle
# CPU; seen once in l1-assign; stopped the same way), or L1's vCPU
# thread dies in KVM_RUN of recursive page faults on a %gs access until its stack guard page
# (seen once; no BPF frame), or L1 itself resets while its L2 boots (L1's QEMU exits 0, no
# verdict, its serial log ends without a panic, an oops or a BUG: a triple fault of the emulated
# nested SVM; a crash of L1's kernel would print one; seen once), or L1 freezes whole with
# nothing on its console (its heartbeat stops: tests/l1/lib.sh; seen once, in CI, while a
# protected L2 booted; no panic, oops or BUG before it); two of them in a row were seen
# once. run-all.sh tries such a suite up to two more times, only on those signatures, each
# failed try said and counted in its closing line ("retried"); bench_vfio.sh does the same.
l1_serial() {	# l1_serial LOG: the L1 serial log a suite's log names (its last), or nothing
	sed -n 's/^ *last lines of \(.*serial\.log\):$/\1/p' "$1" | tail -n 1
}
l1_flake() {	# l1_flake LOG: the first signature in it or in L1's serial log it names, or nothing
	local serial
	serial=$(l1_serial "$1")
	cat "$1" ${serial:+"$serial"} 2>/dev/null | tr -d '\r' | awk '
	     function flake(w) { print w; done = 1; exit }
	     /(^FAIL |CHECK FAIL )[a-z0-9-]*l2-ready-marker/ { nready = 1 }
	     /--- L2 serial log$/ { s = NR; l2crash = 0; next }
	     s && /--- L2 qemu.out \(QEMU rc 0\)$/ {
		if (NR == s + 1) flake("L2 reset before printing a line")
		# L2 printed its first lines, then its QEMU exited 0 with no panic, oops or BUG,
		# before the ready marker, which comes before pviommu.ko is loaded
		if (nready && !l2crash) flake("L2 reset before its ready marker")
		s = 0; next }
	     s && /--- L2 qemu.out/ { s = 0 }
	     s && /Kernel panic|Oops|BUG:|Call Trace|general protection fault/ { l2crash = 1 }
	     /watchdog: BUG: soft lockup/ { flake("soft lockup in L1") }
	     /rcu_preempt kthread timer wakeup didn.t happen/ { flake("timer stall in L1") }
	     /BUG: TASK stack guard page was hit/ { flake("L1 stack guard page") }
	     /VM .l1_[a-z_]*. exited \(QEMU rc 0\) without a verdict/ { rc0 = 1 }
	     /VM .l1_[a-z_]*. stopped running: no heartbeat/ { frozen = 1 }
	     /Kernel panic|Oops|BUG:|Call Trace|general protection fault/ { crash = 1 }
	     END { if (!done && rc0 && !crash) print "L1 reset without a panic or oops"
		   else if (!done && frozen && !crash) print "L1 froze without a panic or oops" }'
}
