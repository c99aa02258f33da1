# shellcheck shell=bash
# tests/l1/lib.sh - "host in a guest" (L1) harness (bash; source it). Builds on tests/vm/lib.sh.
#
# The host kernel here refuses /dev/kvm, BPF LSM and fentry. L1 = the Debian 6.1 guest kernel under
# TCG with an SVM CPU (-cpu EPYC): nested KVM works there (kvm + kvm_amd), and its command line
# enables the BPF LSM. The host root is shared read-only over 9p and L1 chroots into it, so the
# host's own pviommuctl, bpftool, libbpf, jq and qemu-system-x86_64 run on L1's kernel.
#
#   . tests/l1/lib.sh
#   l1_boot --name N --inner SCRIPT [--timeout SEC] [--mem MB] [any vm_boot option...]
#   vm_wait                # 0 only if SCRIPT exited 0 and none of its checks failed
#
# l1_boot boots L1 (-machine q35 -cpu EPYC -m 1024 -smp 2, lsm=lockdown,capability,landlock,yama,bpf,
#   modules kvm_amd/kvm (+irqbypass, ccp), --share /:hostroot:ro). L1's /init runs
#   tests/l1/l1-init.sh, which mounts bpffs, tracefs and debugfs, binds /dev, /proc, /sys and L1's
#   /tmp (a tmpfs) into /mnt/hostroot, and runs `chroot /mnt/hostroot bash SCRIPT` with a clean
#   environment. SCRIPT must lie inside the host root (any host path does); it is run by its host
#   path. In SCRIPT:
#     . "$L1_SRC/tests/vm/guest/pviommu-vm.sh"   # check/value/mark/fail: serial markers of L1
#     $L1_OUT                                    # the host build dir (read-only through 9p)
#     $L1_SRC                                    # the source tree (read-only)
#     $L1_CTL                                    # pviommuctl to test ($L1_OUT/pviommuctl)
#   Write only to /tmp (L1's tmpfs, shared with L1's /init: failed `check`s fail the run);
#   host folders under /tmp that the run names (a checkout there) stay visible, read-only.
#   `check NAME CMD || fail MSG`: MSG is the reason of NAME's failure on the host; a `fail MSG`
#   after no failed check is a failure of its own (l1-stopped: MSG).
#   What L1 is booted with (/dev/kvm, VFIO, the BPF LSM, edu) is checked, never skipped: L1
#   exists to run it.
#
# Environment: everything of tests/vm/lib.sh; L1_CPU (EPYC), L1_MEM (MB: 1024; 2048 works too), L1_SMP (2),
#   L1_HEARTBEAT (s between L1's beats: 15; lost after 10),
#   L1_CTL (host path of another pviommuctl build for L1 to use, e.g. one with a BPF change).

# shellcheck source=tests/vm/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../vm" && pwd)/lib.sh"
L1_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
L1_LSM="lockdown,capability,landlock,yama,bpf"
# a soft lockup of nested KVM under TCG does not recover (seen several times), nor does an L1 CPU
# whose timer stopped firing (an RCU stall on an idle CPU, "timer wakeup didn't happen": seen
# once in l1-assign while L2 ran, the CPU with no ticks; the same run passed alone in 74 s):
# stop L1 90 s after it reports one instead of at its hard timeout; run-all.sh retries them
VM_STALL_PATTERN=${VM_STALL_PATTERN-'watchdog: BUG: soft lockup|rcu_preempt kthread timer wakeup didn.t happen'}
# L1 can also freeze whole with nothing on its console (seen 3 times in l1-assign as its
# protected L2 started: no line up to the hard timeout, its own 420 s marker timeout never
# firing; l1-init.sh now avoids the cause it named, a static key's patching): L1 beats every
# L1_HEARTBEAT (15) s and is stopped 10 beats after its last, its vCPUs named (l1_failed)

l1_boot() {
	local inner="" mem=${L1_MEM:-1024} timeout=300 name=l1
	local -a rest=()
	while [ $# -gt 0 ]; do
		case $1 in
		--inner) inner=$2; shift 2 ;;
		--mem) mem=$2; shift 2 ;;
		--timeout) timeout=$2; shift 2 ;;
		--name) name=$2; shift 2 ;;
		*) rest+=("$1"); shift ;;
		esac
	done
	if [ -z "$inner" ] || [ ! -f "$inner" ]; then vm__err "l1_boot: --inner SCRIPT missing or not found"; return 2; fi
	inner=$(cd "$(dirname "$inner")" && pwd)/$(basename "$inner")
	case "$inner$VM_OUT$VM_SRC" in *[[:space:]]*) vm__err "l1_boot: paths with blanks are not supported"; return 2 ;; esac
	# (L1 mounts its own tmpfs on /tmp in the chroot; l1-init.sh binds host folders that the
	# run needs back on top of it)
	vm_boot --name "$name" --script "$L1_HERE/l1-init.sh" --cpu "${L1_CPU:-EPYC}" --machine q35 \
		--mem "$mem" --smp "${L1_SMP:-2}" --timeout "$timeout" --heartbeat "${L1_HEARTBEAT:-15}" \
		--share /:hostroot:ro --module kvm_amd --module kvm \
		--append "lsm=$L1_LSM pviommu.l1script=$inner pviommu.l1out=$VM_OUT pviommu.l1src=$VM_SRC${L1_CTL:+ pviommu.l1ctl=$L1_CTL}" \
		"${rest[@]+"${rest[@]}"}"
}

