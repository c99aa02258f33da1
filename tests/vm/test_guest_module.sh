#!/bin/bash
# test_guest_module.sh - pviommu.ko in a real guest against the real host policy (one TCG boot).
#
# Host: pviommuctl load (private pin dir), a TCP server on 127.0.0.1 (the guest reaches it as
# 10.0.2.2 through e1000 and 10.0.3.2 through virtio-net), attach the TCG hypercall transport
# to the VM's QEMU. Guest: e1000 (00:04.0) + virtio-net-pci (00:05.0, iommu_platform=on,
# disable-legacy=on), waits for the host before any insmod. Phases (guest marks, host asserts):
#   strict   insmod devices=both transport=tcg: host sees mappings for both BDFs, the domain with
#            2 devices; 256 KiB each way over each NIC: host map/unmap stats grow, and once
#            idle the host's records equal the guest's live mappings exactly and the record
#            count is back at its baseline; rmmod: domain gone, no mapping left
#   badparam no such device / transport=bogus / devices=garbage / ... fail insmod, send no
#            hypercall, create no domain; the guest goes on (network after rmmod works)
#   lazy     mode=lazy: the unmap queue drains, host records = guest live mappings; rmmod
#   all      all=1 protects e1000 and virtio-net, host domain device count = guest's; rmmod
#   build    build/guest-module/build.log has no compiler/modpost warning
# Host and guest compare counts at a quiescent point: the guest reads its live counts, marks,
# the host reads its records, the guest reads its counts again; if they moved (a stray packet),
# the round is repeated, so the comparison itself needs no tolerance.
# Needs root (BPF), make (pviommuctl, pviommu.ko, guest kernel + initramfs), jq, python3.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
NAME=guest_module
SIZE=262144	# bytes each way per NIC
E1000=0000:00:04.0
VIRTIO=0000:00:05.0

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"

need_files "$CTL" "$KO" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds jq python3
vm_host_init gm
T0=$SECONDS

# ---- 7. the module built without warnings (W=1) -------------------------------------------------
# diagnostics only: gcc "file:line:col: warning:", modpost "WARNING: ...", kbuild "warning: ...";
# a V=1 build log also echoes kbuild's own command text, which contains the word "warning"
blog=${PVIOMMU_KO_BUILD_LOG:-$VM_OUT/guest-module/build.log}	# the log of the module under test
if [ ! -f "$blog" ]; then
	nok "build-log-exists"
elif grep -nE '(^|: )(warning|WARNING):' "$blog" >"$work/warnings"; then
	nok "module-build-no-warnings" "$(head -c 400 "$work/warnings")"
else
	ok "module-build-no-warnings"
fi
assert "build-log-not-older-than-ko" [ ! "$blog" -ot "$KO" ]
# and the current sources, built for real (W=1, the rule of mk/module.mk) in a private O=
if make -s -C "$VM_SRC" O="$work/o" "$work/o/guest-module/pviommu.ko" >"$work/kbuild.out" 2>&1 &&
	! grep -nE '(^|: )(warning|WARNING):' "$work/o/guest-module/build.log" "$work/kbuild.out" >"$work/warnings"
then ok "module-rebuild-no-warnings"
else nok "module-rebuild-no-warnings" "$(head -c 600 "$work/warnings" "$work/kbuild.out")"; fi

# ---- host side ---------------------------------------------------------------------------
if "$CTL" load >"$work/load.out" 2>&1; then ok "pviommuctl-load"; else
	nok "pviommuctl-load" "$(cat "$work/load.out")"; finish; fi

# TCP server: "GET n\n" -> n bytes of the blob; "PUT n\n" + n bytes -> "OK n md5\n"
vm_blob_server $SIZE

