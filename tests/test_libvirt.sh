#!/bin/bash
# test_libvirt.sh - pviommu under a real libvirt: Debian's libvirtd (started here, without
# systemd, qemu:///system), the hook packaging/libvirt/pviommu-hook installed as
# /etc/libvirt/hooks/qemu.d/pviommu, TCG domains defined from XML and started and destroyed
# with virsh.
#   - a domain with the pviommu metadata (mode audit) and the documented snippet
#     (packaging/libvirt/domain-snippet.xml: LD_PRELOAD of the in-process plane) boots the test
#     guest, whose pviommu.ko protects its e1000: the hook applied the mode; the domain is in
#     'pviommuctl status' with its device and mappings; the in-process plane serves the guest's
#     shared page and drains it before its checks (the page's kicks exceed the guest's exits);
#     a download through the protected NIC is intact; after 'virsh destroy' the domain is gone;
#   - the hook refuses to start (libvirt starts no QEMU) a domain that asks for pviommu
#     without the snippet, one with a virtio NIC without <driver iommu="on"/>, one whose
#     PVIOMMU_MODE disagrees with its <mode>, and any when pviommu is not loaded; a domain
#     without the metadata starts untouched.
# Files of this host it touches are put back as they were: /etc/libvirt/qemu.conf,
# /etc/libvirt/hooks/qemu.d/pviommu, /etc/default/pviommu (each only if absent before, else
# kept aside and restored). A libvirtd already running here is not touched: the test fails.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$SRC/build}
NAME=libvirt
CTL=$OUT/pviommuctl
KO=$OUT/guest-module/pviommu.ko
# shellcheck source=tests/testlib.sh
. "$SRC/tests/testlib.sh"
# shellcheck source=tests/vm/lib.sh
. "$SRC/tests/vm/lib.sh"

