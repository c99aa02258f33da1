#!/bin/bash
# pviommuctl lifecycle against the real kernel and the real bpftool:
# load, status, reload keeps mappings, events, mode, bad input, exit
# cleanup, unload leaves no pin, program or link behind.
# Uses its own pin directory, so a live pviommu is left alone.
set -u
OUT=${OUT:-$(cd "$(dirname "$0")/.." && pwd)/build}
CTL=$OUT/pviommuctl
PVHC=$OUT/tests/pvhc
export PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-lc-$$
NAME=lifecycle
# shellcheck source=tests/testlib.sh
. "$(dirname "$0")/testlib.sh"
TMP=$(mktemp -d)
trap '"$CTL" unload --force >/dev/null 2>&1; rm -rf "$TMP"' EXIT

# expect NAME WANT_RC CMD...: run CMD, compare its exit status
expect() {
	local name=$1 want=$2; shift 2
	"$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
	if [ "$rc" = "$want" ]; then ok "$name"; else nok "$name" "exit $rc, want $want: $(head -c 300 "$TMP/err")"; fi
}
# has NAME PATTERN FILE
has() { if grep -q -- "$2" "$3"; then ok "$1"; else nok "$1" "no '$2' in $(head -c 400 "$3")"; fi; }
hasnt() { if grep -q -- "$2" "$3"; then nok "$1" "found '$2'"; else ok "$1"; fi; }

expect "status before load exits 1" 1 "$CTL" status
has "status says not loaded" "not loaded" "$TMP/out"
has "status shows probed features" "uprobe reg writes" "$TMP/out"
expect "load" 0 "$CTL" load
has "first load is generation 1" "generation 1" "$TMP/out"
expect "status after load" 0 "$CTL" -j status
has "json status loaded" '"loaded":true' "$TMP/out"
has "default mode deny" '"default_mode":"deny"' "$TMP/out"

# a domain that stays alive: this coprocess
coproc HOLD { exec "$PVHC" --hold register -- dev-add 00:04.0 -- \
	map 00:04.0 0x100000 0x3000 rw -- map 00:04.0 0x200010 100 w; }
read -r -t 20 word hpid <&"${HOLD[0]}"
if [ "${word:-}" = ready ]; then ok "holder registered and mapped"; else nok "holder registered and mapped"; hpid=0; fi

expect "mappings --json" 0 "$CTL" -j mappings --pid "$hpid"
has "mapping iova" '"iova":1048576,"size":12288,"perm":"rw"' "$TMP/out"
has "sub-page mapping" '"iova":2097168,"size":100,"perm":"w"' "$TMP/out"
has "mapping bdf" '"bdf":"0000:00:04.0"' "$TMP/out"
expect "mappings --bdf filter" 0 "$CTL" -j mappings --bdf 00:05.0
has "no mapping for 00:05.0" '^\[\]$' "$TMP/out"

# bpftool reads the same pins with named fields: the record of the 3-page map is in the
# index slot of its first page, which mappings -j names
slot=$(python3 -c 'import json,sys; print([m["slot"] for m in json.load(open(sys.argv[1])) if m["iova"] == 0x100000][0])' \
	<("$CTL" -j mappings --pid "$hpid") 2>/dev/null || echo none)
case $slot in ''|*[!0-9]*) nok "mappings -j names the record's slot ($slot)"; slot=0;;
	*) ok "mappings -j names the record's slot ($slot)";; esac
expect "bpftool looks the slot up" 0 bpftool map lookup pinned "$PVIOMMU_PIN_DIR/pviommu_index" \
	key $((slot & 255)) $((slot >> 8 & 255)) $((slot >> 16 & 255)) $((slot >> 24 & 255))
has "bpftool shows named size" '"size": 12288' "$TMP/out"
has "bpftool shows named perm" '"perm": 3' "$TMP/out"
has "bpftool shows named domain" '"domain": '"$hpid" "$TMP/out"
has "bpftool shows the page" '"pfn": 256' "$TMP/out"
expect "bpftool domains dump" 0 bpftool map dump pinned "$PVIOMMU_PIN_DIR/pviommu_domains"
has "bpftool domain record" '"nr_records": 2' "$TMP/out"
# the check's page bits: 00:04.0 owns lane 1; word 8 holds pages 0x100-0x11f, 2 bits each:
# the three rw pages at 0x100000 are 0b111111; the sub-page w mapping sets none
expect "bpftool reads the page bits" 0 bpftool map lookup pinned "$PVIOMMU_PIN_DIR/pviommu_fast" key 8 0 0 0
has "pages 0x100-0x102 rw in lane 1" '"value": 63' "$TMP/out"
expect "status counts the lanes" 0 "$CTL" -j status
has "one device lane in use" '"fast_lanes":{"used":1,"max":16}' "$TMP/out"

