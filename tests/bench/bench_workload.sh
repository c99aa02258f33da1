#!/bin/bash
# tests/bench/bench_workload.sh - guest workload throughput with pviommu enforcement off, on the
# uprobe plane (audit) and on the in-process plane (deny), side by side in one run (make bench).
#
# Guest (QEMU TCG, q35, 2 vCPUs; VM_ACCEL, VM_SMP change them): e1000 00:04.0, virtio-net 00:05.0, virtio-blk 00:07.0 (virtio
# with iommu_platform=on,disable-legacy=on) and nvme 00:08.0; pviommu.ko protects all four
# (transport=tcg).
# Configurations (one boot each, all workloads run in that boot):
#   BARE    reference: plain QEMU, no guest module, nothing on the host side.
#   OFF     "enforcement off": plain QEMU, no enforcement plane; pviommu.ko is loaded and its
#           map/unmap hypercalls reach the host through `pviommuctl attach --pid P` (TCG transport,
#           a uprobe on cpu_x86_cpuid) without --enforce: everything but the per-transfer check.
#   UPROBE  `pviommuctl attach --pid P --enforce`, mode audit: the same transport + a uprobe check
#           on every QEMU address-space call.
#   INPROC  QEMU started as `pviommuctl run --mode deny -- qemu-system-x86_64 ...`: the library
#           checks every transfer in QEMU (mmapped index) and serves the guest's shared page:
#           MAP/UNMAP are posted there without an exit and carried out in batches (one BPF
#           test_run each) before the library's next check (bpf/pviommu.h, "Posting").
#   KICK    the same with pviommu.ko post=0: an exit and a BPF run per operation (the reference
#           for posting).
#   LAZY    INPROC with pviommu.ko mode=lazy (unmaps batched: lazy_ms / lazy_batch window).
#   VIOMMU  the peer: no pviommu at all, QEMU's emulated intel-iommu (-device intel-iommu,
#           intremap=off) and the guest's own IOMMU driver, intel_iommu=on iommu.strict=1;
#           VIOMMU-LAZY the same with iommu.strict=0 (flush queue).
# Workloads (timed in the guest with the monotonic clock in ns, /proc/timer_list "now at"),
# WORKLOADS selects (default: all):
#   e1000-rx, vnet-rx   TCP download of NET_MB MiB from a host listener (python3) through the
#                       e1000 / the virtio-net NIC (busybox nc)
#   e1000-tx, vnet-tx   TCP upload of NET_MB MiB to it (the listener counts and hashes the bytes)
#   blk-r64k, blk-w64k  O_DIRECT sequential read / write of BLK_MB MiB on /dev/vda, bs=64k
#   blk-r4k, blk-w4k    the same with bs=4k, BLK4K_MB MiB (one request in flight: the time per
#                       request is the 4k latency the table prints)
#   nvme-r64k, nvme-w64k  the 64k read / write on the nvme disk (/dev/nvme0n1)
# Transfers per workload = the delta of the global `checks` counter (pviommuctl -j status) over
# the workload on the UPROBE plane, which counts every checked transfer; the in-process library
# keeps no counter and OFF/BARE check nothing: their transfers/s use the same per-workload count
# (the workload is deterministic) over their own time. Violations come from the same counters.
# The guest module's operations, exits and the host's BPF runs for them, per workload: its
# debugfs counters read in the guest before and after each timed run, outside the timing (not in
# the counting boot); the read after a run kicks once when entries are pending.
# Configurations are interleaved (BARE, OFF, UPROBE, INPROC, BARE, ...) ROUNDS times; each boot
# runs every workload REPS times; the table shows the median, the spread (min-max) and the ratio
# of medians against OFF (and BARE).
# After the timed rounds, one more boot per configuration under QEMU with tests/tools/pvinsn.so
# counts the guest's instructions per workload (not timed; boots of one configuration count within
# 1-3% on the 64k disks, more where TCP's timing changes the guest's work; INSN=0 skips it):
# guest instructions per GB and per DMA API call, beside the noisy throughput.
# Environment: OUT/VM_OUT build dir, ROUNDS (2), REPS (2), NET_MB (32), BLK_MB (128), BLK4K_MB (8),
# BENCH_CONFIGS ("bare off uprobe inproc kick lazy viommu viommu-lazy"; also: inproc0 = the in-process library with no guest
# module, a diagnostic: what the library costs when no transfer is protected; ring64 = INPROC with
# the one-page ring of 64 entries, the reference for the default 512). Needs root and `make all guest`; skips (exit 0)
# without them. Exit 0 = every configuration measured (the <= 5% target is reported, not
# enforced: this machine is 2 noisy cores).
set -u
NAME=bench_workload
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export VM_OUT=${VM_OUT:-${OUT:-$SRC/build}}
# shellcheck source=tests/vm/lib.sh
. "$SRC/tests/vm/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=$VM_OUT/guest-module/pviommu.ko
# BENCH_SHORT=1 (make bench): three workloads, no IOMMU / pviommu / intel-iommu, one rep each;
# make bench-peers runs the whole set
if [ "${BENCH_SHORT:-0}" = 1 ]; then
	: "${WORKLOADS:=e1000-rx blk-r64k blk-r4k}" "${BENCH_CONFIGS:=bare inproc viommu}" "${REPS:=1}"