# ---- guest script ------------------------------------------------------------------------
cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
KO=/test/pviommu.ko
S=/sys/kernel/debug/pviommu/stats
SIZE=$SIZE
PORT=$port
BLOB_MD5=$blob_md5
mount -t debugfs none /sys/kernel/debug 2>/dev/null
# no IPv6: router solicitations and advertisements would be stray traffic at the snapshots
echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
GUEST
cat >>"$work/guest.sh" <<'GUEST'
st() { awk -v k=$1 '$1 == k { print $2 }' $S; }
dst() { awk -v d=$1 -v k=$2 '$1 == "device" && $2 == d { for (i = 3; i < NF; i++) if ($i == k) print $(i + 1) }' $S; }
loaded() { grep -q '^pviommu ' /proc/modules; }
ifup() {	# (re)configure the NIC of a kind after its driver was rebound
	i=
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic $1) && break; sleep 0.5; done
	[ -n "$i" ] || return 1
	echo 1 >/proc/sys/net/ipv6/conf/$i/disable_ipv6 2>/dev/null
	ip link set $i up
	ip addr add $(guest_ip $i)/24 dev $i 2>/dev/null
	return 0
}
# busybox wget crashes in this guest: a tiny protocol over nc (host: server.py)
get() {	# get KIND: SIZE bytes from the host through that NIC, checked
	i=$(nic $1) || return 1
	for _t in 1 2 3 4 5; do
		echo "GET $SIZE" | nc -w 10 $(host_ip $i) $PORT >/tmp/got
		[ "$(md5sum </tmp/got | cut -d' ' -f1)" = $BLOB_MD5 ] && return 0
		sleep 1
	done
	echo "get $1: $(wc -c </tmp/got) bytes, bad"; return 1
}
put() {	# put KIND: SIZE bytes to the host through that NIC, checked
	i=$(nic $1) || return 1
	[ -f /tmp/up ] || head -c $SIZE /dev/urandom >/tmp/up
	want="OK $SIZE $(md5sum </tmp/up | cut -d' ' -f1)"
	for _t in 1 2 3 4 5; do
		r=$({ echo "PUT $SIZE"; cat /tmp/up; } | nc -w 10 $(host_ip $i) $PORT)
		[ "$r" = "$want" ] && return 0
		sleep 1
	done
	echo "put $1: got '$r'"; return 1
}
ping1() {	# ping1 KIND: a short exchange (the NIC works)
	i=$(nic $1) || return 1
	for _t in 1 2 3 4 5; do
		[ "$(echo 'GET 100' | nc -w 5 $(host_ip $i) $PORT | wc -c)" = 100 ] && return 0
		sleep 0.5
	done
	return 1
}
# hand-shake with the host at a quiescent point: the live counts of both devices, before and
# after the host read its records; the host says "again" if they moved meanwhile
N=0
sync_host() {	# sync_host NAME
	while :; do
		N=$((N + 1))
		value "$1.$N.pre" "$(dst $BDF_E1000 live) $(dst $BDF_VIRTIO_NET live) $(st maps) $(st unmaps)"
		mark "$1.$N"
		r=$(wait_host)
		value "$1.$N.post" "$(dst $BDF_E1000 live) $(dst $BDF_VIRTIO_NET live) $(st maps) $(st unmaps)"
		mark "$1.$N.done"
		r=$(wait_host)
		[ "$r" = again ] || break
		sleep 1
	done
}
dump() { echo "---- stats $1"; cat $S; }
# virtio-net tops its rx ring up only when more than half a NAPI budget (32) of it is free, so
# between bursts the number of posted (mapped) rx buffers floats within 32 of the ring size;
# link down/up (virtnet_open -> try_fill_recv) posts buffers until the ring is full, without
# unmapping anything: a canonical count. e1000 refills its ring after every poll.
settle() { i=$(nic virtio) && ip link set $i down && ip link set $i up; sleep 1; }

check not-loaded-at-start sh -c "! loaded"
check virtio-up-before ifup virtio
check net-before ping1 e1000
check net-virtio-before ping1 virtio
mark ready
wait_host >/dev/null	# the host attached the TCG transport

