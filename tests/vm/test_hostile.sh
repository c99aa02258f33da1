#!/bin/bash
# test_hostile.sh - one VM can never weaken another: a hostile guest beside a protected one.
#
# Two TCG guests (-smp 1) at the same time, both QEMUs under 'pviommuctl run --mode deny --' of
# one 'pviommuctl load' (default quotas):
#   VM1 (hostile)  no pviommu.ko; pvhostile.ko (tests/vm/guest-modules/pvhostile.c) makes raw
#                  hypercalls in rounds, from boot until the host says stop: DEV_ADD floods of
#                  fake devices, MAPs of all of RAM and beyond (2^44 bytes, wrapping past 2^64,
#                  zero size), small MAPs until refused, MAPs of halving sizes that take what
#                  they can of the shared index and hold it, REGISTER/UNREGISTER loops, unknown op
#                  codes, wrong ABI versions, bad perm bits, garbage in every register, UNMAPs
#                  of what was never mapped or with the wrong size, and MAP/UNMAP/DEV_DEL on
#                  the other VM's device numbers. It counts what the host answered per phase.
#   VM2 (benign)   pviommu.ko protecting e1000 00:04.0 and edu 00:06.0 (tests/vm/attacks-guest.sh,
#                  pvattack.ko): insmod (REGISTER and DEV_ADD must be acknowledged), a download
#                  through the protected e1000 with its checksum, the edu attacks a b d e and
#                  the legit round trip, a second download - all while VM1 hammers (the VM1
#                  counters are printed next to each VM2 step).
# Asserts: VM2: every attack blocked and named by its violation event, legit ok, downloads
# intact, no refused hypercall (guest and host side), no violation but the attacks', its
# domain registered and not failed closed, its events never limited. VM1: refusals > 0, as
# many counted by the host, every call acknowledged, no malformed call accepted, the events
# of its calls limited; its final state is printed (it ends failed closed by design: the
# last phase of a round is a wrong-ABI UNMAP). Host: no lost event, no failed-closed event
# claiming an inconsistent index, status works, nothing of either domain left in the index
# after both VMs exit.
# HOSTILE_LOAD_ARGS: extra 'pviommuctl load' words (e.g. --quota records=1000000000,pages=1000000000
# to see the test fail without quotas); HOSTILE_ARGS: pvhostile.ko parameters, comma-separated (e.g.
# loops=300 for a REGISTER storm).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=$VM_OUT/guest-module/pviommu.ko
HOSTILE_KO=$VM_OUT/guest-attack/pvhostile.ko
NAME=hostile

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "$CTL" "$VM_OUT/libpviommu-qemu.so" "$KO" "$HOSTILE_KO" "$VM_OUT/guest-attack/pvattack.ko" \
	"$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds python3 busybox
vm_host_init hostile
T0=$SECONDS

# the edu attacks' host side (httpd with a blob, event reader); its cleanup stops them
ATK_WORK=$work/atk
# shellcheck source=tests/vm/attacks-lib.sh
. "$HERE/attacks-lib.sh"
trap 'atk_cleanup' EXIT
atk_init || { nok "attacks-lib init"; finish; }

# shellcheck disable=SC2086
if "$CTL" load ${HOSTILE_LOAD_ARGS:-} >"$work/load.out" 2>&1 && "$CTL" mode deny >/dev/null; then
	ok "pviommuctl-load"
else
	nok "pviommuctl-load" "$(cat "$work/load.out")"; finish
fi
export VM_QEMU_WRAPPER="$CTL run --mode deny --"