fi
ROUNDS=${ROUNDS:-2} REPS=${REPS:-2} NET_MB=${NET_MB:-32} BLK_MB=${BLK_MB:-128} BLK4K_MB=${BLK4K_MB:-8}
WORKLOADS=${WORKLOADS:-e1000-rx e1000-tx vnet-rx vnet-tx blk-r64k blk-w64k blk-r4k blk-w4k nvme-r64k nvme-w64k}
for w in $WORKLOADS; do
	case $w in e1000-rx|e1000-tx|vnet-rx|vnet-tx|blk-r64k|blk-w64k|blk-r4k|blk-w4k|nvme-r64k|nvme-w64k) ;;
	*) echo "$NAME: unknown workload '$w'" >&2; exit 2 ;; esac
done
# QEMU's hard limit: the boot, then each workload's runs at 300 s at most
BOOT_TIMEOUT=$((180 + REPS * $(echo $WORKLOADS | wc -w) * 300))
CONFIGS=${BENCH_CONFIGS:-bare off uprobe inproc kick lazy viommu viommu-lazy}

say() { printf '%s\n' "$*"; }
[ "$(id -u)" = 0 ] || { say "$NAME: skipped (needs root: BPF programs, VMs)"; exit 0; }
for f in "$CTL" "$KO" "$VM_OUT/libpviommu-qemu.so" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"; do
	[ -e "$f" ] || { say "$NAME: skipped ($f missing: make; make guest)"; exit 0; }
done
command -v python3 >/dev/null || { say "$NAME: skipped (python3 missing: the host listener)"; exit 0; }

vm_host_init bench
T0=$(date +%s)
# guest instructions: one more boot per configuration after the timed rounds, under QEMU with the
# pvinsn.so plugin (tests/tools/pvinsn.c), which counts what the guest executes; the host's noise
# does not move the count, so one boot tells, and its time is left out of the throughput figures
# (the plugin slows TCG).
# INSN=0: no counting boots.
INSN=${INSN:-1} INSN_FILE=$work/insn.cnt
[ "$INSN" = 0 ] || [ -e "$VM_OUT/tests/pvinsn.so" ] || { say "$NAME: $VM_OUT/tests/pvinsn.so missing (make)"; exit 1; }
# the run's host context: other QEMUs and the load, at the start (and at the end, below)
host_ctx() { printf '"%s_other_qemus": %s, "%s_loadavg": "%s"' "$1" "$(pgrep -c qemu-system || true)" "$1" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
CTX0=$(host_ctx start)

"$CTL" load >"$work/load.out" 2>&1 || { say "$NAME: pviommuctl load failed: $(cat "$work/load.out")"; exit 1; }

# ---- host listener: "GET N\n" -> N bytes, then close ----------------------------------------
if vm_tcp_server "$work"; then SPID=$VM_TCP_PID port=$VM_TCP_PORT
else SPID=$VM_TCP_PID; say "$NAME: host listener failed: $(cat "$work/server.err")"; exit 1; fi

# ---- guest side ------------------------------------------------------------------------------
cat >"$work/guest.sh" <<'GUEST'
. /lib/pviommu-vm.sh
mount -t debugfs none /sys/kernel/debug 2>/dev/null
now() {	# monotonic ns (hrtimer clock) from /proc/timer_list; /proc/uptime (10 ms) as fallback
	_t=$(head -n 4 /proc/timer_list 2>/dev/null | sed -n 's/^now at \([0-9]*\) nsecs.*/\1/p')
	[ -n "$_t" ] || _t=$(awk '{ printf "%d", $1 * 1e9 }' /proc/uptime)
	echo "$_t"
}
ifup() {	# ifup e1000|virtio: the NIC up on its own subnet (the host listener at .2)
	i=
	for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic "$1") && break; sleep 0.5; done
	[ -n "$i" ] || return 1
	ip link set "$i" up
	ip addr add "$(guest_ip "$i")/24" dev "$i" 2>/dev/null
	[ "$1" != e1000 ] || ip route add default via "$(host_ip "$i")" dev "$i" 2>/dev/null
	return 0
}
NETB=$(( $(karg netmb) * 1048576 ))
BLKN=$(( $(karg blkmb) * 16 ))
BLK4N=$(( $(karg blk4kmb) * 256 ))
mark ready
[ "$(wait_host)" = go ] || fail "expected go"
if [ "$(karg nomod)" != 1 ]; then
	check insmod-pviommu insmod /test/pviommu.ko devices=$BDF_E1000,$BDF_VIRTIO_NET,$BDF_VIRTIO_BLK,$BDF_NVME transport=tcg verify=$(karg verify || echo 1) post=$(karg post || echo -1) mode=$(karg mode || echo strict) ring=$(karg ring || echo 512) ||
		fail "insmod pviommu.ko: $(dmesg | tail -n 3)"
fi
if [ "$(karg viommu)" = 1 ]; then	# the peer: the guest's own IOMMU driver translates both devices
	check viommu-dmar [ -e /sys/class/iommu/dmar0 ] || fail "no DMAR unit: intel-iommu not active"
	check viommu-e1000-translated grep -qxE 'DMA|DMA-FQ' /sys/bus/pci/devices/$BDF_E1000/iommu_group/type ||
		fail "e1000 not behind a translating IOMMU domain"
	value viommu-domain "$(cat /sys/bus/pci/devices/$BDF_E1000/iommu_group/type)"
