#!/bin/bash
# test_l1_vfio.sh - the VFIO gate (BPF LSM on file_ioctl, bpf/pviommu_lsm.bpf.c) on real VFIO, in a
# "host in a guest" (tests/l1/lib.sh): this host refuses the BPF LSM, L1's 6.1 kernel allows it.
#
# One L1 boot (TCG, q35 + intel-iommu,caching-mode=on, intel_iommu=on, edu at 00:10.0 behind the
# emulated IOMMU, vfio-pci + vfio_iommu_type1 in the initramfs) runs tests/l1/l1-vfio.sh:
#   edu is bound to vfio-pci; pviommuctl load attaches the gate (BPF LSM, probed);
#   tests/l1/vfio_driver (a userspace VFIO driver of edu, its own pviommu domain through test_run
#   hypercalls) checks: MAP_DMA before REGISTER passes (unprotected domain); after REGISTER,
#   DEV_ADD edu, MAP A rw, MAP C r: MAP_DMA of an unauthorized iova, of a partly authorized range
#   and of C rw get EPERM, each with one LSM event on the ring buffer; C r and A rw pass; edu's DMA
#   engine round-trips through A; edu writes to the refused iova and to read-only C fault in the
#   emulated IOMMU (the target buffers stay unchanged); UNMAP_DMA passes; after UNREGISTER the
#   refused iova maps.
# L1 has the BPF LSM on to run the gate: none, or a gate that load did not attach, fails the test.
# A missing VFIO or edu IOMMU group in L1 fails. Needs root, make
# (pviommuctl, build/pviommu_lsm.skel.h, guest kernel + initramfs), jq, qemu-system-x86_64.
# Prints "l1_vfio: N passed, M failed".
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/l1/lib.sh
. "$HERE/lib.sh"
NAME=l1_vfio
T0=$(date +%s.%N)

wall_time() {
	echo "  wall time: $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
}
FINISH_HOOK=wall_time
# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "${L1_CTL:-$VM_OUT/pviommuctl}" "$VM_OUT/pvlib.o" "$VM_OUT/pviommu_lsm.skel.h" \
	"$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds jq "$VM_QEMU"
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

# the L1 tools, built here, run in L1 from the read-only host root
mkdir -p "$VM_OUT/l1"
CF="-O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -I$VM_OUT -I$VM_SRC/bpf -I$VM_SRC/userspace"
LIBS=$(pkg-config --libs libbpf 2>/dev/null || echo -lbpf -lelf -lz)
for t in vfio_driver; do
	# shellcheck disable=SC2086
	if ! ${CC:-gcc} $CF -o "$VM_OUT/l1/$t" "$HERE/$t.c" "$VM_OUT/pvlib.o" $LIBS; then
		nok "$t-build"; finish
	fi
done

if ! l1_boot --name "$NAME" --inner "$HERE/l1-vfio.sh" --timeout "${L1_TIMEOUT:-300}" \
	--module vfio-pci --module vfio_iommu_type1 \
	--device intel-iommu,caching-mode=on --device edu,addr=10.0 --append intel_iommu=on; then
	nok "l1-boot"; finish
fi
vm_wait; rc=$?
elapsed=$(vm_elapsed)

l1_collect_checks
for k in l1_kernel l1_kvm_vm_held l1_lsms l1_vfio_edu l1_vfio_vfio_group l1_vfio_edu_id l1_init_uptime l1_t_load \
	l1_t_vfio_driver l1_dmar_faults l1_stats_end; do
	v=$(vm_value $k); [ -n "$v" ] && echo "  $k: $v"
done
vm__grep '^PVIOMMU-VM: VALUE l1_vfio_lsm_event ' | sed 's/^PVIOMMU-VM: VALUE /  /'
echo "  L1 run (QEMU start to exit): ${elapsed} s, guest uptime at end of checks: $(vm_value l1_done_uptime) s"
case $rc in
0) [ "$passed" -gt 0 ] || nok "l1-no-checks-ran" ;;
*)	l1_failed "$rc" ;;
esac
finish