# ---- the uprobe transport of 'attach' gives no answer: by default insmod refuses to claim a
# protection the host never acknowledged (pviommu.h); verify=0 loads without asking
check no-ack-refuses-insmod sh -c "! insmod $KO devices=$BDF_E1000 transport=tcg"
check no-ack-says-why sh -c "dmesg | grep -q 'no host acknowledged REGISTER'"
check no-ack-nothing-loaded sh -c "! loaded"

# ---- strict, both NICs
check insmod-strict insmod $KO devices=$BDF_E1000,$BDF_VIRTIO_NET transport=tcg mode=strict verify=0
check strict-ifup-e1000 ifup e1000
check strict-ifup-virtio ifup virtio
check strict-e1000-protected [ "$(dst $BDF_E1000 protected)" = 1 ]
check strict-e1000-driver [ "$(dst $BDF_E1000 driver)" = e1000 ]
check strict-virtio-protected [ "$(dst $BDF_VIRTIO_NET protected)" = 1 ]
check strict-virtio-driver [ "$(dst $BDF_VIRTIO_NET driver)" = virtio-pci ]
check strict-virtio-platform [ "$(dst $BDF_VIRTIO_NET virtio_platform)" = 1 ]
check strict-warmup-e1000 ping1 e1000
check strict-warmup-virtio ping1 virtio
settle
dump strict-idle
sync_host strict-base
me0=$(dst $BDF_E1000 maps); mv0=$(dst $BDF_VIRTIO_NET maps)
mark traffic-start
check strict-get-e1000 get e1000
check strict-put-e1000 put e1000
check strict-get-virtio get virtio
check strict-put-virtio put virtio
mark traffic-done
sleep 1
dump strict-after
value e1000-maps-traffic $(($(dst $BDF_E1000 maps) - me0))
value virtio-maps-traffic $(($(dst $BDF_VIRTIO_NET maps) - mv0))
check strict-e1000-maps-grew [ $(($(dst $BDF_E1000 maps) - me0)) -gt 100 ]
check strict-virtio-maps-grew [ $(($(dst $BDF_VIRTIO_NET maps) - mv0)) -gt 100 ]
check strict-e1000-unmaps [ $(dst $BDF_E1000 unmaps) -gt 100 ]
check strict-virtio-unmaps [ $(dst $BDF_VIRTIO_NET unmaps) -gt 100 ]
check strict-hypercalls [ $(st hypercalls) -ge $(($(st maps) + $(st unmaps))) ]
check strict-no-failures [ "$(st failures)" = 0 ]
settle
sync_host strict-after
check rmmod-strict rmmod pviommu
check rmmod-strict-gone sh -c "! loaded"
dmesg | grep 'pviommu:' | tail -n 3 | sed 's/^/dmesg: /'
mark strict-rmmod
wait_host >/dev/null

# ---- bad parameters: insmod fails (no hypercall: the host checks), the guest goes on
check bad-no-such-device sh -c "! insmod $KO devices=0000:00:1f.7 transport=tcg"
check bad-transport sh -c "! insmod $KO devices=$BDF_E1000 transport=bogus"
check bad-devices-garbage sh -c "! insmod $KO devices=garbage transport=tcg"
check bad-devices-short sh -c "! insmod $KO devices=00:04 transport=tcg"
check bad-devices-list sh -c "! insmod $KO devices=$BDF_E1000,zz transport=tcg"
check bad-mode sh -c "! insmod $KO devices=$BDF_E1000 transport=tcg mode=sloppy"
check bad-nothing-named sh -c "! insmod $KO transport=tcg"
check bad-kvm-without-kvm sh -c "! insmod $KO devices=$BDF_E1000 transport=kvm"
check bad-verify sh -c "! insmod $KO devices=$BDF_E1000 transport=tcg verify=2"
check bad-channel sh -c "! insmod $KO devices=$BDF_E1000 transport=tcg channel=bogus"
# 'attach' serves no shared page: channel=page cannot load
check channel-page-needs-the-library sh -c "! insmod $KO devices=$BDF_E1000 transport=tcg channel=page verify=0"
check bad-not-loaded sh -c "! loaded"
dmesg | grep 'pviommu:' | tail -n 8 | sed 's/^/dmesg: /'
check after-bad-ifup-e1000 ifup e1000
check after-bad-ifup-virtio ifup virtio
check after-bad-net-e1000 ping1 e1000
check after-bad-net-virtio ping1 virtio
mark bad-done
wait_host >/dev/null