fi
check ifup-e1000 ifup e1000 || fail "e1000 not back after insmod"
check ifup-virtio-net ifup virtio || fail "virtio-net not back after insmod"
wait_for /sys/block/vda 20 || fail "no /dev/vda after insmod"
wait_for /sys/block/nvme0n1 20 || fail "no /dev/nvme0n1 after insmod"
# net NIC rx|tx: "t0 t1 bytes" of one transfer of NETB bytes with the host listener
net() {
	_h=$(host_ip "$(nic "$1")")
	_t0=$(now)
	if [ "$2" = rx ]; then
		_n=$(echo "GET $NETB" | nc -w 20 "$_h" "$(karg port)" | wc -c)
	else	# the listener answers "OK n md5" once it has all n bytes
		_n=$({ echo "PUT $NETB"; head -c "$NETB" /dev/zero; } | nc -w 20 "$_h" "$(karg port)" |
			sed -n 's/^OK \([0-9]*\) .*/\1/p')
	fi
	echo "$_t0 $(now) ${_n:-0}"
}
# blk DEV r|w BS COUNT: "t0 t1 bytes" of COUNT O_DIRECT requests of BS bytes
blk() {
	_t0=$(now)
	if [ "$2" = r ]; then dd if="$1" of=/dev/null bs="$3" count="$4" iflag=direct 2>/tmp/dd.err
	else dd if=/dev/zero of="$1" bs="$3" count="$4" oflag=direct 2>/tmp/dd.err; fi
	_t1=$(now)
	# busybox dd prints no byte count: full + partial records
	_n=$(sed -n 's/^\([0-9]*\)+\([0-9]*\) records out.*/\1/p' /tmp/dd.err)
	_p=$(sed -n 's/^\([0-9]*\)+\([0-9]*\) records out.*/\2/p' /tmp/dd.err)
	[ "${_p:-0}" = 0 ] || _n=0	# a short transfer: not counted
	case $3 in 64k) _b=65536 ;; 4k) _b=4096 ;; esac
	echo "$_t0 $_t1 $(( ${_n:-0} * _b ))"
}
# gcount: "exits BPF-runs operations" of the guest module so far ("- - -" without it); reading
# the stats carries out what is posted (a kick, counted, when anything is pending)
S=/sys/kernel/debug/pviommu/stats
gcount() {
	[ -r $S ] || { echo "- - -"; return 0; }
	awk '$1 == "exits" { e = $2 } $1 == "page_runs" { r = $2 } $1 == "hypercalls" { o = $2 }
		END { print (e == "" ? "-" : e), (r == "" ? "-" : r), (o == "" ? "-" : o) }' $S
}
# warm-up: ARP, TCP, the block devices' first requests
echo "GET 65536" | nc -w 10 "$(host_ip "$(nic e1000)")" "$(karg port)" >/dev/null
echo "GET 65536" | nc -w 10 "$(host_ip "$(nic virtio)")" "$(karg port)" >/dev/null
dd if=/dev/vda of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null
dd if=/dev/nvme0n1 of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null
mark armed
while cmd=$(wait_host); do
	set -- $cmd
	[ "$1" != end ] || break
	# not in the counting boot ($2 = count.N): the reads would be counted as the workload's
	case $2 in count.*) g0= ;; *) g0=$(gcount) ;; esac
	case $1 in
	e1000-rx) r=$(net e1000 rx) ;;
	e1000-tx) r=$(net e1000 tx) ;;
	vnet-rx) r=$(net virtio rx) ;;
	vnet-tx) r=$(net virtio tx) ;;
	blk-r64k) r=$(blk /dev/vda r 64k "$BLKN") ;;
	blk-w64k) r=$(blk /dev/vda w 64k "$BLKN") ;;
	blk-r4k) r=$(blk /dev/vda r 4k "$BLK4N") ;;
	blk-w4k) r=$(blk /dev/vda w 4k "$BLK4N") ;;
	nvme-r64k) r=$(blk /dev/nvme0n1 r 64k "$BLKN") ;;
	nvme-w64k) r=$(blk /dev/nvme0n1 w 64k "$BLKN") ;;
	*) r="0 0 0" ;;
	esac
	value "$1-$2" "$r"
	[ -z "$g0" ] || value "gc-$1-$2" "$g0 $(gcount)"
	mark "done-$1-$2"
done
[ -r /sys/kernel/debug/pviommu/stats ] && value gstats "$(tr '\n' ' ' </sys/kernel/debug/pviommu/stats)"
exit 0
GUEST

# "checks hypercalls violations" from the global counters; fails (said on stderr) without them
stats() {
	local j
	j=$("$CTL" -j status 2>"$work/status.err") ||
		{ echo "$NAME: pviommuctl -j status failed: $j $(cat "$work/status.err")" >&2; return 1; }
	python3 -c 'import json,sys
s=json.load(sys.stdin)["stats"]; print(s["checks"], s["hypercalls"], s["violations"])' <<<"$j" 2>/dev/null ||
		{ echo "$NAME: no counters in pviommuctl -j status: $j" >&2; return 1; }
}
dom_mode() {	# the mode of domain PID
	"$CTL" -j status 2>/dev/null | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["domains"] if x["pid"]==int(sys.argv[1])]
