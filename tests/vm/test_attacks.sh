#!/bin/bash
# tests/vm/test_attacks.sh - rogue DMA from QEMU's edu device against each enforcement mode.
# The guest (tests/vm/attacks-guest.sh) loads pviommu.ko (devices = e1000, edu [, virtio-net,
# virtio-blk]) and pvattack.ko, which runs the scenarios (see tests/vm/guest-modules/pvattack.c):
#   legit  allowed round trip through the legit buffer (must always work)
#   a      edu reads a never-mapped secret page           b  edu writes a never-mapped victim page
#   c      edu writes a page mapped for e1000 only        d  65-byte write into a 64-byte buffer
#   e      edu writes a buffer after its (strict) unmap  g  a page after dma_free_pages (alloc_pages path)
#   h      edu writes a device register (MMIO) after dma_unmap_resource (peer-to-peer path)
#   f      virtio-net completes a TX frame on a ring the guest revoked after QEMU set up its
#          MemoryRegionCache (raw UNMAP hypercall; the device's used->idx write is the evidence)
# Modes (a plane that was not built fails the modes that need it):
#   baseline      no enforcement plane (TCG transport attached, mode audit): the attacks work
#                 (proves the test can fail), the policy holds exactly the legit mappings, and
#                 benign e1000/virtio-net/virtio-blk traffic through the protected DMA API works
#   deny-inproc   QEMU under `pviommuctl run --`, mode deny: benign traffic works with zero
#                 violation events; every attack blocked, one event each (bdf, addr, len, dir)
#   audit         mode audit (in-process plane, else uprobe plane): benign traffic raises no
#                 event; the attacks succeed and each raises one (action=allowed)
#   kill-uprobe   uprobe plane (attach --enforce), mode kill: QEMU dies at the first rogue
#                 transfer (a..e, one boot each), the guest never reports a result
#   old-ops       deny-inproc with every protected device (e1000, virtio-net, edu, virtio-blk, nvme)
#                 under pvoldops.ko's DMA ops (another layer's, translating nothing): pviommu.ko
#                 wraps them; benign traffic intact and through them, every attack blocked
#   bridge        edu behind a pci-bridge (guest 01:02.0, same devfn space as bus 0): in-process
#                 deny blocks a and b, uprobe audit reports them, every event names 01:02.0
# Closing line: "attacks: N passed, M failed" (tests/testlib.sh). ATTACK_MODES="baseline deny-inproc ..."
# selects modes (baseline always runs first: the others need its control to pass). Needs root,
# make all guest.
# shellcheck disable=SC2317	# the modes after baseline run by name ("mode_${md//-/_}")
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
export VM_OUT=${VM_OUT:-${OUT:-$SRC/build}}
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/vm/attacks-lib.sh
. "$HERE/attacks-lib.sh"

NAME=attacks
# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"

trap 'atk_cleanup' EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" = 0 ] || { nok "root" "attacks needs root"; finish; }
atk_init || { nok "attacks-lib init"; finish; }
atk_planes

SCEN="a b c d e g h"
declare -A BLOCKED=([a]=not-leaked [b]=unchanged [c]=unchanged [d]=unchanged [e]=unchanged [g]=unchanged
	[h]=unchanged)
declare -A WORKED=([a]=leaked [b]=changed [c]=changed [d]=changed [e]=changed [g]=changed [h]=changed)
declare -A DESC=([a]="read of the secret page" [b]="write of the victim page"
	[c]="write into a buffer mapped for e1000 only" [d]="65-byte write into a 64-byte buffer"
	[e]="write after strict unmap" [g]="write after dma_free_pages"
	[h]="write of a device register after dma_unmap_resource")
# the scenarios whose line has control=: the same transfer allowed while the buffer was mapped
declare -A CONTROL=([g]="the page was writable while allocated" [h]="the register was writable while mapped")

