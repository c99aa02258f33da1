#!/bin/bash
# test_inproc.sh - the in-process plane (libpviommu-qemu.so) with the real Debian QEMU 7.2.
#
# host-only (seconds):
#   - a process that is not QEMU ignores the preloaded library (LD_PRELOAD is inherited)
#   - pviommu not loaded: QEMU refuses to start (PVIOMMU_REQUIRE=1, the default), runs with a
#     warning under PVIOMMU_REQUIRE=0
#   - every one of the 53 entry points is detoured in QEMU (PVIOMMU_DEBUG=1 log)
#   - bench_inproc --test: the library's decisions per entry point (allow, deny, audit, kill,
#     MSI, map/cache_init/ld/st failure values, TCG hypercalls through cpu_x86_cpuid, no
#     hypercall lost across three reloads) in a fake QEMU against the real pinned maps
#   - pviommuctl run argument handling (when pviommuctl has the run command)
# VM (three TCG boots, e1000 00:04.0 + virtio-net 00:05.0 + virtio-blk 00:07.0):
#   base    without the library: guest checks (devices, TCP over both NICs, disk I/O)
#   inproc  the same guest under the library: the same checks pass, every device address space
#           is identified (e1000 = devfn 0x20 = 00:04.0, virtio-net 0x28, virtio-blk 0x38)
#   protect pviommu.ko protects all three devices through the TCG transport served by the
#           library (cpu_x86_cpuid detour): the host sees the domain and its mappings, the same
#           traffic passes the per-transfer checks, no violation is reported. Started through
#           'pviommuctl run' (which adds iommu_platform=on) when pviommuctl has it.
# Needs root (BPF), make (pviommuctl, the library, pviommu.ko, guest kernel + initramfs), python3.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
CTL=$VM_OUT/pviommuctl
PVHC=$VM_OUT/tests/pvhc
LIB=$VM_OUT/libpviommu-qemu.so
BENCH=$VM_OUT/tests/bench_inproc
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
QEMU=${VM_QEMU:-qemu-system-x86_64}
NAME=inproc

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "$CTL" "$LIB" "$BENCH" "$KO" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
vm_host_init inproc

# ---- host-only ---------------------------------------------------------------------------
out=$(LD_PRELOAD=$LIB PVIOMMU_DEBUG=1 sh -c 'echo hello' 2>&1)
assert "not-qemu-untouched" [ "$out" = hello ]

# not loaded (no pins in this directory yet)
rc=0; PVIOMMU_DEBUG=1 LD_PRELOAD=$LIB "$QEMU" -version >"$work/req1.out" 2>&1 || rc=$?
assert "require-refuses-when-not-loaded (rc $rc)" [ $rc = 1 ]
assert "require-message" grep -q "pviommu is not loaded.*refusing to run this VM without DMA protection" "$work/req1.out"
rc=0; PVIOMMU_REQUIRE=0 LD_PRELOAD=$LIB "$QEMU" -version >"$work/req0.out" 2>&1 || rc=$?
assert "require0-runs-unprotected (rc $rc)" [ $rc = 0 ]
assert "require0-warns" grep -q "WARNING: pviommu is not loaded.*WITHOUT pviommu DMA protection" "$work/req0.out"
assert "require0-qemu-ran" grep -q "QEMU emulator version" "$work/req0.out"

if "$CTL" load >"$work/load.out" 2>&1; then ok "pviommuctl-load"; else
	nok "pviommuctl-load" "$(cat "$work/load.out")"; finish; fi

rc=0; PVIOMMU_DEBUG=1 LD_PRELOAD=$LIB "$QEMU" -version >"$work/detours.out" 2>&1 || rc=$?
assert "qemu-with-library-runs (rc $rc)" [ $rc = 0 ]
np=$(grep -c '^pviommu-qemu: patched ' "$work/detours.out")
assert "53-entry-points-detoured ($np)" [ "$np" = 53 ]
for s in address_space_rw address_space_read_full address_space_write address_space_map \
	address_space_cache_init address_space_ldl_le address_space_stl_le address_space_stq cpu_x86_cpuid \
	address_space_write_rom address_space_cache_destroy address_space_read_cached_slow \
	address_space_lduw_le_cached_slow address_space_stw_le_cached_slow address_space_stq_le_cached_slow \
	qemu_system_reset address_space_unmap; do
	assert "detoured-$s" grep -q "^pviommu-qemu: patched $s at " "$work/detours.out"
