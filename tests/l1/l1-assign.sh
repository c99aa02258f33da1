#!/bin/bash
# l1-assign.sh - the L1 side of test_l1_assign.sh: runs in L1's chroot of the host root
# (tests/l1/lib.sh). L1's edu (behind L1's emulated intel-iommu) is bound to vfio-pci and assigned
# to an L2 guest with plain QEMU (-enable-kvm -device vfio-pci,host=BDF,addr=06.0; no vIOMMU in
# L2, no pviommu anywhere); L2 drives it with pvattack.ko (tests/l1/l2-assign-guest.sh).
# Negative control: QEMU maps all of L2's RAM into the VFIO container, so edu's rogue DMA reaches
# any L2 page through L1's real IOMMU path: legit works AND attacks a, b, d, e succeed.
# Also records how QEMU fed the container:
#   - $L1_OUT/l1/libvfio_ioctl_log.so (LD_PRELOAD, interposes ioctl) logs every VFIO ioctl with
#     thread and time, each KVM_SET_USER_MEMORY_REGION, and the first KVM_RUN;
#   - L1's kernel (ftrace, trace_clock boot) logs every VFIO_IOMMU_MAP_DMA/UNMAP_DMA syscall
#     (sys_enter_ioctl filtered on cmd) and the iommu:map/unmap events: what really reached
#     the IOMMU, whoever issued it (the check that the preloaded library saw everything);
#   - QEMU's own trace events vfio_listener_region_* (-trace, log backend).
# Checks are serial markers of L1; values l1_t_* (seconds of each phase), l1_assign_*, l2_*.
# Lines "IOCTL ...", "FTRACE ...", "QTRACE ..." on L1's console are the raw traces.
# Every exec costs ~0.5 s here (TCG, binaries read over 9p): keep commands few.
set -u
# shellcheck source=tests/vm/guest/pviommu-vm.sh
. "$L1_SRC/tests/vm/guest/pviommu-vm.sh"
# shellcheck source=tests/l1/l1-edu.sh
. "$L1_SRC/tests/l1/l1-edu.sh"
ts() { read -r _u _ </proc/uptime; echo "$_u"; }
T=$(ts)
phase() { local now; now=$(ts); value "l1_t_$1" "$(awk -v a="$T" -v b="$now" 'BEGIN { printf "%.1f", b - a }')"; T=$now; }
mark l1-up
L2_MEM=$(karg l2mem || echo 256)	# test_l1_assign.sh L2_MEM=MB
L2_EDU=0000:00:06.0	# where L2 sees the assigned edu (addr=06.0 below)

# ---- what L1 offers ----------------------------------------------------------------------------
check l1-has-dev-kvm [ -c /dev/kvm ] || fail "L1 has no /dev/kvm (nested SVM missing?)"
l1_edu_find
# the protected run needs pviommu loaded: the load (mostly the verifier under TCG) overlaps with
# the negative control
CTL=${L1_CTL:-$L1_OUT/pviommuctl}
{ "$CTL" load >/tmp/load.out 2>&1; echo $? >/tmp/load.rc; } &
LOADPID=$!
value l1_assign_edu "$BDF group $(basename "$(readlink "/sys/bus/pci/devices/$BDF/iommu_group")")"
l1_edu_bind || exit 1

# ---- L1's kernel view: VFIO map/unmap syscalls and IOMMU page-table changes --------------------
TR=/sys/kernel/tracing
{
	echo 0 >$TR/tracing_on
	echo boot >$TR/trace_clock
	echo 8192 >$TR/buffer_size_kb
	: >$TR/trace
	echo 'cmd == 0x3b71 || cmd == 0x3b72' >$TR/events/syscalls/sys_enter_ioctl/filter
	echo 1 >$TR/events/syscalls/sys_enter_ioctl/enable
	# L2's RAM only: L1's own drivers map their DMA far above it (dma-iommu allocates top-down)
	echo "iova < $((L2_MEM << 20))" >$TR/events/iommu/map/filter
	echo "iova < $((L2_MEM << 20))" >$TR/events/iommu/unmap/filter
	echo 1 >$TR/events/iommu/map/enable
	echo 1 >$TR/events/iommu/unmap/enable
	echo 1 >$TR/tracing_on
} 2>/tmp/ftrace.err
check l1-ftrace-armed [ ! -s /tmp/ftrace.err ] || cat /tmp/ftrace.err
phase setup