# boot_or_fail MODE ARGS...: boot; on failure one failed test with the serial tail
boot_or_fail() {
	local mode=$1; shift
	if atk_boot "$@"; then return 0; fi
	nok "$mode: boot, insmod pviommu.ko + pvattack.ko" "$(vm_tail 15 | tr '\n' '|')"
	vm_kill; atk_events_stop
	return 1
}

# scenarios MODE EXPECT(BLOCKED|WORKED) EVENT_ACTION(or "" = no event check)
scenarios() {
	local mode=$1 want=$2 act=$3 s line res addr len dir n
	line=$(atk_run legit)
	is "$mode: legit round trip still works" ok "$(atk_field "$line" result)"
	[ -z "$act" ] || is "$mode: legit transfer raised no event" 0 "$(atk_violations "$BDF_EDU")"
	for s in $SCEN; do
		line=$(atk_run "$s")
		res=$(atk_field "$line" result)
		echo "  $mode $s: $line"
		if [ "$want" = BLOCKED ]; then
			is "$mode: $s ${DESC[$s]}: ${BLOCKED[$s]}" "${BLOCKED[$s]}" "$res"
		else
			is "$mode: $s ${DESC[$s]}: ${WORKED[$s]}" "${WORKED[$s]}" "$res"
		fi
		[ "$s" = d ] && is "$mode: d the 64 mapped bytes stay writable" ok "$(atk_field "$line" control64)"
		[ -n "${CONTROL[$s]:-}" ] && is "$mode: $s ${CONTROL[$s]}" ok "$(atk_field "$line" control)"
		[ -n "$act" ] || continue
		addr=$(atk_field "$line" addr) len=$(atk_field "$line" len) dir=$(atk_field "$line" dir)
		sleep 0.5
		n=$(atk_violations "$BDF_EDU" "$addr" "$len" "$dir" "$act")
		if [ "$n" -ge 1 ]; then ok "$mode: $s event $BDF_EDU addr=$addr len=$len $dir action=$act"
		else nok "$mode: $s event $BDF_EDU addr=$addr len=$len $dir action=$act" \
			"none in $(tail -n 3 "$ATK_EV" | tr '\n' ' ')"; fi
	done
	if [ -n "$act" ]; then
		is "$mode: no violation event for any other device" 0 \
			"$(atk__viol | awk -v b="$BDF_EDU" '$1 != b' | wc -l)"
	fi
}

# ring_f MODE WANT(changed|unchanged) EVENT_ACTION(or ""): scenario f, last in a boot (it
# breaks virtio-net); the event check counts virtio-net's violations overlapping the ring
ring_f() {
	local mode=$1 want=$2 act=$3 line addr len n
	line=$(atk_run f)
	echo "  $mode f: $line"
	is "$mode: f virtio TX ring revoked under a live MemoryRegionCache: $want" \
		"$want" "$(atk_field "$line" result)"
	[ -n "$act" ] || return 0
	addr=$(atk_field "$line" addr) len=$(atk_field "$line" len)
	sleep 0.5
	n=$(atk_violations "$BDF_VIRTIO_NET" "${addr:-0}" "${len:-1}" "" "$act")
	if [ "$n" -ge 1 ]; then ok "$mode: f event $BDF_VIRTIO_NET inside the ring ($addr, $len) action=$act"
	else nok "$mode: f event $BDF_VIRTIO_NET inside the ring action=$act" \
		"none in $(tail -n 3 "$ATK_EV" | tr '\n' ' ')"; fi
	atk_event_lines "$BDF_VIRTIO_NET" "${addr:-0}" "${len:-1}" | head -n 3 | sed "s/^/  $mode f event: /"
}

# benign MODE CHECK_EVENTS(0/1): e1000 + virtio-net TCP, virtio-blk read-back
benign() {
	local mode=$1 ev=$2 p f
	read -r p0 f0 <<<"$(vm_checks)"
	if ! atk_benign; then nok "$mode: benign workload finished" "$(vm_tail 10 | tr '\n' '|')"; return; fi
	read -r p f <<<"$(vm_checks)"
	if [ $((f - f0)) = 0 ] && [ $((p - p0)) -ge 3 ]; then
		ok "$mode: benign e1000 TCP, virtio-net TCP, virtio-blk write/read-back intact"
	else
		nok "$mode: benign workload" "$(vm__grep 'CHECK FAIL|fetch|read-back' | tail -n 5 | tr '\n' '|')"
	fi
	if [ "$ev" = 1 ]; then
		sleep 0.5
		is "$mode: benign traffic raised zero violation events" 0 "$(atk_violations)"
	fi
}