[ "$(id -u)" = 0 ] || { nok "root" "libvirtd's qemu:///system needs root"; finish; }
"$SRC/scripts/install-deps.sh" --libvirt || { nok "install-deps.sh --libvirt"; finish; }
need_cmds libvirtd virsh python3
need_files "$CTL" "$KO" "$GUEST_VMLINUZ" "$GUEST_INITRD_BASE"
if [ -s /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; then
	nok "no libvirtd running before the test" "pid $(cat /run/libvirtd.pid): this test starts its own"
	finish
fi

vm_host_init libvirt
V="virsh -q -c qemu:///system"
HOOK=/etc/libvirt/hooks/qemu.d/pviommu
LOG=$work/libvirtd.log
# the host's files this test writes, kept aside and put back at the end
kept=()
keep() { if [ -e "$1" ]; then mv "$1" "$work/kept.$(echo "$1" | tr / _)"; fi; kept+=("$1"); }
put_back() {
	local f
	for f in "${kept[@]+"${kept[@]}"}"; do
		rm -f "$f"
		[ -e "$work/kept.$(echo "$f" | tr / _)" ] && mv "$work/kept.$(echo "$f" | tr / _)" "$f"
	done
	kept=()
}
cleanup() {
	local d
	for d in pvlv pvlv-nosnip pvlv-virtio pvlv-modes pvlv-plain; do
		$V destroy "$d" >/dev/null 2>&1; $V undefine "$d" >/dev/null 2>&1
	done
	if [ -s /run/libvirtd.pid ] && [ -n "${LVPID:-}" ]; then
		kill -TERM "$LVPID" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$LVPID" 2>/dev/null || break; sleep 0.1; done
	fi
	put_back
	vm__host_cleanup
}
FINISH_HOOK=cleanup
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- libvirtd as root without systemd: what Debian's libvirt-daemon-system would configure ----
keep /etc/libvirt/qemu.conf
# root QEMU, no chown/xattrs of the guest's kernel and initrd, QEMU's output to files (no
# virtlogd), no cgroups of our own (QEMU stays in the caller's)
cat >/etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
stdio_handler = "file"
cgroup_controllers = [ ]
EOF
keep "$HOOK"
mkdir -p "$(dirname "$HOOK")"
install -m 0755 "$SRC/packaging/libvirt/pviommu-hook" "$HOOK"
# the hook's settings: this test's pviommuctl and pin dir
keep /etc/default/pviommu
printf 'PVIOMMUCTL=%s\nPVIOMMU_PIN_DIR=%s\n' "$CTL" "$PVIOMMU_PIN_DIR" >/etc/default/pviommu
printf 'log_outputs = "3:file:%s"\n' "$LOG" >"$work/libvirtd.conf"
# one CPU: libvirt's capability cache compares CPUID, which differs between the vCPUs here
t0=$SECONDS
if taskset -c 0 libvirtd --daemon --config "$work/libvirtd.conf"; then
	for _ in $(seq 1 600); do $V version >/dev/null 2>&1 && break; sleep 0.05; done
fi
LVPID=$(cat /run/libvirtd.pid 2>/dev/null)
if $V version >/dev/null 2>&1; then ok "libvirtd started, qemu:///system answers ($((SECONDS - t0)) s)"
else nok "libvirtd started" "$(tail -n 5 "$LOG" 2>/dev/null)"; finish; fi

# ---- the guest: the test image, pviommu.ko protecting the e1000, a download, then it idles ----
vm_blob_server 262144
cat >"$work/guest.sh" <<GUEST
. /lib/pviommu-vm.sh
PORT=$port
BLOB_MD5=$blob_md5
GUEST
cat >>"$work/guest.sh" <<'GUEST'
mount -t debugfs none /sys/kernel/debug 2>/dev/null
S=/sys/kernel/debug/pviommu/stats
get() {
	i=$(nic e1000) || return 1
	for _t in 1 2 3 4 5; do
		echo "GET 262144" | nc -w 10 "$(host_ip "$i")" $PORT >/tmp/got
		[ "$(md5sum </tmp/got | cut -d' ' -f1)" = $BLOB_MD5 ] && return 0
		sleep 1
	done
	return 1
}
check insmod insmod /test/pviommu.ko devices=$BDF_E1000 transport=tcg
check channel-page grep -qx 'channel page' $S
i=
for _t in 1 2 3 4 5 6 7 8 9 10; do i=$(nic e1000) && break; sleep 0.5; done
ip link set "$i" up; ip addr add "$(guest_ip "$i")/24" dev "$i" 2>/dev/null
check download-intact get
st() { awk -v k="$1" '$1 == k { print $2 }' $S; }
value page_kicks "$(st page_kicks)"
value exits "$(st exits)"
value posted "$(st posted)"
value failures "$(st failures)"
mark protected
sleep 3600
GUEST
"$SRC/tests/vm/mkinitramfs.sh" extra "$OUT" "$work/extra.cpio.gz" --script "$work/guest.sh" \
	--file "$KO" >/dev/null && cat "$GUEST_INITRD_BASE" "$work/extra.cpio.gz" >"$work/initrd.cpio.gz"
assert "guest initrd built" [ -s "$work/initrd.cpio.gz" ]

LIB=$OUT/libpviommu-qemu.so
# dom NAME [meta] [snippet] [virtio] [envmode]: a domain's XML (the snippet's PVIOMMU_MODE:
# envmode, else the metadata's mode)
dom() {
	local name=$1 meta=${2:-} snip=${3:-} virtio=${4:-} envmode=${5:-${2:-deny}}
	cat <<EOF
<domain type="qemu" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">
  <name>$name</name>
  <memory unit="MiB">384</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch="x86_64" machine="q35">hvm</type>
    <kernel>$GUEST_VMLINUZ</kernel>
    <initrd>$work/initrd.cpio.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 no_timer_check pviommu.net=1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type="file"><source path="$work/$name.serial.log"/><target port="0"/></serial>
    <console type="file"><source path="$work/$name.serial.log"/><target type="serial" port="0"/></console>
    <interface type="user">
      <mac address="52:54:00:00:00:02"/><model type="e1000"/>
      <address type="pci" domain="0x0000" bus="0x00" slot="0x04" function="0x0"/>
    </interface>
EOF
	[ -n "$virtio" ] && cat <<EOF
    <interface type="user"><mac address="52:54:00:00:01:03"/><model type="virtio"/></interface>
EOF
	cat <<EOF
    <memballoon model="none"/>
  </devices>
EOF
	# the documented snippet, with this build's library instead of the installed one
	if [ -n "$meta" ]; then
		sed -n '/^<metadata>/,/^<\/metadata>/p' "$SRC/packaging/libvirt/domain-snippet.xml" |
			sed "s|<mode>deny</mode>|<mode>$meta</mode>|"
	fi
	if [ -n "$snip" ]; then
		# (and this test's pin dir: the installed pviommu uses the default one)
		sed -n '/^<qemu:commandline>/,/^<\/qemu:commandline>/p' "$SRC/packaging/libvirt/domain-snippet.xml" |
			sed -e "s|/usr/lib/pviommu/libpviommu-qemu.so|$LIB|" \
			    -e "s|name=\"PVIOMMU_MODE\" value=\"deny\"|name=\"PVIOMMU_MODE\" value=\"$envmode\"|" \
			    -e "s|^</qemu:commandline>|  <qemu:env name=\"PVIOMMU_PIN_DIR\" value=\"$PVIOMMU_PIN_DIR\"/>\n&|"
	fi
	echo "</domain>"
}
# start NAME: virsh start; its stderr in $work/NAME.start
start() { $V start "$1" >"$work/$1.start" 2>&1; }
qpid() { cat "/run/libvirt/qemu/$1.pid" 2>/dev/null; }
alive() { [ -n "$1" ] && [ -d "/proc/$1" ]; }
# domstat PID: "mode devices records" of that domain in pviommuctl status, or "none"
domstat() {
	"$CTL" -j status | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["domains"] if x["pid"] == int(sys.argv[1])]
print("%s %s %s" % (d[0]["mode"], d[0]["devices"], d[0]["records"]) if d else "none")' "$1"
}
serial_value() { tr -d '\r' <"$work/$1.serial.log" | sed -n "s/^PVIOMMU-VM: VALUE $2 //p" | tail -n 1; }