# ---- L2: plain QEMU under KVM, edu assigned -----------------------------------------------------
# tests/vm/lib.sh one level down, through tests/l1/l2vm/ (state on L1's /tmp, L2's complete
# initramfs prebuilt by the host); QEMU runs under the ioctl logger
export VM_OUT=/tmp/l2 GUEST_VMLINUZ=$L1_OUT/guest/vmlinuz GUEST_INITRD_BASE=$L1_OUT/l1/l2-assign.cpio.gz
export VM_ACCEL=kvm
export VM_QEMU_WRAPPER="env LD_PRELOAD=$L1_OUT/l1/libvfio_ioctl_log.so VFIO_IOCTL_LOG=/tmp/l2-ioctl.log"
# shellcheck source=tests/vm/lib.sh
. "$L1_SRC/tests/l1/l2vm/lib.sh"
mkdir -p "$VM_OUT"
# L2 lines are shown prefixed: its markers must not count as L1's
l2_log() { echo "--- L2 serial log"; vm_tail 40 | sed 's/PVIOMMU-VM:/L2:/'; echo "--- L2 qemu.out (QEMU rc $(cat "$(vm_dir)/rc" 2>/dev/null))"; cat "$(vm_dir)/qemu.out"; }
T_QEMU=$(ts)
# noxsave: see l1-kvm.sh (TCG's EPYC CPUID 0xD through L1's KVM makes 6.1 WARN)
# e1000 at 00:04.0: pvattack.ko wants an "other" device (scenario c, not run here)
if ! vm_boot --name l2 --cpu "${L2_CPU:-host}" --mem "$L2_MEM" --smp 1 --net e1000 --timeout 600 \
	--device "vfio-pci,host=$BDF,addr=06.0" \
	--qemu-arg -trace --qemu-arg 'vfio_listener_region_*' --qemu-arg -D --qemu-arg /tmp/l2-qtrace.log \
	--append "noxsave pviommu.edu=$L2_EDU"; then
	check l2-qemu-start false; l2_log; exit 1
fi
value l2_qemu_pid "$(vm_pid)"
value l1_t_qemu_start_uptime "$T_QEMU"
if ! vm_wait_marker ready 420; then check l2-ready-marker false; l2_log; vm_kill; exit 1; fi
phase l2_boot
value l2_edu "$(vm_value l2_edu)"
vm_send go
if ! vm_wait_marker armed 120; then check l2-armed-marker false; l2_log; vm_kill; exit 1; fi
phase l2_insmod
info=$(vm_value info)
value l2_info "$info"

# ---- the scenarios: negative control (everything is mapped, every attack goes through) ---------
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }
declare -A want=([legit]=ok [a]=leaked [b]=changed [d]=changed [e]=changed)
for s in legit a b d e; do
	vm_send "run $s"
	if ! vm_wait_marker "done-$s" 120; then check "nc-$s-ran" false; l2_log; vm_kill; exit 1; fi
	phase "scenario_$s"
	line=$(vm_value "result-$s")
	value "l2_result_$s" "$line"
	r=$(field "$line" result)
	case $s in
	legit) check nc-legit-round-trip-ok [ "$r" = ok ] ;;
	a) check nc-a-secret-leaked [ "$r" = "${want[a]}" ] ;;
	b) check nc-b-victim-changed [ "$r" = "${want[b]}" ] ;;
	d) check nc-d-control64-ok [ "$(field "$line" control64)" = ok ]
	   check nc-d-byte65-changed [ "$r" = "${want[d]}" ] ;;
	e) check nc-e-after-unmap-changed [ "$r" = "${want[e]}" ] ;;
	esac