guest_finished() {  # guest_finished MODE
	local rc=0
	atk_finish || rc=$?
	if [ $rc = 0 ]; then ok "$1: guest finished cleanly ($(vm_elapsed) s)"
	else nok "$1: guest finished cleanly" "rc $rc; $(vm_tail 8 | tr '\n' '|')"; fi
}

mode_baseline() {
	local m=baseline line legit secret stale maps
	atk_load audit || { nok "$m: pviommuctl load"; return; }
	boot_or_fail $m baseline none --benign || return
	benign $m 0
	legit=$(atk_field "$ATK_INFO" legit) secret=$(atk_field "$ATK_INFO" secret)
	maps=$("$CTL" -j mappings --pid "$ATK_PID" --bdf "$BDF_EDU" 2>&1)
	if grep -q "\"iova\":$((legit)),\"size\":4096,\"perm\":\"rw\"" <<<"$maps"; then
		ok "$m: policy holds the legit buffer ($legit, 4096, rw) for edu"
	else nok "$m: policy holds the legit buffer" "$legit not in $maps"; fi
	if awk -v s=$((secret)) 'BEGIN { RS = "{" } /"iova":/ { match($0, /"iova":[0-9]+/); i = substr($0, RSTART + 7, RLENGTH - 7) + 0;
		match($0, /"size":[0-9]+/); z = substr($0, RSTART + 7, RLENGTH - 7) + 0; if (i < s + 4096 && i + z > s) f = 1 }
		END { exit !f }' <<<"$maps"; then nok "$m: secret page not in the policy" "$maps"
	else ok "$m: secret page ($secret) is in no edu mapping"; fi
	scenarios $m WORKED ""
	ring_f $m changed ""
	stale=$(atk_field "$ATK_INFO" stale)
	maps=$("$CTL" -j mappings --pid "$ATK_PID" --bdf "$BDF_EDU" 2>&1)
	if grep -q "\"iova\":$((stale))," <<<"$maps"; then nok "$m: unmapped buffer left the policy" "$maps"
	else ok "$m: the unmapped buffer ($stale) left the policy"; fi
	value_n=$(atk_violations)
	# no enforcement plane: nothing checks a transfer, so nothing may report one
	is "$m: no violation event without a plane" 0 "$value_n"
	guest_finished $m
}

mode_deny_inproc() {
	local m=deny-inproc
	[ "$ATK_INPROC" = 1 ] || { nok "$m" "in-process plane missing ($ATK_INPROC_WHY)"; return; }
	atk_load deny || { nok "$m: pviommuctl load"; return; }
	boot_or_fail $m deny inproc --benign || return
	benign $m 1
	scenarios $m BLOCKED denied
	ring_f $m unchanged denied
	guest_finished $m
}

mode_audit() {
	local m=audit plane=inproc
	if [ "$ATK_INPROC" != 1 ]; then
		[ "$ATK_UPROBE" = 1 ] || { nok "$m" "no enforcement plane (in-process: $ATK_INPROC_WHY; uprobe: $ATK_UPROBE_WHY)"; return; }
		plane=uprobe
	fi
	m="audit-$plane"
	atk_load audit || { nok "$m: pviommuctl load"; return; }
	boot_or_fail $m audit $plane --benign || return
	benign $m 1
	scenarios $m WORKED allowed
	ring_f $m changed allowed
	guest_finished $m
}