print(d[0]["mode"] if d else "none")' "$1" 2>/dev/null
}

RES=$work/results	# cfg round rep workload seconds bytes checks hypercalls violations qemu_cpu_s
GC=$work/gcounts	# cfg workload bytes, then exits BPF-runs operations before and after the run
: >"$GC"
# guest_insns ROUND: in the counting boot, the guest's instructions so far; elsewhere 0
guest_insns() {
	[ "$1" = count ] || { echo 0; return 0; }
	vm_insns "$INSN_FILE"
}
# qemu_cpu PID: QEMU's user + system CPU seconds so far (all its threads); fails when PID is gone
qemu_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }
: >"$RES"
BOOTS=0 FAILS=0
# run_cfg CFG ROUND: one boot, every workload REPS times
run_cfg() {
	local cfg=$1 r=$2 pid k w s0 s1 v t0 t1 bytes mode app=""
	local -a wrap=() viommu=() qargs=()
	case $cfg in
	bare) "$CTL" mode deny >/dev/null; app=" pviommu.nomod=1" ;;
	off) "$CTL" mode deny >/dev/null; app=" pviommu.verify=0" ;;	# attach: no answer
	uprobe) "$CTL" mode audit >/dev/null; app=" pviommu.verify=0" ;;
	inproc) "$CTL" mode deny >/dev/null; wrap=("$CTL" run --mode deny --) ;;
	inproc0) "$CTL" mode deny >/dev/null; wrap=("$CTL" run --mode deny --); app=" pviommu.nomod=1" ;;
	kick) "$CTL" mode deny >/dev/null; wrap=("$CTL" run --mode deny --); app=" pviommu.post=0" ;;
	ring64) "$CTL" mode deny >/dev/null; wrap=("$CTL" run --mode deny --); app=" pviommu.ring=64" ;;
	lazy) "$CTL" mode deny >/dev/null; wrap=("$CTL" run --mode deny --); app=" pviommu.mode=lazy" ;;
	viommu|viommu-lazy)
		viommu=(--viommu "intel-iommu,intremap=off")
		app=" pviommu.nomod=1 pviommu.viommu=1 intel_iommu=on iommu.strict=$([ "$cfg" = viommu ] && echo 1 || echo 0)" ;;
	esac
	[ "$r" != count ] || qargs=(--count-insns "$INSN_FILE")
	VM_QEMU_WRAPPER="${wrap[*]}" vm_boot --name "bw-$cfg-$r" "${qargs[@]+"${qargs[@]}"}" --script "$work/guest.sh" --file "$KO" \
		--net e1000 --net virtio --disk virtio-blk "$((BLK_MB + 8))M" --disk nvme "$((BLK_MB + 8))M" \
		"${viommu[@]+"${viommu[@]}"}" \
		--virtio-opts "iommu_platform=on,disable-legacy=on" --timeout "$BOOT_TIMEOUT" \
		--append "pviommu.port=$port pviommu.netmb=$NET_MB pviommu.blkmb=$BLK_MB pviommu.blk4kmb=$BLK4K_MB$app" || return 1
	BOOTS=$((BOOTS + 1))
	# the image is sparse: read it once on the host so the first guest read does not pay for
	# the host page cache filling with zero pages (seen: rep 1 at half the speed of rep 2)
	cat "$(vm_dir)"/disk*.img >/dev/null
	vm_wait_marker ready 120 || return 1
	pid=$(vm_pid) || return 1
	case $cfg in
	off) "$CTL" attach --pid "$pid" >"$work/attach-$cfg-$r.out" 2>&1 ;;
	uprobe) "$CTL" attach --pid "$pid" --enforce >"$work/attach-$cfg-$r.out" 2>&1 ;;
	*) true ;;
	esac || { say "$NAME: pviommuctl attach failed: $(cat "$work/attach-$cfg-$r.out")"; return 1; }
	vm_send go || return 1
	vm_wait_marker armed 120 || return 1
	echo "$cfg $r armed after $(awk -v a="$(cat "$(vm_dir)/start")" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >>"$work/phases"
	mode=$(dom_mode "$pid") || { say "$NAME: $cfg round $r: no domain mode from pviommuctl -j status"; return 1; }
	echo "$cfg $r $mode" >>"$work/modes"
	for k in $(seq 1 "$REPS"); do
		for w in $WORKLOADS; do
			# a counter or CPU time that cannot be read fails the boot: no made-up zeros
			s0=$(stats) && c0=$(qemu_cpu "$pid") && i0=$(guest_insns "$r") || return 1
			vm_send "$w $r.$k" || return 1
			vm_wait_marker "done-$w-$r.$k" 300 || return 1
			s1=$(stats) && c1=$(qemu_cpu "$pid") && i1=$(guest_insns "$r") || return 1
			if [ "$r" = count ]; then	# the counting boot: instructions, no timing
				echo "$cfg $w $((i1 - i0)) $(vm_value "$w-$r.$k" | awk '{ print $3 }') $(awk -v a="$s0" -v b="$s1" 'BEGIN { split(a, x); split(b, y); print y[2] - x[2] }')" >>"$work/insns"
				continue
			fi
			read -r t0 t1 bytes <<<"$(vm_value "$w-$r.$k")"
			v=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" 'BEGIN {
				split(a, x); split(b, y)
				printf "%.6f %d %d %d", (t1 - t0) / 1e9, y[1] - x[1], y[2] - x[2], y[3] - x[3] }')
			echo "$cfg $r $k $w ${v%% *} $bytes ${v#* } $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')" >>"$RES"
			# the guest module's exits, BPF runs and operations during this run (GC)
			echo "$cfg $w $bytes $(vm_value "gc-$w-$r.$k")" >>"$GC"
		done
	done
	vm_send end
	vm_wait 60 || { say "$NAME: $cfg round $r: guest did not finish cleanly"; return 1; }
	vm_value gstats >"$work/gstats-$cfg-$r"
	return 0
}

