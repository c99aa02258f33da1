#!/bin/bash
# test_deepqueue.sh - never deny what the guest mapped, at any queue depth (pviommu.h: any
# number of sub-page buffers per page).
#
# The configuration where a page held at most 8 sub-page pieces and MAPs were refused: a q35
# guest with e1000 00:04.0, virtio-net 00:05.0, virtio-blk 00:07.0 and nvme 00:08.0 (virtio with
# iommu_platform=on, disable-legacy=on), QEMU under 'pviommuctl run --mode deny', the guest
# protecting every device (pviommu.ko all=1 transport=tcg), then at once: 16 O_DIRECT 4 KiB
# readers and 16 writers spread over virtio-blk and nvme (a virtio-blk queue maps many 16-byte
# headers and 1-byte status bytes of one slab page at the same time) and a download through each
# NIC. Once in strict and once in lazy mode. Each run must show: every transfer completes with
# the right data (the guest compares what it wrote and read), zero violations, zero refused
# hypercalls, no failed-closed domain, no QEMU virtio error, no guest I/O error.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
COST=$VM_OUT/guest-attack/pvdmacost.ko
NAME=deepqueue
JOBS=${DEEPQ_JOBS:-16}	# readers, and as many writers

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "$CTL" "$VM_OUT/libpviommu-qemu.so" "$KO" "$COST" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds python3
vm_host_init deepq

if "$CTL" load >"$work/load.out" 2>&1; then ok "pviommuctl-load"; else
	nok "pviommuctl-load" "$(cat "$work/load.out")"; finish; fi

SIZE=1048576
vm_blob_server $SIZE

cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
SIZE=$SIZE
PORT=$port
BLOB_MD5=$blob_md5
JOBS=$JOBS
GUEST
cat >>"$work/guest.sh" <<'GUEST'
get() {	# get KIND: SIZE bytes from the host through that NIC, checked
	i=$(nic $1) || return 1
	for _t in 1 2 3 4 5; do
		echo "GET $SIZE" | nc -w 20 $(host_ip $i) $PORT >/tmp/got.$1
		[ "$(md5sum </tmp/got.$1 | cut -d' ' -f1)" = $BLOB_MD5 ] && return 0
		sleep 1
	done
	echo "get $1: $(wc -c </tmp/got.$1) bytes"; return 1
}
ifup() {	# configure the NIC of a kind again after its driver was rebound
	i=
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic $1) && break; sleep 0.5; done
	[ -n "$i" ] || return 1
	ip link set $i up
	ip addr add $(guest_ip $i)/24 dev $i 2>/dev/null
	return 0
}
# a job: O_DIRECT 4 KiB requests on one disk region of 64 blocks
wjob() {	# wjob DEV N: write the pattern into region N, 4 KiB per request
	dd if=/tmp/pat of=$1 bs=4096 count=64 seek=$(($2 * 64)) oflag=direct conv=notrunc 2>/tmp/w.$2.err
}
rjob() {	# rjob DEV N OUT: read region N back, 4 KiB per request
	dd if=$1 of=$3 bs=4096 count=64 skip=$(($2 * 64)) iflag=direct 2>/tmp/r.$2.err
}
deep() {	# JOBS writers and JOBS readers at once over both disks, both NICs busy meanwhile
	get e1000 >/tmp/net.e1000 2>&1 & n1=$!
	get virtio >/tmp/net.virtio 2>&1 & n2=$!
	pids=
	j=0
	while [ $j -lt $JOBS ]; do
		d=/dev/vda; [ $((j % 2)) = 1 ] && d=/dev/nvme0n1
		wjob $d $j & pids="$pids $!"
		# readers on the other half of the disks, which the preload filled
		rjob $d $((j + JOBS)) /tmp/rd.$j & pids="$pids $!"
		j=$((j + 1))
	done
	bad=0
	for p in $pids; do wait $p || bad=$((bad + 1)); done
	wait $n1 || { bad=$((bad + 1)); cat /tmp/net.e1000; }
	wait $n2 || { bad=$((bad + 1)); cat /tmp/net.virtio; }
	[ $bad = 0 ] || { echo "deep: $bad jobs failed"; cat /tmp/w.*.err /tmp/r.*.err 2>/dev/null | head; return 1; }
	# every region holds what was written, and every read got it
	j=0
	while [ $j -lt $JOBS ]; do
		d=/dev/vda; [ $((j % 2)) = 1 ] && d=/dev/nvme0n1
		[ "$(md5sum </tmp/rd.$j | cut -d' ' -f1)" = "$PAT_MD5" ] || { echo "read $j: wrong data"; return 1; }
		rjob $d $j /tmp/chk || return 1
		[ "$(md5sum </tmp/chk | cut -d' ' -f1)" = "$PAT_MD5" ] || { echo "write $j: wrong data"; return 1; }
		j=$((j + 1))
	done
	return 0
}
preload() {	# the readers' regions hold the pattern (before protection: plain writes)
	j=0
	while [ $j -lt $JOBS ]; do
		d=/dev/vda; [ $((j % 2)) = 1 ] && d=/dev/nvme0n1
		wjob $d $((j + JOBS)) || return 1
		j=$((j + 1))
	done
	sync
}
head -c 262144 /dev/urandom >/tmp/pat
PAT_MD5=$(md5sum </tmp/pat | cut -d' ' -f1)
check virtio-blk-present wait_for /sys/block/vda 20
check nvme-present wait_for /sys/block/nvme0n1 20
check preload preload
m=$(karg mode)
check insmod insmod /test/pviommu.ko all=1 transport=tcg mode=$m
check ifup-e1000 ifup e1000
check ifup-virtio ifup virtio
check "deep-queue-$m" deep
# one page mapped at one address with changing sizes and directions (pvdmacost.ko conflict=1):
# every MAP is granted; in lazy mode the queued unmaps that differ reach the host first
conflicts() {
	mount -t debugfs none /sys/kernel/debug 2>/dev/null
	_c0=$(sed -n 's/^lazy_conflicts //p' /sys/kernel/debug/pviommu/stats)
	insmod /test/pvdmacost.ko dev=$BDF_E1000 conflict=1 && rmmod pvdmacost || return 1
	_l=$(dmesg | grep 'PVDMACOST dev=.* conflict' | tail -n 1)
	_c1=$(sed -n 's/^lazy_conflicts //p' /sys/kernel/debug/pviommu/stats)
	echo "$_l; lazy_conflicts $_c0 -> $_c1"
	echo "$_l" | grep -q 'maps=72 failed=0$' || return 1
	[ "$m" != lazy ] || [ "$_c1" -ge $((_c0 + 32)) ]
}
check "conflicting-maps-granted-$m" conflicts
value ioerrors "$(dmesg | grep -ciE 'I/O error|blk_update_request|bogus descriptor|nvme.*(timeout|abort)')"
check "no-guest-io-error" sh -c "! dmesg | grep -qiE 'I/O error|blk_update_request|bogus descriptor|nvme.*(timeout|abort)'"
mount -t debugfs none /sys/kernel/debug 2>/dev/null
value hypercalls "$(grep -m1 '^hypercalls' /sys/kernel/debug/pviommu/stats 2>/dev/null | cut -d' ' -f2)"
mark done
wait_host >/dev/null
GUEST