# guest RAM left behind by a killed QEMU (memory-backend-file): check one range.
# ram_pattern FILE FROM LEN SEED BASE: 0 if byte i of the range is pvattack.c's pat(SEED,
# BASE + i) = SEED + 7 * (BASE + i) (mod 256); fill(page, SEED) put pat(SEED, offset in page)
# at every byte of a page, so BASE = FROM's offset in its page checks bytes fill() wrote
ram_pattern() {
	python3 - "$@" <<'PY'
import sys
f, start, n, seed, base = (sys.argv[1],) + tuple(int(a, 0) for a in sys.argv[2:6])
with open(f, 'rb') as fh:
    fh.seek(start)
    got = fh.read(n)
sys.exit(0 if got == bytes((seed + (base + i) * 7) & 0xff for i in range(n)) else 1)
PY
}

mode_kill_uprobe() {
	local m=kill-uprobe s line addr len dir n t ram
	[ "$ATK_UPROBE" = 1 ] || { nok "$m" "uprobe enforcement missing ($ATK_UPROBE_WHY)"; return; }
	for s in ${KILL_SCENARIOS:-a b c d e}; do
		atk_load kill || { nok "$m: pviommuctl load"; return; }
		# guest RAM in a shared file: it outlives QEMU, so the host can read what the
		# rogue transfer would have changed
		ram=/dev/shm/pviommu-atk-$$-$s
		VM_QEMU_EXTRA="-object memory-backend-file,id=pvram,size=512M,mem-path=$ram,share=on -machine memory-backend=pvram" \
			boot_or_fail "$m $s" "kill-$s" uprobe || { rm -f "$ram"; continue; }
		line=$(atk_run legit)
		is "$m $s: legit round trip works (no kill)" ok "$(atk_field "$line" result)"
		vm_send "run $s"
		for t in $(seq 1 100); do vm__alive || break; sleep 0.2; done
		if vm__alive; then nok "$m $s: QEMU killed at the rogue transfer" "still alive after 20 s"
		else ok "$m $s: QEMU killed at the rogue transfer"; fi
		line=$(vm__grep "PVATTACK start scenario=$s " | tail -n1 | sed 's/.*PVATTACK/PVATTACK/')
		addr=$(atk_field "$line" addr) len=$(atk_field "$line" len) dir=$(atk_field "$line" dir)
		[ -n "$addr" ] && ok "$m $s: guest started the transfer (addr $addr)" || nok "$m $s: guest started the transfer"
		if vm__grep "PVATTACK scenario=$s result" >/dev/null; then
			nok "$m $s: the transfer never completed" "$(vm__grep "PVATTACK scenario=$s result")"
		else ok "$m $s: the transfer never completed (no result line)"; fi
		vm_wait 30 >/dev/null 2>&1
		atk_events_stop
		n=$(atk_violations "$BDF_EDU" "${addr:-0}" "${len:-1}" "$dir" killed)
		[ "$n" -ge 1 ] && ok "$m $s: event action=killed for $BDF_EDU" ||
			nok "$m $s: event action=killed" "$(tail -n 3 "$ATK_EV" | tr '\n' ' ')"
		# what the dead guest's RAM says
		local seed="" from=${addr:-0} cnt=${len:-0} legit
		case $s in
		b) seed=0x76 ;;				# victim page
		c) seed=0x3c ;;				# the other device's buffer
		d) seed=0x48 from=$((addr + 64)) cnt=1 ;;	# the byte past the 64-byte buffer
		e) seed=0xc3 ;;				# the buffer unmapped before
		esac
		if [ -n "$addr" ] && [ -s "$ram" ]; then
			if [ -n "$seed" ]; then
				ram_pattern "$ram" "$from" "$cnt" "$seed" $((from & 0xfff)) &&
					ok "$m $s: guest RAM after the kill: the target bytes are unchanged" ||
					nok "$m $s: guest RAM after the kill: the target bytes are unchanged"
			else
				legit=$(atk_field "$ATK_INFO" legit)
				! ram_pattern "$ram" "$legit" 2048 0x5e 0 &&
					ok "$m $s: guest RAM after the kill: the secret is not in edu's buffer" ||
					nok "$m $s: guest RAM after the kill: the secret is not in edu's buffer"
			fi
		else
			nok "$m $s: guest RAM file readable after the kill" "$ram"
		fi
		rm -f "$ram"
	done
}