cat >"$work/hostile.sh" <<'GUEST'
. /lib/pviommu-vm.sh
H=/sys/kernel/debug/pvhostile
mount -t debugfs none /sys/kernel/debug 2>/dev/null
# shellcheck disable=SC2046
check insmod-pvhostile insmod /test/pvhostile.ko $(karg hargs | tr , ' ') || fail "insmod pvhostile.ko: $(dmesg | tail -n 3)"
mark armed
# rounds until the host says stop; the running totals twice a second
(
	while [ ! -e /tmp/stop ]; do
		echo round >$H/run || { value round-failed "$?"; break; }
	done
) &
hammer=$!
(
	while [ ! -e /tmp/stop ]; do
		value progress "$(cat $H/total)"
		usleep 500000
	done
) &
sampler=$!
mark hammering
cmd=$(wait_host)
[ "$cmd" = stop ] || echo "hostile: expected 'stop', got '$cmd'"
: >/tmp/stop
wait $hammer $sampler
while read -r l; do
	p=${l#PVHOSTILE phase=}; p=${p%% *}
	value "stat-$p" "$l"
done <$H/stats
value total "$(cat $H/total)"
mark done
wait_host >/dev/null
GUEST

# okif STATUS NAME: one result from the status of the conditions just before
okif() { if [ "$1" = 0 ]; then ok "$2"; else nok "$2"; fi; }
# marks NAME: how many times the current VM printed marker NAME
marks() { vm__grep "PVIOMMU-VM: MARK $(vm__re "$1")[[:space:]]*\$" | wc -l; }
# after_mark NAME N SEC: wait until marker NAME was printed more than N times
after_mark() {
	for _ in $(seq 1 $(($3 * 10))); do
		[ "$(marks "$1")" -gt "$2" ] && return 0
		vm__alive || { [ "$(marks "$1")" -gt "$2" ]; return; }
		sleep 0.1
	done
	return 1
}
# scn S: run scenario S of pvattack.ko in VM2 (again: the markers repeat), print its result line
scn() {
	local n
	n=$(marks "done-$1")
	vm_send "run $1" || return 1
	after_mark "done-$1" "$n" 60 || return 1
	vm_value "result-$1"
}
# field KEY LINE: the value of KEY= in LINE
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n1; }
# v1: VM1's running totals (its last "progress" line): "rounds calls refused"
v1() {
	local l
	l=$(VM_CUR=hostile vm_value progress)
	echo "$(field rounds "$l") $(field calls "$l") $(field refused "$l")"
}
v1_calls() { local r c f; read -r r c f <<<"$(v1)"; echo "${c:-0}"; }
# dom PID: "state failed_closed records quota_refused" from pviommuctl status
dom() {
	"$CTL" -j status | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["domains"] if x["pid"] == int(sys.argv[1])]
print("%s %s %s %s" % (d[0]["state"], str(d[0]["failed_closed"]).lower(), d[0]["records"],
	d[0]["quota_refused"]) if d else "none - 0 0")' "$1"
}
stat_of() {
	"$CTL" -j status | python3 -c 'import json,sys; j=json.load(sys.stdin)
print(j["stats"][sys.argv[1]] if sys.argv[1] in j["stats"] else j[sys.argv[1]])' "$1"
}
# timeline: t=+S since the start, the VM2 step, VM1's counters at that moment
step() {
	local r c f
	read -r r c f <<<"$(v1)"
	printf 'info: t=+%3ds  %-34s VM1: %s rounds, %s hypercalls, %s refused\n' \
		$((SECONDS - T0)) "$1" "${r:-0}" "${c:-0}" "${f:-0}"
}

drop0=$(stat_of events_dropped) err0=$(stat_of hypercall_errors)
atk_events_start hostile

# VM1 first, VM2 right after: both boot at once
if ! vm_boot --name hostile --script "$work/hostile.sh" --file "$HOSTILE_KO" --smp 1 --mem 512 \
	--timeout 300 --append "pviommu.hargs=${HOSTILE_ARGS:-}"; then
	nok "vm1-boot"; finish
fi
P1=$(vm_pid)
if ! vm_boot --name benign --script "$HERE/attacks-guest.sh" --file "$KO" \
	--file "$ATK_ATTACK_KO" --edu --net e1000 --smp 1 --timeout 300 \
	--append "pviommu.devices=$BDF_E1000,$BDF_EDU pviommu.edu=$BDF_EDU pviommu.port=$ATK_PORT pviommu.blobsum=$ATK_BLOBSUM"; then
	nok "vm2-boot"; finish
fi
P2=$(vm_pid) ATK_PID=$P2
echo "info: VM1 (hostile) QEMU pid $P1, VM2 (benign) QEMU pid $P2"

vm_use hostile
if ! vm_wait_marker hammering 150; then
	nok "vm1-hammering" "$(vm_tail 10 | tr '\n' '|')"; finish
fi
# VM1 hammers before VM2 registers
for _ in $(seq 1 600); do
	[ "$(v1_calls)" -gt 0 ] && break
	sleep 0.1
