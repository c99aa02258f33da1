# shellcheck shell=bash
# l1-edu.sh - sourced by the L1 scripts that assign L1's edu (l1-vfio.sh, l1-assign.sh), after
# tests/vm/guest/pviommu-vm.sh.

# BDF = L1's edu behind the emulated IOMMU. L1 is booted with all of it (VFIO, edu, intel-iommu):
# a missing part is a failed check, and L1's script stops
l1_edu_find() {
	check l1-has-vfio sh -c '[ -c /dev/vfio/vfio ] && [ -d /sys/bus/pci/drivers/vfio-pci ]' ||
		fail "L1 has no VFIO (/dev/vfio/vfio or vfio-pci missing)"
	BDF=""
	for d in /sys/bus/pci/devices/*; do
		if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then BDF=${d##*/}; break; fi
	done
	check l1-has-edu [ -n "$BDF" ] || fail "no edu device in L1"
	check l1-edu-in-an-iommu-group [ -e "/sys/bus/pci/devices/$BDF/iommu_group" ] ||
		fail "edu $BDF has no IOMMU group (intel_iommu off?)"
}

# edu bound to vfio-pci (check l1-edu-bound-to-vfio-pci); 1 with the reason printed otherwise
l1_edu_bind() {
	local drv
	echo 1234 11e8 >/sys/bus/pci/drivers/vfio-pci/new_id 2>/tmp/bind.err
	for _ in $(seq 50); do [ -e "/sys/bus/pci/devices/$BDF/driver" ] && break; sleep 0.2; done
	drv=$(basename "$(readlink "/sys/bus/pci/devices/$BDF/driver" 2>/dev/null)" 2>/dev/null)
	check l1-edu-bound-to-vfio-pci [ "$drv" = vfio-pci ] || { cat /tmp/bind.err; return 1; }
}