# ---- lazy, both NICs
check insmod-lazy insmod $KO devices=$BDF_E1000,$BDF_VIRTIO_NET transport=tcg mode=lazy lazy_ms=10 lazy_batch=64 verify=0
check lazy-ifup-e1000 ifup e1000
check lazy-ifup-virtio ifup virtio
check lazy-mode [ "$(st mode)" = lazy ]
check lazy-get-e1000 get e1000
check lazy-get-virtio get virtio
sleep 1
dump lazy
value lazy-flushes $(st lazy_flushes)
value lazy-reused $(st lazy_reused)
check lazy-flushed [ $(st lazy_flushes) -gt 0 ]
check lazy-drained [ "$(st lazy_pending)" = 0 ]
check lazy-no-failures [ "$(st failures)" = 0 ]
sync_host lazy
check rmmod-lazy rmmod pviommu
mark lazy-rmmod
wait_host >/dev/null

# ---- all=1
check insmod-all insmod $KO all=1 transport=tcg verify=0
check all-ifup-e1000 ifup e1000
check all-ifup-virtio ifup virtio
dump all
value all-devices "$(grep -c '^device' $S)"
check all-e1000 [ "$(dst $BDF_E1000 protected)" = 1 ]
check all-virtio [ "$(dst $BDF_VIRTIO_NET protected)" = 1 ]
check all-net-e1000 ping1 e1000
check all-net-virtio ping1 virtio
sleep 1
sync_host all
check rmmod-all rmmod pviommu
check all-ifup-e1000-after ifup e1000
check all-net-after ping1 e1000
mark all-rmmod
wait_host >/dev/null
dmesg | grep 'pviommu:' | tail -n 5 | sed 's/^/dmesg: /'
GUEST

