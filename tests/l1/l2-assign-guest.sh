# shellcheck shell=sh
# l2-assign-guest.sh - /test/run.sh of the L2 guest of test_l1_assign.sh (busybox sh; KVM guest
# of L1 with L1's edu assigned through -device vfio-pci,...,addr=06.0, no vIOMMU, no pviommu).
# The protocol of tests/vm/attacks-guest.sh: MARK ready -> "go" from L1 -> insmod pvattack.ko
# edu=<pviommu.edu=> -> VALUE info + MARK armed; then "run S" (VALUE result-S, MARK done-S) until
# "end"; "unload" removes the modules (MARK unloaded). With pviommu.protect=1 pviommu.ko protects
# edu first.
# shellcheck source=tests/vm/guest/pviommu-vm.sh
. /lib/pviommu-vm.sh
A=/sys/kernel/debug/pvattack
EDU=$(karg edu || echo "$BDF_EDU")
mount -t debugfs none /sys/kernel/debug 2>/dev/null
value l2_uptime_ready "$(cut -d' ' -f1 /proc/uptime)"
D=/sys/bus/pci/devices/$EDU
# what L2 sees at edu's address: the assigned function (its IDs pass through), no driver, and no
# IOMMU of its own (nothing translates its DMA before L1's IOMMU)
value l2_edu "$EDU $(cat "$D/vendor" "$D/device" 2>/dev/null | tr '\n' ' ')iommus=$(find /sys/class/iommu -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
mark ready
cmd=$(wait_host)
[ "$cmd" = go ] || fail "expected 'go' from L1, got '$cmd'"
# protected run (pviommu.protect=1): L2's QEMU runs under 'pviommuctl run'; pviommu.ko protects
# edu through the shared page (kvm transport), whose every MAP/UNMAP the library in L1's QEMU
# mirrors into the VFIO container before answering
if [ "$(karg protect)" = 1 ]; then
	check l2-insmod-pviommu insmod /test/pviommu.ko devices="$(karg devices || echo "$EDU")" transport=kvm channel=page ||
		fail "insmod pviommu.ko: $(dmesg | grep pviommu | tail -n 3)"
	check l2-page-acknowledged sh -c "dmesg | grep -q 'transport shared page.*acknowledged by the host'"
fi
check l2-insmod-pvattack insmod /test/pvattack.ko edu="$EDU" ||
	fail "insmod pvattack.ko: $(dmesg | grep pvattack | tail -n 2)"
value info "$(cat $A/info)"
mark armed
while cmd=$(wait_host); do
	case $cmd in
	"run "*)
		s=${cmd#run }
		echo "$s" >$A/run
		value "result-$s" "$(cat $A/result)"
		mark "done-$s" ;;
	unload)	# the drivers go: every mapping is unmapped by the guest
		check l2-rmmod-pvattack rmmod pvattack
		[ "$(karg protect)" = 1 ] && {
			value l2-pviommu-stats "$(grep -E '^(channel|page_kicks|hypercalls|failures|maps|unmaps) ' /sys/kernel/debug/pviommu/stats 2>/dev/null | tr '\n' ' ')"
			check l2-rmmod-pviommu rmmod pviommu
		}
		mark unloaded ;;
	end) break ;;
	*) echo "l2-assign-guest: unknown command '$cmd'" ;;
	esac
done
exit 0
