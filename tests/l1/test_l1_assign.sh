#!/bin/bash
# test_l1_assign.sh - an assigned (VFIO) device driven by a nested guest's kernel, in a "host in a
# guest" (tests/l1/lib.sh): the harness for protecting assigned devices, with its negative control.
#
# L1 (TCG, -cpu EPYC, q35 + intel-iommu,caching-mode=on, intel_iommu=on, edu at 00:10.0 behind
# the emulated IOMMU, nested SVM, vfio-pci + vfio_iommu_type1) runs tests/l1/l1-assign.sh:
#   edu is bound to vfio-pci; L2 = the guest kernel under L1's KVM, started by plain QEMU (no
#   pviommu at all, no vIOMMU in L2) with -device vfio-pci,host=<edu>,addr=06.0 and an e1000;
#   in L2, pvattack.ko drives edu at 0000:00:06.0 (tests/l1/l2-assign-guest.sh) and runs
#   legit, a (read a never-mapped secret page), b (write a never-mapped victim page), d (one byte
#   past a 64-byte buffer), e (use after unmap).
# Negative control, asserted: QEMU maps all of L2's RAM into the VFIO container before L2 runs,
# so the legit round trip works AND every attack succeeds through L1's IOMMU (a leaked, b/d/e
# changed). L1's DMAR faults are recorded (l1_dmar_faults). How QEMU fed the container (each
# VFIO ioctl with thread and time, seen by an LD_PRELOADed ioctl interposer, cross-checked with
# L1's kernel: ftrace of the ioctl syscalls and of iommu:map) is printed after the checks.
#
# Then, in the same L1: pviommuctl load (the VFIO LSM gate attached) and the same L2 under
# 'pviommuctl run --mode deny' with pviommu.ko (transport=kvm channel=page) protecting edu: the
# library withholds QEMU's container maps and mirrors edu's live mappings page by page
# (qemu-hooks/pv_vfio.h). Asserted: L1's IOMMU holds no page of L2's RAM before L2's driver runs;
# legit works; a not leaked, b and e unchanged, with DMAR faults in L1; after the workload the
# IOMMU's pages (from L1's iommu:map/unmap trace) equal the pages of the BPF records, without the
# secret and victim pages, no map larger than a page; after rmmod both are empty.
# d (byte 65 of a 64-byte buffer) is inside a mapped page: an IOMMU cannot stop it (README).
#
# In tests/run-all.sh (make check).
# By hand: sudo tests/l1/test_l1_assign.sh   (after make; L1_TIMEOUT=SEC, L2_MEM=MB to change)
# A missing /dev/kvm, VFIO or edu IOMMU group in L1 fails. Needs root, make
# (pvattack.ko, guest kernel + initramfs), qemu-system-x86_64. Prints
# "l1_assign: N passed, M failed", the timings and the traces.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/l1/lib.sh
. "$HERE/lib.sh"
NAME=l1_assign
KO=${ATK_ATTACK_KO:-$VM_OUT/guest-attack/pvattack.ko}
PVKO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
T0=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# shellcheck disable=SC2317
wall_time() { echo "  total wall time: $(secs "$T0" "$(date +%s.%N)") s"; }
FINISH_HOOK=wall_time
# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "$KO" "$PVKO" "${L1_CTL:-$VM_OUT/pviommuctl}" "$VM_OUT/libpviommu-qemu.so" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds "$VM_QEMU" "${CC:-gcc}"
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

# L1's tools and L2's complete initramfs, built here; L1 reads them through the read-only share
mkdir -p "$VM_OUT/l1"
if ! ${CC:-gcc} -O2 -g -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
	-o "$VM_OUT/l1/libvfio_ioctl_log.so" "$HERE/vfio_ioctl_log.c" -ldl; then
	nok "ioctl-logger-build"; finish
fi
l2rd=$VM_OUT/l1/l2-assign.cpio.gz
if "$VM_HERE/mkinitramfs.sh" extra "$VM_OUT" "$VM_OUT/l1/l2-assign.extra.cpio.gz" \
	--script "$HERE/l2-assign-guest.sh" --file "$KO:/test/pvattack.ko" --file "$PVKO:/test/pviommu.ko" &&
	cat "$GUEST_INITRD_BASE" "$VM_OUT/l1/l2-assign.extra.cpio.gz" >"$l2rd.tmp" && mv "$l2rd.tmp" "$l2rd"
then :; else nok "l2-initramfs"; finish; fi

# L1 needs room for L2's RAM pinned by VFIO on top of the usual
if ! L1_MEM=${L1_MEM:-1536} l1_boot --name "$NAME" --inner "$HERE/l1-assign.sh" --timeout "${L1_TIMEOUT:-1200}" \
	--module vfio-pci --module vfio_iommu_type1 \
	--device intel-iommu,caching-mode=on --device edu,addr=10.0 --append intel_iommu=on \
	${L2_MEM:+--append "pviommu.l2mem=$L2_MEM"}; then
	nok "l1-boot"; finish
fi
T_BOOT=$(cat "$(vm_dir)/start")
l1_up=""
vm_wait_marker l1-up 600 && l1_up=$(secs "$T_BOOT" "$(date +%s.%N)")
vm_wait; rc=$?
elapsed=$(vm_elapsed)
qstart=$(vm_value l1_t_qemu_start_uptime)	# L2's QEMU start, L1's uptime clock
rel() { [ -n "$1" ] && [ -n "$qstart" ] && secs "$qstart" "$1"; }

l1_collect_checks

