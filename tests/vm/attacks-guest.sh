# shellcheck shell=sh disable=SC2154
# tests/vm/attacks-guest.sh - guest side of the rogue-DMA tests (/test/run.sh; busybox ash).
# Used by tests/vm/test_attacks.sh and scripts/demo.sh (host side: tests/vm/attacks-lib.sh).
# Kernel command line (vm_boot --append): pviommu.devices=BDF,... (for pviommu.ko; empty: do not
# load it), pviommu.edu=BDF (where edu is, for pvattack.ko), pviommu.port=PORT and pviommu.blobsum=MD5 (benign downloads from the host's httpd).
# Protocol: MARK ready -> host sends "go" -> insmod pviommu.ko + pvattack.ko -> MARK armed;
# then host commands, one per line:
#   benign            TCP downloads through every NIC, virtio-blk (and nvme) write/read-back;
#                     MARK benign-done
#   run S             scenario S of pvattack.ko; VALUE result-S <line>; MARK done-S
#   oldops            VALUE oldops-calls "N S" (pviommu.oldops=1: calls of pvoldops.ko's DMA ops,
#                     S of them map_sg)
#   end               leave (RESULT PASS unless a check failed)
. /lib/pviommu-vm.sh
A=/sys/kernel/debug/pvattack
mount -t debugfs none /sys/kernel/debug 2>/dev/null

ifup() {  # ifup e1000|virtio: configure the NIC again after pviommu.ko rebound its driver
	i=
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic "$1") && break; sleep 0.5; done
	[ -n "$i" ] || return 1
	ip link set "$i" up
	ip addr add "$(guest_ip "$i")/24" dev "$i" 2>/dev/null
	[ "$1" = e1000 ] && ip route add default via "$(host_ip "$i")" dev "$i" 2>/dev/null
	return 0
}
fetch() {  # fetch e1000|virtio: download the blob from the host, compare its checksum
	i=$(nic "$1") || return 1
	for _t in 1 2 3 4 5 6 7 8 9 10; do
		# HTTP/1.0 over nc (busybox-static wget crashes in this guest); strip the header
		printf 'GET /blob HTTP/1.0\r\n\r\n' | nc -w 10 "$(host_ip "$i")" "$(karg port)" >/tmp/get
		sum=$(sed '1,/^\r$/d' /tmp/get | md5sum | cut -d' ' -f1)
		[ "$sum" = "$(karg blobsum)" ] && return 0
		sleep 1
	done
	echo "fetch $1: got $(wc -c </tmp/get) bytes, md5 $sum"; return 1
}
blk() {  # blk DEV: write a pattern to DEV (O_DIRECT and through the page cache), read it back
	[ -b "$1" ] || { echo "no $1"; return 1; }
	dd if=/dev/urandom of=/tmp/pat bs=64k count=64 2>/dev/null
	want=$(md5sum </tmp/pat | cut -d' ' -f1)
	dd if=/tmp/pat of="$1" bs=64k oflag=direct 2>/dev/null || return 1
	got=$(dd if="$1" bs=64k count=64 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || { echo "O_DIRECT read-back differs"; return 1; }
	dd if=/tmp/pat of="$1" bs=64k seek=128 2>/dev/null && sync || return 1
	echo 3 >/proc/sys/vm/drop_caches
	got=$(dd if="$1" bs=64k skip=128 count=64 2>/dev/null | md5sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || { echo "buffered read-back differs"; return 1; }
	return 0
}
has() { [ -e "/sys/bus/pci/devices/$1" ]; }

mark ready
cmd=$(wait_host)
[ "$cmd" = go ] || fail "expected 'go' from the host, got '$cmd'"
devs=$(karg devices)
# pviommu.oldops=1: pvoldops.ko first puts DMA ops of its own (another layer's, translating
# nothing) under the same devices, so pviommu.ko wraps those instead of calling dma-direct
OLDOPS=/sys/module/pvoldops/parameters/calls
if [ "$(karg oldops)" = 1 ]; then
	check insmod-pvoldops insmod /test/pvoldops.ko devices="$devs" ||
		fail "insmod pvoldops.ko: $(dmesg | grep pvoldops | tail -n 2)"
fi
if [ -n "$devs" ]; then
	check insmod-pviommu insmod /test/pviommu.ko devices="$devs" transport=tcg verify="$(karg verify || echo 1)" || fail "insmod pviommu.ko"
fi
has "$BDF_E1000" && { check ifup-e1000 ifup e1000 || true; }
has "$BDF_VIRTIO_NET" && { check ifup-virtio ifup virtio || true; }
check insmod-pvattack insmod /test/pvattack.ko edu="$(karg edu || echo 0000:00:06.0)" dma_bits="$(karg edubits || echo 28)" || fail "insmod pvattack.ko: $(dmesg | grep pvattack | tail -n 2)"
value info "$(cat $A/info)"
oldops_calls() { echo "$(cat $OLDOPS 2>/dev/null || echo -) $(cat ${OLDOPS%/*}/sg_calls 2>/dev/null || echo -)"; }
[ -r $OLDOPS ] && value oldops-calls "$(oldops_calls)"
[ -r /sys/kernel/debug/pviommu/stats ] && value pviommu-stats "$(tr '\n' ' ' </sys/kernel/debug/pviommu/stats | head -c 600)"
mark armed
while cmd=$(wait_host); do
	case $cmd in
	benign)
		has "$BDF_E1000" && check benign-e1000-tcp fetch e1000
		has "$BDF_VIRTIO_NET" && check benign-virtio-net-tcp fetch virtio
		has "$BDF_VIRTIO_BLK" && check benign-virtio-blk blk /dev/vda
		has "$BDF_NVME" && check benign-nvme blk /dev/nvme0n1
		mark benign-done ;;
	"run "*)
		s=${cmd#run }
		echo "$s" >$A/run
		value "result-$s" "$(cat $A/result)"
		mark "done-$s" ;;
	oldops)	# the calls of pvoldops.ko's DMA ops so far
		value oldops-calls "$(oldops_calls)"
		mark oldops-done ;;
	end) break ;;
	*) echo "attacks-guest: unknown command '$cmd'" ;;
	esac
done
[ -r /sys/kernel/debug/pviommu/stats ] && value pviommu-stats-end "$(tr '\n' ' ' </sys/kernel/debug/pviommu/stats | head -c 600)"
exit 0