# devices behind a bridge: the bus number comes from the bridge (qemu_layout.h).
# bridge_one NAME MODE PLANE(inproc|uprobe) WANT ACTION
bridge_one() {
	local m=$1 have why
	if [ "$3" = inproc ]; then have=$ATK_INPROC why=$ATK_INPROC_WHY
	else have=$ATK_UPROBE why=$ATK_UPROBE_WHY; fi
	[ "$have" = 1 ] || { nok "$m" "$3 plane missing ($why)"; return; }
	atk_load "$2" || { nok "$m: pviommuctl load"; return; }
	ATK_BRIDGE=1 boot_or_fail "$m" "$m" "$3" || return
	scenarios "$m" "$4" "$5"
	guest_finished "$m"
}
mode_old_ops() {
	local m=old-ops c0 c1 s0 s1 maps legit
	[ "$ATK_INPROC" = 1 ] || { nok "$m" "in-process plane missing ($ATK_INPROC_WHY)"; return; }
	atk_load deny || { nok "$m: pviommuctl load"; return; }
	ATK_OLDOPS=1 ATK_NVME=1 boot_or_fail $m deny inproc --benign || return
	read -r c0 s0 <<<"$(vm_value oldops-calls)"
	assert "$m: the devices run under pvoldops.ko's ops ($c0 calls by insmod pvattack.ko)" \
		[ "${c0:-0}" -gt 0 ]
	legit=$(atk_field "$ATK_INFO" legit)
	maps=$("$CTL" -j mappings --pid "$ATK_PID" --bdf "$BDF_EDU" 2>&1)
	if grep -q "\"iova\":$((legit)),\"size\":4096,\"perm\":\"rw\"" <<<"$maps"; then
		ok "$m: edu's coherent buffer, allocated by the other ops, is in the policy ($legit)"
	else nok "$m: edu's coherent buffer in the policy" "$legit not in $maps"; fi
	benign $m 1
	assert "$m: nvme write/read-back intact" eval "vm__grep 'CHECK PASS benign-nvme' >/dev/null"
	vm_send oldops && vm_wait_marker oldops-done 30
	read -r c1 s1 <<<"$(vm_value oldops-calls)"
	assert "$m: the benign traffic went through them ($c0 -> $c1 calls)" [ "${c1:-0}" -gt "${c0:-0}" ]
	assert "$m: nvme's scatterlists too (map_sg: $s0 -> $s1 calls)" [ "${s1:-0}" -gt "${s0:-0}" ]
	scenarios $m BLOCKED denied
	guest_finished $m
}

mode_bridge() {
	local SCEN="a b" BDF_EDU=0000:01:02.0
	bridge_one bridge-deny-inproc deny inproc BLOCKED denied
	bridge_one bridge-audit-uprobe audit uprobe WORKED allowed
}

modes=${ATTACK_MODES:-baseline deny-inproc audit kill-uprobe old-ops bridge}
# the control runs first, always: an attack "blocked" means something only where the same attack
# works without pviommu (ATTACK_MODES without baseline still gets it)
case " $modes " in *" baseline "*) modes="baseline ${modes//baseline/}" ;; *) modes="baseline $modes" ;; esac
BASELINE_OK=0
for md in $modes; do
	echo "--- $md"
	if [ "$md" = baseline ]; then
		f0=$failed
		mode_baseline
		[ "$failed" = "$f0" ] && BASELINE_OK=1
	elif [ $BASELINE_OK = 1 ]; then
		"mode_${md//-/_}"
	else
		nok "$md: not run" "the baseline control failed: a blocked attack would prove nothing"
	fi
done
echo "attacks: $ATK_BOOTS boots, $(atk_elapsed) s wall (in-process plane: $([ "$ATK_INPROC" = 1 ] && echo yes || echo no), uprobe enforcement: $([ "$ATK_UPROBE" = 1 ] && echo yes || echo no))"
finish
