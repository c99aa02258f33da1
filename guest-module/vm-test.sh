#!/bin/bash
# guest-module/vm-test.sh - pviommu.ko in a real guest (QEMU TCG, tests/vm harness).
# Boots one guest with e1000 (00:04.0) and virtio-net (00:05.0, iommu_platform=on,
# disable-legacy=on) and, inside it: bad parameters fail insmod cleanly; insmod protects e1000
# (strict), HTTP downloads from the host work, counters show maps/unmaps, live mappings return
# to their baseline; rmmod restores the device (network still works); lazy mode flushes;
# virtio-net is protected through the DMA API; all=1 works. Exit 0 only if every check passed.
# Needs: make $(OUT)/guest-module/pviommu.ko $(OUT)/guest/base.cpio.gz (run by `make vm-module`).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
# shellcheck source=tests/vm/lib.sh
. "$SRC/tests/vm/lib.sh"
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
[ -f "$KO" ] || { echo "vm-test: $KO missing (make guest-module)" >&2; exit 2; }

work=$VM_OUT/vm/guest-module.host
rm -rf "$work"; mkdir -p "$work/www"
head -c 2000000 /dev/urandom >"$work/www/blob"
HPID=
cleanup() {
	vm_cleanup
	if [ -n "$HPID" ]; then kill "$HPID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=""
for p in $(seq $((30000 + $$ % 20000)) $((30000 + $$ % 20000 + 50))); do
	busybox netstat -ltn 2>/dev/null | grep -q ":$p " && continue
	port=$p; break
done
[ -n "$port" ] || { echo "vm-test: no free port" >&2; exit 2; }
(cd "$work/www" && exec busybox httpd -f -p "127.0.0.1:$port") &
HPID=$!

cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
KO=/test/pviommu.ko
S=/sys/kernel/debug/pviommu/stats
mount -t debugfs none /sys/kernel/debug 2>/dev/null
st() { awk -v k=\$1 '\$1 == k { print \$2 }' \$S; }
dst() { awk -v d=\$1 -v k=\$2 '\$1 == "device" && \$2 == d { for (i = 3; i < NF; i++) if (\$i == k) print \$(i + 1) }' \$S; }
loaded() { grep -q '^pviommu ' /proc/modules; }
# (re)configure the NIC of a kind after its driver was rebound
ifup() {
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=\$(nic \$1) && break; sleep 0.5; done
	[ -n "\$i" ] || return 1
	ip link set \$i up
	ip addr add \$(guest_ip \$i)/24 dev \$i 2>/dev/null
	[ \$1 = e1000 ] && ip route add default via \$(host_ip \$i) dev \$i 2>/dev/null
	return 0
}
fetch() {  # fetch KIND: download the blob from the host through that NIC, check the size
	i=\$(nic \$1) || return 1
	for _t in 1 2 3 4 5 6 7 8 9 10; do
		# (busybox-static wget crashes in this guest: plain HTTP/1.0 over nc)
		n=\$(printf 'GET /blob HTTP/1.0\\r\\n\\r\\n' | nc -w 10 \$(host_ip \$i) $port | wc -c)
		[ "\$n" -gt 2000000 ] && return 0
		sleep 1
	done
	echo "fetch \$1: got \$n bytes"; return 1
}
near() { d=\$((\$1 - \$2)); [ \$d -ge -\$3 ] && [ \$d -le \$3 ]; }
dump() { echo "---- stats \$1"; cat \$S; }

# 1. bad parameters: insmod fails, one clear line, the guest goes on
check bad-transport sh -c "! insmod \$KO devices=\$BDF_E1000 transport=foo"
check bad-devices sh -c "! insmod \$KO devices=00:04 transport=tcg"
check bad-devices2 sh -c "! insmod \$KO devices=0000:00:04.0,zz transport=tcg"
check no-such-device sh -c "! insmod \$KO devices=0000:00:1e.0 transport=tcg"
check bad-mode sh -c "! insmod \$KO devices=\$BDF_E1000 mode=sloppy"
check nothing-named sh -c "! insmod \$KO"
check kvm-without-kvm sh -c "! insmod \$KO devices=\$BDF_E1000 transport=kvm"
check not-loaded sh -c "! loaded"
dmesg | grep 'pviommu:' | sed 's/^/dmesg: /'
check net-before fetch e1000

# 2. strict, e1000
check insmod-e1000 insmod \$KO devices=\$BDF_E1000 transport=tcg
check e1000-ifup ifup e1000
sleep 2
dump e1000-idle
m0=\$(dst \$BDF_E1000 maps); l0=\$(dst \$BDF_E1000 live)
value e1000-live-idle \$l0
check e1000-protected [ "\$(dst \$BDF_E1000 protected)" = 1 ]
check e1000-driver [ "\$(dst \$BDF_E1000 driver)" = e1000 ]
check net-protected fetch e1000
check net-protected2 fetch e1000
sleep 1
dump e1000-after
m1=\$(dst \$BDF_E1000 maps); l1=\$(dst \$BDF_E1000 live); u1=\$(dst \$BDF_E1000 unmaps)
value e1000-maps-traffic \$((m1 - m0))
value e1000-live-after \$l1
check e1000-maps-grew [ \$((m1 - m0)) -gt 1000 ]
check e1000-unmaps [ \$u1 -gt 1000 ]
check e1000-live-baseline near \$l1 \$l0 16
check hypercalls [ \$(st hypercalls) -ge \$((\$(st maps) + \$(st unmaps))) ]
check no-failures [ "\$(st failures)" = 0 ]
check rmmod rmmod pviommu
check rmmod-gone sh -c "! loaded"
dmesg | grep 'pviommu:' | tail -n 3 | sed 's/^/dmesg: /'
check e1000-ifup-after ifup e1000
check net-after-rmmod fetch e1000

# 3. lazy, e1000
check insmod-lazy insmod \$KO devices=\$BDF_E1000 transport=tcg mode=lazy lazy_ms=10 lazy_batch=64
check e1000-ifup-lazy ifup e1000
sleep 2
l0=\$(dst \$BDF_E1000 live)
check net-lazy fetch e1000
sleep 1
dump lazy
value lazy-flushes \$(st lazy_flushes)
value lazy-reused \$(st lazy_reused)
check lazy-flushed [ \$(st lazy_flushes) -gt 0 ]
check lazy-drained [ \$(st lazy_pending) = 0 ]
check lazy-live-baseline near \$(dst \$BDF_E1000 live) \$l0 16
check rmmod-lazy rmmod pviommu
check e1000-ifup-lazy-after ifup e1000

# 4. virtio-net (VIRTIO_F_ACCESS_PLATFORM) and e1000 together, strict
check virtio-ifup ifup virtio
check net-virtio-before fetch virtio
check insmod-two insmod \$KO devices=\$BDF_E1000,\$BDF_VIRTIO_NET
check two-ifup-e1000 ifup e1000
check two-ifup-virtio ifup virtio
sleep 2
l0=\$(dst \$BDF_VIRTIO_NET live)
check virtio-platform [ "\$(dst \$BDF_VIRTIO_NET virtio_platform)" = 1 ]
check virtio-driver [ "\$(dst \$BDF_VIRTIO_NET driver)" = virtio-pci ]
check net-virtio fetch virtio
check net-e1000-two fetch e1000
sleep 1
dump two
value virtio-maps \$(dst \$BDF_VIRTIO_NET maps)
check virtio-maps [ \$(dst \$BDF_VIRTIO_NET maps) -gt 1000 ]
check virtio-live-baseline near \$(dst \$BDF_VIRTIO_NET live) \$l0 16
check rmmod-two rmmod pviommu
check virtio-ifup-after ifup virtio
check net-virtio-after fetch virtio

# 5. all=1
check insmod-all insmod \$KO all=1
check all-ifup ifup e1000
sleep 1
dump all
value all-devices "\$(grep -c '^device' \$S)"
check all-e1000 [ "\$(dst \$BDF_E1000 protected)" = 1 ]
check net-all fetch e1000
check rmmod-all rmmod pviommu
check all-ifup-after ifup e1000
check net-after-all fetch e1000
dmesg | grep 'pviommu:' | sed 's/^/dmesg: /' | tail -n 20
GUEST

vm_boot --name guest-module --script "$work/guest.sh" --file "$KO" --timeout 400 \
	--net e1000 --net "virtio,iommu_platform=on,disable-legacy=on"
rc=0; vm_wait || rc=$?
tr -d '\r' <"$(vm_log)" >"$work/serial.log"
grep -aE 'PVIOMMU-VM: (CHECK FAIL|VALUE|FAIL|RESULT)' "$work/serial.log" || true
read -r gp gf <<<"$(vm_checks)"
echo "vm-test: guest checks: $gp passed, $gf failed (log: $work/serial.log, $(vm_elapsed) s)"
[ $rc = 0 ] && [ "$gf" = 0 ] && [ "$gp" -gt 40 ]