done
assert "no-refused-detour" sh -c "! grep -q 'NOT patched' '$work/detours.out'"

# The inline constant-length address_space_read() (include/exec/memory.h) is the one DMA path
# no detour sees: it calls flatview_translate() itself, and a FlatView is shared by every
# address space with the same root (device or CPU). Every call site of flatview_translate in
# this QEMU build, named by the nearest exported symbol before it, must be a known non-device
# user: physmem.c's own flatview_read/write (behind the detoured entry points, after
# ram_block_discard_is_required), CPU port I/O (cpu_inb/w/l on address_space_io), ROM loading,
# TB invalidation, the vhost/VFIO IOMMU notifier. A device model that inlines it fails here.
objdump -d --no-show-raw-insn "$(command -v "$QEMU")" |
	awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 } /(call|jmp).*<flatview_translate@@Base>/ { print fn }' \
	>"$work/fvt.sites"
nsites=$(wc -l <"$work/fvt.sites")
unknown=$(grep -vE '<(ram_block_discard_is_required|cpu_in[bwl]|rom_ptr_for_as|tb_invalidate_phys_addr|memory_get_xlat_addr)@@Base>' \
	"$work/fvt.sites" | sort -u | tr '\n' ' ')
assert "inline-address_space_read-only-in-non-device-code ($nsites call sites${unknown:+; unknown: $unknown})" \
	test "$nsites" -gt 0 -a -z "$unknown"
assert "library-active" grep -q "^pviommu-qemu: active in pid" "$work/detours.out"

if PVIOMMUCTL=$CTL "$BENCH" "$LIB" --test >"$work/bench-test.out" 2>&1; then ok "library-decisions (bench_inproc --test)"
else nok "library-decisions (bench_inproc --test)" "$(grep -E 'not ok|FAIL' "$work/bench-test.out" | head -5)"; fi

# 'run' is part of pviommuctl: a build without it fails here (no grep of help deciding a skip)
{
	rc=0; "$CTL" run -- "$QEMU" -device virtio-net-pci,iommu_platform=off >"$work/run1.out" 2>&1 || rc=$?
	assert "run-refuses-iommu_platform=off (rc $rc)" [ $rc = 1 ]
	assert "run-explains-why" grep -q "no device identity" "$work/run1.out"
	rc=0; "$CTL" run -- "$QEMU" -drive file=/dev/null,if=virtio >"$work/run2.out" 2>&1 || rc=$?
	assert "run-refuses-drive-if=virtio (rc $rc)" [ $rc = 1 ]
	rc=0; "$CTL" run -- "$QEMU" -device virtio-blk-pci-transitional >"$work/run3.out" 2>&1 || rc=$?
	assert "run-refuses-transitional (rc $rc)" [ $rc = 1 ]
	rc=0; PVIOMMU_DEBUG=1 "$CTL" run -- "$QEMU" -version >"$work/run4.out" 2>&1 || rc=$?
	assert "run-execs-qemu-with-library (rc $rc)" grep -q "^pviommu-qemu: active in pid" "$work/run4.out"
}

# ---- VM: base / inproc / protect ---------------------------------------------------------
SIZE=131072
vm_blob_server $SIZE

cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
SIZE=$SIZE
PORT=$port
BLOB_MD5=$blob_md5
GUEST
cat >>"$work/guest.sh" <<'GUEST'
has_dev() { [ "$(cat /sys/bus/pci/devices/$1/vendor)" = "$2" ] && [ "$(cat /sys/bus/pci/devices/$1/device)" = "$3" ]; }
get() {	# get KIND: SIZE bytes from the host through that NIC, checked
	i=$(nic $1) || return 1
	for _t in 1 2 3 4 5; do
		echo "GET $SIZE" | nc -w 10 $(host_ip $i) $PORT >/tmp/got
		[ "$(md5sum </tmp/got | cut -d' ' -f1)" = $BLOB_MD5 ] && return 0
		sleep 1
	done
	echo "get $1: $(wc -c </tmp/got) bytes"; return 1
}
disk() {	# write 256 KiB to the virtio disk, drop the caches, read it back
	wait_for /sys/block/vda 10 || return 1
	head -c 262144 /dev/urandom >/tmp/d
	dd if=/tmp/d of=/dev/vda bs=65536 conv=fsync 2>/dev/null || return 1
	echo 3 >/proc/sys/vm/drop_caches
	[ "$(dd if=/dev/vda bs=65536 count=4 2>/dev/null | md5sum)" = "$(md5sum </tmp/d)" ]
}
ifup() {	# configure the NIC of a kind again after its driver was rebound
	i=
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic $1) && break; sleep 0.5; done
	[ -n "$i" ] || return 1
	ip link set $i up
	ip addr add $(guest_ip $i)/24 dev $i 2>/dev/null
	return 0
}
workload() {
	check "$1-e1000-tcp" get e1000
	check "$1-virtio-net-tcp" get virtio
	check "$1-virtio-blk-io" disk
}
check e1000-pci      has_dev $BDF_E1000 0x8086 0x100e
check virtio-net-pci has_dev $BDF_VIRTIO_NET 0x1af4 0x1041
check virtio-blk-pci has_dev $BDF_VIRTIO_BLK 0x1af4 0x1042
for v in /sys/bus/virtio/devices/virtio*; do
	check "access-platform-$(basename $v)" [ "$(cut -c34 $v/features)" = 1 ]
done
workload plain
if [ "$(karg protect)" = 1 ]; then
	mount -t debugfs none /sys/kernel/debug 2>/dev/null
	S=/sys/kernel/debug/pviommu/stats
	check ring-100-refused sh -c "! insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg ring=100 2>/dev/null"
	check ring-1024-refused sh -c "! insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg ring=1024 2>/dev/null"
	check insmod insmod /test/pviommu.ko devices=$BDF_E1000,$BDF_VIRTIO_NET,$BDF_VIRTIO_BLK transport=tcg
	# the library answers the shared page: every operation goes through it (pviommu.h)
	check channel-page grep -qx 'channel page' $S
	check ring-of-512-entries grep -qx 'ring 512' $S
	check insmod-says-shared-page sh -c "dmesg | grep -q 'transport shared page.*acknowledged by the host'"
	check ifup-e1000 ifup e1000
	check ifup-virtio ifup virtio
	sleep 1
	workload protected
	st() { awk -v k="$1" '$1 == k { print $2 }' $S; }
	kicks=$(st page_kicks) hc=$(st hypercalls) exits=$(st exits) posted=$(st posted)
	value page_kicks "$kicks"
	value guest_hypercalls "$hc"
	value guest_exits "$exits"
	value guest_posted "$posted"
	value guest_ring_full "$(st ring_full)"
	# posting (pviommu.h): MAP/UNMAP go into the page without an exit, the library drains
	# them before its checks; the guest exits for REGISTER/DEV_ADD, a full ring, stats reads
	check post-offered-and-used grep -qx 'post 1' $S
	check page-served [ "${kicks:-0}" -gt 0 ]
	check most-operations-posted [ "$((2 * ${posted:-0}))" -gt "${hc:-0}" ]
	check exits-under-a-tenth-of-operations [ "$((10 * ${exits:-1}))" -lt "${hc:-0}" ]
	check no-posted-operation-refused [ "$(st posted_refused)" = 0 ]
	check no-failure [ "$(st failures)" = 0 ]
	# the library carries out runs of posted entries in one BPF test_run (pviommu_hc_batch)
	value page_ops_per_bpf_run "$(st page_ops) ops / $(st page_runs) runs"
	check page-fewer-bpf-runs-than-ops [ "$(st page_runs)" -lt "$(st page_ops)" ]
	mark protected
	wait_host >/dev/null
	# the host drops the record of one live e1000 mapping: the guest's UNMAP of it at
	# ifdown is posted (its caller hears nothing), refused, and the refusal read back from
	# the entry's status (when the entry is used again, or at the stats' flush): counted, said
	n0=$(dmesg | wc -l)
	mark posted-mapped
	wait_host >/dev/null
	check posted-ifdown ip link set "$(nic e1000)" down
	check posted-refused-unmap-counted [ "$(st posted_refused)" -ge 1 ]
	check posted-refused-unmap-a-failure [ "$(st failures)" -ge 1 ]
	check posted-refused-unmap-said sh -c "dmesg | tail -n +$((n0 + 1)) | grep -q 'the host refused a posted UNMAP (bdf 0x20 '"
	# the status is cleared when read: a second flush counts nothing again
	check posted-refusal-counted-once [ "$(st posted_refused)" = "$(st posted_refused)" ]
	check rmmod rmmod pviommu
	# post=0: the same page, a kick (an exit) per operation, the reference
	check insmod-post-0 insmod /test/pviommu.ko devices=$BDF_E1000,$BDF_VIRTIO_BLK transport=tcg post=0 ring=64
	check post-0-not-posting grep -qx 'post 0' $S
	check ring-of-one-page grep -qx 'ring 64' $S
	check post-0-ifup ifup e1000
	check post-0-e1000-tcp get e1000
	check post-0-virtio-blk-io disk
	check post-0-nothing-posted [ "$(st posted)" = 0 ]
	check post-0-an-exit-per-operation [ "$(st exits)" -ge "$(st hypercalls)" ]
	# the host drops the record of one e1000 mapping: the UNMAP of it at ifdown is refused,
	# and the guest counts and says so
	check post-0-no-failure-yet [ "$(st failures)" = 0 ]
	n0=$(dmesg | wc -l)
	mark post0-mapped
	wait_host >/dev/null
	check post-0-ifdown ip link set "$(nic e1000)" down
	check post-0-refused-unmap-counted [ "$(st failures)" -ge 1 ]
	check post-0-refused-unmap-said sh -c "dmesg | tail -n +$((n0 + 1)) | grep -q '0000:00:04.0: the host refused UNMAP'"
	check rmmod-post-0 rmmod pviommu
	# channel=off: the CPUID transport, answered in registers by the same library
	# the lines this insmod adds, however many the rebound drivers print after them
	n0=$(dmesg | wc -l)
	check insmod-channel-off insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg channel=off
	check channel-off-hypercall grep -qx 'channel hypercall' $S
	check channel-off-acknowledged sh -c "dmesg | tail -n +$((n0 + 1)) | grep -q 'transport tcg.*acknowledged by the host'"
	check channel-off-ifup ifup e1000
	check channel-off-e1000-tcp get e1000
	check rmmod-channel-off rmmod pviommu
