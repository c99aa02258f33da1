#!/bin/bash
# tests/bench/bench_guest_ops.sh - what a DMA map + unmap pair costs the guest, side by side in
# one boot (make bench): no pviommu.ko (the kernel's direct mapping), pviommu.ko posting its
# operations on the shared page (strict, the default), the same with post=0 (an exit per
# operation) and mode=lazy. Each figure is pvdmacost.ko (tests/vm/guest-modules/pvdmacost.c) on
# the e1000 with its driver bound: ns per pair in the guest's own clock, for one page mapped and
# unmapped (a NIC buffer) and for 16 pages mapped, then unmapped (a 64 KiB block request).
# Paired with what is counted in the same run: the guest module's exits and operations
# (debugfs pviommu/stats) per pair, and with the guest's instructions per pair, counted in a
# second boot (one round) under QEMU with tests/tools/pvinsn.so.
# QEMU TCG, q35, 2 vCPUs, started as `pviommuctl run --mode deny` (the in-process plane serves the
# page). Environment: OUT/VM_OUT build dir, PAIRS (20000), ROUNDS (3: each configuration runs
# ROUNDS times, interleaved; the table shows medians), CONFIGS ("posted kicked lazy": the
# pviommu.ko configurations, each next to no pviommu.ko). Skips (exit 0) without root, the guest
# kernel or the modules (make all guest). Writes $OUT/bench/guest_ops.dat.
set -u
NAME=bench_guest_ops
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export VM_OUT=${VM_OUT:-${OUT:-$SRC/build}}
# shellcheck source=tests/vm/lib.sh
. "$SRC/tests/vm/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=$VM_OUT/guest-module/pviommu.ko
COST=$VM_OUT/guest-attack/pvdmacost.ko
PAIRS=${PAIRS:-20000} ROUNDS=${ROUNDS:-3} CONFIGS=${CONFIGS:-posted kicked lazy}
for c in $CONFIGS; do
	case $c in posted|kicked|lazy) ;; *) echo "$NAME: unknown configuration '$c'" >&2; exit 2 ;; esac
done

say() { printf '%s\n' "$*"; }
[ "$(id -u)" = 0 ] || { say "$NAME: skipped (needs root: BPF programs, VMs)"; exit 0; }
for f in "$CTL" "$KO" "$COST" "$VM_OUT/libpviommu-qemu.so" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"; do
	[ -e "$f" ] || { say "$NAME: skipped ($f missing: make; make guest)"; exit 0; }
done
vm_host_init guestops
work=$(vm_dir guestops-work)
mkdir -p "$work"
"$CTL" load >"$work/load.out" 2>&1 || { say "$NAME: pviommuctl load failed: $(cat "$work/load.out")"; exit 1; }
"$CTL" mode deny >/dev/null

cat >"$work/guest.sh" <<'GUEST'
. /lib/pviommu-vm.sh
mount -t debugfs none /sys/kernel/debug 2>/dev/null
S=/sys/kernel/debug/pviommu/stats
cost() {	# cost NAME: one pvdmacost run (at insmod)
	insmod /test/pvdmacost.ko dev=$BDF_E1000 pairs=$(karg pairs) && rmmod pvdmacost
	_l=$(dmesg | grep 'PVDMACOST dev=' | tail -n 1)
	value "cost-$1" "$(echo "$_l" | sed 's/.*pairs=\([0-9]*\) page_ns=\(-*[0-9]*\) sg16_ns=\(-*[0-9]*\).*/\1 \2 \3/')"
}
_q=0
qmark() {	# qmark NAME: the host reads the instruction count here (the counting boot)
	_q=$((_q + 1))
	value "q$_q" "$1"
	mark "q$_q"
	[ "$(wait_host)" = go ] || fail "expected go at q$_q"
}
if [ "$(karg insn)" = 1 ]; then
	cost() {	# instructions of pvdmacost with N and 2N pairs: their difference is 2N pairs
		qmark "$1 0"
		insmod /test/pvdmacost.ko dev=$BDF_E1000 pairs=$(karg pairs) && rmmod pvdmacost
		qmark "$1 1"
		insmod /test/pvdmacost.ko dev=$BDF_E1000 pairs=$(($(karg pairs) * 2)) && rmmod pvdmacost
		qmark "$1 2"
		value "cost-$1" "$(karg pairs) 0 0"
	}
