#!/bin/bash
# l1-kvm.sh - the L1 side of test_l1_kvm.sh: runs in L1's chroot of the host root (tests/l1/lib.sh).
# Loads pviommu on L1's 6.1 kernel, checks what it reports, boots L2 under L1's KVM with
# pviommu.ko (transport=kvm) protecting the e1000 and follows L2's mappings by QEMU pid.
# Prints checks as serial markers of L1 (tests/vm/guest/pviommu-vm.sh) and the values
# l1_t_* (seconds of each phase).
# Every exec costs ~0.5 s here (TCG, binaries read over 9p): keep commands few.
set -u
# shellcheck source=tests/vm/guest/pviommu-vm.sh
. "$L1_SRC/tests/vm/guest/pviommu-vm.sh"
CTL=${L1_CTL:-$L1_OUT/pviommuctl}
BDF=0000:00:04.0
ts() { read -r _u _ </proc/uptime; echo "$_u"; }
T=$(ts)
phase() { local now; now=$(ts); value "l1_t_$1" "$(awk -v a="$T" -v b="$now" 'BEGIN { printf "%.1f", b - a }')"; T=$now; }

check l1-has-dev-kvm [ -c /dev/kvm ] || fail "L1 has no /dev/kvm (nested SVM missing?)"

# ---- L2 starts once pviommuctl has loaded ------------------------------------------------------
# the load is mostly the verifier under TCG (~25 s); L2's QEMU runs under 'pviommuctl run' (the
# in-process plane serves the shared page through KVM port exits), which needs the pins: its
# wrapper waits for the load, so everything before QEMU's start overlaps with it
{ "$CTL" load >/tmp/load.out 2>&1; echo $? >/tmp/load.rc; } &
LOADPID=$!
cat >/tmp/l2-wrap.sh <<WRAP
#!/bin/sh
while [ ! -e /tmp/load.rc ]; do sleep 0.2; done
[ "\$(cat /tmp/load.rc)" = 0 ] || { echo "pviommuctl load failed:" >&2; cat /tmp/load.out >&2; exit 1; }
exec "$CTL" run --mode deny -- "\$@"
WRAP
chmod +x /tmp/l2-wrap.sh
export VM_QEMU_WRAPPER=/tmp/l2-wrap.sh
# tests/vm/lib.sh one level down, through tests/l1/l2vm/ (lib.sh link + a no-op mkinitramfs):
# state on L1's /tmp, L2's complete initramfs prebuilt by the host
export VM_OUT=/tmp/l2 GUEST_VMLINUZ=$L1_OUT/guest/vmlinuz GUEST_INITRD_BASE=$L1_OUT/l1/l2-kvm.cpio.gz
export VM_ACCEL=kvm
# shellcheck source=tests/vm/lib.sh
. "$L1_SRC/tests/l1/l2vm/lib.sh"
mkdir -p "$VM_OUT"
# L2 lines are shown prefixed: its markers must not count as L1's
l2_log() { echo "--- L2 serial log"; vm_tail 40 | sed 's/PVIOMMU-VM:/L2:/'; echo "--- L2 qemu.out (QEMU rc $(cat "$(vm_dir)/rc" 2>/dev/null))"; cat "$(vm_dir)/qemu.out"; }
# noxsave: through L1's KVM, CPUID 0xD of TCG's EPYC makes 6.1 WARN "XSAVE consistency problem"
# in fpu__init_system_xstate (with -cpu host and -cpu EPYC), which L2's /init counts as an oops
if ! vm_boot --name l2 --cpu "${L2_CPU:-host}" --mem 256 --smp 1 --net e1000 --timeout 900 \
	--append noxsave; then
	check l2-boot false; l2_log; exit 1
fi
pid=$(vm_pid)
value l2_qemu_pid "$pid"
phase l2_qemu_start

# ---- pviommuctl on 6.1 (its load started before L2's QEMU) ------------------------------------
wait "$LOADPID"
check l1-load [ "$(cat /tmp/load.rc)" = 0 ] || { cat /tmp/load.out; vm_kill; fail "pviommuctl load"; }
phase load
value l1_ctl "$CTL"
value l1_kvm_progs "$(cd /sys/fs/bpf/pviommu/progs 2>/dev/null && echo *kvm_hypercall*)"
"$CTL" -j status >/tmp/status.json 2>/tmp/status.err
# one jq for every status assertion: "name true|false" lines
jq -r '"l1-kvm-hypercall-attached \(.programs.kvm_hypercall == true)",
	"l1-feature-lsm \(.features.lsm == true)",
	"l1-feature-fentry \(.features.fentry == true)",
	"features \(.features | tojson)"' /tmp/status.json >/tmp/status.chk 2>&1
check l1-status-json [ -s /tmp/status.chk ] || cat /tmp/status.json /tmp/status.err /tmp/status.chk
while read -r n v; do
	case $n in features) value l1_features "$v" ;; *) check "$n" [ "$v" = true ] ;; esac
done </tmp/status.chk

# ---- L2: insmod transport=kvm, traffic --------------------------------------------------------
if ! vm_wait_marker ready 300; then check l2-ready-marker false; l2_log; vm_kill; exit 1; fi
phase l2_boot
vm_send go
if ! vm_wait_marker mapped 240; then check l2-mapped-marker false; l2_log; vm_kill; exit 1; fi
phase l2_map
value l2_uptime_mapped "$(vm_value l2_uptime)"
# (no <(...) here: L1's devtmpfs has no /dev/fd)
"$CTL" -j mappings >/tmp/maps.json
"$CTL" -j status >/tmp/status.json
jq -r --argjson p "$pid" --arg b "$BDF" '
	"live \([.[] | select(.pid == $p and .bdf == $b)] | length)",
	"foreign \([.[] | select(.pid != $p)] | length)"' /tmp/maps.json >/tmp/maps.chk