done
vm_send "run bench"
vm_wait_marker done-bench 300 && value nc_bench "$(vm_value result-bench)"
value l1_dmar_faults "$(dmesg | grep -ciE 'DMAR: *\[DMA (Read|Write)|DMAR:.*fault')"
dmesg | grep -m3 -iE 'DMAR: *\[DMA|DMAR:.*fault' | sed 's/^/  /'
vm_send end
vm_wait 120
check l2-result-pass [ $? = 0 ] || l2_log
phase l2_exit
echo 0 >$TR/tracing_on
cp $TR/trace /tmp/ftrace.txt

# ---- what QEMU did to the container, and whether the preloaded ioctl saw all of it -------------
sed 's/^/QTRACE /' /tmp/l2-qtrace.log
grep -E 'VFIO_IOMMU_(MAP|UNMAP)_DMA|VFIO_SET_IOMMU|VFIO_GROUP_SET_CONTAINER|VFIO_GROUP_GET_DEVICE_FD|KVM_RUN|KVM_SET_USER_MEMORY_REGION' /tmp/l2-ioctl.log
grep -E 'sys_ioctl' /tmp/ftrace.txt | sed 's/^ */FTRACE /'
# one awk over the two logs (interposer, ftrace): "name value" lines for the checks and values below
awk -v secret="$(field "$info" secret)" -v victim="$(field "$info" victim)" -v ram="$((L2_MEM << 20))" '
function hex(s,   i, v) { sub(/^0x/, "", s); s = tolower(s); v = 0
	for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
	return v }
BEGIN { secret = hex(secret); victim = hex(victim) }
function kv(line, k,   r) { if (match(line, k "=[^ ]*")) { r = substr(line, RSTART + length(k) + 1, RLENGTH - length(k) - 1); return r } return "" }
FILENAME ~ /ioctl/ && / VFIO_IOMMU_MAP_DMA / {
	ts = kv($0, "t"); iova = hex(kv($0, "iova")); sz = hex(kv($0, "size"))
	if (kv($0, "rc") != "0") { maperr++; next }
	nmap++; bytes += sz; thr[kv($0, "thread")]++
	if (sz >= ram - 1048576) nfull++	# (mawk: no hex literals)
	if (first_map == "") first_map = ts
	if (run == "") { pre_bytes += sz; pre_n++; last_pre = ts
		if (secret >= iova && secret < iova + sz) sec_pre = 1
		if (victim >= iova && victim < iova + sz) vic_pre = 1 }
	else post_n++
}
FILENAME ~ /ioctl/ && / VFIO_IOMMU_UNMAP_DMA / { nunmap++; uthr[kv($0, "thread")]++ }
FILENAME ~ /ioctl/ && / KVM_RUN/ { run = kv($0, "t") }
FILENAME ~ /ioctl/ && / VFIO_SET_IOMMU / { setiommu = kv($0, "t"); container = kv($0, "fd") }
FILENAME ~ /ioctl/ && / KVM_SET_USER_MEMORY_REGION / { nslot++ }
FILENAME ~ /ftrace/ && /sys_ioctl/ && /cmd: 3b71/ { kmap++; if (kfirst == "") { kfirst = $0; sub(/: sys_ioctl.*/, "", kfirst); sub(/.* /, "", kfirst) } }
FILENAME ~ /ftrace/ && /sys_ioctl/ && /cmd: 3b72/ { kunmap++ }
FILENAME ~ /ftrace/ && /IOMMU: iova=/ && / map: / { n = split($0, f, /[ =]+/)
	for (i = 1; i < n; i++) { if (f[i] == "iova") io = hex(f[i + 1]); if (f[i] == "size") s = f[i + 1] + 0 }
	immap++; imbytes += s
	if (secret >= io && secret < io + s) sec_hw = 1
	if (victim >= io && victim < io + s) vic_hw = 1 }
