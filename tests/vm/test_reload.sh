#!/bin/bash
# test_reload.sh - 'pviommuctl load' (a reload) under traffic and attacks opens no window (one
# TCG boot).
#
# QEMU under 'pviommuctl run --mode deny' (the in-process plane) with e1000 00:04.0, virtio-net
# 00:05.0, edu 00:06.0 and virtio-blk 00:07.0 (virtio with iommu_platform=on). The guest loads
# pviommu.ko for all four (transport=tcg, verify: the host acknowledges every call; track=1: it
# lists its live mappings in debugfs) and pvattack.ko, then runs at once, until the host says
# stop: downloads through both NICs (each checked by md5), O_DIRECT write/read-back rounds on
# virtio-blk, and rounds of edu attacks (legit, a b c d e of tests/vm/guest-modules/pvattack.c).
# Meanwhile the host runs 'pviommuctl load' three times. Each reload makes the programs the
# QEMU process holds stale (-ESTALE); the library must open the new ones and retry, losing no
# MAP or UNMAP. Checks:
#   - every load succeeds, and the host's hypercall counter grows after each (the library
#     serves through the new programs: a stale program counts nothing);
#   - in every round, before, between and after the loads, the legit transfer works and every
#     attack is blocked (a not-leaked, b-e unchanged); one violation event per attack, each on
#     edu over the attacked range, action denied; no violation on any other device;
#   - the traffic is intact: no failed download or read-back, no guest I/O error, no QEMU
#     virtio error; no refused hypercall, nothing failed closed, no other event;
#   - no MAP or UNMAP lost: once the traffic stopped and while pviommu.ko is loaded, the host's
#     records of the domain ('pviommuctl -j mappings --pid') equal the guest's live mappings
#     line for line (device, iova, size, perm, refs), and the host counted exactly the
#     hypercalls the guest made; after rmmod the domain has no record.
# The guest lists, the host reads, the guest lists again: if the two lists differ (a stray
# packet), the comparison is repeated, so it needs no tolerance.
# RELOAD_LOADS (default 3) sets the number of reloads.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
ATTACK_KO=${PVIOMMU_ATTACK_KO:-$VM_OUT/guest-attack/pvattack.ko}
NAME=reload
LOADS=${RELOAD_LOADS:-3}
BDF_EDU=0000:00:06.0

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "$CTL" "$VM_OUT/libpviommu-qemu.so" "$KO" "$ATTACK_KO" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds python3
vm_host_init reload
EVPID=
# shellcheck disable=SC2317	# the EXIT trap calls it
cleanup() {
	if [ -n "$EVPID" ]; then kill "$EVPID" 2>/dev/null; wait "$EVPID" 2>/dev/null; fi
	vm__host_cleanup
}
trap cleanup EXIT
T0=$SECONDS

if "$CTL" load >"$work/load.0.out" 2>&1; then ok "pviommuctl-load"; else
	nok "pviommuctl-load" "$(cat "$work/load.0.out")"; finish; fi

SIZE=262144
vm_blob_server $SIZE

cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
SIZE=$SIZE
PORT=$port
BLOB_MD5=$blob_md5
GUEST
cat >>"$work/guest.sh" <<'GUEST'
A=/sys/kernel/debug/pvattack
P=/sys/kernel/debug/pviommu
mount -t debugfs none /sys/kernel/debug 2>/dev/null
ifup() {	# ifup e1000|virtio: configure the NIC again after pviommu.ko rebound its driver
	i=
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic "$1") && break; sleep 0.5; done
	[ -n "$i" ] || return 1
	ip link set "$i" up
	ip addr add "$(guest_ip "$i")/24" dev "$i" 2>/dev/null
	return 0
}
get() {	# get KIND: SIZE bytes from the host through that NIC, checked
	i=$(nic "$1") || return 1
	echo "GET $SIZE" | nc -w 20 "$(host_ip "$i")" "$PORT" >"/tmp/got.$1" 2>/dev/null &&
		[ "$(md5sum <"/tmp/got.$1" | cut -d' ' -f1)" = "$BLOB_MD5" ]
}
warm() {	# the NIC works (its link may need a moment after the rebind)
	for _t in 1 2 3 4 5 6 7 8 9 10; do get "$1" && return 0; sleep 1; done
	return 1
}
netloop() {	# netloop KIND: downloads until /tmp/stop; "ok bad" in /tmp/net.KIND
	ok=0 bad=0
	while [ ! -e /tmp/stop ]; do
		if get "$1"; then ok=$((ok + 1)); else
			bad=$((bad + 1)); echo "net $1: $(wc -c <"/tmp/got.$1") bytes" >>/tmp/errs; fi
	done
	echo "$ok $bad" >"/tmp/net.$1"
}
blkloop() {	# O_DIRECT write + read-back of 64 x 4 KiB rounds on /dev/vda until /tmp/stop
	ok=0 bad=0 n=0
	while [ ! -e /tmp/stop ]; do
		off=$((n % 8 * 64)); n=$((n + 1))
		if dd if=/tmp/pat of=/dev/vda bs=4096 count=64 seek=$off oflag=direct conv=notrunc 2>>/tmp/errs &&
			dd if=/dev/vda of=/tmp/rb bs=4096 count=64 skip=$off iflag=direct 2>>/tmp/errs &&
			[ "$(md5sum </tmp/rb | cut -d' ' -f1)" = "$PAT_MD5" ]; then ok=$((ok + 1))
		else bad=$((bad + 1)); echo "blk round $n failed" >>/tmp/errs; fi
	done
	echo "$ok $bad" >/tmp/blk
}
atkloop() {	# rounds of edu scenarios until /tmp/stop; VALUE atk-ROUND-S, MARK round-ROUND
	r=0
	while [ ! -e /tmp/stop ]; do
		r=$((r + 1))
		for s in legit a b c d e; do
			echo "$s" >$A/run
			value "atk-$r-$s" "$(cat $A/result)"
		done
		mark "round-$r"
	done
	echo "$r" >/tmp/rounds
}
n=0
list() {	# the guest's live mappings, sorted: VALUE live-N COUNT MD5, PVLIVE-N lines, MARK listed-N
	n=$((n + 1))
	sort $P/mappings >/tmp/live.$n
	value "hypercalls-$n" "$(grep '^hypercalls ' $P/stats | cut -d' ' -f2)"
	value "live-$n" "$(wc -l </tmp/live.$n) $(md5sum </tmp/live.$n | cut -d' ' -f1)"
	sed "s/^/PVLIVE-$n /" /tmp/live.$n >/dev/console
	mark "listed-$n"
}

head -c 262144 /dev/urandom >/tmp/pat
PAT_MD5=$(md5sum </tmp/pat | cut -d' ' -f1)
check virtio-blk-present wait_for /sys/block/vda 20
mark ready
[ "$(wait_host)" = go ] || fail "expected 'go' from the host"
check insmod-pviommu insmod /test/pviommu.ko devices="$BDF_E1000,$BDF_VIRTIO_NET,$BDF_EDU,$BDF_VIRTIO_BLK" \
	transport=tcg track=1 || fail "insmod pviommu.ko: $(dmesg | grep pviommu | tail -n 3)"
check ifup-e1000 ifup e1000
check ifup-virtio ifup virtio
check insmod-pvattack insmod /test/pvattack.ko edu="$BDF_EDU" || fail "insmod pvattack.ko"
check warm-e1000 warm e1000
check warm-virtio warm virtio
value info "$(cat $A/info)"
netloop e1000 & netloop virtio & blkloop & atkloop &
mark armed
while cmd=$(wait_host); do [ "$cmd" = stop ] && break; done
touch /tmp/stop
wait
read -r ok bad </tmp/net.e1000; value net-e1000 "$ok $bad"
check downloads-e1000-intact [ "$bad" = 0 -a "$ok" -gt 0 ]
read -r ok bad </tmp/net.virtio; value net-virtio "$ok $bad"
check downloads-virtio-net-intact [ "$bad" = 0 -a "$ok" -gt 0 ]
read -r ok bad </tmp/blk; value blk "$ok $bad"
check virtio-blk-read-back-intact [ "$bad" = 0 -a "$ok" -gt 0 ]
[ -s /tmp/errs ] && head -n 5 /tmp/errs
value rounds "$(cat /tmp/rounds)"
value ioerrors "$(dmesg | grep -ciE 'I/O error|blk_update_request|bogus descriptor|refused MAP|failed: beyond')"
check no-guest-io-error sh -c "! dmesg | grep -qiE 'I/O error|blk_update_request|bogus descriptor|refused MAP|failed: beyond'"
value stats "$(tr '\n' ' ' <$P/stats)"
check track-complete sh -c "grep -qx 'track_lost 0' $P/stats && grep -qx 'track_unmatched 0' $P/stats"
list
while cmd=$(wait_host); do
	case $cmd in
	list) list ;;
	rmmod)
		check rmmod-pvattack rmmod pvattack
		check rmmod-pviommu rmmod pviommu
		mark rmmodded ;;
	end) break ;;
	esac