echo "--- negative control (plain QEMU, edu assigned to L2, no vIOMMU, no pviommu)"
won=""
for s in legit a b d e; do
	v=$(vm_value "l2_result_$s"); [ -n "$v" ] && echo "  $s: $v"
	case "$s $v" in "a "*result=leaked*|[bde]" "*result=changed*) won="$won $s" ;; esac
done
echo "  attacks that went through L1's IOMMU:${won:- none} ($(wc -w <<<"$won") of 4)"
for k in l1_kernel l1_assign_edu l2_edu l2_qemu_pid l1_dmar_faults; do
	v=$(vm_value $k); [ -n "$v" ] && echo "  $k: $v"
done
echo "--- protected (L2's QEMU under 'pviommuctl run', pviommu.ko protecting edu, kvm + shared page)"
blocked=""
for s in legit a b d e; do
	v=$(vm_value "pr_result_$s"); [ -n "$v" ] && echo "  $s: $v"
	case "$s $v" in "a "*result=leaked*|[be]" "*result=changed*) ;; [abe]" "*result=*) blocked="$blocked $s" ;; esac
done
echo "  attacks blocked by L1's IOMMU:${blocked:- none} ($(wc -w <<<"$blocked") of 3; d is inside a mapped page)"
for k in l1_kvm_vm_held l1_vfio_gate pr_l2_qemu_pid pr_dmar_faults pr_record_pages pr_iommu_pages pr_max_iommu_map \
	pr_iommu_pages_at_boot pr_iommu_pages_after_unload pr_library pr_l2_pviommu_stats; do
	v=$(vm_value $k); [ -n "$v" ] && echo "  $k: $v"
done
echo "--- bench (ratios only: nested KVM under TCG; edu paces each DMA with a timer)"
nb=$(vm_value nc_bench); pb=$(vm_value pr_bench)
if [ -n "$nb" ] && [ -n "$pb" ]; then
	f() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }
	awk -v ne="$(f "$nb" edu_pair_ns)" -v pe="$(f "$pb" edu_pair_ns)" -v po="$(f "$pb" other_pair_ns)" \
		-v nd="$(f "$nb" dma_ns)" -v pd="$(f "$pb" dma_ns)" -v n="$(f "$pb" pairs)" \
		-v im="$(vm_value pr_bench_iommu_maps)" 'BEGIN {
		printf "  map+unmap pair, edu assigned:   plain %9.1f us | pviommu %9.1f us (x%.0f), %s IOMMU maps per pair\n", ne / 1000, pe / 1000, pe / (ne ? ne : 1), (n ? im / n : "?")
		printf "  map+unmap pair, e1000 emulated:                      pviommu %9.1f us (records only; IOMMU path x%.2f of it)\n", po / 1000, pe / (po ? po : 1)
		printf "  8 edu DMAs of 2 KiB:            plain %9.1f ms | pviommu %9.1f ms (x%.2f)\n", nd / 1e6, pd / 1e6, pd / (nd ? nd : 1) }'
else
	echo "  (no bench figures: nc_bench='$nb' pr_bench='$pb')"
fi
echo "--- timings (s)"
echo "  L1 boot (QEMU start to L1's script, host clock): ${l1_up:-?}; L1 kernel uptime at its /init: $(vm_value l1_init_uptime)"
rk=$(rel "$(vm_value as_first_kvm_run)")
echo "  L2's QEMU start to its first KVM_RUN: ${rk:-?} (of l2_boot)"
for k in setup l2_boot l2_insmod scenario_legit scenario_a scenario_b scenario_d scenario_e l2_exit summary \
	load pr_l2_boot pr_l2_insmod pr_scenarios pr_l2_exit; do
	v=$(vm_value "l1_t_$k"); [ -n "$v" ] && echo "  $k: $v"
done
echo "  L1 run (QEMU start to exit): ${elapsed} s, L1 uptime at end: $(vm_value l1_done_uptime) s"
echo "--- container (ioctl interposer + L1's kernel)"
vm__grep '^PVIOMMU-VM: VALUE as_' | sed 's/^PVIOMMU-VM: VALUE as_/  /'
echo "  timeline after L2's QEMU start: VFIO_SET_IOMMU +$(rel "$(vm_value as_set_iommu)") s," \
	"first MAP_DMA enters +$(rel "$(vm_value as_first_map_syscall)") s, returns +$(rel "$(vm_value as_first_map_done)") s," \
	"first KVM_RUN +$(rel "$(vm_value as_first_kvm_run)") s"
# the VFIO ioctls (and the first KVM_RUN) with their time after L2's QEMU start (L1's uptime
# clock); the KVM_SET_USER_MEMORY_REGION lines are in the serial log
vm__grep '^IOCTL ' | grep -v KVM_SET_USER_MEMORY_REGION |
	awk -v q="${qstart:-0}" '{ t = $2; sub(/^t=/, "", t); $2 = sprintf("+%.3fs", t - q); print "  " $0 }' | head -n 60
n=$(vm__grep '^IOCTL ' | grep -vc KVM_SET_USER_MEMORY_REGION); [ "$n" -gt 60 ] && echo "  ... ($n lines: $(vm_log))"
echo "  QEMU trace (vfio_listener_region_*):"
vm__grep '^QTRACE ' | sed 's/^QTRACE /    /' | head -n 40
echo "  L1 kernel (sys_enter_ioctl MAP_DMA=3b71 / UNMAP_DMA=3b72):"
vm__grep '^FTRACE ' | sed 's/^FTRACE /    /' | head -n 40
case $rc in
0) [ "$passed" -gt 0 ] || nok "l1-no-checks-ran" ;;
*)	l1_failed "$rc" ;;
esac
finish