jq -r --argjson p "$pid" '"registered \(any(.domains[]; .pid == $p))",
	"stats \(.stats | {hypercalls, hypercall_errors, maps, unmaps} | tojson)"' \
	/tmp/status.json >>/tmp/maps.chk
while read -r n v; do
	case $n in
	live) value l1_l2_mappings_live "$v"; check l1-l2-mappings-for-e1000 [ "${v:-0}" -gt 0 ] ;;
	foreign) check l1-no-foreign-mappings [ "$v" = 0 ] ;;
	registered) check l1-l2-domain-registered [ "$v" = true ] ;;
	stats) value l1_stats_mapped "$v" ;;
	esac
done </tmp/maps.chk

# ---- L2: hypercalls from guest user space (CPL 3) change nothing -----------------------------
# (KVM fires kvm:kvm_hypercall before its own CPL check: the handler has to check the CPL itself)
UHC=0
user_hc() {	# user_hc CMD: L2 runs one uvmcall; prints "user_map N", "total N", "devices N", "user_hc N"
	UHC=$((UHC + 1))
	vm_send "$1"
	vm_wait_marker "done_$1_$UHC" 120 || { check "l2-$1-done" false; l2_log >&2; vm_kill; exit 1; }
	"$CTL" -j mappings --pid "$pid" >/tmp/maps.json
	"$CTL" -j status >/tmp/status.json
	jq -r '"user_map \([.[] | select(.iova == 2146435072 or .cookie == 6148334134780493825)] | length)",
		"total \(length)"' /tmp/maps.json
	jq -r --argjson p "$pid" '"devices \([.domains[] | select(.pid == $p) | .devices] | first // 0)",
		"user_hc \(.stats.user_hypercalls)"' /tmp/status.json
}
cpl_checks() {	# cpl_checks PREFIX: a user MAP and a user DEV_DEL change nothing
	user_hc user_map >/tmp/user.chk
	while read -r n v; do
		case $n in
		user_map) check "$1-user-map-ignored" [ "$v" = 0 ] ;;
		user_hc) value "${1//-/_}_user_hypercalls_map" "$v" ;;
		esac
	done </tmp/user.chk
	user_hc user_dev_del >/tmp/user.chk
	while read -r n v; do
		case $n in
		total) value "${1//-/_}_l2_mappings_after_user" "$v"; check "$1-user-dev-del-kept-mappings" [ "$v" -gt 0 ] ;;
		devices) check "$1-user-dev-del-ignored" [ "$v" = 1 ] ;;
		user_hc) value "${1//-/_}_user_hypercalls" "$v" ;;
		esac
	done </tmp/user.chk
}
reload() {	# reload MODE: pviommuctl load --kvm-cpl MODE under the running L2
	"$CTL" load --kvm-cpl "$1" >/tmp/load.out 2>&1
	check "l1-reload-kvm-cpl-$1" [ $? = 0 ] || cat /tmp/load.out
}
# the CPL read from the VMCB (SVM: auto picks it here)
cpl_checks l1
value l2_user_rax "map $(vm_value l2_user_map), dev_del $(vm_value l2_user_dev_del)"
# the CPL as KVM judged it (any vendor, VMX included): held at kvm_hypercall, carried out at the
# vCPU's next kvm_entry unless KVM answered -KVM_EPERM; the guest's own traffic goes on meanwhile
reload entry
check l1-status-says-held sh -c "'$CTL' status | grep -q 'held until KVM.s answer'"
cpl_checks l1-entry
# negative control: no CPL check at all; the same user MAP is carried out (the checks above can fail)
reload none
user_hc user_map >/tmp/user.chk
check l1-none-user-map-applied [ "$(awk '$1 == "user_map" { print $2 }' /tmp/user.chk)" -gt 0 ]
# back to the held handler: the rmmod below (UNMAPs, DEV_DEL, UNREGISTER) goes through kvm_entry
reload entry
phase l2_user

# ---- L2: rmmod --------------------------------------------------------------------------------
vm_send rmmod
if ! vm_wait_marker unmapped 120; then check l2-unmapped-marker false; l2_log; vm_kill; exit 1; fi
# L2's QEMU still runs: nothing was purged at exit, the unmaps came from the guest
"$CTL" -j mappings --pid "$pid" >/tmp/maps.json
"$CTL" -j status >/tmp/status.json
n=$(jq length /tmp/maps.json)
value l1_l2_mappings_after_rmmod "$n"
check l1-l2-no-mappings-after-rmmod [ "$n" = 0 ]
# QEMU runs under 'pviommuctl run': the domain goes back to RESERVED (nothing protected, QEMU alive)
# shellcheck disable=SC2016
check l1-l2-domain-unregistered jq -e --argjson p "$pid" \
	'all(.domains[]; .pid != $p or (.state == "reserved" and .records == 0))' /tmp/status.json >/dev/null
value l1_stats_end "$(jq -c .stats /tmp/status.json)"
phase l2_unmap
vm_send bye
vm_wait 60
check l2-result-pass [ $? = 0 ] || l2_log
phase l2_exit
vm__grep '^PVIOMMU-VM: (CHECK|VALUE|FAIL|RESULT)' | sed 's/PVIOMMU-VM:/L2:/'
exit 0