done
GUEST

st() {	# st NAME: one counter of 'pviommuctl status'
	"$CTL" -j status | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"][sys.argv[1]])' "$1"
}
dom() {	# dom PID: "state records" of the domain
	"$CTL" -j status | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["domains"] if x["pid"] == int(sys.argv[1])]
print("%s %s" % (d[0]["state"], d[0]["records"]) if d else "none 0")' "$1"
}
host_live() {	# host_live PID OUT: the domain's records as the guest lists them, sorted; "COUNT MD5"
	"$CTL" -j mappings --pid "$1" | python3 -c 'import json,sys
for m in json.load(sys.stdin):
    print("%s %d %d %s %d" % (m["bdf"], m["iova"], m["size"], m["perm"], m["refs"]))' |
		LC_ALL=C sort >"$2"
	echo "$(wc -l <"$2") $(md5sum <"$2" | cut -d' ' -f1)"
}
guest_live() {	# guest_live N OUT: the guest's list N from the serial log
	vm__grep "^PVLIVE-$1 " | sed "s/^PVLIVE-$1 //" >"$2"
}
wait_round() {	# wait_round N SEC: until the guest finished attack round N
	vm_wait_marker "round-$1" "$2" 2>/dev/null
}
last_round() {
	vm__grep 'PVIOMMU-VM: MARK round-[0-9]+' | sed 's/.*round-//' | sort -n | tail -n1
}

"$CTL" -j events >"$work/events.json" 2>"$work/events.err" &
EVPID=$!
sleep 0.3
declare -A s0
for c in hypercall_errors failed_closed table_full events_dropped user_hypercalls; do s0[$c]=$(st $c); done
export VM_QEMU_WRAPPER="$CTL run --mode deny --"	# 'run' adds iommu_platform=on,disable-legacy=on
export VM_VIRTIO_OPTS=""
if ! vm_boot --name reload --script "$work/guest.sh" --file "$KO" --file "$ATTACK_KO" --edu \
	--net e1000 --net virtio --disk virtio-blk 64M --timeout 300; then
	nok "boot"; finish
fi
qpid=$(vm_pid)
vm_wait_marker ready 120 && vm_send go
if ! vm_wait_marker armed 180; then
	nok "guest-armed (pviommu.ko, pvattack.ko, NICs up)" "$(vm_tail 15 | tr '\n' '|')"; finish
fi
ok "guest-armed: traffic and attack rounds running"
if wait_round 1 120; then ok "attack-round-1-done-before-any-load"
else nok "attack-round-1-done-before-any-load"; fi

# ---- the reloads, under traffic and attacks
loads_ok=0
for i in $(seq 1 "$LOADS"); do
	r0=$(last_round)
	h0=$(st hypercalls)
	t=$SECONDS
	if "$CTL" -j load >"$work/load.$i.out" 2>&1; then
		loads_ok=$((loads_ok + 1))
		gen=$(sed -n 's/.*"generation":\([0-9]*\).*/\1/p' "$work/load.$i.out")
		ok "load-$i (generation $gen, $((SECONDS - t)) s)"
	else
		nok "load-$i" "$(tr '\n' ' ' <"$work/load.$i.out")"
	fi
	h1=$(st hypercalls) h2=$h1
	t=$SECONDS
	while [ $((SECONDS - t)) -lt 30 ]; do
		h2=$(st hypercalls)
		[ "$h2" -gt "$h1" ] && break
		sleep 0.5
	done
	echo "info: load $i: hypercalls before $h0, when it returned $h1, then $h2 ($((SECONDS - t)) s later); attack round $r0 before"
	assert "hypercalls-grow-after-load-$i ($h1 -> $h2)" [ "$h2" -gt "$h1" ]
	# one whole attack round after this load before the next one
	r1=$(( ${r0:-0} + 2 ))
	if wait_round "$r1" 90; then ok "attack-round-$r1-done-after-load-$i"
	else nok "attack-round-$r1-done-after-load-$i" "$(vm_tail 5 | tr '\n' '|')"; fi