say "$NAME: guest workload throughput, enforcement off / uprobe audit / in-process deny"
say "  QEMU ${VM_ACCEL:-tcg}, ${VM_SMP:-2} vCPU(s), 512 MiB; pviommu.ko protects e1000 00:04.0, virtio-net 00:05.0, virtio-blk 00:07.0"
say "  and nvme 00:08.0 (transport=tcg). Workloads: $WORKLOADS"
say "  net: $NET_MB MiB TCP down (rx) / up (tx) (slirp, busybox nc); 64k: $BLK_MB MiB O_DIRECT (dd); 4k: $BLK4K_MB MiB"
say "  $ROUNDS round(s) x configs interleaved ($CONFIGS), $REPS rep(s) of each workload per boot"
for r in $(seq 1 "$ROUNDS"); do
	for cfg in $CONFIGS; do
		if ! run_cfg "$cfg" "$r"; then
			FAILS=$((FAILS + 1))
			say "$NAME: $cfg round $r FAILED; last console lines:"; vm_tail 12 | sed 's/^/    /'
			vm_kill
		fi
	done
done

if [ "$INSN" != 0 ]; then
	say "  + one counting boot per configuration (QEMU with pvinsn.so: guest instructions per GB)"
	for cfg in $CONFIGS; do
		if ! REPS=1 run_cfg "$cfg" count; then
			FAILS=$((FAILS + 1))
			say "$NAME: $cfg counting boot FAILED; last console lines:"; vm_tail 12 | sed 's/^/    /'
			vm_kill
		fi
	done
fi
echo "{$CTX0, $(host_ctx end), \"cpus\": $(nproc), \"rounds\": $ROUNDS, \"reps\": $REPS}" >"$work/host.json"
# the summary; exit 1 when a configuration measured a workload in no valid run
python3 - "$RES" "$NET_MB" "$BLK_MB" "$work/modes" "$work" "$BLK4K_MB" "$WORKLOADS" "$CONFIGS" <<'PY'
import sys, glob, os, statistics as st
res, net_mb, blk_mb, modes, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
blk4k_mb, WL, CONFIGS = int(sys.argv[6]), sys.argv[7].split(), sys.argv[8].split()
rows = [l.split() for l in open(res) if l.strip()]
names = {"bare": "BARE (no pviommu)", "off": "OFF (transport only)", "uprobe": "UPROBE audit",
         "inproc": "INPROC deny", "ring64": "INPROC, 64-entry ring", "kick": "INPROC, kick per op",
         "lazy": "INPROC lazy",
         "viommu": "intel-iommu strict", "viommu-lazy": "intel-iommu lazy",
         "inproc0": "INPROC, no guest mod"}
def is4k(w): return w.endswith("-r4k") or w.endswith("-w4k")
def want_bytes(w):
    if w.endswith("-rx") or w.endswith("-tx"):
        return net_mb << 20
    return (blk4k_mb if is4k(w) else blk_mb) << 20
want = {w: want_bytes(w) for w in WL}
cfgs = [c for c in names if any(r[0] == c for r in rows)]
data, bad, byround = {}, [], {}
for c, rnd, k, w, sec, nbytes, chk, hc, viol, cpu in rows:
    sec, nbytes = float(sec), int(nbytes)
    if nbytes != want[w] or sec <= 0:
        bad.append(f"{c} round {rnd} rep {k} {w}: {nbytes} bytes in {sec:.3f} s (expected {want[w]})")
        continue
    data.setdefault((c, w), []).append((nbytes / sec / 1e6, sec, int(chk), int(hc), int(viol),
                                        float(cpu) / (nbytes / 1e9)))
    byround.setdefault((c, w, rnd), []).append(nbytes / sec / 1e6)
def paired(c, w, base="bare"):
    """per round: this config's mean MB/s over the base's in the same round"""
    rs = []
    for (c2, w2, r), v in byround.items():
        b = byround.get((base, w, r))
        if c2 == c and w2 == w and b:
            rs.append(st.mean(v) / st.mean(b))
    return rs
try:
    mode_lines = [l.split() for l in open(modes)]
except OSError:
    mode_lines = []
nan = float("nan")
def med(v): return st.median(v) if v else nan
def col(c, w, i): return [x[i] for x in data.get((c, w), [])]
def ratio(c, w, base):
    a, b = med(col(c, w, 0)), med(col(base, w, 0))
    return a / b if b == b and b > 0 and a == a else nan
def fr(x): return f"{x:>6.3f}" if x == x else f"{'-':>6}"
print()
print(f"{'load':<9} {'config':<20} {'n':>2} {'MB/s':>7} {'min-max':>13} {'vs OFF':>6} {'vs BARE':>7}"
      f" {'transfers':>9} {'transfers/s':>11} {'hcalls':>6} {'viol':>4} {'CPU-s/GB':>8} {'lat us':>7}")
