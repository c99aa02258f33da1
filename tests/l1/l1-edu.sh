# shellcheck shell=bash
# l1-edu.sh - sourced by the L1 scripts that assign L1's edu (l1-vfio.sh, l1-assign.sh), after
# tests/vm/guest/pviommu-vm.sh.

# BDF = L1's edu behind the emulated IOMMU; otherwise the skip reason (value l1_skip) and exit 0
l1_edu_find() {
	if [ ! -c /dev/vfio/vfio ] || [ ! -d /sys/bus/pci/drivers/vfio-pci ]; then
		value l1_skip "L1 has no VFIO (/dev/vfio/vfio or vfio-pci missing)"; exit 0
	fi
	BDF=""
	for d in /sys/bus/pci/devices/*; do
		if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then BDF=${d##*/}; break; fi
	done
	[ -n "$BDF" ] || { value l1_skip "no edu device in L1"; exit 0; }
	if [ ! -e "/sys/bus/pci/devices/$BDF/iommu_group" ]; then
		value l1_skip "edu $BDF has no IOMMU group (intel_iommu off?)"; exit 0
	fi
}

# edu bound to vfio-pci (check l1-edu-bound-to-vfio-pci); 1 with the reason printed otherwise
l1_edu_bind() {
	local drv
	echo 1234 11e8 >/sys/bus/pci/drivers/vfio-pci/new_id 2>/tmp/bind.err
	for _ in $(seq 50); do [ -e "/sys/bus/pci/devices/$BDF/driver" ] && break; sleep 0.2; done
	drv=$(basename "$(readlink "/sys/bus/pci/devices/$BDF/driver" 2>/dev/null)" 2>/dev/null)
	check l1-edu-bound-to-vfio-pci [ "$drv" = vfio-pci ] || { cat /tmp/bind.err; return 1; }
}