# reload: new programs, same maps, mappings survive
expect "reload" 0 "$CTL" load
has "reload is generation 2" "generation 2" "$TMP/out"
expect "mappings after reload" 0 "$CTL" -j mappings --pid "$hpid"
has "mapping kept across reload" '"iova":1048576' "$TMP/out"
expect "new programs act after reload" 0 "$PVHC" register -- dev-add 00:06.0 -- map 00:06.0 0x5000 64 r
links=$(ls "$PVIOMMU_PIN_DIR/links" | grep -c kvm_hypercall)
# exactly one: none would leave the KVM transport unattached after the reload
is "one kvm_hypercall link after reload" 1 "$links"

# an earlier build's record table (records now live in the index): holding a record, the
# reload is refused (its UNMAP could not revoke the pages); empty, it goes
old=$PVIOMMU_PIN_DIR/pviommu_mappings
if bpftool map create "$old" type hash key 16 value 48 entries 16 name pviommu_mappings 2>"$TMP/err" &&
   bpftool map update pinned "$old" key hex 5a 0e 00 00 20 00 00 00 00 00 10 00 00 00 00 00 \
	value hex $(printf '00 %.0s' $(seq 48)) 2>>"$TMP/err"; then
	ok "an old record table pinned"
	expect "reload over old live records: refused" 1 "$CTL" load
	has "... says why and what to do" "live mappings of an earlier pviommu.*unload" "$TMP/err"
	is "... and keeps the table" yes "$([ -e "$old" ] && echo yes)"
	bpftool map delete pinned "$old" key hex 5a 0e 00 00 20 00 00 00 00 00 10 00 00 00 00 00
	expect "reload over an empty old table" 0 "$CTL" load
	is "... which goes" no "$([ -e "$old" ] && echo yes || echo no)"
else
	nok "an old record table pinned" "$(cat "$TMP/err")"
fi

# events: a refused hypercall shows up, one line
"$CTL" events --timeout 2 >/dev/null 2>&1       # drain the backlog
"$CTL" events --timeout 4 >"$TMP/ev" 2>&1 &
evpid=$!
sleep 1
"$PVHC" unmap 00:04.0 0x9000 64 >/dev/null 2>&1   # not registered: refused
wait "$evpid"; rc=$?
is "events exits after --timeout" 0 "$rc"
has "event line for the refused call" "hypercall-error pid=[0-9]* bdf=0000:00:04.0 op=unmap iova=0x9000 size=64 err=No such device" "$TMP/ev"
"$CTL" -j events --count 1 --timeout 3 >"$TMP/ev" 2>&1 &
evpid=$!
sleep 1
"$PVHC" unmap 00:04.0 0x9000 64 >/dev/null 2>&1
wait "$evpid"
has "json event" '"type":"hypercall-error".*"op":"unmap"' "$TMP/ev"

# the host IOMMU's faults of assigned devices (pviommu_iommu_fault at printk:console): the kernel's
# DMAR line names the requester; pviommu_vfio_hw (the library writes it) names the VM behind it
links_have() { ls "$PVIOMMU_PIN_DIR/links" | grep -qx "$1"; }
links_have iommu_fault && ok "iommu_fault link pinned" || nok "iommu_fault link pinned" "$(ls "$PVIOMMU_PIN_DIR/links")"
# requester 00:03.0 (0x18) -> domain 4242 (0x1092), guest device 00:06.0 (0x30)
bpftool map update pinned "$PVIOMMU_PIN_DIR/pviommu_vfio_hw" key 0x18 0 0 0 value 0x92 0x10 0 0 0x30 0 0 0 &&
	ok "vfio_hw entry written" || nok "vfio_hw entry written"