done
assert "vm1-hammering-before-vm2-registers ($(v1_calls) hypercalls)" [ "$(v1_calls)" -gt 0 ]
vm_use benign
vm_wait_marker ready 150 || { nok "vm2-ready" "$(vm_tail 10 | tr '\n' '|')"; finish; }
step "VM2 booted, sends insmod"
c_go=$(v1_calls) t_go=$SECONDS
vm_send go
if vm_wait_marker armed 180; then
	ok "vm2-insmod-pviommu-acknowledged-under-the-flood"
else
	nok "vm2-insmod-pviommu-acknowledged-under-the-flood" "$(vm_tail 15 | tr '\n' '|')"; finish
fi
step "VM2 pviommu.ko + pvattack.ko in"

# VM2's workload, VM1's counters after each step
declare -A BLOCKED=([a]=not-leaked [b]=unchanged [d]=unchanged [e]=unchanged)
declare -A DESC=([a]="edu reads a never-mapped secret" [b]="edu writes a never-mapped victim"
	[d]="65-byte write into a 64-byte buffer" [e]="write after strict unmap")
declare -A RANGE=()
blocked=0 legit_ok=0 benign_ok=0
benign_run() {
	local p0 f0 p f n
	read -r p0 f0 <<<"$(vm_checks)"
	n=$(marks benign-done)
	if vm_send benign && after_mark benign-done "$n" 180; then
		read -r p f <<<"$(vm_checks)"
		if [ $((f - f0)) = 0 ] && [ $((p - p0)) -ge 1 ]; then
			benign_ok=$((benign_ok + 1)); ok "vm2-download-intact-$1 (md5 checked in the guest)"
		else
			nok "vm2-download-intact-$1" "$(vm__grep 'CHECK FAIL|fetch' | tail -n 3 | tr '\n' '|')"
		fi
	else
		nok "vm2-download-$1-finished" "$(vm_tail 10 | tr '\n' '|')"
	fi
	step "VM2 download $1 done"
}
legit_run() {
	local line
	line=$(scn legit)
	if [ "$(atk_field "$line" result)" = ok ]; then legit_ok=$((legit_ok + 1)); ok "vm2-legit-$1-ok"
	else nok "vm2-legit-$1-ok" "$line"; fi
	step "VM2 legit $1: $(atk_field "$line" result)"
}
benign_run 1
legit_run 1
for s in a b d e; do
	line=$(scn "$s")
	res=$(atk_field "$line" result)
	RANGE[$s]="$(atk_field "$line" addr) $(atk_field "$line" len) $(atk_field "$line" dir)"
	if [ "$res" = "${BLOCKED[$s]}" ]; then
		blocked=$((blocked + 1)); ok "vm2-attack-$s ${DESC[$s]}: $res"
	else
		nok "vm2-attack-$s ${DESC[$s]}: ${BLOCKED[$s]}" "got '$res' ($line)"
	fi
	[ "$s" = d ] && assert "vm2-attack-d the 64 mapped bytes stay writable" \
		[ "$(atk_field "$line" control64)" = ok ]
	step "VM2 attack $s: $res"
done
legit_run 2
benign_run 2
c_end=$(v1_calls) t_end=$SECONDS
# and still after VM2's last step
for _ in $(seq 1 600); do
	[ "$(v1_calls)" -gt "$c_end" ] && break
	sleep 0.1
done
[ "$c_end" -gt "$c_go" ] && [ "$(v1_calls)" -gt "$c_end" ]
okif $? "vm1-hammered-throughout ($((c_end - c_go)) hypercalls during VM2's $((t_end - t_go)) s of insmod, downloads and attacks, more after them)"

