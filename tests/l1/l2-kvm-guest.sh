# shellcheck shell=sh
# l2-kvm-guest.sh - /test/run.sh of the L2 guest of test_l1_kvm.sh (busybox sh; KVM guest of L1).
# pviommu.ko with the KVM transport protects the e1000 (00:04.0); traffic makes it map; then it
# runs CPL 3 hypercalls (uvmcall), unloads the module; it waits for L1 before each step, so L1
# can look at the policy in each state.
# shellcheck source=tests/vm/guest/pviommu-vm.sh
. /lib/pviommu-vm.sh
value l2_uptime_ready "$(cut -d' ' -f1 /proc/uptime)"
mark ready
wait_host >/dev/null	# L1 has loaded pviommu
mount -t debugfs none /sys/kernel/debug 2>/dev/null
S=/sys/kernel/debug/pviommu/stats
nic_up() {	# the NIC was unbound and bound again by insmod: configure it again
	i=$(nic e1000) || fail "no e1000 interface after insmod"
	ip link set "$i" up
	ip addr add "$(guest_ip "$i")/24" dev "$i" 2>/dev/null
	ip route add default via "$(host_ip "$i")" dev "$i" 2>/dev/null
	n=0
	until ping -c 1 -W 1 "$(host_ip "$i")" >/dev/null 2>&1; do
		n=$((n + 1)); [ $n -ge 10 ] && break
	done
}
# 1. the shared page under KVM (L2's QEMU runs under 'pviommuctl run'): its port kicks exit to
# QEMU in L1, where the library carries each operation out and answers it in the page, so the
# module verifies REGISTER and DEV_ADD (verify defaults to 1 with the page)
check l2-insmod-page insmod /test/pviommu.ko devices="$BDF_E1000" transport=kvm channel=page ||
	fail "insmod channel=page: $(dmesg | grep pviommu | tail -n 3)"
check l2-page-acknowledged sh -c "dmesg | grep -q 'transport shared page.*acknowledged by the host'"
nic_up
check l2-page-ping ping -c 3 -W 2 "$(host_ip "$i")"
value l2_page_stats "$(grep -E '^(channel|page_kicks|hypercalls|failures) ' $S | tr '\n' ' ')"
check l2-page-kicks [ "$(awk '$1 == "page_kicks" { print $2 }' $S)" -gt 0 ]
check l2-page-no-failure [ "$(awk '$1 == "failures" { print $2 }' $S)" = 0 ]
check l2-page-rmmod rmmod pviommu
# 2. the KVM hypercall: vmmcall -> L1's kvm:kvm_hypercall -> the BPF handler (no answer)
check l2-insmod-kvm insmod /test/pviommu.ko devices="$BDF_E1000" transport=kvm channel=off verify=0 ||
	fail "insmod transport=kvm"
nic_up
check l2-ping ping -c 3 -W 2 "$(host_ip "$i")"
value l2_stats_mapped "$(tr '\n' ' ' </sys/kernel/debug/pviommu/stats 2>/dev/null)"
value l2_uptime "$(cut -d' ' -f1 /proc/uptime)"
mark mapped
# CPL 3 hypercalls (tests/l1/uvmcall.c), one per L1 command: "user_map" = MAP of a range the
# driver never mapped, "user_dev_del" = DEV_DEL of the e1000; KVM answers -KVM_EPERM (-1) and the
# host's policy must not move. "rmmod" ends the list.
k=0
while :; do
	c=$(wait_host)
	k=$((k + 1))
	case $c in
	user_map) value l2_user_map "$(/test/uvmcall map 0x20 0x7ff00000 0x1000 3 0x5553455200000001)" ;;
	user_dev_del) value l2_user_dev_del "$(/test/uvmcall dev_del 0x20 0 0 0 0x5553455200000002)" ;;
	*) break ;;
	esac
	mark "done_${c}_$k"
done
check l2-rmmod rmmod pviommu
mark unmapped
wait_host >/dev/null