"$CTL" -j events --timeout 4 >"$TMP/ev" 2>&1 &
evpid=$!
sleep 1
{
	echo "DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x7f000 [fault reason 0x06] PTE Read access is not set"
	echo "DMAR: [DMA Write NO_PASID] Request device [00:04.0] fault addr 0x5000 [fault reason 0x05] PTE Write access is not set"
	echo "DMAR: [DMA Write NO_PASID] Request device [0z:03.0] fault addr 0x6000 [fault reason 0x05] PTE Write access is not set"
	echo "DMAR: [DMA Write PASID 0x1] Request device [00:03.0] fault addr 0xabc000 [fault reason 0x05] PTE Write access is not set"
} | while read -r l; do echo "$l" >/dev/kmsg; done
wait "$evpid"
has "IOMMU fault event: the VM, its guest BDF, the address, read" '"type":"violation","pid":4242,[^}]*"bdf":"0000:00:06.0","addr":520192,"len":1,"access":"r",[^}]*"reason":"host-iommu","action":"denied","plane":"iommu"' "$TMP/ev"
has "IOMMU fault event with a PASID, write" '"pid":4242,[^}]*"addr":11255808,"len":1,"access":"w",[^}]*"plane":"iommu"' "$TMP/ev"
n=$(grep -c '"plane":"iommu"' "$TMP/ev")
[ "$n" = 2 ] && ok "no event for an unassigned requester or a malformed line" || nok "no event for an unassigned requester or a malformed line" "$n events: $(cat "$TMP/ev")"
bpftool map delete pinned "$PVIOMMU_PIN_DIR/pviommu_vfio_hw" key 0x18 0 0 0

# mode
expect "mode audit --pid" 0 "$CTL" mode audit --pid "$hpid"
expect "status shows audit" 0 "$CTL" -j status
has "domain mode audit" "\"pid\":$hpid,[^}]*\"mode\":\"audit\"" "$TMP/out"
expect "mode for a pid without domain" 1 "$CTL" mode deny --pid 1
expect "mode bogus" 1 "$CTL" mode bogus
has "clear error for bad mode" "what is 'bogus'" "$TMP/err"

# bad input and environment
expect "unknown command" 1 "$CTL" frobnicate
expect "bad bdf" 1 "$CTL" mappings --bdf zz:zz
has "clear error for bad bdf" "what is 'zz:zz'" "$TMP/err"
expect "bad pid" 1 "$CTL" mappings --pid -3
expect "json error" 1 "$CTL" -j mappings --bdf 1:2:3:4
has "json error object" '{"error":' "$TMP/out"
expect "bad index size" 1 "$CTL" load --index-slots 1000
expect "help" 0 "$CTL" help
expect "help per command" 0 "$CTL" help mappings
expect "prefix match" 0 "$CTL" -j statu
expect "not root exits 2" 2 setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" status

# attach to a QEMU binary (every process of it), survive a reload, detach. On a private copy
# (another inode): uprobes on the real binary would reach every VM running on this machine,
# other tests' too, and crash those that run the in-process plane (pviommuctl run)
Q=$TMP/qemu-system-x86_64
cp "$(command -v qemu-system-x86_64)" "$Q"
# first a QEMU of that binary running the in-process plane: attach --qemu refuses (its uprobes
# would land on the patched prologues and crash it)
qmod=$(dirname "$(ls /usr/lib/*/qemu/accel-tcg-x86_64.so 2>/dev/null | head -n1)")
QEMU_MODULE_DIR=$qmod "$CTL" run -- "$Q" -machine none -display none -nodefaults -monitor none -S \
	</dev/null >"$TMP/inproc.out" 2>&1 &
qpid=$!
for _ in $(seq 1 100); do grep -q libpviommu-qemu.so "/proc/$qpid/maps" 2>/dev/null && break; sleep 0.1; done
sleep 0.5	# past its constructor
kill -0 "$qpid" 2>/dev/null && ok "a QEMU runs the in-process plane" || nok "a QEMU runs the in-process plane" "$(head -c 300 "$TMP/inproc.out")"
expect "attach --qemu refuses a binary whose QEMU runs the in-process plane" 1 "$CTL" attach --qemu "$Q" --enforce
has "... names that QEMU" "QEMU pids $qpid of $Q run the in-process plane" "$TMP/err"
[ "$(ls "$PVIOMMU_PIN_DIR/links" | grep -c -e '^enf-x' -e '^tcg-x')" = 0 ] && ok "... and attaches nothing" ||
	nok "... and attaches nothing" "$(ls "$PVIOMMU_PIN_DIR/links")"