# stop VM1, collect its figures
vm_use hostile
vm_send stop
vm_wait_marker "done" 120 || nok "vm1-stopped" "$(vm_tail 10 | tr '\n' '|')"
read -r st2 fc2 rec2 qr2 <<<"$(dom "$P2")"
read -r st1 fc1 rec1 _ <<<"$(dom "$P1")"
"$CTL" status >"$work/status-both.txt" 2>&1
assert "status-works-with-both-vms ($(grep -c . "$work/status-both.txt") lines)" [ -s "$work/status-both.txt" ]
[ "$st2" = registered ] && [ "$fc2" = false ] && [ "$qr2" = 0 ]
okif $? "vm2-domain-registered-not-failed ($st2, failed_closed=$fc2, $rec2 records, quota refusals $qr2)"
tot=$(vm_value total)
calls=$(field calls "$tot") acked=$(field acked "$tot") refused=$(field refused "$tot")
noack=$(field noack "$tot") wrong=$(field wrong "$tot") rounds=$(field rounds "$tot")
assert "vm1-got-refusals ($refused of $calls)" [ "${refused:-0}" -gt 0 ]
[ "${noack:-1}" = 0 ] && [ "${acked:-0}" = "${calls:--1}" ]
okif $? "vm1-every-call-acknowledged ($acked of $calls, noack $noack)"
assert "vm1-no-malformed-call-accepted (wrong $wrong)" [ "${wrong:-1}" = 0 ]
vm_send end
rc1=0; vm_wait 60 || rc1=$?
assert "vm1-guest-finished-cleanly (rc $rc1, no oops)" [ $rc1 = 0 ]

# VM2 ends; then the events
vm_use benign
atk_finish; rc2=$?
assert "vm2-guest-finished-cleanly (rc $rc2)" [ $rc2 = 0 ]
st_end=$(vm_value pviommu-stats-end)
# the module's own counters come first (the devices' lines follow)
hc2=$(grep -o 'hypercalls [0-9]*' <<<"$st_end" | head -n1 | cut -d' ' -f2)
fail2=$(grep -o 'failures [0-9]*' <<<"$st_end" | head -n1 | cut -d' ' -f2)
assert "vm2-guest-saw-no-refused-map (pviommu.ko failures ${fail2:-?}, $hc2 hypercalls)" [ "${fail2:-1}" = 0 ]

evn() {	# evn PID TYPE: events of that QEMU and type
	grep "\"type\":\"$2\"" "$ATK_EV" | grep -c "\"pid\":$1,"
}
e2=$(evn "$P2" hypercall-error) t2=$(evn "$P2" table-full)
[ "$e2" = 0 ] && [ "$t2" = 0 ]
okif $? "vm2-no-refused-hypercall-on-the-host ($e2 errors, $t2 table-full)"
assert "vm2-never-failed-closed ($(evn "$P2" failed-closed) events)" [ "$(evn "$P2" failed-closed)" = 0 ]
for s in a b d e; do
	read -r addr len dir <<<"${RANGE[$s]}"
	n=$(atk_violations "$BDF_EDU" "${addr:-0}" "${len:-1}" "$dir" denied)
	assert "vm2-attack-$s-event ($BDF_EDU addr=$addr len=$len $dir denied: $n)" [ "$n" -ge 1 ]
done
# every violation of VM2 is one of the attacks'
others=$(atk__viol | while read -r b a l _; do
	hit=0
	for s in a b d e; do
		read -r addr len _ <<<"${RANGE[$s]}"
		[ -n "$addr" ] && [ "$b" = "$BDF_EDU" ] && [ "$a" -lt $((addr + len)) ] &&
			[ $((a + l)) -gt $((addr)) ] && hit=1
	done
	[ $hit = 1 ] || echo "$b $a $l"
done)
assert "vm2-no-violation-but-the-attacks' ($(atk_violations) violations${others:+; others: $others})" [ -z "$others" ]
err1=$(stat_of hypercall_errors)
assert "host-counted-every-refusal-vm1-got ($((err1 - err0)) refused calls, the guest counted $refused)" \
	[ $((err1 - err0)) = "$refused" ]
