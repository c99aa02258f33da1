#!/bin/bash
# scripts/demo.sh - `make demo`: pviommu end to end on the default test guest (QEMU TCG).
# Boots a guest with QEMU's edu DMA device and an e1000 NIC, loads pviommu on the host, loads
# pviommu.ko in the guest (edu and e1000 protected), runs a short benign workload (TCP downloads
# from the host), then a rogue DMA: edu reads a secret page and writes a victim page, neither of
# which the guest ever mapped for it. Prints what was blocked and the evidence.
# Plane: the in-process plane (`pviommuctl run --`, mode deny) when pviommuctl has it, otherwise
# the uprobe plane (`pviommuctl attach --enforce`, mode kill: QEMU is stopped before the rogue
# transfer; one boot per attack). Exit 0 only if both attacks were blocked.
# Needs root and `make all guest` (make demo does it). OUT=build dir (default ./build).
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
export VM_OUT=${VM_OUT:-${OUT:-$SRC/build}}
# shellcheck source=tests/vm/lib.sh
. "$SRC/tests/vm/lib.sh"
# shellcheck source=tests/vm/attacks-lib.sh
. "$SRC/tests/vm/attacks-lib.sh"

say()  { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
trap 'atk_cleanup' EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" = 0 ] || { say "demo: needs root (BPF programs, VMs)"; exit 2; }
ATK_WORK=$VM_OUT/vm/demo.host
atk_init || exit 2
atk_planes

if [ "$ATK_INPROC" = 1 ]; then
	plane=inproc mode=deny
	plane_txt="in-process plane: QEMU started as '$ATK_WRAP qemu-system-x86_64 ...', mode deny (the rogue transfer fails like an IOMMU fault, the VM keeps running)"
elif [ "$ATK_UPROBE" = 1 ]; then
	plane=uprobe mode=kill
	plane_txt="uprobe plane: 'pviommuctl ${ATK_UPROBE_CMD}' on a running QEMU, mode kill (the in-process plane is not available: $ATK_INPROC_WHY; a uprobe cannot make a transfer fail on this kernel, so QEMU is stopped with SIGKILL before the rogue transfer runs, like a machine check)"
else
	plane=none mode=audit
	plane_txt="NO enforcement plane is available (in-process: $ATK_INPROC_WHY; uprobe: $ATK_UPROBE_WHY): the attacks will run unopposed"
fi
say "pviommu demo"
say "plane: $plane_txt"
say "pin dir: $PVIOMMU_PIN_DIR (private to this run)"

# boot NAME: load + mode, boot, benign workload; prints the policy the guest set up
boot() {
	atk_load $mode || { say "demo: pviommuctl load failed"; exit 1; }
	step "boot a guest (edu at $BDF_EDU, e1000 at $BDF_E1000) and load pviommu.ko (devices=$BDF_E1000,$BDF_EDU transport=tcg)"
	if ! atk_boot "demo-$1" "$plane"; then
		say "demo: the guest did not come up; last console lines:"; vm_tail 15; exit 1
	fi
	say "QEMU pid $ATK_PID ($(vm_elapsed_now) s); guest buffers: ${ATK_INFO#PVATTACK info }"
	say "policy for edu (pviommuctl mappings --bdf $BDF_EDU):"
	"$CTL" mappings --pid "$ATK_PID" --bdf $BDF_EDU | sed 's/^/  /'
	say "e1000 live mappings: $("$CTL" -j mappings --pid "$ATK_PID" --bdf $BDF_E1000 | grep -o '"iova"' | wc -l)"
	step "benign workload: TCP downloads from the host through the protected e1000"
	if atk_benign && vm__grep 'CHECK PASS benign-e1000-tcp' >/dev/null; then
		say "e1000 TCP download (1 MB, checksum verified): ok"
	else
		say "e1000 TCP download FAILED"; benign_ok=0
	fi
	sleep 0.5
	say "violation events during the benign workload: $(atk_violations)"
	[ "$(atk_violations)" = 0 ] || benign_ok=0
}
vm_elapsed_now() { awk -v a="$(cat "$(vm_dir)/start")" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# show_event SCENARIO ADDR LEN: print the event pviommuctl reported for the rogue range
show_event() {
	local ev
	sleep 0.7
	if ev=$(atk_event_json $BDF_EDU "$2" "$3"); then
		say "pviommuctl events: $(atk_event_text "$ev")"
		return 0
	fi
	say "pviommuctl events: NO event for $BDF_EDU at $2 (+$3)"
	return 1
}

benign_ok=1 blocked=0 total=2
if [ $plane = inproc ] || [ $plane = none ]; then
	boot main
	line=$(atk_run legit)
	say "control: a legitimate edu round trip through its mapped buffer: $(atk_field "$line" result)"

	step "attack a: edu reads the secret page (never mapped for any device), then copies what it got into its legit buffer"
	line=$(atk_run a)
	addr=$(atk_field "$line" addr) len=$(atk_field "$line" len) res=$(atk_field "$line" result)
	say "guest: $line"
	ev_ok=0; show_event a "$addr" "$len" && ev_ok=1
	if [ "$res" = not-leaked ]; then
		say "=> BLOCKED: the secret stayed secret (edu's buffer still held the filler the guest put there; the secret pattern never reached it)"
		[ $ev_ok = 1 ] && blocked=$((blocked + 1))
	else
		say "=> NOT BLOCKED: the secret page's content reached edu ($res)"
	fi

	step "attack b: edu writes an attack pattern over the victim page (never mapped)"
	line=$(atk_run b)
	addr=$(atk_field "$line" addr) len=$(atk_field "$line" len) res=$(atk_field "$line" result)
	say "guest: $line"
	ev_ok=0; show_event b "$addr" "$len" && ev_ok=1
	if [ "$res" = unchanged ]; then
		say "=> BLOCKED: the victim page is unchanged, byte for byte"
		[ $ev_ok = 1 ] && blocked=$((blocked + 1))
	else
		say "=> NOT BLOCKED: the victim page was overwritten ($res)"
	fi
	line=$(atk_run legit)
	say "control: the legitimate round trip after the attacks: $(atk_field "$line" result)"
	[ "$(atk_field "$line" result)" = ok ] || benign_ok=0
	atk_finish >/dev/null 2>&1 || { say "demo: the guest did not finish cleanly"; benign_ok=0; }
else
	for s in a b; do
		boot "$s"
		line=$(atk_run legit)
		say "control: a legitimate edu round trip through its mapped buffer: $(atk_field "$line" result) (QEMU still running)"
		if [ $s = a ]; then
			step "attack a: edu reads the secret page (never mapped for any device)"
		else
			step "attack b: edu writes an attack pattern over the victim page (never mapped)"
		fi
		vm_send "run $s"
		for _ in $(seq 1 100); do vm__alive || break; sleep 0.2; done
		start=$(vm__grep "PVATTACK start scenario=$s " | tail -n1 | sed 's/.*PVATTACK/PVATTACK/')
		addr=$(atk_field "$start" addr) len=$(atk_field "$start" len)
		say "guest: $start"
		if vm__alive; then
			say "=> NOT BLOCKED: QEMU is still running 20 s after the rogue DMA was started"
			vm_kill; atk_events_stop; continue
		fi
		vm_wait 30 >/dev/null 2>&1
		atk_events_stop
		ev_ok=0; show_event $s "${addr:-0}" "${len:-1}" && ev_ok=1
		if vm__grep "PVATTACK scenario=$s result" >/dev/null; then
			say "=> NOT BLOCKED: the transfer completed: $(vm__grep "PVATTACK scenario=$s result")"
		elif [ $ev_ok = 1 ]; then
			if [ $s = a ]; then
				say "=> BLOCKED (fail-stop): QEMU was killed before the read ran; the secret never left guest memory"
			else
				say "=> BLOCKED (fail-stop): QEMU was killed before the write ran; the victim page was never written"
			fi
			blocked=$((blocked + 1))
		else
			say "=> UNCLEAR: QEMU died but pviommu reported no kill for this transfer"
		fi
	done
fi

step "summary"
say "plane: $plane ($mode)"
say "attacks blocked: $blocked of $total; benign traffic: $([ $benign_ok = 1 ] && echo ok, no violation events || echo PROBLEM)"
say "wall time: $(atk_elapsed) s, $ATK_BOOTS guest boot(s)"
[ $plane != none ] && [ $blocked = $total ] && [ $benign_ok = 1 ]