stat_of() {	# stat_of NAME: one counter of 'pviommuctl status'
	"$CTL" -j status | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"][sys.argv[1]])' "$1"
}

export VM_QEMU_WRAPPER="$CTL run --mode deny --"	# 'run' adds iommu_platform=on,disable-legacy=on
export VM_VIRTIO_OPTS=""
for mode in strict lazy; do
	v0=$(stat_of violations) e0=$(stat_of hypercall_errors) f0=$(stat_of failed_closed)
	t0=$SECONDS
	if ! vm_boot --name "$NAME-$mode" --script "$work/guest.sh" --timeout 400 --mem 768 \
		--net e1000 --net virtio --disk virtio-blk 64M --disk nvme 64M \
		--file "$KO" --file "$COST" --append "pviommu.mode=$mode"; then
		nok "$mode-boot"; continue
	fi
	qpid=$(vm_pid)
	if vm_wait_marker done 360; then
		"$CTL" -j status >"$work/status-$mode.json"
		vm_send go
	fi
	rc=0; vm_wait 60 || rc=$?
	read -r gp gf <<<"$(vm_checks)"
	assert "$mode-guest-result-pass (rc $rc; guest checks $gp passed, $gf failed)" [ $rc = 0 ]
	v1=$(stat_of violations) e1=$(stat_of hypercall_errors) f1=$(stat_of failed_closed)
	assert "$mode-zero-violations ($v0 -> $v1)" [ "$v0" = "$v1" ]
	assert "$mode-zero-refused-hypercalls ($e0 -> $e1)" [ "$e0" = "$e1" ]
	assert "$mode-nothing-failed-closed ($f0 -> $f1)" [ "$f0" = "$f1" ]
	qout=$(vm_dir)/qemu.out
	assert "$mode-no-qemu-virtio-error" sh -c "! grep -v '^pviommuctl run: argument' '$qout' | grep -qiE 'virtio|Cannot map|bogus|error'"
	echo "info: $mode: QEMU pid $qpid, $(vm_value hypercalls) hypercalls, guest I/O errors $(vm_value ioerrors), $((SECONDS - t0)) s"
	[ $rc = 0 ] || { vm_tail 40; tail -n 20 "$qout"; }
done
finish
