#!/bin/bash
# test_boot.sh - smoke test of the VM harness: boots a guest with e1000 + virtio-net + virtio-blk
# (virtio with iommu_platform=on,disable-legacy=on), asserts in the guest that the devices
# appear, that the guest reaches a host TCP listener, and that the host->guest channel works.
# Needs: make $(OUT)/guest/base.cpio.gz (or --prepare). Exit 0 only if every assertion passed.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
[ "${1:-}" = --prepare ] && vm_prepare

NAME=test_boot
# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"

work=$VM_RUNS/test_boot.host
rm -rf "$work"; mkdir -p "$work"
LPID=
# shellcheck disable=SC2317	# the EXIT trap calls it
cleanup() {
	vm_cleanup
	if [ -n "$LPID" ]; then kill "$LPID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# host listener on a free port (busybox nc: binds the wildcard address; the guest reaches the
# host's loopback as 10.0.2.2 through QEMU user-mode networking)
port=""
for p in $(seq $((20000 + $$ % 20000)) $((20000 + $$ % 20000 + 50))); do
	busybox netstat -ltn 2>/dev/null | grep -q ":$p " && continue
	port=$p; break
done
[ -n "$port" ] || { nok "host-listener-port" "no free port"; finish; }
busybox nc -l -p "$port" >"$work/received" </dev/null &
LPID=$!

token="pviommu-$$-$RANDOM"
cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
has_dev() { [ "\$(cat /sys/bus/pci/devices/\$1/vendor)" = "\$2" ] && [ "\$(cat /sys/bus/pci/devices/\$1/device)" = "\$3" ]; }
check e1000-pci      has_dev \$BDF_E1000 0x8086 0x100e
check virtio-net-pci has_dev \$BDF_VIRTIO_NET 0x1af4 0x1041
check virtio-blk-pci has_dev \$BDF_VIRTIO_BLK 0x1af4 0x1042
check e1000-netdev   nic e1000 >/dev/null
check virtio-netdev  nic virtio >/dev/null
check virtio-blk-disk wait_for /sys/block/vda 10
check virtio-blk-size [ "\$(cat /sys/block/vda/size)" = 32768 ]
# VIRTIO_F_ACCESS_PLATFORM (bit 33) negotiated: the guest uses the DMA API for virtio
for v in /sys/bus/virtio/devices/virtio*; do
	f=\$(cat \$v/features); value "features-\$(basename \$v)" "\$f"
	check "access-platform-\$(basename \$v)" [ "\$(echo "\$f" | cut -c34)" = 1 ]
done
value e1000-if "\$(nic e1000)"
value host-ip "\$(host_ip)"
hip=\$(host_ip \$(nic e1000))
check tcp-to-host sh -c "echo $token | nc -w 5 \$hip $port"
mark ready
line=\$(wait_host)
mark "echo-\$line"
GUEST

vopts="iommu_platform=on,disable-legacy=on"
vm_boot --name test_boot --script "$work/guest.sh" --timeout 120 --heartbeat 1 \
	--net e1000 --net "virtio,$vopts" --disk "virtio-blk,$vopts" 16M
assert "qemu-started" [ -n "$(vm_pid)" ]
ctl="ctl-$RANDOM"
if vm_wait_marker ready 100; then
	ok "guest-ready-marker"
	vm_send "$ctl"
	assert "control-channel-echo" vm_wait_marker "echo-$ctl" 20
else
	nok "guest-ready-marker"
fi
rc=0; vm_wait || rc=$?
assert "guest-result-pass (vm_wait rc=$rc)" [ $rc = 0 ]
read -r gp gf <<<"$(vm_checks)"
assert "guest-checks ($gp passed, $gf failed)" test "$gp" -ge 10 -a "$gf" = 0
# listener: the guest's bytes arrived
for _ in $(seq 1 20); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
assert "host-listener-received" grep -q "$token" "$work/received"
qpid=$(vm_pid)
assert "qemu-gone" sh -c "! kill -0 $qpid 2>/dev/null"
echo "boot-to-poweroff: $(vm_elapsed) s; initramfs: base $(stat -c %s "$GUEST_INITRD_BASE") B + extra $(stat -c %s "$(vm_dir)/extra.cpio.gz") B"
beats=$(vm__grep '^PVIOMMU-VM: HEARTBEAT ' | wc -l)
assert "heartbeats-while-running ($beats)" [ "$beats" -ge 1 ]
if [ $failed != 0 ]; then
	echo "---- serial log tail ----"; vm_tail 60
fi

# a guest frozen whole (its vCPUs stopped through the monitor: they run no more, QEMU answers)
# is stopped once its beats stop, not at its hard timeout; the L1 suites' retry takes it for
# nested KVM's freeze unless the logs hold a crash (tests/l1/flake.sh)
sed -n '/^value l1_ktext/,/^value l1_kmods/p' "$HERE/../l1/l1-init.sh" >"$work/ksyms.sh"
printf '. /lib/pviommu-vm.sh\n. /test/ksyms.sh\nmark ready\nsleep 600\n' >"$work/frozen.sh"
vm_boot --name l1_frozen --script "$work/frozen.sh" --file "$work/ksyms.sh" --timeout 300 --heartbeat 1 \
	--cpu EPYC --module kvm_amd --module kvm
if vm_wait_marker ready 100; then
	for _ in $(seq 1 100); do [ "$(vm__grep '^PVIOMMU-VM: HEARTBEAT ' | wc -l)" -ge 2 ] && break; sleep 0.1; done
	python3 "$HERE/hmp.py" "$(vm_dir)/hmp.sock" stop "info status" >"$work/stop.out" 2>&1
	assert "monitor-stop" grep -q "VM status: paused" "$work/stop.out"
	t0=$SECONDS
	rc=0; VM_HEARTBEAT_LOST=4 vm_wait 120 2>"$work/frozen.err" || rc=$?
	cat "$work/frozen.err"
	el=$((SECONDS - t0))
	assert "frozen-guest-stopped (rc $rc, $el s)" test "$rc" = 124 -a "$el" -lt 60
	assert "frozen-guest-said" grep -q "VM 'l1_frozen' stopped running: no heartbeat for" "$work/frozen.err"
	assert "frozen-guest-vcpus" [ "$(grep -c '^  CPU#[01] RIP=ffffffff[0-9a-f]* RSP=.* IF=1 CPL=0 HLT=1$' "$work/frozen.err")" = 2 ]
	assert "frozen-guest-stacks" [ "$(grep -c '^  CPU#[01] stack: ffffffff' "$work/frozen.err")" = 2 ]
	# shellcheck source=tests/l1/flake.sh
	. "$HERE/../l1/flake.sh"
	# the addresses named with the guest kernel's symbols, as the L1 suites do (tests/l1/lib.sh)
	# shellcheck source=tests/l1/lib.sh
	. "$HERE/../l1/lib.sh"
	if l1_frozen_named >"$work/frozen.named"; then
		cat "$work/frozen.named"
		nrip=$(grep -c '^  CPU#[01] RIP=native_safe_halt+0x' "$work/frozen.named")
		nstack=$(grep -c '^  CPU#[01] stack: default_idle+0x' "$work/frozen.named")
		assert "frozen-guest-named (halted in native_safe_halt, called by default_idle)" \
			test "$nrip" = 2 -a "$nstack" = 2
	else
		nok "frozen-guest-kallsyms" "$(cat "$work/frozen.named")"
	fi
	assert "frozen-is-a-flake ($(l1_flake "$work/frozen.err"))" [ "$(l1_flake "$work/frozen.err")" = "L1 froze without a panic or oops" ]
	{ cat "$work/frozen.err"; echo "[ 9.9] Kernel panic - not syncing: test"; } >"$work/frozen.crash"
	assert "frozen-after-a-crash-is-not" [ -z "$(l1_flake "$work/frozen.crash")" ]
else
	nok "frozen-guest-ready"
fi
finish