fi
# a VM at its quota (run --quota records=N): the e1000's RX buffers beyond it are refused. Their
# MAPs were posted (the driver heard success): each refusal comes back in its entry's status
# and the guest counts it; host and guest agree on their number (read guest, host, guest)
if [ "$(karg quota)" = 1 ]; then
	mount -t debugfs none /sys/kernel/debug 2>/dev/null
	S=/sys/kernel/debug/pviommu/stats
	st() { awk -v k="$1" '$1 == k { print $2 }' $S; }
	check quota-insmod insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg
	check quota-posting grep -qx 'post 1' $S
	check quota-ifup ifup e1000
	sleep 1
	value quota-guest-refused-1 "$(st posted_refused)"
	mark quota-read
	wait_host >/dev/null
	value quota-guest-refused-2 "$(st posted_refused)"
	value quota-guest-failures "$(st failures)"
	check quota-refusals-counted [ "$(st posted_refused)" -gt 0 ]
	check quota-refusals-are-failures [ "$(st failures)" -ge "$(st posted_refused)" ]
	check quota-refusals-said sh -c "dmesg | grep -q 'the host refused a posted MAP (bdf 0x20 '"
	check quota-rmmod rmmod pviommu
fi
# a host that serves rings of 64 entries at most (PVIOMMU_RING_MAX=64, as a library from before
# the 512-entry ring): pviommu.ko's 512-entry page gets no answer, it falls back to one page
if [ "$(karg ringmax)" = 1 ]; then
	mount -t debugfs none /sys/kernel/debug 2>/dev/null
	S=/sys/kernel/debug/pviommu/stats
	st() { awk -v k="$1" '$1 == k { print $2 }' $S; }
	check ringmax-insmod insmod /test/pviommu.ko devices=$BDF_E1000,$BDF_VIRTIO_BLK transport=tcg
	check ringmax-fell-back-to-one-page grep -qx 'ring 64' $S
	check ringmax-said-so sh -c "dmesg | grep -q 'the host serves no ring of 512 entries: trying one page of 64'"
	check ringmax-posting grep -qx 'post 1' $S
	check ringmax-ifup ifup e1000
	check ringmax-e1000-tcp get e1000
	check ringmax-virtio-blk-io disk
	check ringmax-posted [ "$(st posted)" -gt 0 ]
	check ringmax-no-failure [ "$(st failures)" = 0 ]
	check ringmax-rmmod rmmod pviommu