expect "status while it runs" 0 "$CTL" -j status
has "its domain is reserved at start, before any guest code" "\"pid\":$qpid,[^}]*\"state\":\"reserved\"" "$TMP/out"
expect "unload refuses while a protected VM runs" 1 "$CTL" unload
has "... and names it" "QEMU pids\\? [0-9 ]*$qpid" "$TMP/err"
kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
sleep 0.3
expect "status after it exits" 0 "$CTL" -j status
hasnt "its domain goes with it" "\"pid\":$qpid," "$TMP/out"

# run --mode --quota: the library reserves with that mode and those quotas
expect "run: bad quota" 1 "$CTL" run --quota records=0 -- "$Q" -version
expect "load: bad quota" 1 "$CTL" load --quota frames=3
has "... says what a quota is" "records=N,pages=N,devices=N,lanes=N" "$TMP/err"
QEMU_MODULE_DIR=$qmod "$CTL" run --mode audit --quota records=77,devices=3 -- "$Q" -machine none -display none -nodefaults \
	-monitor none -S </dev/null >"$TMP/inproc.out" 2>&1 &
qpid=$!
for _ in $(seq 1 100); do grep -q libpviommu-qemu.so "/proc/$qpid/maps" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
expect "status with run --mode" 0 "$CTL" -j status
has "the reserved domain has the mode of run --mode" "\"pid\":$qpid,[^}]*\"mode\":\"audit\"" "$TMP/out"
has "... and the quotas of run --quota (the rest: load's defaults)" "\"pid\":$qpid,.*\"quota\":{\"records\":77,\"pages\":2048,\"devices\":3,\"lanes\":2}" "$TMP/out"
kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null

