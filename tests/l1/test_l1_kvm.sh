#!/bin/bash
# test_l1_kvm.sh - the KVM hypercall path end to end, in a "host in a guest" (tests/l1/lib.sh).
#
# One L1 boot (TCG, -cpu EPYC, nested KVM) runs every check of tests/l1/l1-kvm.sh on L1's 6.1
# kernel with the host's own binaries:
#   pviommuctl load attaches kvm_hypercall; status -j reports features lsm and fentry (the BPF
#   LSM and fentry are refused by this host's kernel, allowed by L1's);
#   L2 = the guest kernel under L1's KVM (-cpu host) with an e1000 at 00:04.0 runs
#   `insmod pviommu.ko devices=0000:00:04.0 transport=kvm` (vmmcall -> L1's kvm:kvm_hypercall)
#   and pings 10.0.2.2: L1 sees mappings for 0000:00:04.0 under L2's QEMU pid, and none of
#   another pid; L2 rmmods: no mapping left for that pid, the domain is gone.
# L2's initramfs (base + l2-kvm-guest.sh + pviommu.ko) is built here into $VM_OUT/l1/, which L1
# reads through the read-only 9p share of the host root.
# A missing /dev/kvm in L1 fails (L1 is booted to have it). Needs root, make (pviommuctl, pviommu.ko, guest kernel +
# initramfs), jq, bpftool, qemu-system-x86_64. Prints "l1_kvm: N passed, M failed".
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/l1/lib.sh
. "$HERE/lib.sh"
NAME=l1_kvm
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "${L1_CTL:-$VM_OUT/pviommuctl}" "$KO" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds jq bpftool "$VM_QEMU"
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

# L2's initramfs, complete (L1 only appends an empty per-run archive to it), with uvmcall
# (static: L2 has no libc)
mkdir -p "$VM_OUT/l1"
l2rd=$VM_OUT/l1/l2-kvm.cpio.gz
if ! ${CC:-gcc} -static -O2 -Wall -Wextra -Werror -o "$VM_OUT/l1/uvmcall" "$HERE/uvmcall.c"; then
	nok "uvmcall-build"; finish
fi
if "$VM_HERE/mkinitramfs.sh" extra "$VM_OUT" "$VM_OUT/l1/l2-kvm.extra.cpio.gz" \
	--script "$HERE/l2-kvm-guest.sh" --file "$KO:/test/pviommu.ko" \
	--file "$VM_OUT/l1/uvmcall:/test/uvmcall" &&
	cat "$GUEST_INITRD_BASE" "$VM_OUT/l1/l2-kvm.extra.cpio.gz" >"$l2rd.tmp" && mv "$l2rd.tmp" "$l2rd"
then :; else nok "l2-initramfs"; finish; fi

if ! l1_boot --name "$NAME" --inner "$HERE/l1-kvm.sh" --timeout "${L1_TIMEOUT:-1200}"; then
	nok "l1-boot"; finish
fi
vm_wait; rc=$?
elapsed=$(vm_elapsed)

# every check L1 printed, in order
l1_collect_checks
for k in l1_kvm l1_kvm_vm_held l1_ctl l1_kvm_progs l1_init_uptime l1_t_l2_qemu_start l1_t_load l1_t_l2_boot l1_t_l2_map l2_uptime_mapped l1_t_l2_user l2_user_rax l1_user_hypercalls l1_entry_user_hypercalls l1_t_l2_unmap l1_t_l2_exit l1_l2_mappings_live l1_features; do
	v=$(vm_value $k); [ -n "$v" ] && echo "  $k: $v"
done
echo "  L1 run (QEMU start to exit): ${elapsed} s, guest uptime at end of checks: $(vm_value l1_done_uptime) s"
case $rc in
0) [ "$passed" -gt 0 ] || nok "l1-no-checks-ran" ;;
*)	l1_failed "$rc" ;;
esac
finish