FILENAME ~ /ftrace/ && /IOMMU: iova=/ && / unmap: / { imunmap++ }
END {
	printf "maps %d\nmap_errors %d\nunmaps %d\nmap_bytes %d\nfull_ram_maps %d\n", nmap, maperr, nunmap, bytes, nfull
	printf "pre_run_maps %d\npre_run_bytes %d\npost_run_maps %d\n", pre_n, pre_bytes, post_n
	printf "set_iommu %s\nfirst_map_syscall %s\nfirst_map_done %s\nlast_pre_run_map %s\nfirst_kvm_run %s\n", setiommu, kfirst, first_map, last_pre, run
	printf "container_fd %s\n", container
	t = ""; for (k in thr) t = t (t == "" ? "" : ",") k ":" thr[k]; printf "map_threads %s\n", t
	t = ""; for (k in uthr) t = t (t == "" ? "" : ",") k ":" uthr[k]; printf "unmap_threads %s\n", t
	printf "kernel_map_syscalls %d\nkernel_unmap_syscalls %d\n", kmap, kunmap
	printf "iommu_map_events %d\niommu_map_bytes %d\niommu_unmap_events %d\n", immap, imbytes, imunmap
	printf "secret_mapped_before_run %d\nvictim_mapped_before_run %d\n", sec_pre, vic_pre
	printf "secret_in_iommu %d\nvictim_in_iommu %d\n", sec_hw, vic_hw
	printf "memslot_ioctls %d\n", nslot
}' /tmp/l2-ioctl.log /tmp/ftrace.txt >/tmp/sum.txt
declare -A S
while read -r k v; do S[$k]=$v; value "as_$k" "$v"; done </tmp/sum.txt
check l1-preload-saw-map-dma [ "${S[maps]:-0}" -gt 0 ]
# every MAP_DMA/UNMAP_DMA syscall the kernel saw went through the interposed ioctl
check l1-preload-saw-every-map-dma [ "${S[maps]:-0}" = "${S[kernel_map_syscalls]:-x}" ]
check l1-preload-saw-every-unmap-dma [ "${S[unmaps]:-0}" = "${S[kernel_unmap_syscalls]:-x}" ]
# the bulk map: before the guest's first instruction, QEMU mapped (at least) all of its RAM,
# the pages pvattack later attacks included, and L1's IOMMU page tables got them
check l1-bulk-map-before-first-kvm-run [ -n "${S[first_kvm_run]}" ] &&
	awk -v a="${S[last_pre_run_map]:-x}" -v b="${S[first_kvm_run]}" 'BEGIN { exit !(a != "x" && a + 0 < b + 0) }'
check l1-bulk-map-covers-guest-ram [ "${S[pre_run_bytes]:-0}" -ge $(((L2_MEM - 1) << 20)) ]
check l1-secret-page-mapped-before-run [ "${S[secret_mapped_before_run]}" = 1 ]
check l1-victim-page-mapped-before-run [ "${S[victim_mapped_before_run]}" = 1 ]
check l1-secret-page-in-l1-iommu [ "${S[secret_in_iommu]}" = 1 ]
phase summary

# ==== protected: the same L2 under 'pviommuctl run', pviommu.ko protecting edu ===================
# The library in L2's QEMU withholds QEMU's maps of guest RAM from the container and maps exactly
# the pages of edu's live mappings (qemu-hooks/pv_vfio.h); the LSM gate refuses anything else.
wait "$LOADPID"
check l1-load [ "$(cat /tmp/load.rc)" = 0 ] || { cat /tmp/load.out; exit 1; }
value l1_vfio_gate "$(ls /sys/fs/bpf/pviommu/links 2>/dev/null | grep -c vfio_lsm)"
faults0=$(dmesg | grep -ciE 'DMAR: *\[DMA (Read|Write)|DMAR:.*fault')
{ : >$TR/trace; echo 1 >$TR/tracing_on; } 2>/dev/null
phase load
# live pages of L1's IOMMU below L2's RAM size, from iommu:map/unmap (one "pfn" per line)
cat >/tmp/live.awk <<'AWK'
function hex(s,   i, v) { sub(/^0x/, "", s); s = tolower(s); v = 0
	for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
	return v }