# ---- host helpers ----------------------------------------------------------------------------
status() { "$CTL" -j status >"$work/status.json" 2>"$work/status.err"; }
stat_of() { jq -r ".stats.$1" "$work/status.json"; }
dom_devices() {	# devices of domain $QPID, or "none"
	jq -r --argjson p "$QPID" '[.domains[] | select(.pid == $p)][0].devices // "none"' "$work/status.json"
}
maps() { "$CTL" -j mappings --pid "$QPID" >"$work/maps.json" 2>"$work/maps.err"; }
nrec() { jq --arg b "$1" '[.[] | select(.bdf == $b)] | length' "$work/maps.json"; }
nrefs() { jq --arg b "$1" '[.[] | select(.bdf == $b) | .refs] | add // 0' "$work/maps.json"; }
ntotal() { jq 'length' "$work/maps.json"; }
# sync NAME: one quiescent snapshot (see sync_host in the guest): maps.json and status.json are
# read inside it (once the guest gets "next" it moves on, e.g. to rmmod); sets E_REC V_REC (records),
# E_REF V_REF (sum of references) and G_E G_V (guest live mappings)
SYNC=0
sync_guest() {
	local name=$1 pre post tries=0
	while :; do
		SYNC=$((SYNC + 1)); tries=$((tries + 1))
		vm_wait_marker "$name.$SYNC" 120 || return 1
		maps || return 1
		status || return 1
		vm_send go || return 1
		vm_wait_marker "$name.$SYNC.done" 30 || return 1
		pre=$(vm_value "$name.$SYNC.pre"); post=$(vm_value "$name.$SYNC.post")
		if [ "$pre" = "$post" ] || [ $tries -ge 5 ]; then
			vm_send next || return 1
			break
		fi
		echo "info: $name: guest live mappings moved during the snapshot ($pre -> $post): again"
		vm_send again || return 1
	done
	read -r G_E G_V G_MAPS G_UNMAPS <<<"$pre"
	H_MAPS=$(stat_of maps) H_UNMAPS=$(stat_of unmaps)
	E_REC=$(nrec $E1000) V_REC=$(nrec $VIRTIO) E_REF=$(nrefs $E1000) V_REF=$(nrefs $VIRTIO)
	echo "info: $name: host records e1000 $E_REC (refs $E_REF), virtio $V_REC (refs $V_REF);" \
		"guest live e1000 $G_E, virtio $G_V; host stats maps $H_MAPS unmaps $H_UNMAPS," \
		"guest maps $G_MAPS unmaps $G_UNMAPS"
	[ "$pre" = "$post" ]
}
# the host's references = the guest's live mappings, per device, exactly
assert_sync() {
	local n=$1
	if [ "$E_REF" = "${G_E:-x}" ] && [ "$V_REF" = "${G_V:-x}" ]; then ok "$n-host-refs-equal-guest-live"
	else nok "$n-host-refs-equal-guest-live" "host e1000 $E_REF virtio $V_REF, guest e1000 ${G_E:-?} virtio ${G_V:-?}"; fi
}
# the host counted every MAP/UNMAP the guest sent since insmod (host stats since $1 $2)
assert_counts() {
	local n=$1 m=$(($H_MAPS - $2)) u=$(($H_UNMAPS - $3))
	if [ "$m" = "$G_MAPS" ] && [ "$u" = "$G_UNMAPS" ]; then ok "$n-host-stats-equal-guest-counters"
	else nok "$n-host-stats-equal-guest-counters" "host +$m maps +$u unmaps, guest $G_MAPS maps $G_UNMAPS unmaps"; fi
}
assert_gone() {	# the domain is deleted and no mapping of it is left
	local n=$1
	status; maps
	assert "$n-domain-gone" [ "$(dom_devices)" = none ]
	assert "$n-no-mappings" [ "$(ntotal)" = 0 ]
}
both_mapped() { [ "$E_REC" -gt 0 ] && [ "$V_REC" -gt 0 ]; }
abort() { nok "$1" "guest stopped; serial log tail:"; vm_tail 40; finish; }

# ---- boot ----------------------------------------------------------------------------------
tb=$SECONDS
vm_boot --name "$NAME" --script "$work/guest.sh" --file "$KO" --timeout 240 \
	--net e1000 --net "virtio,iommu_platform=on,disable-legacy=on" || { nok "vm-boot"; finish; }
QPID=$(vm_pid)
vm_wait_marker ready 90 || abort "guest-ready"
echo "info: guest ready after $((SECONDS - tb)) s"
if "$CTL" attach --pid "$QPID" >"$work/attach.out" 2>&1; then ok "pviommuctl-attach"; else
	nok "pviommuctl-attach" "$(cat "$work/attach.out")"; finish; fi
status; hc0=$(stat_of hypercalls) m0=$(stat_of maps) u0=$(stat_of unmaps)
vm_send go

# strict: baseline
sync_guest strict-base || abort "strict-base-sync"
assert "strict-domain-2-devices" [ "$(dom_devices)" = 2 ]
assert "strict-hypercalls-arrived" [ "$(stat_of hypercalls)" -gt "$hc0" ]
assert "strict-no-hypercall-errors" [ "$(stat_of hypercall_errors)" = 0 ]
assert "strict-mappings-e1000" [ "$E_REC" -gt 0 ]
assert "strict-mappings-virtio" [ "$V_REC" -gt 0 ]
assert_sync strict-base
assert_counts strict-base "$m0" "$u0"
base_e=$E_REC base_v=$V_REC
maps0=$H_MAPS unmaps0=$H_UNMAPS

# strict: traffic (the record count is sampled while it runs: informative only)
vm_wait_marker traffic-start 30 || abort "traffic-start"
max_e=$base_e max_v=$base_v
while ! vm__grep 'PVIOMMU-VM: MARK traffic-done' >/dev/null && vm__alive; do
	maps && { e=$(nrec $E1000); v=$(nrec $VIRTIO); }
	[ "${e:-0}" -gt $max_e ] && max_e=$e
	[ "${v:-0}" -gt $max_v ] && max_v=$v
	sleep 0.2
