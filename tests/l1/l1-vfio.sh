#!/bin/bash
# l1-vfio.sh - the L1 side of test_l1_vfio.sh: runs in L1's chroot of the host root (tests/l1/lib.sh).
# Binds edu to vfio-pci, loads pviommu and the VFIO gate (bpf/pviommu_lsm.bpf.c through
# pviommuctl load), then runs $L1_OUT/l1/vfio_driver, a userspace VFIO driver of edu that is
# its own pviommu domain, and turns each of its "NAME ok|fail DETAIL" lines into a check.
# L1 boots with the BPF LSM to run the gate: no BPF LSM, or a gate that load did not attach, fails.
# Values: l1_t_* (seconds of each phase), l1_vfio_*.
set -u
# shellcheck source=tests/vm/guest/pviommu-vm.sh
. "$L1_SRC/tests/vm/guest/pviommu-vm.sh"
# shellcheck source=tests/l1/l1-edu.sh
. "$L1_SRC/tests/l1/l1-edu.sh"
CTL=${L1_CTL:-$L1_OUT/pviommuctl}
ts() { read -r _u _ </proc/uptime; echo "$_u"; }
T=$(ts)
phase() { local now; now=$(ts); value "l1_t_$1" "$(awk -v a="$T" -v b="$now" 'BEGIN { printf "%.1f", b - a }')"; T=$now; }

# ---- what L1 offers ----------------------------------------------------------------------------
[ -e /sys/kernel/security/lsm ] || mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
lsms=$(cat /sys/kernel/security/lsm 2>/dev/null)
value l1_lsms "$lsms"
case ",$lsms," in *,bpf,*) ;; *) check l1-bpf-lsm-active false; fail "L1 has no BPF LSM (lsm: $lsms)" ;; esac
l1_edu_find
value l1_vfio_edu "$BDF group $(basename "$(readlink "/sys/bus/pci/devices/$BDF/iommu_group")")"

# ---- pviommu load (the verifier under TCG: the long part) beside the vfio-pci bind ---------------
"$CTL" -v load >/tmp/load.out 2>&1 &
LOADPID=$!
l1_edu_bind
wait "$LOADPID"
check l1-load [ $? = 0 ] || { cat /tmp/load.out; fail "pviommuctl load"; }
phase load

[ -e /sys/fs/bpf/pviommu/links/vfio_lsm ] || cat /tmp/load.out
# load's note says why (the kernel refuses BPF LSM, the gate did not open, load or attach)
check l1-lsm-gate-attached-by-load [ -e /sys/fs/bpf/pviommu/links/vfio_lsm ] ||
	fail "pviommuctl load did not attach the VFIO gate: $(grep -m1 'VFIO gate' /tmp/load.out)"
"$CTL" status >/tmp/st.txt 2>&1
check l1-status-shows-gate grep -q 'vfio_lsm       attached' /tmp/st.txt
phase gate

# ---- the VFIO driver -------------------------------------------------------------------------------
"$L1_OUT/l1/vfio_driver" "$BDF" >/tmp/vfio.out 2>&1
rc=$?
phase vfio_driver
n=0
while read -r name st rest; do
	case $st in
	ok|fail) check "$name" [ "$st" = ok ] || echo "  $name: $rest"; n=$((n + 1)) ;;
	*) [ "$name" = value ] && value "l1_vfio_$st" "$rest" ;;
	esac
done </tmp/vfio.out
check l1-vfio-driver-rc [ $rc = 0 ] || cat /tmp/vfio.out
check l1-vfio-driver-ran-checks [ "$n" -ge 10 ]
value l1_dmar_faults "$(dmesg | grep -c 'DMAR: \[DMA \(Write\|Read\)')"
dmesg | grep -m3 'DMAR: \[DMA' | sed 's/^/  /'
"$CTL" -j status >/tmp/status.json 2>/dev/null && value l1_stats_end "$(jq -c .stats /tmp/status.json)"
exit 0