xfer = {}
for w in WL:
    up = col("uprobe", w, 2)
    xfer[w] = int(med(up)) if up else 0
    for c in cfgs:
        v = data.get((c, w), [])
        if not v:
            print(f"{w:<9} {names[c]:<20}  0 (no valid run)")
            continue
        mbs = col(c, w, 0)
        t = med(col(c, w, 1))
        n = xfer[w]
        ns = f"{n:>9d}" if n else f"{'?':>9}"
        ts = f"{n / t:>11.0f}" if n else f"{'?':>11}"
        # 4k: one request in flight, so the time per request is its latency
        lat = f"{t / (want[w] / 4096) * 1e6:>7.0f}" if is4k(w) else f"{'-':>7}"
        print(f"{w:<9} {names[c]:<20} {len(v):>2} {med(mbs):>7.2f} {min(mbs):>6.2f}-{max(mbs):<6.2f}"
              f" {fr(ratio(c, w, 'off'))} {fr(ratio(c, w, 'bare')):>7} {ns} {ts}"
              f" {int(med(col(c, w, 3))):>6d} {sum(col(c, w, 4)):>4d} {med(col(c, w, 5)):>8.1f} {lat}")
print()
for l in bad:
    print("  invalid sample (not counted):", l)
# every configuration asked for (those whose boots all failed too) needs a valid run of every workload
missing = [f"{c} {w}" for c in CONFIGS for w in WL if not data.get((c, w))]
for m in missing:
    print("  FAILED: no valid sample:", m)
for c, r, m in mode_lines:
    if (c == "uprobe" and m != "audit") or (c == "inproc" and m != "deny"):
        print(f"  WARNING: {c} round {r}: domain mode was '{m}'")
print("  MB/s: 10^6 bytes/s, guest monotonic clock (ns) around nc / dd only; median of n runs;"
      " vs X: ratio of medians.")
print("  CPU-s/GB: QEMU's user + system CPU seconds (all threads, /proc/PID/stat) per GB moved, median;"
      " lat us: time per 4k request (one in flight).")
print("  OFF = pviommu.ko loaded + 'pviommuctl attach' (TCG transport, uprobe on cpu_x86_cpuid),"
      " no per-transfer check.")
print("  BARE = no guest module, no host plane (reference: everything pviommu adds).")
print("  transfers: checked DMA transfers per run (delta of the 'checks' counter on the UPROBE plane,"
      " the one plane that counts")
print("  them; the same count is used for the other configs); hcalls: map/unmap hypercalls per run;"
      " viol: violations, all runs.")
for w in WL:
    for c in ("off", "bare"):
        v = col(c, w, 0)
        if len(v) > 1:
            print(f"  noise: {names[c].split()[0]} {w} spread (max-min)/median = "
                  f"{100 * (max(v) - min(v)) / med(v):.1f}% over {len(v)} runs")
print()
# deterministic counts from the guest module (debugfs stats at the end of each boot): per GB moved
# in that boot's timed runs (warm-up included in the counts: a few hundred KiB)
counts = {}
print(f"{'config':<20} {'boots':>5} {'ops/GB':>9} {'exits/GB':>9} {'exits/MB':>8} {'BPF runs/GB':>11}"
      f" {'posted':>7}   (guest: map/unmap operations, its exits, the host's BPF runs for them)")
for c in cfgs:
    tot = {"hypercalls": 0, "exits": 0, "page_runs": 0, "posted": 0}
    nbytes, boots, have_runs = 0, 0, True
    for f in sorted(glob.glob(os.path.join(work, f"gstats-{c}-*"))):
        r = f.rsplit("-", 1)[1]
        t = open(f).read().split()
        kv = dict(zip(t[0::2], t[1::2]))
        if "hypercalls" not in kv:
            continue
        boots += 1
        for k in tot:
            if k in kv and kv[k].lstrip("-").isdigit():
                tot[k] += int(kv[k])
            elif k == "page_runs":
                have_runs = False
        nbytes += sum(int(x[5]) for x in rows if x[0] == c and x[1] == r)
    if not boots or not nbytes:
        continue
    gb = nbytes / 1e9
    counts[c] = {"ops_per_gb": tot["hypercalls"] / gb, "exits_per_gb": tot["exits"] / gb,
                 "bpf_runs_per_gb": tot["page_runs"] / gb if have_runs else None,
                 "posted": tot["posted"], "boots": boots}
    runs = f"{tot['page_runs'] / gb:>11.0f}" if have_runs else f"{'-':>11}"
    print(f"{names[c]:<20} {boots:>5} {tot['hypercalls'] / gb:>9.0f} {tot['exits'] / gb:>9.0f}"
          f" {tot['exits'] / gb / 1000:>8.2f} {runs} {tot['posted']:>7d}")
print("  target (issue: emulated devices, strict): < 1 exit per MB; BPF runs: '-' where the"
      " channel is not the page (OFF/UPROBE:")