done
h3=$(st hypercalls)
sleep 2
h4=$(st hypercalls)
assert "hypercalls-still-served-after-the-last-load ($h3 -> $h4)" [ "$h4" -gt "$h3" ]

# ---- zero lost MAP/UNMAP: the host's records = the guest's live mappings, quiescent
compare() {
	local n=1 same=0 try a b ga gb hl hh state nrec nm
	for try in 1 2 3 4 5; do
		hl=$(host_live "$qpid" "$work/host.$n")
		hh=$(st hypercalls)
		vm_send list
		vm_wait_marker "listed-$((n + 1))" 60 || break
		a=$(vm_value "live-$n") b=$(vm_value "live-$((n + 1))")
		ga=$(vm_value "hypercalls-$n") gb=$(vm_value "hypercalls-$((n + 1))")
		if [ "$a" = "$b" ] && [ "$ga" = "$gb" ]; then same=1; break; fi
		echo "info: the guest's list moved meanwhile (try $try: $a / $b): again"
		n=$((n + 1))
	done
	if [ $same = 1 ]; then
		echo "info: records: host $hl, guest $a (count md5); hypercalls: host $hh, guest $ga"
		guest_live "$n" "$work/guest.$n"
		if [ "$hl" = "$a" ]; then
			ok "host-records-equal-guest-live-mappings (${a%% *} records)"
		else
			nok "host-records-equal-guest-live-mappings" "host $hl, guest $a (count md5)"
			diff "$work/guest.$n" "$work/host.$n" | head -n 20 | sed 's/^/  /'
		fi
		assert "host-counted-every-guest-hypercall (host $hh, guest $ga)" [ "$hh" = "$ga" ]
	else
		nok "guest-list-quiescent" "it moved on every try"
	fi
	echo "info: per device (host records): $(cut -d' ' -f1 "$work/host.$n" | sort | uniq -c | tr -s ' ' | tr '\n' ',')"
	vm_send rmmod
	if vm_wait_marker rmmodded 120; then
		sleep 0.3
		read -r state nrec <<<"$(dom "$qpid")"
		nm=$("$CTL" -j mappings --pid "$qpid" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
		assert "after-rmmod-no-record ($state, $nrec records, $nm mappings)" [ "$nrec" = 0 -a "$nm" = 0 ]
	else
		nok "guest-rmmod"
	fi
}

vm_send stop
if vm_wait_marker listed-1 90; then
	read -r gp gf <<<"$(vm_checks)"
	assert "guest-traffic-checks ($gp passed, $gf failed)" [ "$gf" = 0 ]
	echo "info: downloads e1000 (ok failed) $(vm_value net-e1000), virtio-net $(vm_value net-virtio), virtio-blk rounds $(vm_value blk); attack rounds $(vm_value rounds)"
	compare
	vm_send end
	rc=0; vm_wait 90 || rc=$?
else
	nok "guest-stopped-its-traffic-and-listed" "$(vm_tail 15 | tr '\n' '|')"
	vm_kill; rc=1
fi
read -r gp gf <<<"$(vm_checks)"
assert "guest-result-pass (rc $rc; guest checks $gp passed, $gf failed)" [ $rc = 0 -a "$gf" = 0 ]
[ $rc = 0 ] || vm_tail 30

# ---- the attacks: every one blocked, one event each, nothing else
sleep 0.5
kill "$EVPID" 2>/dev/null; wait "$EVPID" 2>/dev/null; EVPID=
vm__grep 'PVIOMMU-VM: VALUE atk-' | sed 's/.*PVIOMMU-VM: VALUE //' >"$work/attacks"
python3 - "$work/attacks" "$work/events.json" "$qpid" "$BDF_EDU" >"$work/attacks.out" <<'PY'
import json, re, sys
atk, evf, pid, edu = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
want = {"legit": "ok", "a": "not-leaked", "b": "unchanged", "c": "unchanged",
        "d": "unchanged", "e": "unchanged"}
tried = blocked = legit = legit_ok = ctl = ctl_ok = 0
bad = []
rogue = []	# (addr, len, access)
for line in open(atk):
    m = re.match(r"atk-(\d+)-(\S+) (.*)", line.strip())
    if not m:
        continue
    r, s, res = m.group(1), m.group(2), m.group(3)
    f = dict(kv.split("=", 1) for kv in res.split() if "=" in kv)
    got = f.get("result", "")
    if s == "d":
        ctl += 1
        ctl_ok += f.get("control64") == "ok"
        if f.get("control64") != "ok":
            bad.append("round %s d: control64=%s" % (r, f.get("control64")))
    if s == "legit":
        legit += 1
        legit_ok += got == want[s]
        if got != want[s]:
            bad.append("round %s legit: %s" % (r, got))
        continue
    tried += 1
    if got == want.get(s):
        blocked += 1
    else:
        bad.append("round %s %s: %s" % (r, s, got))
    rogue.append((int(f.get("addr", "0"), 0), int(f.get("len", "0")),
                  "r" if f.get("dir") == "read" else "w", "%s/%s" % (r, s)))
viol, other = [], []
for line in open(evf):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("pid") != pid or e.get("type") == "domain":
        continue
    (viol if e["type"] == "violation" else other).append(e)
# attacks run one after the other, so their events come in the same order: each event
# takes the next attack it fits (edu, direction, denied, overlapping range); the attacks it
# skips got no event
viol.sort(key=lambda e: e["ts_ns"])
matched, unexplained, k = set(), [], 0
for e in viol:
    for j in range(k, len(rogue)):
        a = rogue[j]
        if (e["bdf"] == edu and e["access"] == a[2] and e["action"] == "denied" and
                e["addr"] < a[0] + a[1] and a[0] < e["addr"] + e["len"]):
            matched.add(a[3])
            k = j + 1
            break
    else:
        unexplained.append(e)
print("tried %d blocked %d legit %d legit_ok %d ctl %d ctl_ok %d events %d matched %d unexplained %d other %d" %
      (tried, blocked, legit, legit_ok, ctl, ctl_ok, len(viol), len(matched), len(unexplained),
       len(other)))
for b in bad[:10]:
    print("bad " + b)
for e in (unexplained + other)[:10]:
    print("event " + json.dumps(e))
PY
read -r _ tried _ blocked _ legit _ legit_ok _ ctl _ ctl_ok _ nev _ matched _ unexpl _ other <"$work/attacks.out"
echo "info: attack rounds $(last_round): attacks tried $tried, blocked $blocked; legit round trips $legit, ok $legit_ok; violation events $nev ($matched attacks matched, $unexpl unexplained), other events $other"
grep -E '^(bad|event) ' "$work/attacks.out" | head -n 10 | sed 's/^/  /'
assert "every-attack-blocked (tried $tried, blocked $blocked)" [ "$tried" -gt 0 -a "$tried" = "$blocked" ]
assert "legit-round-trip-every-round ($legit_ok of $legit)" [ "$legit" -gt 0 -a "$legit" = "$legit_ok" ]
assert "d-the-64-mapped-bytes-stay-writable-every-round ($ctl_ok of $ctl)" [ "$ctl" -gt 0 -a "$ctl" = "$ctl_ok" ]
assert "one-denied-violation-event-per-attack ($nev events, $matched of $tried attacks have theirs)" \
	[ "$nev" = "$tried" -a "$matched" = "$tried" ]
assert "no-violation-but-the-attacks ($unexpl unexplained)" [ "$unexpl" = 0 ]
assert "no-other-event (refused hypercall, failed closed: $other)" [ "$other" = 0 ]
for c in hypercall_errors failed_closed table_full events_dropped user_hypercalls; do
	v1=$(st $c)
	assert "stats-$c-unchanged (${s0[$c]} -> $v1)" [ "${s0[$c]}" = "$v1" ]
done
assert "every-load-succeeded ($loads_ok of $LOADS)" [ "$loads_ok" = "$LOADS" ]
qout=$(vm_dir)/qemu.out
assert "guest-saw-no-refused-map" sh -c "! tr -d '\r' <'$(vm_log)' | grep -q 'the host refused'"
assert "no-qemu-virtio-error" sh -c "! grep -v '^pviommuctl run: argument' '$qout' | grep -qiE 'virtio|Cannot map|bogus|error'"
grep -v '^pviommuctl run: argument' "$qout" | grep -iE 'virtio|Cannot map|bogus|error' | head -n 5 | sed 's/^/  qemu: /'
echo "info: $LOADS loads, QEMU pid $qpid, $((SECONDS - T0)) s wall"
finish