# the events of VM1's calls: within its budget (pviommu.h, PVIOMMU_EV_BUDGET), the rest counted
v1err=$(($(evn "$P1" hypercall-error) + $(evn "$P1" table-full)))
v1fail=$(evn "$P1" failed-closed)
held() {	# held PID: "events-limited events, events they say were held back"
	python3 -c 'import json,sys
n=h=0
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except ValueError: continue
    if e.get("pid") == int(sys.argv[2]) and e["type"] == "events-limited": n += 1; h += e["len"]
print(n, h)' "$ATK_EV" "$1"
}
read -r lim1 held1 <<<"$(held "$P1")"
read -r lim2 _ <<<"$(held "$P2")"
[ "$v1err" -gt 0 ] && [ "$lim1" -gt 0 ]
okif $? "host-events-of-vm1-limited ($v1err refused-call and $v1fail failed-closed events sent, $held1 held back in $lim1 events-limited)"
assert "vm2-events-never-limited ($lim2)" [ "$lim2" = 0 ]
# the shared page with hostile headers and producer indexes (pvhostile.c, phase page): bad
# headers unacknowledged, the good one acknowledged, both out-of-range indexes refused and
# counted in the page, and the host says so (a hypercall-error event of plane page, at most
# one a second); the rounds' numbers come from the guest
pgl=$(VM_CUR=hostile vm_value stat-page)
pg_setups=$(field setups "$pgl") pg_acked=$(field setups_acked "$pgl")
pg_kicks=$(field kicks "$pgl") pg_refused=$(field kicks_refused "$pgl") pg_wrong=$(field wrong "$pgl")
[ "${pg_setups:-0}" -gt 0 ] && [ "$((pg_setups))" = "$((6 * pg_acked))" ] &&
	[ "${pg_kicks:-0}" = "$((3 * pg_acked))" ] && [ "${pg_refused:-0}" = "$((2 * pg_acked))" ] &&
	[ "${pg_wrong:-1}" = 0 ]
okif $? "vm1-page-hostile-headers-and-indexes-refused ($pgl)"
pgev=$(grep '"type":"hypercall-error"' "$ATK_EV" | grep "\"pid\":$P1," | grep -c '"plane":"page"')
assert "host-event-for-a-refused-page-kick ($pgev events of plane page)" [ "$pgev" -ge 1 ]
# the hostile calls never leave the index disagreeing with a record (a wrong ABI version is
# named as such)
incons=$(grep '"type":"failed-closed"' "$ATK_EV" | grep -c '"reason":"index-inconsistent"')
assert "host-index-never-inconsistent ($incons failed-closed events say so)" [ "$incons" = 0 ]
drop1=$(stat_of events_dropped)
assert "host-lost-no-event ($drop0 -> $drop1 dropped)" [ "$drop0" = "$drop1" ]

# both QEMUs are gone: nothing of them is left
sleep 0.5
"$CTL" -j status >"$work/status-end.json" 2>&1; src=$?
read -r ndom used lock_busy <<<"$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
print(len(j["domains"]), j["index"]["used"], j["lock_busy"])' "$work/status-end.json" 2>/dev/null)"
[ $src = 0 ] && [ "$ndom" = 0 ] && [ "$used" = 0 ]
okif $? "status-after-both-exits (rc $src, $ndom domains, $used index slots used)"

echo "info: VM1 per phase:"
for p in setup cross badabi bigmap smallmap unmap fill hold devadd regloop garbage page final; do
	l=$(VM_CUR=hostile vm_value "stat-$p")
	echo "  ${l#PVHOSTILE }"
done
echo "info: VM1 on the host (events): $(python3 -c 'import json,sys,collections
c=collections.Counter()
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except ValueError: continue
    if e.get("pid") != int(sys.argv[2]): continue
    c[e["type"] + ("" if e["type"] in ("domain", "violation") else " " + e["reason"])] += 1
print(", ".join("%s %d" % kv for kv in sorted(c.items(), key=lambda kv: -kv[1])))' "$ATK_EV" "$P1")"
nospc=$(for p in setup cross badabi bigmap smallmap unmap fill hold devadd regloop garbage page final; do
	VM_CUR=hostile vm_value "stat-$p"; done | grep -o 'ENOSPC:[0-9]*' | awk -F: '{ s += $2 } END { print s + 0 }')
echo "figures: VM1 made $calls hypercalls in $rounds rounds: $refused refused ($nospc of them -ENOSPC: its quotas), $((acked - refused)) accepted, $wrong wrong, $noack unanswered; VM1's domain at the end: $st1, failed_closed=$fc1 (a round ends with a wrong-ABI UNMAP), $rec1 records"
echo "figures: VM2 attacks blocked $blocked of 4 (a b d e), legit $legit_ok of 2, downloads intact $benign_ok of 2; VM2 made ${hc2:-?} hypercalls, ${fail2:-?} refused"
echo "figures: overlap: VM1 made $((c_end - c_go)) hypercalls during VM2's $((t_end - t_go)) s of insmod, downloads and attacks; writer lock give-ups $lock_busy; wall $((SECONDS - T0)) s"
finish