# ---- pviommu loaded: the protected domain ----------------------------------------------------
"$CTL" load >"$work/load.out" 2>&1 || { nok "pviommuctl load" "$(tail -n 3 "$work/load.out")"; finish; }
dom pvlv audit snip >"$work/pvlv.xml"
assert "define a domain with the pviommu metadata (mode audit) and the snippet" \
	$V define "$work/pvlv.xml"
if start pvlv; then ok "virsh start: the hook let it start"
else nok "virsh start" "$(cat "$work/pvlv.start")"; fi
P=$(qpid pvlv)
assert "QEMU runs (pid ${P:-none})" alive "$P"
assert "QEMU has the in-process plane (libpviommu-qemu.so mapped)" grep -q libpviommu-qemu.so "/proc/${P:-0}/maps"
assert "the hook left its state (/run/pviommu/libvirt/pvlv.json: pid $P, plane inproc)" \
	python3 -c 'import json,sys; s=json.load(open("/run/pviommu/libvirt/pvlv.json")); assert s["pid"] == int(sys.argv[1]) and s["plane"] == "inproc"' "${P:-0}"
read -r mode _ _ <<<"$(domstat "${P:-0}")"
assert "the VM's domain is in the metadata's mode (mode $mode; load's default: deny)" [ "$mode" = audit ]
for _ in $(seq 1 1800); do
	grep -q "PVIOMMU-VM: MARK protected" "$work/pvlv.serial.log" 2>/dev/null && break
	alive "$P" || break
	sleep 0.1
done
if grep -q "PVIOMMU-VM: MARK protected" "$work/pvlv.serial.log"; then ok "guest protected its e1000 and downloaded"
else nok "guest reached 'protected'" "$(tr -d '\r' <"$work/pvlv.serial.log" | tail -n 8 | tr '\n' '|')"; fi
gfail=$(tr -d '\r' <"$work/pvlv.serial.log" | grep -c "^PVIOMMU-VM: CHECK FAIL")
gpass=$(tr -d '\r' <"$work/pvlv.serial.log" | grep -c "^PVIOMMU-VM: CHECK PASS")
assert "guest checks: $gpass passed, $gfail failed (insmod, channel page, download intact)" \
	test "$gpass" = 3 -a "$gfail" = 0