/IOMMU: iova=/ { n = split($0, f, /[ =]+/); io = -1; sz = 0
	for (i = 1; i < n; i++) { if (f[i] == "iova" && io < 0) io = hex(f[i + 1]); if (f[i] == "size") sz = f[i + 1] + 0 }
	# type1 probes each new IOMMU domain with 2 pages of its own at iova 0, unmapped at once
	# (vfio_test_domain_fgsp): not guest memory, and the live-page check would see it stay
	if ($0 ~ / map: / && sz > big && !(io == 0 && sz == 8192)) { big = sz; bigline = $0 }
	for (p = int(io / 4096); p <= int((io + sz - 1) / 4096); p++) { if ($0 ~ / map: /) live[p] = 1; else delete live[p] } }
END { for (p in live) print p; print "max_map_size", big + 0, bigline > "/tmp/live.max" }
AWK
# the pages of the records of pid (pviommuctl mappings), one per line
rec_pages() { "$CTL" -j mappings --pid "$1" | jq -r --arg b "$L2_EDU" '.[] | select(.bdf == $b) | "\(.iova) \(.size)"' |
	awk '{ for (p = int($1 / 4096); p <= int(($1 + $2 - 1) / 4096); p++) print p }' | sort -un; }
iommu_pages() { awk -f /tmp/live.awk $TR/trace | sort -un; }
export VM_QEMU_WRAPPER="env PVIOMMU_DEBUG=1 $CTL run --mode deny --"
T_QEMU=$(ts)
if ! vm_boot --name l2p --cpu "${L2_CPU:-host}" --mem "$L2_MEM" --smp 1 --net e1000 --timeout 600 \
	--device "vfio-pci,host=$BDF,addr=06.0" --append "noxsave pviommu.edu=$L2_EDU pviommu.protect=1 pviommu.devices=$L2_EDU,0000:00:04.0"; then
	check pr-l2-qemu-start false; l2_log; exit 1
fi
pid=$(vm_pid)
value pr_l2_qemu_pid "$pid"
if ! vm_wait_marker ready 420; then check pr-l2-ready-marker false; l2_log; vm_kill; exit 1; fi
phase pr_l2_boot
# before the guest runs a driver: QEMU's maps were withheld, the IOMMU holds no page of L2's RAM
check pr-qemu-maps-withheld grep -q "QEMU's MAP_DMA .* withheld (0)" "$(vm_dir)/qemu.out"
value pr_iommu_pages_at_boot "$(iommu_pages | wc -l)"
check pr-iommu-empty-before-the-guest [ "$(iommu_pages | wc -l)" = 0 ]
vm_send go
if ! vm_wait_marker armed 120; then check pr-l2-armed-marker false; l2_log; vm_kill; exit 1; fi
phase pr_l2_insmod
info=$(vm_value info)
for s in legit a b d e; do
	vm_send "run $s"
	if ! vm_wait_marker "done-$s" 120; then check "pr-$s-ran" false; l2_log; vm_kill; exit 1; fi
	line=$(vm_value "result-$s")
	value "pr_result_$s" "$line"
	r=$(field "$line" result)
	case $s in
	legit) check pr-legit-round-trip-ok [ "$r" = ok ] ;;
	a) check pr-a-secret-not-leaked [ "$r" = not-leaked ] ;;
	b) check pr-b-victim-unchanged [ "$r" = unchanged ] ;;
	# page granularity: byte 65 lies in the page of the mapped 64 bytes (README: assigned devices)
	d) check pr-d-control64-ok [ "$(field "$line" control64)" = ok ] ;;
	e) check pr-e-after-unmap-unchanged [ "$r" = unchanged ] ;;
	esac