done
echo "info: records during traffic: e1000 max $max_e, virtio max $max_v (baseline $base_e, $base_v)"
sync_guest strict-after || abort "strict-after-sync"
dm=$((H_MAPS - maps0)) du=$((H_UNMAPS - unmaps0))
echo "info: host stats from baseline to after traffic: +$dm maps, +$du unmaps; guest maps: e1000 +$(vm_value e1000-maps-traffic), virtio +$(vm_value virtio-maps-traffic)"
assert "strict-traffic-maps-grew (+$dm)" [ $dm -gt 300 ]
assert "strict-traffic-unmaps-grew (+$du)" [ $du -gt 300 ]
assert "strict-no-hypercall-errors-after-traffic" [ "$(stat_of hypercall_errors)" = 0 ]
assert_sync strict-after
assert_counts strict-after "$m0" "$u0"
# strict mode unmaps at once and both drivers refill their rx rings after every poll (e1000
# always, virtio-net up to its refill threshold): the record count is back at the baseline
assert "strict-e1000-back-to-baseline ($base_e -> $E_REC)" [ "$E_REC" = "$base_e" ]
assert "strict-virtio-back-to-baseline ($base_v -> $V_REC)" [ "$V_REC" = "$base_v" ]
vm_wait_marker strict-rmmod 60 || abort "strict-rmmod"
assert_gone strict-rmmod
hc1=$(stat_of hypercalls)
vm_send go

# bad parameters: no hypercall, no domain
vm_wait_marker bad-done 60 || abort "bad-done"
status
assert "bad-params-sent-no-hypercall" [ "$(stat_of hypercalls)" = "$hc1" ]
assert "bad-params-no-domain" [ "$(dom_devices)" = none ]
vm_send go

# lazy
sync_guest lazy || abort "lazy-sync"
assert "lazy-domain-2-devices" [ "$(dom_devices)" = 2 ]
assert "lazy-mappings-both" both_mapped
assert_sync lazy
vm_wait_marker lazy-rmmod 60 || abort "lazy-rmmod"
assert_gone lazy-rmmod
m0=$(stat_of maps) u0=$(stat_of unmaps)
vm_send go

# all=1
sync_guest all || abort "all-sync"
gdev=$(vm_value all-devices)
assert "all-domain-devices-match-guest ($(dom_devices) vs ${gdev:-?})" [ "$(dom_devices)" = "${gdev:-x}" ]
assert "all-mappings-both" both_mapped
assert_sync all
assert_counts all "$m0" "$u0"
vm_wait_marker all-rmmod 60 || abort "all-rmmod"
assert_gone all-rmmod
assert "no-hypercall-errors" [ "$(stat_of hypercall_errors)" = 0 ]
vm_send go

# ---- verdict -----------------------------------------------------------------------------------
rc=0; vm_wait 60 || rc=$?
tr -d '\r' <"$(vm_log)" >"$work/serial.log"
grep -aE 'PVIOMMU-VM: (CHECK FAIL|FAIL|RESULT)' "$work/serial.log" | sed 's/^/guest: /'
read -r gp gf <<<"$(vm_checks)"
assert "guest-result-pass (vm_wait rc=$rc)" [ $rc = 0 ]
gwant=$(grep -c '^check ' "$work/guest.sh")
assert "guest-checks ($gp of $gwant passed, $gf failed)" test "$gp" = "$gwant" -a "$gf" = 0
if "$CTL" unload >"$work/unload.out" 2>&1; then ok "pviommuctl-unload"; else nok "pviommuctl-unload" "$(cat "$work/unload.out")"; fi
assert "pin-dir-removed" [ ! -e "$PVIOMMU_PIN_DIR" ]
echo "info: boot-to-poweroff $(vm_elapsed) s, total $((SECONDS - T0)) s (log: $work/serial.log)"
[ $failed = 0 ] || { echo "---- serial log tail ----"; vm_tail 60; }
finish
