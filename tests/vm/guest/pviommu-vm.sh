# shellcheck shell=sh disable=SC2034,SC2013
# /lib/pviommu-vm.sh - guest-side helpers for pviommu VM tests (busybox ash).
# A test script (/test/run.sh) starts with:   . /lib/pviommu-vm.sh
#
# Serial-console protocol (ttyS0, read by tests/vm/lib.sh on the host); every line starts
# with "PVIOMMU-VM: ":
#   PVIOMMU-VM: BOOT <kernel release>        /init started
#   PVIOMMU-VM: MARK <name>                  mark NAME        (host: vm_wait_marker NAME)
#   PVIOMMU-VM: VALUE <key> <value...>       value KEY VAL    (host: vm_value KEY)
#   PVIOMMU-VM: CHECK PASS|FAIL <name>       check NAME CMD.. (host: vm_checks)
#   PVIOMMU-VM: FAIL <message>               fail MSG (then the script exits 1)
#   PVIOMMU-VM: OOPS                         the kernel log shows an oops/BUG (fails the run)
#   PVIOMMU-VM: RESULT PASS                  printed by /init, last line before poweroff
#   PVIOMMU-VM: RESULT FAIL <code> [reason]  (host: vm_wait returns 0 only on RESULT PASS)
# Host -> guest: lines written by vm_send on the host arrive on /dev/ttyS1; wait_host reads one.
#
# Functions:
#   mark NAME            print a MARK line (NAME: [A-Za-z0-9_.:-]+)
#   value KEY VAL...     print a VALUE line
#   wait_host            read one line from the host control channel, print it on stdout
#   check NAME CMD...    run CMD, print CHECK PASS/FAIL NAME, return CMD's status; any failed
#                        check makes the run FAIL even if run.sh exits 0
#   pass [MSG]           exit 0 (only from the top-level script, not from a subshell)
#   fail MSG             print FAIL MSG and exit 1
#   wait_for PATH [SEC]  wait until PATH exists (default 20 s); returns 1 on timeout
#   nic e1000|virtio     name of the network interface of that NIC (eth0...), by PCI slot
#   host_ip [IFACE]      the host's address as seen through IFACE (10.0.2.2 for the first --net)
#   guest_ip [IFACE]     this guest's address on IFACE
#   net_up               configure every ethN statically (done by /init when booted with --net)
#   karg NAME            value of pviommu.NAME=... on the kernel command line (vm_boot --append)
# Fixed PCI addresses (the host harness puts devices there):
BDF_E1000=0000:00:04.0
BDF_VIRTIO_NET=0000:00:05.0
BDF_EDU=0000:00:06.0
BDF_VIRTIO_BLK=0000:00:07.0
BDF_NVME=0000:00:08.0
PVIOMMU_VM_CTL=/dev/ttyS1
PVIOMMU_VM_CHECKS=/tmp/.pviommu-vm-checks

# protocol lines go to the console directly, so redirecting a command's stdout cannot hide them
_pv() { echo "PVIOMMU-VM: $*" >/dev/console; }
mark() { _pv "MARK $1"; }
value() { _k=$1; shift; _pv "VALUE $_k $*"; }
pass() { [ $# -gt 0 ] && _pv "PASS $*"; exit 0; }
fail() { _pv "FAIL $*"; exit 1; }

wait_host() {
	_l=
	IFS= read -r _l <"$PVIOMMU_VM_CTL" || return 1
	printf '%s\n' "$_l" | tr -d '\r'
}

check() {
	_n=$1; shift
	if "$@"; then
		_pv "CHECK PASS $_n"; echo "PASS $_n" >>"$PVIOMMU_VM_CHECKS"; return 0
	else
		_rc=$?
		_pv "CHECK FAIL $_n"; echo "FAIL $_n" >>"$PVIOMMU_VM_CHECKS"; return $_rc
	fi
}

wait_for() {
	_i=0; _max=$(( ${2:-20} * 10 ))
	while [ ! -e "$1" ]; do
		_i=$((_i + 1)); [ $_i -gt $_max ] && return 1
		usleep 100000
	done
	return 0
}

karg() {
	for _a in $(cat /proc/cmdline); do
		case $_a in "pviommu.$1="*) echo "${_a#*=}"; return 0;; esac
	done
	return 1
}

nic() {
	case $1 in
	e1000) _slot=$BDF_E1000;; virtio|virtio-net) _slot=$BDF_VIRTIO_NET;;
	*) echo "nic: unknown type $1" >&2; return 2;;
	esac
	for _d in /sys/class/net/*; do
		case $(readlink -f "$_d/device" 2>/dev/null) in
		*/$_slot|*/$_slot/*) basename "$_d"; return 0;;
		esac
	done
	return 1
}

# the host harness encodes the subnet in the MAC's last byte: 52:54:00:00:SS:NN -> 10.0.NN.0/24
_subnet() { _m=$(cat "/sys/class/net/$1/address"); printf '%d' "0x${_m##*:}"; }
host_ip() { echo "10.0.$(_subnet "${1:-$(_first_eth)}").2"; }
guest_ip() { echo "10.0.$(_subnet "${1:-$(_first_eth)}").15"; }
_first_eth() { for _d in /sys/class/net/eth*; do [ -e "$_d" ] && { basename "$_d"; return 0; }; done; return 1; }

net_up() {
	ip link set lo up
	_first=1
	for _d in /sys/class/net/eth*; do
		[ -e "$_d" ] || continue
		_i=$(basename "$_d")
		ip link set "$_i" up
		ip addr add "$(guest_ip "$_i")/24" dev "$_i"
		if [ $_first = 1 ]; then
			ip route add default via "$(host_ip "$_i")" dev "$_i"; _first=0
		fi
	done
}