read -r mode ndev nrec <<<"$(domstat "${P:-0}")"
assert "pviommuctl status: the VM's domain with its 1 device ($ndev) and live mappings ($nrec)" \
	test "$ndev" = 1 -a "${nrec:-0}" -gt 0
assert "... still in the metadata's mode after the guest registered ($mode)" [ "$mode" = audit ]
kicks=$(serial_value pvlv page_kicks) exits=$(serial_value pvlv exits) posted=$(serial_value pvlv posted)
# the guest exits only to kick; the host counts kicks and drains: drains are the checks' work
assert "in-process plane checks: the page was drained by checks ($kicks kicks+drains > $exits guest exits, $posted posted)" \
	[ "${kicks:-0}" -gt "${exits:-0}" ]
assert "no refused mapping in the guest ($(serial_value pvlv failures) failures)" [ "$(serial_value pvlv failures)" = 0 ]
t0=$SECONDS
assert "virsh destroy" $V destroy pvlv
echo "    destroy: $((SECONDS - t0)) s"
for _ in $(seq 1 50); do [ "$(domstat "${P:-0}")" = none ] && break; sleep 0.1; done
assert "after destroy the VM's domain (pid ${P:-none}) is gone from pviommuctl status" \
	test -n "$P" -a "$(domstat "${P:-0}")" = none
assert "... and the hook's state with it (stopped/release)" [ ! -e /run/pviommu/libvirt/pvlv.json ]

# ---- refusals: libvirt starts no QEMU ------------------------------------------------------
dom pvlv-nosnip deny >"$work/nosnip.xml"
$V define "$work/nosnip.xml" >/dev/null
if start pvlv-nosnip; then nok "metadata without the in-process plane: start refused"
else ok "metadata without the in-process plane: start refused"; fi
assert "... the error names the missing LD_PRELOAD" grep -q "LD_PRELOAD" "$work/pvlv-nosnip.start"
assert "... and no QEMU of it runs" [ -z "$(qpid pvlv-nosnip)" ]
dom pvlv-virtio deny snip virtio >"$work/virtio.xml"
$V define "$work/virtio.xml" >/dev/null
if start pvlv-virtio; then nok "a virtio NIC without <driver iommu=\"on\"/>: start refused"
else ok "a virtio NIC without <driver iommu=\"on\"/>: start refused"; fi
assert "... the error names it" grep -q 'virtio interface.*iommu="on"' "$work/pvlv-virtio.start"
dom pvlv-modes audit snip "" deny >"$work/modes.xml"
$V define "$work/modes.xml" >/dev/null
if start pvlv-modes; then nok "PVIOMMU_MODE deny beside <mode>audit</mode>: start refused"
else ok "PVIOMMU_MODE deny beside <mode>audit</mode>: start refused"; fi
assert "... the error names both" grep -q 'PVIOMMU_MODE (deny) and <mode> (audit) disagree' "$work/pvlv-modes.start"
dom pvlv-plain >"$work/plain.xml"
$V define "$work/plain.xml" >/dev/null
if start pvlv-plain; then ok "a domain without the metadata starts untouched"
else nok "a domain without the metadata starts" "$(cat "$work/pvlv-plain.start")"; fi
Q=$(qpid pvlv-plain)
assert "... not in pviommuctl status, no hook state" \
	test -n "$Q" -a "$(domstat "${Q:-0}")" = none -a ! -e /run/pviommu/libvirt/pvlv-plain.json
$V destroy pvlv-plain >/dev/null 2>&1
"$CTL" unload >"$work/unload.out" 2>&1
assert "pviommuctl unload (no protected VM runs)" [ $? = 0 ]
if start pvlv; then nok "pviommu not loaded: start of the protected domain refused"
else ok "pviommu not loaded: start of the protected domain refused"; fi
assert "... by the hook, before QEMU: it says pviommu is not loaded" \
	grep -q "refusing to start pvlv.*pviommu is not loaded" "$work/pvlv.start"
assert "... and no QEMU of it runs" [ -z "$(qpid pvlv)" ]
finish