print("  every operation is its own hypercall and BPF run).")
# the same per workload: the guest module's counters read before and after each timed run
wcounts, wsum = {}, {}
try:
    for l in open(os.path.join(work, "gcounts")):
        t = l.split()
        if len(t) != 9 or int(t[2]) != want.get(t[1], -1) or "-" in (t[3], t[5], t[6], t[8]):
            continue
        a = wsum.setdefault((t[0], t[1]), [0, 0, 0, 0, True])
        a[0] += int(t[2])
        a[1] += int(t[6]) - int(t[3])
        a[3] += int(t[8]) - int(t[5])
        if "-" in (t[4], t[7]):
            a[4] = False
        else:
            a[2] += int(t[7]) - int(t[4])
except OSError:
    pass
if wsum:
    print()
    print(f"{'load':<9} {'config':<20} {'ops/GB':>9} {'exits/MB':>8} {'BPF runs/GB':>11}"
          "   (per workload: the guest module's counters read before and after each timed run;")
    print(" " * 62 + "the read after it carries out what is posted with a kick: 1 exit per run of them)")
    for w in WL:
        for c in cfgs:
            a = wsum.get((c, w))
            if not a or not a[0]:
                continue
            gb = a[0] / 1e9
            wcounts[(c, w)] = {"ops_per_gb": a[3] / gb, "exits_per_gb": a[1] / gb,
                               "bpf_runs_per_gb": a[2] / gb if a[4] else None}
            runs = f"{a[2] / gb:>11.0f}" if a[4] else f"{'-':>11}"
            print(f"{w:<9} {names[c]:<20} {a[3] / gb:>9.0f} {a[1] / gb / 1000:>8.3f} {runs}")
print()
ok = True
for w in WL:
    r = ratio("inproc", w, "off")
    if "off" not in cfgs:
        continue
    if r != r:
        print(f"  target in-process deny loss <= 5% vs OFF ({w}): not measured"); ok = False; continue
    loss = (1 - r) * 100
    ok = ok and loss <= 5
    rb = ratio("inproc", w, "bare")
    extra = f"; vs BARE {(1 - rb) * 100:+.1f}%" if rb == rb else ""
    print(f"  target in-process deny loss <= 5% vs OFF ({w}): {loss:+.1f}% -> "
          f"{'met' if loss <= 5 else 'NOT met'}{extra}")
for a, b in (("inproc", "viommu"), ("lazy", "viommu-lazy")):
    for w in WL:
        r = ratio(a, w, b)
        if r == r:
            print(f"  peer ({w}): {names[a]} / {names[b]} = {r:.3f}x throughput"
                  f" (vs no IOMMU: {ratio(a, w, 'bare'):.3f}x and {ratio(b, w, 'bare'):.3f}x)")
for w in WL:
    r = ratio("inproc", w, "kick")
    if r == r:
        print(f"  posting ({w}): INPROC (posted, batched) / INPROC kick per op = {r:.3f}x throughput")
for w in WL:
    t_off, t_up, t_in = (med(col(c, w, 1)) for c in ("off", "uprobe", "inproc"))
    if xfer[w] and t_off == t_off and t_up == t_up:
        print(f"  uprobe audit ({w}): {(1 - ratio('uprobe', w, 'off')) * 100:+.1f}% vs OFF; "
              f"{(t_up - t_off) * 1e6 / xfer[w]:+.2f} us per checked transfer of wall time")
    hc = med(col("off", w, 3))
    t_b = med(col("bare", w, 1))
    if hc and t_b == t_b and t_off == t_off:
        print(f"  transport ({w}): OFF - BARE = {(t_off - t_b) * 1e3:+.0f} ms for {int(hc)} hypercalls"
              f" ({(t_off - t_b) * 1e6 / hc:+.2f} us each: guest module + uprobe transport)")
print("  note: INPROC carries the hypercall transport in the library (a detour, no uprobe trap), OFF"
      " and UPROBE through a")
print("  uprobe: INPROC's hypercalls are cheaper than OFF's, so INPROC can be faster than OFF.")
# the counting boots: guest instructions per GB, and per DMA API call over BARE's (the calls:
# the operations INPROC deny counted in its own counting boot)
insns, insn_hc = {}, {}
try:
    for c, w, n, nb, hc in (l.split() for l in open(os.path.join(work, "insns")) if l.strip()):
        if int(nb) == want[w]:
            insns[(c, w)] = int(n) / (int(nb) / 1e9)
            insn_hc[(c, w)] = int(hc)
            if c not in cfgs:
                cfgs.append(c)
except OSError:
    pass
if insns:
    print()
    print("guest instructions per GB moved (one counting boot per configuration, QEMU with"
          " pvinsn.so; boots of one")
    print("configuration count within 1-3% on the 64k disks, more on TCP and 4k); ratio to BARE;"
          " per call: the instructions over BARE's per DMA API")
    print("map or unmap call (as many as INPROC deny posts operations: one per call)")
    for w in WL:
        b = insns.get(("bare", w))
        line = []
        for c in cfgs:
            v = insns.get((c, w))
            if v is None:
                continue
            cell = f"{names[c]} {v / 1e6:.0f}M"
            if b and c != "bare":
                cell += f" ({v / b:.3f}x"
                # the calls: the operations INPROC deny posted in its counting boot (one per call)
                hc = insn_hc.get(("inproc", w), 0)
                if hc > 0:
                    cell += f", {(v - b) * want[w] / 1e9 / hc:+.0f}/call"
                cell += ")"
            line.append(cell)
        print(f"  {w}: " + "; ".join(line))