fi
stat() { sed -n "s/^$1[: ]*\([0-9]*\).*/\1/p" $S 2>/dev/null | head -n 1; }
mark ready
[ "$(wait_host)" = go ] || fail "expected go"
for r in $(seq 1 "$(karg rounds)"); do
	cost "none-$r"
	for cfg in $(karg configs | tr , ' '); do
		case $cfg in
		posted) a="post=1" ;;
		kicked) a="post=0" ;;
		lazy) a="post=1 mode=lazy" ;;
		esac
		check "insmod-$cfg-$r" insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg $a ||
			fail "insmod pviommu.ko $a: $(dmesg | tail -n 3)"
		e0=$(stat exits); o0=$(stat hypercalls); m0=$(stat maps)
		cost "$cfg-$r"
		value "count-$cfg-$r" "$(( $(stat exits) - e0 )) $(( $(stat hypercalls) - o0 )) $(( $(stat maps) - m0 ))"
		check "rmmod-$cfg-$r" rmmod pviommu || fail "rmmod pviommu"
	done
done
exit 0
GUEST

# boot NAME ROUNDS INSN: the guest runs every configuration ROUNDS times; with INSN=1, under QEMU
# with pvinsn.so, answering each of its qmarks with the instruction count so far (into $work/q)
boot() {
	local -a qa=()
	local k=0 n c
	[ "$3" = 1 ] && qa=(--count-insns "$work/insn.cnt")
	VM_QEMU_WRAPPER="$CTL run --mode deny --" vm_boot --name "$1" --script "$work/guest.sh" \
		--file "$KO" --file "$COST" --net e1000 "${qa[@]+"${qa[@]}"}" \
		--append "pviommu.pairs=$PAIRS pviommu.rounds=$2 pviommu.insn=$3 pviommu.configs=$(echo $CONFIGS | tr ' ' ,)" \
		--timeout $((120 + $2 * 240 * (1 + $3))) || { say "$NAME: boot failed"; return 1; }
	vm_wait_marker ready 120 || { say "$NAME: guest not ready: $(vm_tail 10 | tr '\n' '|')"; vm_kill; return 1; }
	vm_send go
	if [ "$3" = 1 ]; then
		: >"$work/q"
		n=$((3 * $2 * (1 + $(echo $CONFIGS | wc -w))))
		while [ $k -lt $n ]; do
			k=$((k + 1))
			vm_wait_marker "q$k" 300 || { say "$NAME: no q$k from the guest: $(vm_tail 10 | tr '\n' '|')"; vm_kill; return 1; }
			c=$(vm_insns "$work/insn.cnt") || { say "$NAME: no instruction count at q$k"; vm_kill; return 1; }
			echo "$k $c" >>"$work/q"
			vm_send go
		done
	fi
	vm_wait $((60 + $2 * 240 * (1 + $3))) >/dev/null 2>&1
	rc=$?
	last=${CONFIGS##* }
	if [ "$rc" != 0 ] || ! grep -q "VALUE cost-$last-$2 " "$(vm_log)"; then
		say "$NAME: the guest did not finish (rc $rc): $(vm_tail 12 | tr '\n' '|')"
		return 1
	fi
}
boot guestops "$ROUNDS" 0 || exit 1
log=$work/timed.log
cp "$(vm_log)" "$log"
# the counting boot: guest instructions per pair (the host's noise does not move them: one round tells)
qlog=
if [ -e "$VM_OUT/tests/pvinsn.so" ]; then
	boot guestops-insn 1 1 || exit 1
	qlog=$work/insn.log
	cp "$(vm_log)" "$qlog"
else
	say "$NAME: $VM_OUT/tests/pvinsn.so missing (make): no instruction counts"
fi
mkdir -p "$VM_OUT/bench"
python3 - "$log" "$ROUNDS" "$VM_OUT/bench/guest_ops.dat" "$CONFIGS" "$qlog" "$work/q" <<'PY'
import re, statistics, sys
log, rounds, dat, want = sys.argv[1], int(sys.argv[2]), sys.argv[3], ["none"] + sys.argv[4].split()
qlog, qfile = sys.argv[5], sys.argv[6]
def values(path):
    v = {}
    for line in open(path, errors="replace"):
        m = re.search(r"PVIOMMU-VM: VALUE (\S+) (.*)", line.replace("\r", ""))
        if m:
            v[m.group(1)] = m.group(2).split()
    return v
v = values(log)
# instructions per pair: (count at "NAME 2" - "NAME 1") - ("NAME 1" - "NAME 0") is 2N pairs
ipp = {}
if qlog:
    qv, at = values(qlog), {}
    for line in open(qfile):
        k, n = line.split()
        name = qv.get("q" + k)
        if name:
            at[tuple(name)] = int(n)
    for key in list(at):
        cfg, step = key
        if step == "0" and (cfg, "1") in at and (cfg, "2") in at:
            c = cfg.rsplit("-", 1)[0]
            n = int(qv["cost-" + cfg][0])
            ipp[c] = ((at[(cfg, "2")] - at[(cfg, "1")]) - (at[(cfg, "1")] - at[(cfg, "0")])) / (2 * n)
cfgs = [("none", "no pviommu.ko (direct mapping)"), ("posted", "pviommu strict, posted (default)"),
        ("kicked", "pviommu strict, post=0 (exit per op)"), ("lazy", "pviommu lazy")]
cfgs = [c for c in cfgs if c[0] in want]
def med(cfg, i):
    xs = [float(v["cost-%s-%d" % (cfg, r)][i]) for r in range(1, rounds + 1)
          if len(v.get("cost-%s-%d" % (cfg, r), [])) == 3]
    return statistics.median(xs) if len(xs) == rounds else None
def cnt(cfg, i):
    xs = [int(v["count-%s-%d" % (cfg, r)][i]) for r in range(1, rounds + 1)
          if len(v.get("count-%s-%d" % (cfg, r), [])) >= 2]
    return sum(xs) if xs else None
pairs = int(v["cost-none-1"][0])
base = (med("none", 1), med("none", 2))
bad = 0
print("\nguest time per DMA map + unmap pair (pvdmacost.ko on the e1000, guest clock, TCG; median of %d\n"
      "rounds of %d pairs, configurations interleaved in one boot)" % (rounds, pairs))
print("  %-40s %10s %7s %10s %7s %12s %12s %12s" % ("", "1 page", "ratio", "16 pages", "ratio",
                                                    "exits/pair", "ops/pair", "insns/pair"))
with open(dat, "w") as f:
    f.write("# config page_ns sg16_ns exits_per_pair ops_per_pair insns_per_pair\n")
    for c, label in cfgs:
        p, s = med(c, 1), med(c, 2)
        if p is None or s is None or p < 0 or s < 0:
            print("  %-40s failed" % label)
            bad = 1
            continue
        e, o = cnt(c, 0), cnt(c, 1)
        # per pair: two runs (page, then sg16) of 'pairs' pairs each, every round
        n = 2 * pairs * rounds
        ex = "-" if e is None else "%.3f" % (e / n)
        op = "-" if o is None else "%.2f" % (o / n)
        ip = "-" if c not in ipp else "%.0f" % ipp[c]
        print("  %-40s %8.0f ns %6.2fx %8.0f ns %6.2fx %12s %12s %12s" % (label, p, p / base[0], s, s / base[1], ex, op, ip))
        f.write("%s %.0f %.0f %s %s %s\n" % (c, p, s, ex, op, ip))
print("  (ops/pair: the guest module's map/unmap operations; exits/pair: its exits for them, the\n"
      "  posted page's target being ~0; ratio: to no pviommu.ko in the same boot; insns/pair: guest\n"
      "  instructions per pair, both kinds together, counted in a second boot under QEMU with\n"
      "  pvinsn.so: within a few instructions from boot to boot, where the ns move 10-20%)")
sys.exit(bad)
PY