fi
GUEST

boot() {	# boot NAME [vm_boot args]: boot, run, wait; sets gp gf
	local name=$1; shift
	vm_boot --name "$NAME-$name" --script "$work/guest.sh" --timeout 240 \
		--net e1000 --net virtio --disk virtio-blk 16M "$@" || return 1
}
finish_vm() {	# finish_vm NAME: wait for the verdict, count the guest checks
	local rc=0
	vm_wait || rc=$?
	assert "$1-guest-result-pass (rc $rc, $(vm_elapsed) s)" [ $rc = 0 ]
	read -r gp gf <<<"$(vm_checks)"
	echo "    $1: guest checks $gp passed, $gf failed; boot-to-poweroff $(vm_elapsed) s"
	[ $rc = 0 ] || { vm_tail 30; tail -n 20 "$(vm_dir)/qemu.out"; }
}
export VM_VIRTIO_OPTS="iommu_platform=on,disable-legacy=on"

# base: no library
unset VM_QEMU_WRAPPER
if boot base; then finish_vm base; base_checks=$gp; else nok "base-boot"; base_checks=-1; fi

# inproc: the library, debug log
stats0=$("$CTL" -j status | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["violations"])')
export VM_QEMU_WRAPPER="env LD_PRELOAD=$LIB PVIOMMU_DEBUG=1"
if boot inproc; then
	finish_vm inproc
	assert "inproc-same-guest-checks ($gp vs $base_checks)" test "$gp" = "$base_checks" -a "$gf" = 0
	qout=$(vm_dir)/qemu.out
	assert "inproc-53-detours" [ "$(grep -c '^pviommu-qemu: patched ' "$qout")" = 53 ]
	assert "identity-e1000-devfn-0x20-00:04.0" \
		grep -qE "^pviommu-qemu: device address space 0x[0-9a-f]+ 'e1000' devfn 0x20 bdf 0000:00:04.0$" "$qout"
	assert "identity-virtio-net-devfn-0x28" \
		grep -qE "'virtio-net-pci' devfn 0x28 bdf 0000:00:05.0$" "$qout"
	assert "identity-virtio-blk-devfn-0x38" \
		grep -qE "'virtio-blk-pci' devfn 0x38 bdf 0000:00:07.0$" "$qout"
	assert "system-memory-not-a-device" grep -qE "address space 0x[0-9a-f]+ 'memory': not a PCI device" "$qout"
	assert "inproc-no-violation" sh -c "! grep -q 'DMA violation' '$qout'"
else
	nok "inproc-boot"
fi