# paired per-round ratios to no IOMMU (BARE), and the files of 'make bench-peers'
if "bare" in cfgs:
    print()
    print("paired per-round throughput ratios to no IOMMU (BARE): median [min-max] over rounds")
    for w in WL:
        line = []
        for c in cfgs:
            if c == "bare":
                continue
            rs = paired(c, w)
            if rs:
                line.append(f"{names[c]} {st.median(rs):.3f} [{min(rs):.3f}-{max(rs):.3f}]")
        print(f"  {w}: " + "; ".join(line))
outdir = os.environ.get("PEERS_OUT")
if outdir:
    import json, subprocess, shutil
    os.makedirs(outdir, exist_ok=True)
    res = []
    for c in cfgs:
        for w in WL:
            v = col(c, w, 0)
            if not v:
                continue
            rs = paired(c, w) if c != "bare" else [1.0]
            res.append({"config": c, "name": names[c], "workload": w, "runs": len(v),
                        "mb_s_median": med(v), "mb_s_min": min(v), "mb_s_max": max(v),
                        "qemu_cpu_s_per_gb": med(col(c, w, 5)),
                        "guest_insns_per_gb": insns.get((c, w)),
                        "guest_insns_ratio_to_bare": insns[(c, w)] / insns[("bare", w)]
                        if (c, w) in insns and ("bare", w) in insns else None,
                        "ratio_to_bare_median": st.median(rs) if rs else None,
                        "ratio_to_bare_min": min(rs) if rs else None,
                        "ratio_to_bare_max": max(rs) if rs else None,
                        **counts.get(c, {}), **wcounts.get((c, w), {})})
    host = {}
    try:
        host = json.load(open(os.path.join(work, "host.json")))
    except OSError:
        pass
    json.dump({"workloads": {w: f"{want[w] >> 20} MiB" for w in WL},
               "host": host, "results": res}, open(os.path.join(outdir, "peers.json"), "w"), indent=1)
    def gi(r):
        v, q = r.get("guest_insns_per_gb"), r.get("guest_insns_ratio_to_bare")
        return "-" if v is None else f"{v / 1e6:.0f}M" + ("" if q is None else f" ({q:.3f})")
    with open(os.path.join(outdir, "peers.md"), "w") as f:
        f.write("| workload | configuration | runs | MB/s median [min-max] | ratio to no IOMMU, paired per round: median [min-max] | QEMU CPU-s/GB | guest instructions/GB (ratio to no IOMMU) | exits/MB | BPF runs/GB |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
        for r in res:
            ex, br = r.get("exits_per_gb"), r.get("bpf_runs_per_gb")
            ratio = "-" if r["ratio_to_bare_median"] is None else \
                f"{r['ratio_to_bare_median']:.3f} [{r['ratio_to_bare_min']:.3f}-{r['ratio_to_bare_max']:.3f}]"
            f.write(f"| {r['workload']} | {r['name']} | {r['runs']} | {r['mb_s_median']:.2f}"
                    f" [{r['mb_s_min']:.2f}-{r['mb_s_max']:.2f}] | {ratio} | {r['qemu_cpu_s_per_gb']:.1f} | "
                    f"{gi(r)} | "
                    f"{'-' if ex is None else f'{ex / 1000:.3f}'} | {'-' if br is None else f'{br:.0f}'} |\n")
        f.write(f"\nhost: {json.dumps(host)}\n")
    with open(os.path.join(outdir, "peers.dat"), "w") as f:
        cs = [c for c in cfgs if c != "bare"]
        f.write("workload " + " ".join(f'"{names[c]}"' for c in cs) + "\n")
        for w in WL:
            vals = []
            for c in cs:
                rs = paired(c, w)
                vals.append(f"{st.median(rs):.4f}" if rs else "NaN")
            f.write(w + " " + " ".join(vals) + "\n")
    if shutil.which("gnuplot"):
        gp = f"""set terminal pngcairo size 900,480 noenhanced
set output '{outdir}/peers.png'
set title 'throughput relative to no IOMMU (paired per round, median)'
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set ytics 0.1
set grid ytics
set key outside right
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot for [i=2:{1 + len(cs)}] '{outdir}/peers.dat' using i:xtic(1) title columnheader(i)
"""
        r = subprocess.run(["gnuplot"], input=gp, text=True, capture_output=True)
        print(f"  plot: {outdir}/peers.png" if r.returncode == 0 else f"  plot failed: {r.stderr.strip()[:200]}")
    else:
        print("  plot: gnuplot not installed (apt-get install gnuplot-nox): data in peers.dat")
    print(f"  written: {outdir}/peers.md, peers.json")
if not ok:
    print("  differences within the noise lines above are not significant: boot-to-boot variation"
          " dominates on this host (2 shared cores run both TCG vCPUs, QEMU's main loop and its I/O"
          " thread); bench_core prints the per-transfer check cost measured in its own run")
sys.exit(1 if missing else 0)
PY
SUMMARY_RC=$?
say "  boots: $BOOTS, failed configs: $FAILS, summary: $([ "$SUMMARY_RC" = 0 ] && echo ok || echo "FAILED (rc $SUMMARY_RC)"), wall time: $(($(date +%s) - T0)) s"
[ "$FAILS" = 0 ] && [ "$SUMMARY_RC" = 0 ]
