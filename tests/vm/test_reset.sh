#!/bin/bash
# test_reset.sh - a machine reset purges the guest's DMA mappings (one TCG boot, two guest runs).
#
# QEMU under 'pviommuctl run --mode deny' (reboot=reset: the reset does not end QEMU), e1000 at
# 00:04.0. The guest loads pviommu.ko for the e1000 (TCG transport; the host acknowledges
# REGISTER and DEV_ADD, so insmod succeeds only if the in-process plane answered) and makes
# traffic: the host sees the domain registered with mappings. Then QMP system_reset: right after
# it, the domain is back to "reserved" with no record (the old guest's mappings are not in force
# for the new one), and the guest that boots again finds its e1000 unprotected until it loads
# the module itself.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
CTL=$VM_OUT/pviommuctl
KO=${PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
NAME=reset

# shellcheck source=tests/testlib.sh
. "$HERE/../testlib.sh"
need_files "$CTL" "$VM_OUT/libpviommu-qemu.so" "$KO" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
need_cmds python3
vm_host_init reset

if "$CTL" load >"$work/load.out" 2>&1; then ok "pviommuctl-load"; else
	nok "pviommuctl-load" "$(cat "$work/load.out")"; finish; fi

cat >"$work/guest.sh" <<'GUEST'
. /lib/pviommu-vm.sh
mark ready
cmd=$(wait_host)
[ "$cmd" = protect ] || exit 0		# the second run, after the reset: done
check insmod-acknowledged insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg
check insmod-says-acknowledged sh -c "dmesg | grep -q 'acknowledged by the host'"
i=$(nic e1000); ip link set $i up; ip addr add $(guest_ip $i)/24 dev $i 2>/dev/null
ping -c 3 -W 2 $(host_ip $i) >/dev/null 2>&1
mark protected
wait_host >/dev/null			# the host resets the machine meanwhile
GUEST

# domain PID: "state records" from pviommuctl status
dom() {
	"$CTL" -j status | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["domains"] if x["pid"] == int(sys.argv[1])]
print("%s %s" % (d[0]["state"], d[0]["records"]) if d else "none 0")' "$1"
}
qmp() {	# qmp COMMAND: one QMP command on the VM's socket
	python3 - "$work/qmp.sock" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for c in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": c}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
    if "error" in r:
        sys.exit("qmp %s: %s" % (c, r["error"]))
PY
}

export VM_QEMU_WRAPPER="$CTL run --mode deny --"
if ! vm_boot --name reset --script "$work/guest.sh" --file "$KO" --net e1000 --timeout 180 \
	--qemu-arg -action --qemu-arg reboot=reset \
	--qemu-arg -qmp --qemu-arg "unix:$work/qmp.sock,server=on,wait=off"; then
	nok "boot"; finish
fi
qpid=$(vm_pid)
if vm_wait_marker ready 90; then
	read -r st n <<<"$(dom "$qpid")"
	assert "domain-reserved-at-start ($st)" [ "$st" = reserved ]
	vm_send protect
	if vm_wait_marker protected 90; then
		read -r st n <<<"$(dom "$qpid")"
		assert "guest-registered-with-mappings ($st, $n records)" [ "$st" = registered -a "$n" -gt 0 ]
		if qmp system_reset 2>"$work/qmp.err"; then ok "qmp-system_reset"; else nok "qmp-system_reset" "$(cat "$work/qmp.err")"; fi
		sleep 0.5
		read -r st n <<<"$(dom "$qpid")"
		assert "after-reset-reserved-no-mapping ($st, $n records)" [ "$st" = reserved -a "$n" = 0 ]
		assert "qemu-still-runs" kill -0 "$qpid"
		# the guest boots again and runs its script a second time
		for _ in $(seq 1 600); do
			[ "$(tr -d '\r' <"$(vm_log)" | grep -c 'PVIOMMU-VM: MARK ready')" -ge 2 ] && break
			sleep 0.1
		done
		read -r st n <<<"$(dom "$qpid")"
		assert "rebooted-guest-starts-unprotected ($st, $n records)" [ "$st" = reserved -a "$n" = 0 ]
		vm_send stop
	else
		nok "guest-protected"
	fi
else
	nok "guest-ready"
fi
rc=0; vm_wait 90 || rc=$?
read -r gp gf <<<"$(vm_checks)"
assert "guest-result-pass (rc $rc; guest checks $gp passed, $gf failed)" [ $rc = 0 -a "$gf" = 0 ]
[ $rc = 0 ] || { vm_tail 30; tail -n 20 "$(vm_dir)/qemu.out"; }
finish