# num_le A B [C]: integers, A <= B (<= C)
# shellcheck disable=SC2317	# assert calls it
num_le() {
	local x
	for x in "$@"; do [[ "$x" =~ ^[0-9]+$ ]] || return 1; done
	[ "$1" -le "$2" ] && { [ $# -lt 3 ] || [ "$2" -le "$3" ]; }
}
# drop_e1000_record NAME: the host forgets one live e1000 mapping of the VM $qpid (refs 1)
drop_e1000_record() {
	local iova
	"$CTL" -j mappings --pid "$qpid" >"$work/$1.json" 2>&1
	iova=$(python3 -c 'import json,sys
ms=json.load(open(sys.argv[1]))
print([m for m in ms if m.get("bdf") == "0000:00:04.0" and m.get("refs", 1) == 1][0]["iova"])' "$work/$1.json" 2>"$work/$1.err")
	if [ -n "$iova" ] && "$PVHC" drop-record "$qpid" 0000:00:04.0 "$iova" 2>>"$work/$1.err"
	then ok "$1-host-dropped-a-record"
	else nok "$1-host-dropped-a-record" "$(cat "$work/$1.err"; head -c 300 "$work/$1.json")"; fi
}

# protect: guest module through the TCG transport the library serves
export VM_QEMU_WRAPPER="$CTL run --mode deny --"
export VM_VIRTIO_OPTS=""	# 'run' adds iommu_platform=on,disable-legacy=on
if boot protect --file "$KO" --append "pviommu.protect=1"; then
	qpid=$(vm_pid)
	if vm_wait_marker protected 180; then
		ok "protect-guest-reached-protected"
		"$CTL" -j mappings --pid "$qpid" >"$work/mappings.json" 2>&1
		"$CTL" -j status >"$work/status.json" 2>&1
		for b in 0000:00:04.0 0000:00:05.0 0000:00:07.0; do
			assert "protect-host-has-mappings-$b" grep -q "\"bdf\":\"$b\"" "$work/mappings.json"
		done
		ndev=$(python3 -c 'import json,sys
d=[x for x in json.load(open(sys.argv[1]))["domains"] if x.get("domain", x.get("pid")) == int(sys.argv[2])]
print(d[0].get("devices", d[0].get("nr_devices", -1)) if d else -1)' "$work/status.json" "$qpid" 2>/dev/null)
		assert "protect-domain-has-3-devices ($ndev)" [ "$ndev" = 3 ]
		vm_send go
		# posted: drop the record of one live e1000 mapping (the guest's UNMAP of it is
		# then refused); then the same with post=0
		if vm_wait_marker posted-mapped 120; then
			drop_e1000_record posted
			vm_send go
		else
			nok "posted-guest-mapped"
		fi
		if vm_wait_marker post0-mapped 120; then
			drop_e1000_record post0
			vm_send go
		else
			nok "post0-guest-mapped"
		fi
	else
		nok "protect-guest-reached-protected"
	fi
	finish_vm protect
	assert "protect-all-guest-checks-pass" [ "${gf:-1}" = 0 ]
	stats1=$("$CTL" -j status | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["violations"])')
	assert "no-violation-reported ($stats0 -> $stats1)" [ "$stats0" = "$stats1" ]
	assert "protect-no-violation-logged" sh -c "! grep -q 'DMA violation' '$(vm_dir)/qemu.out'"
else
	nok "protect-boot"
fi

# quota: a VM of 48 records at most (its e1000 RX ring alone maps 256 buffers)
export VM_QEMU_WRAPPER="$CTL run --mode deny --quota records=48 --"
if boot quota --file "$KO" --append "pviommu.quota=1"; then
	qpid=$(vm_pid)
	if vm_wait_marker quota-read 180; then
		hrefused=$("$CTL" -j status | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["domains"] if x.get("domain", x.get("pid")) == int(sys.argv[1])]
print(d[0]["quota_refused"] if d else -1)' "$qpid" 2>&1)
		vm_send go
	else
		nok "quota-guest-read"
	fi
	finish_vm quota
	assert "quota-all-guest-checks-pass" [ "${gf:-1}" = 0 ]
	g1=$(vm_value quota-guest-refused-1) g2=$(vm_value quota-guest-refused-2)
	echo "    quota: the guest read $g1 then $g2 posted refusals, the host counted $hrefused between"
	assert "quota-host-refused-some ($hrefused)" num_le 1 "$hrefused"
	assert "quota-guest-and-host-agree ($g1 <= $hrefused <= $g2)" num_le "$g1" "$hrefused" "$g2"
else
	nok "quota-boot"
fi

# ringmax: the library serves rings of 64 entries at most; bad values stop QEMU with a message
export VM_QEMU_WRAPPER="env PVIOMMU_RING_MAX=64 $CTL run --mode deny --"
if boot ringmax --file "$KO" --append "pviommu.ringmax=1"; then
	finish_vm ringmax
	assert "ringmax-all-guest-checks-pass" [ "${gf:-1}" = 0 ]
else
	nok "ringmax-boot"
fi
out=$(PVIOMMU_RING_MAX=100 "$CTL" run --mode deny -- qemu-system-x86_64 -machine none -display none \
	-nodefaults -S 2>&1 </dev/null) && rc=0 || rc=$?
assert "ring-max-100-refused (rc $rc)" [ "$rc" = 1 ]
assert "ring-max-100-says-why" grep -q "PVIOMMU_RING_MAX=100: the longest ring served" <<<"$out"
finish