# every check L1 printed, in order, into testlib's counts (the message of a `fail` that stopped
# L1's script is the reason of the check that failed just before it, else a failure of its own)
# (the caller's testlib.sh provides ok/nok)
l1_collect_checks() {
	local st name last=""	# last: a failed check not counted yet (a STOP may give its reason)
	while read -r st name; do
		if [ "$st" = STOP ]; then nok "${last:-l1-stopped}" "$name"; last=""; continue; fi
		[ -z "$last" ] || nok "$last"
		last=""
		if [ "$st" = PASS ]; then ok "$name"; else last=$name; fi
	done < <(vm__grep '^PVIOMMU-VM: (CHECK (PASS|FAIL)|FAIL) ' |
		sed -e 's/^PVIOMMU-VM: CHECK //' -e 's/^PVIOMMU-VM: FAIL /STOP /')
	[ -z "$last" ] || nok "$last"
}

# l1_kallsyms: print the path of a /proc/kallsyms of the guest kernel (its /proc/modules beside
# it, ".modules") with L1's modules loaded, made once by a boot of its own (tests/l1/ksyms.py)
l1_kallsyms() {
	local krel=${GUEST_KREL:-} k f work=$VM_RUNS/l1_kallsyms.host
	if [ -z "$krel" ]; then for k in "$VM_OUT"/guest/root/lib/modules/*; do krel=${k##*/}; break; done; fi
	f=$VM_OUT/guest/kallsyms-$krel
	if [ ! -s "$f" ] || [ ! -s "$f.modules" ]; then
		rm -rf "$work"; mkdir -p "$work"; chmod 777 "$work"
		printf '. /lib/pviommu-vm.sh\ncat /proc/kallsyms >/mnt/out/kallsyms && cat /proc/modules >/mnt/out/modules\n' >"$work/run.sh"
		( VM_CUR=""; vm_boot --name l1_kallsyms --script "$work/run.sh" --cpu "${L1_CPU:-EPYC}" --timeout 120 \
			--share "$work:out" --module kvm_amd --module kvm --module vfio-pci --module vfio_iommu_type1 &&
			vm_wait ) >"$work/boot.out" 2>&1
		if [ ! -s "$work/kallsyms" ] || [ ! -s "$work/modules" ]; then echo "$work/boot.out"; return 1; fi
		mv "$work/kallsyms" "$f" && mv "$work/modules" "$f.modules"
	fi
	echo "$f"
}

# l1_frozen_named: the current VM's frozen.txt (tests/vm/lib.sh vm__frozen) with its addresses
# named, from where it said its kernel and modules lie (l1-init.sh: l1_ktext, l1_kmods); 1 and
# why when they cannot be
l1_frozen_named() {
	local ks
	[ -n "$(vm_value l1_ktext)" ] || { echo "the VM did not say where its kernel lies"; return 1; }
	ks=$(l1_kallsyms) || { echo "no kallsyms: $ks"; return 1; }
	python3 "$L1_HERE/ksyms.py" "$ks" "$ks.modules" "$(vm_value l1_ktext)" "$(vm_value l1_kmods)" \
		<"$(vm_dir)/frozen.txt"
}

# l1_failed RC: the end of a failed L1 run: its verdict (unless a failed check already counts),
# what L1's vCPUs were running if it froze (named), and the last lines of its serial log
# shellcheck disable=SC2154	# failed: testlib.sh's count, in the suite that calls it
l1_failed() {
	local named
	if [ "$failed" = 0 ]; then nok "l1-verdict" "rc $1"; fi
	if [ -s "$(vm_dir)/frozen.txt" ]; then
		if named=$(l1_frozen_named); then
			echo "  L1 froze; its vCPUs, named (kernel at $(vm_value l1_ktext)):"
			echo "$named"
		else
			echo "  L1 froze; no names for its vCPUs' addresses: $named"
		fi
	fi
	echo "  last lines of $(vm_log):"; vm_tail 40 | sed 's/^/    /'
}