# capacity is taken at VM start: with the domain table full, QEMU does not start at all
: >"$TMP/fill"; : >"$TMP/unfill"
vsz=$(bpftool -j map show pinned "$PVIOMMU_PIN_DIR/pviommu_domains" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_value"])')
for i in $(seq 4000000 4001100); do
	h=$(printf '%08x' "$i" | sed 's/\(..\)\(..\)\(..\)\(..\)/0x\4 0x\3 0x\2 0x\1/')
	echo "map update pinned $PVIOMMU_PIN_DIR/pviommu_domains key $h value $(printf '0 %.0s' $(seq "$vsz")) noexist" >>"$TMP/fill"
	echo "map delete pinned $PVIOMMU_PIN_DIR/pviommu_domains key $h" >>"$TMP/unfill"
done
bpftool batch file "$TMP/fill" >/dev/null 2>&1	# stops at the first refusal: the table is full
QEMU_MODULE_DIR=$qmod timeout 20 "$CTL" run -- "$Q" -machine none -display none -nodefaults \
	-monitor none -S </dev/null >"$TMP/full.out" 2>&1
rc=$?
[ "$rc" = 1 ] && ok "full domain table: QEMU refuses to start" || nok "full domain table: QEMU refuses to start" "exit $rc: $(head -c 300 "$TMP/full.out")"
has "... and says why" "cannot reserve this VM's domain" "$TMP/full.out"
bpftool batch file "$TMP/unfill" >/dev/null 2>&1	# stops past the last one filled
expect "attach --qemu --enforce" 0 "$CTL" -j attach --qemu "$Q" --enforce
has "attach --qemu says so" '"enforce_uprobes":2[0-9]' "$TMP/out"
nlinks=$(ls "$PVIOMMU_PIN_DIR/links" | grep -c '^enf-x')
[ "$nlinks" -ge 20 ] && ok "enforcement links pinned for the binary" || nok "enforcement links pinned for the binary" "$nlinks"
expect "status names the binary" 0 "$CTL" status
has "status lists the QEMU binary" "enforcing in QEMU $Q" "$TMP/out"
expect "reload with binary uprobes" 0 "$CTL" load
n2=$(ls "$PVIOMMU_PIN_DIR/links" | grep -c '^enf-x')
is "binary uprobes re-attached by reload" "$nlinks" "$n2"
expect "detach --qemu" 0 "$CTL" detach --qemu "$Q"
n3=$(ls "$PVIOMMU_PIN_DIR/links" | grep -c -e '^enf-x' -e '^tcg-x')
is "detach removed them" 0 "$n3"
expect "attach to a process that is not QEMU" 1 "$CTL" attach --pid "$hpid"
expect "enforce on a binary without QEMU's PCI layout" 1 "$CTL" attach --qemu /bin/true --enforce
has "... says which accessor is missing" "PCI device layout.*does not export qdev_get_parent_bus" "$TMP/err"
expect "attach --qemu relative path" 1 "$CTL" attach --qemu qemu-system-x86_64
expect "attach needs a target" 1 "$CTL" attach --enforce

# the VFIO gate's device list
expect "vfio set" 0 "$CTL" -j vfio --pid "$hpid" 00:04.0 0000:00:06.0
has "vfio lists two devices" '"devices":\["0000:00:04.0","0000:00:06.0"\]' "$TMP/out"
expect "bpftool sees the vfio list" 0 bpftool map dump pinned "$PVIOMMU_PIN_DIR/pviommu_vfio_devs"
has "bpftool vfio list named" '"nr": 2' "$TMP/out"
expect "vfio clear" 0 "$CTL" -j vfio --pid "$hpid" -
has "vfio cleared" '"devices":\[\]' "$TMP/out"
expect "vfio bad bdf" 1 "$CTL" vfio --pid "$hpid" zz

# the holder exits: its domain is purged by the exit hook
kill "$hpid" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$hpid" 2>/dev/null || break; sleep 0.2; done
sleep 0.3
expect "mappings after holder exit" 0 "$CTL" -j mappings --pid "$hpid"
has "domain purged at exit" '^\[\]$' "$TMP/out"

# unload leaves nothing: remember this instance's program and map ids first
ids=$(for f in "$PVIOMMU_PIN_DIR"/progs/*; do bpftool -j prog show pinned "$f" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2; done)
expect "unload" 0 "$CTL" unload
[ ! -e "$PVIOMMU_PIN_DIR" ] && ok "no pin left" || nok "no pin left" "$(ls -R "$PVIOMMU_PIN_DIR")"
sleep 0.5
n=0
for id in $ids; do bpftool prog show id "$id" >/dev/null 2>&1 && n=$((n + 1)); done
[ -n "$ids" ] && [ "$n" = 0 ] && ok "no program left" || nok "no program left" "$n of: $ids"
expect "status after unload" 1 "$CTL" status

# any index size (not only powers of two): rounded up to a multiple of 64, the header after it
expect "load --index-slots 3000" 0 "$CTL" load --index-slots 3000
expect "... status" 0 "$CTL" -j status
has "... 3008 slots" '"slots":3008' "$TMP/out"
expect "... bpftool: 3073 entries (a tail of 64, the header last)" 0 bpftool -j map show pinned "$PVIOMMU_PIN_DIR/pviommu_index"
has "... max_entries 3073" '"max_entries":3073' "$TMP/out"
expect "... takes a guest's maps" 0 "$PVHC" register -- dev-add 00:04.0 -- map 00:04.0 0x100000 0x3000 rw
expect "unload" 0 "$CTL" unload

# an earlier build's index (a power of two entries, no header, other chains): holding a live
# entry, the load is refused (this one could not find it); empty, it is replaced
mkdir -p "$PVIOMMU_PIN_DIR"
old=$PVIOMMU_PIN_DIR/pviommu_index
if bpftool map create "$old" type array key 4 value 64 entries 1024 name pviommu_index flags 1024 2>"$TMP/err" &&
   bpftool map update pinned "$old" key 5 0 0 0 \
	value hex 02 00 00 00 5a 0e 00 00 20 00 00 00 01 00 $(printf '00 %.0s' $(seq 50)) 2>>"$TMP/err"; then
	ok "an earlier build's index pinned"
	expect "load over its live entry: refused" 1 "$CTL" load
	has "... says why and what to do" "earlier pviommu's index and holds live entries.*unload" "$TMP/err"
	is "... and keeps it" yes "$([ -e "$old" ] && echo yes)"
	bpftool map update pinned "$old" key 5 0 0 0 value hex $(printf '00 %.0s' $(seq 64))
	expect "load over an empty one" 0 "$CTL" load
	expect "... status" 0 "$CTL" -j status
	has "... a new index of the default size" '"slots":524288' "$TMP/out"
	expect "unload" 0 "$CTL" unload
else
	nok "an earlier build's index pinned" "$(cat "$TMP/err")"
fi
rmdir "$PVIOMMU_PIN_DIR" 2>/dev/null

finish