done
phase pr_scenarios
faults=$(( $(dmesg | grep -ciE 'DMAR: *\[DMA (Read|Write)|DMAR:.*fault') - faults0 ))
value pr_dmar_faults "$faults"
check pr-attacks-fault-in-l1-iommu [ "$faults" -gt 0 ]
dmesg | grep -iE 'DMAR: *\[DMA|DMAR:.*fault' | tail -n 3 | sed 's/^/  /'
# pviommu reports those faults (pviommu_iommu_fault): this VM, edu's guest BDF, the page and the
# direction of each attack (a: read of the secret page, b: write of the victim page)
"$CTL" -j events --timeout 2 >/tmp/ev.json 2>/dev/null
jq -c --argjson p "$pid" --arg b "$L2_EDU" 'select(.plane == "iommu" and .pid == $p and .bdf == $b)' \
	/tmp/ev.json >/tmp/ev.iommu 2>/dev/null
value pr_iommu_fault_events "$(grep -c . /tmp/ev.iommu)"
head -n 2 /tmp/ev.iommu | sed 's/^/  /'
check pr-iommu-fault-events [ -s /tmp/ev.iommu ]
spg=$(( $(field "$info" secret) / 4096 )); vpg=$(( $(field "$info" victim) / 4096 ))
check pr-iommu-event-secret-page-read [ "$(jq -c --argjson g "$spg" 'select((.addr / 4096 | floor) == $g and .access == "r")' /tmp/ev.iommu | grep -c .)" -gt 0 ]
check pr-iommu-event-victim-page-write [ "$(jq -c --argjson g "$vpg" 'select((.addr / 4096 | floor) == $g and .access == "w")' /tmp/ev.iommu | grep -c .)" -gt 0 ]
# the IOMMU is a mirror of the records: the same pages, the secret and victim pages not among them
rec_pages "$pid" >/tmp/rec.pages
iommu_pages >/tmp/iommu.pages
value pr_record_pages "$(wc -l </tmp/rec.pages)"
value pr_iommu_pages "$(wc -l </tmp/iommu.pages)"
check pr-records-live [ -s /tmp/rec.pages ]
check pr-iommu-pages-are-record-pages cmp -s /tmp/rec.pages /tmp/iommu.pages ||
	diff /tmp/rec.pages /tmp/iommu.pages | head -n 10
sp=$(( $(field "$info" secret) / 4096 )); vp=$(( $(field "$info" victim) / 4096 ))
check pr-secret-page-not-in-iommu sh -c "! grep -qx $sp /tmp/iommu.pages"
check pr-victim-page-not-in-iommu sh -c "! grep -qx $vp /tmp/iommu.pages"
value pr_max_iommu_map "$(cat /tmp/live.max)"
check pr-no-bulk-map [ "$(awk '{ print $2 }' /tmp/live.max)" = 4096 ]
# map+unmap pairs on edu (the IOMMU follows) and on the e1000 (emulated: the records only)
m0=$(grep -c ' map: ' $TR/trace)
vm_send "run bench"
if vm_wait_marker done-bench 300; then
	value pr_bench "$(vm_value result-bench)"
	value pr_bench_iommu_maps "$(( $(grep -c ' map: ' $TR/trace) - m0 ))"
	check pr-bench-ok [ "$(field "$(vm_value result-bench)" result)" = ok ]
fi
vm_send unload
if ! vm_wait_marker unloaded 120; then check pr-unloaded-marker false; l2_log; vm_kill; exit 1; fi
value pr_l2_pviommu_stats "$(vm_value l2-pviommu-stats)"
value pr_iommu_pages_after_unload "$(iommu_pages | wc -l)"
check pr-iommu-empty-after-unload [ "$(iommu_pages | wc -l)" = 0 ]
check pr-no-records-after-unload [ "$(rec_pages "$pid" | wc -l)" = 0 ]
value pr_library "$(grep -cE "QEMU's MAP_DMA" "$(vm_dir)/qemu.out") QEMU maps withheld, $(grep -ciE 'page map bdf' "$(vm_dir)/qemu.out") guest MAPs, $(grep -ciE 'page unmap bdf' "$(vm_dir)/qemu.out") guest UNMAPs"
vm_send end
vm_wait 120
check pr-l2-result-pass [ $? = 0 ] || l2_log
echo 0 >$TR/tracing_on
phase pr_l2_exit
exit 0
