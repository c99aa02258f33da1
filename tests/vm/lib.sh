# shellcheck shell=bash disable=SC2119,SC2120
# tests/vm/lib.sh - host side of the pviommu VM test harness (bash; source it).
#
#   . "$VM_LIB"            # or . tests/vm/lib.sh
#   vm_boot --name smoke --script guest.sh --net e1000 --timeout 120
#   vm_wait_marker ready 60 && vm_send "hello"
#   vm_wait                # 0 only if the guest printed "PVIOMMU-VM: RESULT PASS"
#
# vm_boot [options]        start qemu-system-x86_64 in the background (returns once QEMU runs)
#   --name N               VM name; state in $VM_RUNS/N/ (default: "vm")
#   --script FILE          guest test script, becomes /test/run.sh (run by /init with /bin/sh)
#   --file SRC[:DEST]      extra file/dir in the guest (DEST default /test/<basename>) [repeat]
#   --module NAME          extra guest kernel module (+deps), loaded by /init [repeat]
#   --net e1000|virtio[,DEVOPTS]   NIC with user-mode net [repeat]; the n-th NIC (n=0,1..) gets
#                          subnet 10.0.(2+n).0/24: guest 10.0.(2+n).15, host 10.0.(2+n).2, so a
#                          host listener on 127.0.0.1:PORT is 10.0.2.2:PORT through the first NIC
#   --disk virtio-blk|nvme[,DEVOPTS] SIZE  raw sparse disk image (guest: /dev/vda, /dev/nvme0n1)
#   --edu                  the edu DMA test device
#   --share HOSTPATH:TAG[:ro]  9p over virtio (virtio-9p-pci), mounted by the guest at /mnt/TAG
#   --device ARGS          any extra "-device ARGS" [repeat]
#   --viommu ARGS          an emulated IOMMU, "-device ARGS" before every PCI device it must
#                          translate (e.g. "intel-iommu,intremap=off"; QEMU's vIOMMU peer)
#   --qemu-arg ARG         any extra QEMU argument (one word) [repeat]
#   --count-insns FILE     QEMU runs the pvinsn.so plugin (tests/tools/pvinsn.c, built by make),
#                          which counts the guest's instructions per vCPU into FILE (vm_insns)
#   --virtio-opts OPTS     appended to every virtio device the harness creates, e.g.
#                          "iommu_platform=on,disable-legacy=on" (default $VM_VIRTIO_OPTS)
#   --machine M            QEMU machine (default $VM_MACHINE or q35)
#   --cpu MODEL            QEMU -cpu (default: QEMU's own)
#   --mem MB  --smp N      default 512 and 2 ($VM_SMP)
#   --timeout SEC          hard timeout: QEMU is killed after SEC (default $VM_TIMEOUT or 180)
#   --append "ARGS"        extra kernel command line (pviommu.KEY=VAL is read by karg KEY)
#   --allow-oops           do not fail the run when the guest kernel logs an oops/BUG/call trace
#   --heartbeat SEC        the guest prints "PVIOMMU-VM: HEARTBEAT UPTIME" every SEC s; vm_wait and
#                          vm_wait_marker stop a VM whose beats stop for $VM_HEARTBEAT_LOST s (10 x
#                          SEC; 60 s more before the first): a guest frozen whole (its vCPUs stuck
#                          or its timers dead), told apart from one whose script waits on
#                          something that never comes. QEMU gets a monitor socket (hmp.sock)
# Fixed guest PCI addresses (bus 0): e1000 00:04.0, virtio-net 00:05.0, edu 00:06.0,
#   virtio-blk 00:07.0, nvme 00:08.0, virtio-9p 00:09.0 (further shares 0a-0f). One device of
#   each kind; put anything else (--device) at slot 0x10 and up. Guest: $BDF_E1000 etc.
# Call vm_boot in the current shell (not in $(...) or a pipeline): the VM state lives in it.
# vm_pid                   print QEMU's pid (from -pidfile; the real QEMU even under a wrapper)
# vm_dir / vm_log          print the state dir / the serial console log (ttyS0)
# vm_wait_marker NAME [SEC]  wait for "PVIOMMU-VM: MARK NAME"; 1 if QEMU exited or timeout
#                          (default 60 s)
# vm_send LINE             send LINE to the guest's /dev/ttyS1 (guest: wait_host). Send only
#                          after the guest has booted (e.g. after a marker): earlier bytes may be lost
# vm_value KEY             print the last "PVIOMMU-VM: VALUE KEY ..." value
# vm_checks                print "PASSED FAILED" counts of the guest's check lines
# vm_wait [SEC]            wait for QEMU to exit; 0 = RESULT PASS, 1 = RESULT FAIL or QEMU died
#                          without a verdict, 124 = hard timeout (or SEC elapsed: VM killed)
# vm_kill [NAME]           kill a VM now;  vm_cleanup: kill every VM this shell started
# vm_use NAME              make NAME the current VM (the functions above act on it)
# vm_tail [N]              print the last N (40) lines of the serial log
# vm_prepare               build kernel + base initramfs if missing (make does it normally)
# vm_elapsed               seconds from vm_boot to QEMU's exit (after vm_wait)
# vm_blob_server SIZE      a random blob in $work/blob behind vm_tcp_server: blob_md5, port, SPID
# vm_host_init TAG         for a host-side test named $NAME using pviommuctl $CTL: its own pin
#                          dir (PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-TAG-PID), a fresh $work
#                          ($VM_RUNS/$NAME.host), and an EXIT trap that stops its VMs, the host
#                          server whose pid the caller keeps in $SPID, and pviommu in that pin dir
#
# Environment:
#   VM_OUT                 build dir (default: $SRC/build; mk/vm.mk exports it)
#   VM_RUNS                where the VMs' state lives (default $VM_OUT/vm; tests/run-all.sh
#                          gives each suite its own, so suites can run side by side)
#   GUEST_VMLINUZ          kernel (default $VM_OUT/guest/vmlinuz)
#   GUEST_INITRD_BASE      base initramfs (default $VM_OUT/guest/base.cpio.gz)
#   VM_QEMU                QEMU binary (default qemu-system-x86_64)
#   VM_QEMU_WRAPPER        command prefix, word-split: e.g. "build/pviommuctl run --"
#   VM_QEMU_EXTRA          extra QEMU args, word-split, appended last
#   VM_ACCEL               default tcg
#   VM_VIRTIO_OPTS, VM_MACHINE, VM_TIMEOUT, VM_SMP   defaults of the options above
#   VM_STALL_PATTERN       an ERE: once the serial log matches it, vm_wait gives the VM
#   VM_STALL_GRACE         seconds (90) more, then kills it as at its hard timeout (124)
# Files in $VM_RUNS/NAME/: serial.log (ttyS0), qemu.out (QEMU stdout/stderr), qemu.pid,
#   pid (QEMU pid, kept after exit), cmdline (the full command), ctl.in/ctl.out (ttyS1 pipe
#   chardev), extra.cpio.gz + initrd.cpio.gz, rc (exit status of the timeout-wrapped command).
# Markers: see tests/vm/guest/pviommu-vm.sh (PVIOMMU-VM: BOOT|MARK|VALUE|CHECK|FAIL|OOPS|RESULT).

# shellcheck disable=SC2317
[ -n "${BASH_VERSION:-}" ] || { echo "tests/vm/lib.sh needs bash" >&2; return 2 2>/dev/null || exit 2; }

VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_SRC=$(cd "$VM_HERE/../.." && pwd)
VM_OUT=${VM_OUT:-$VM_SRC/build}
VM_RUNS=${VM_RUNS:-$VM_OUT/vm}
GUEST_VMLINUZ=${GUEST_VMLINUZ:-$VM_OUT/guest/vmlinuz}
GUEST_INITRD_BASE=${GUEST_INITRD_BASE:-$VM_OUT/guest/base.cpio.gz}
VM_QEMU=${VM_QEMU:-qemu-system-x86_64}
VM_ACCEL=${VM_ACCEL:-tcg}
VM_CUR=${VM_CUR:-}
VM_STARTED=${VM_STARTED:-}

vm__err() { echo "vm: error: $*" >&2; }
vm__q() { printf '%s' "${1//,/,,}"; }   # escape a path for a QEMU option list (',' -> ',,')
vm__dir() { echo "$VM_RUNS/${1:-$VM_CUR}"; }
vm_dir() { vm__dir "$@"; }
vm_log() { echo "$(vm__dir "$@")/serial.log"; }
vm_use() { VM_CUR=$1; }

# QEMU removes its -pidfile at exit: vm_boot keeps a copy in $d/pid
vm_pid() {
	local f
	f="$(vm__dir "$@")/pid"
	[ -s "$f" ] || { vm__err "no pid file $f (VM not started?)"; return 1; }
	cat "$f"
}

vm__alive() {
	local d pid
	d=$(vm__dir "$@")
	[ -e "$d/rc" ] && return 1
	pid=$(cat "$d/pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

vm_prepare() {
	if [ ! -f "$GUEST_VMLINUZ" ] || [ ! -f "$GUEST_INITRD_BASE" ]; then
		"$VM_HERE/fetch-kernel.sh" "$VM_OUT" || return
		"$VM_HERE/mkinitramfs.sh" base "$VM_OUT" || return
	fi
}

vm_boot() {
	local name=vm script="" machine=${VM_MACHINE:-q35} cpu="" mem=512 smp=${VM_SMP:-2}
	local timeout=${VM_TIMEOUT:-180} append="" vopts=${VM_VIRTIO_OPTS:-} allow_oops=0 edu=0 viommu=""
	local heartbeat=""
	local -a files=() modules=() nets=() disks=() devices=() qargs=() shares=() extra=()
	while [ $# -gt 0 ]; do
		case $1 in
		--name) name=$2; shift 2 ;;
		--script) script=$2; shift 2 ;;
		--file) files+=(--file "$2"); shift 2 ;;
		--module) modules+=(--module "$2"); shift 2 ;;
		--net) nets+=("$2"); shift 2 ;;
		--disk) [ $# -ge 3 ] || { vm__err "--disk TYPE SIZE"; return 2; }
			disks+=("$2 $3"); shift 3 ;;
		--edu) edu=1; shift ;;
		--share) shares+=("$2"); shift 2 ;;
		--device) devices+=("$2"); shift 2 ;;
		--viommu) viommu=$2; shift 2 ;;
		--qemu-arg) qargs+=("$2"); shift 2 ;;
		--count-insns) [ -e "$VM_OUT/tests/pvinsn.so" ] ||
				{ vm__err "--count-insns: $VM_OUT/tests/pvinsn.so missing (make)"; return 2; }
			qargs+=(-plugin "$VM_OUT/tests/pvinsn.so,out=$2"); shift 2 ;;
		--virtio-opts) vopts=$2; shift 2 ;;
		--machine) machine=$2; shift 2 ;;
		--cpu) cpu=$2; shift 2 ;;
		--mem) mem=$2; shift 2 ;;
		--smp) smp=$2; shift 2 ;;
		--timeout) timeout=$2; shift 2 ;;
		--append) append="$append $2"; shift 2 ;;
		--allow-oops) allow_oops=1; shift ;;
		--heartbeat) case $2 in ''|*[!0-9]*|0) vm__err "--heartbeat SEC: a whole number of seconds > 0"; return 2 ;; esac
			heartbeat=$2; shift 2 ;;
		*) vm__err "vm_boot: unknown option '$1'"; return 2 ;;
		esac
	done
	case $name in ''|*[!A-Za-z0-9_.-]*) vm__err "bad VM name '$name'"; return 2 ;; esac
	[ -z "$script" ] || [ -f "$script" ] || { vm__err "script not found: $script"; return 2; }
	[ -f "$GUEST_VMLINUZ" ] || { vm__err "$GUEST_VMLINUZ missing (make $GUEST_VMLINUZ, or vm_prepare)"; return 2; }
	[ -f "$GUEST_INITRD_BASE" ] || { vm__err "$GUEST_INITRD_BASE missing (make $GUEST_INITRD_BASE, or vm_prepare)"; return 2; }
	command -v "$VM_QEMU" >/dev/null || { vm__err "$VM_QEMU not found (apt-get install qemu-system-x86)"; return 2; }

	local d
	d=$(vm__dir "$name")
	if [ -s "$d/pid" ] && [ ! -e "$d/rc" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then
		vm__err "VM '$name' is still running (pid $(cat "$d/pid")): vm_kill $name"; return 2
	fi
	rm -rf "$d"
	mkdir -p "$d"

	# initrd = base + per-test archive
	local sarg=()
	[ -n "$script" ] && sarg=(--script "$script")
	"$VM_HERE/mkinitramfs.sh" extra "$VM_OUT" "$d/extra.cpio.gz" "${sarg[@]+"${sarg[@]}"}" \
		"${files[@]+"${files[@]}"}" "${modules[@]+"${modules[@]}"}" || return 2
	cat "$GUEST_INITRD_BASE" "$d/extra.cpio.gz" >"$d/initrd.cpio.gz"

	# no_timer_check: a TCG boot on a busy host can be slow enough for the kernel's IO-APIC
	# timer check to panic ("IO-APIC + timer doesn't work")
	local kargs="console=ttyS0 quiet panic=-1 no_timer_check"
	local -a q=("$VM_QEMU" -name "$name,debug-threads=on" -machine "$machine" -accel "$VM_ACCEL"
		-m "$mem" -smp "$smp" -display none -no-reboot -nodefaults
		-pidfile "$d/qemu.pid" -kernel "$GUEST_VMLINUZ" -initrd "$d/initrd.cpio.gz"
		-chardev "file,id=ser0,path=$(vm__q "$d/serial.log")" -serial chardev:ser0
		-chardev "pipe,id=ctl,path=$(vm__q "$d/ctl")" -serial chardev:ctl)
	# the human monitor on a socket, for what a frozen guest's vCPUs were doing (vm__frozen);
	# with --heartbeat, where the path is short enough for a socket's name
	if [ -n "$heartbeat" ] && [ "${#d}" -lt 96 ]; then q+=(-monitor "unix:$(vm__q "$d/hmp.sock"),server=on,wait=off")
	else q+=(-monitor none); fi
	[ -n "$cpu" ] && q+=(-cpu "$cpu")
	[ -n "$viommu" ] && q+=(-device "$viommu")
	mkfifo "$d/ctl.in" "$d/ctl.out"

	local vo="" n=0 spec type opts slot mac
	[ -n "$vopts" ] && vo=",$vopts"
	for spec in "${nets[@]+"${nets[@]}"}"; do
		type=${spec%%,*}; opts=""; [ "$type" != "$spec" ] && opts=",${spec#*,}"
		mac=$(printf '52:54:00:00:%02x:%02x' "$n" $((2 + n)))
		q+=(-netdev "user,id=n$n,net=10.0.$((2 + n)).0/24")
		case $type in
		e1000) q+=(-device "e1000,netdev=n$n,mac=$mac,addr=04.0$opts") ;;
		virtio|virtio-net|virtio-net-pci) q+=(-device "virtio-net-pci,netdev=n$n,mac=$mac,addr=05.0$vo$opts") ;;
		*) vm__err "--net: unknown NIC '$type' (e1000|virtio)"; return 2 ;;
		esac
		n=$((n + 1))
	done
	[ $n -gt 0 ] && kargs="$kargs pviommu.net=1"
	n=0
	local size img
	for spec in "${disks[@]+"${disks[@]}"}"; do
		size=${spec##* }; spec=${spec% *}
		type=${spec%%,*}; opts=""; [ "$type" != "$spec" ] && opts=",${spec#*,}"
		img=$d/disk$n.img
		truncate -s "$size" "$img" || { vm__err "--disk: bad size '$size'"; return 2; }
		q+=(-drive "if=none,id=d$n,file=$(vm__q "$img"),format=raw")
		case $type in
		virtio-blk|virtio|virtio-blk-pci) q+=(-device "virtio-blk-pci,drive=d$n,addr=07.0$vo$opts") ;;
		nvme) q+=(-device "nvme,drive=d$n,serial=pviommu$n,addr=08.0$opts") ;;
		*) vm__err "--disk: unknown type '$type' (virtio-blk|nvme)"; return 2 ;;
		esac
		n=$((n + 1))
	done
	[ $edu = 1 ] && q+=(-device "edu,addr=06.0")
	n=0
	local tags="" path tag ro
	for spec in "${shares[@]+"${shares[@]}"}"; do
		IFS=: read -r path tag ro <<<"$spec"
		if [ -z "$path" ] || [ -z "$tag" ]; then vm__err "--share HOSTPATH:TAG[:ro]"; return 2; fi
		[ $n -gt 0 ] && slot=",addr=$(printf '%02x' $((0x09 + n))).0" || slot=",addr=09.0"
		[ $n -gt 0 ] && [ $((0x09 + n)) -ge 16 ] && { vm__err "too many --share"; return 2; }
		q+=(-fsdev "local,id=fs$n,path=$(vm__q "$path"),security_model=none,multidevs=remap${ro:+,readonly=on}"
			-device "virtio-9p-pci,fsdev=fs$n,mount_tag=$tag$slot$vo")
		tags="$tags${tags:+,}$tag"
		n=$((n + 1))
	done
	[ -n "$tags" ] && kargs="$kargs pviommu.shares=$tags"
	[ $allow_oops = 1 ] && kargs="$kargs pviommu.allow_oops=1"
	if [ -n "$heartbeat" ]; then
		kargs="$kargs pviommu.heartbeat=$heartbeat"
		echo "$heartbeat" >"$d/heartbeat"
		echo "0 $(date +%s)" >"$d/heartbeat.seen"
	fi
	for spec in "${devices[@]+"${devices[@]}"}"; do q+=(-device "$spec"); done
	q+=("${qargs[@]+"${qargs[@]}"}")
	# shellcheck disable=SC2206
	[ -n "${VM_QEMU_EXTRA:-}" ] && extra=($VM_QEMU_EXTRA) && q+=("${extra[@]}")
	q+=(-append "$kargs$append")
	local -a wrap=()
	# shellcheck disable=SC2206
	[ -n "${VM_QEMU_WRAPPER:-}" ] && wrap=($VM_QEMU_WRAPPER)

	printf '%q ' "${wrap[@]+"${wrap[@]}"}" "${q[@]}" >"$d/cmdline"; echo >>"$d/cmdline"
	: >"$d/serial.log"
	# runner: hard timeout (TERM, then KILL 5 s later), then make sure QEMU is gone, record rc
	(
		rc=0
		timeout -k 5 "$timeout" "${wrap[@]+"${wrap[@]}"}" "${q[@]}" </dev/null >"$d/qemu.out" 2>&1 || rc=$?
		pid=$(cat "$d/pid" "$d/qemu.pid" 2>/dev/null | head -n1 || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			[ $rc = 0 ] && rc=124
		fi
		echo "$rc" >"$d/rc"
	) </dev/null &
	echo $! >"$d/runner.pid"
	VM_CUR=$name
	VM_STARTED="$VM_STARTED $name"
	date +%s.%N >"$d/start"

	# return once QEMU is up (pidfile written), or fail if it exited at once
	for _ in $(seq 1 300); do
		if [ -s "$d/qemu.pid" ]; then
			tr -dc '0-9' <"$d/qemu.pid" >"$d/pid.tmp" && [ -s "$d/pid.tmp" ] &&
				echo >>"$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid" && return 0
		fi
		if [ -e "$d/rc" ]; then
			vm__err "QEMU exited at start (rc $(cat "$d/rc")); $d/qemu.out:"
			sed 's/^/  /' "$d/qemu.out" >&2
			return 1
		fi
		sleep 0.1
	done
	vm__err "QEMU wrote no pidfile in 30 s ($d/qemu.out)"
	return 1
}

vm__grep() {  # vm__grep ERE: search the serial log (CR stripped)
	tr -d '\r' <"$(vm_log)" 2>/dev/null | grep -aE "$1"
}

vm__re() { printf '%s' "$1" | sed 's/[][\.*^$+?(){}|/]/\\&/g'; }

# vm__frozen: 0 once a --heartbeat VM's beats have stopped for VM_HEARTBEAT_LOST (10 x SEC)
# seconds (its QEMU alive); then says so with what its vCPUs were doing (the monitor's
# "info registers -a": RIP, IF, HLT=1 for a halted one; the kernel-looking words on each
# one's stack; also in frozen.txt of its dir) and kills it. 1 otherwise.
vm__frozen() {
	local d beat lost n seen at now
	d=$(vm__dir)
	[ -s "$d/heartbeat" ] || return 1
	beat=$(cat "$d/heartbeat")
	lost=${VM_HEARTBEAT_LOST:-$((10 * beat))}
	read -r seen at <"$d/heartbeat.seen" || return 1
	n=$(vm__grep '^PVIOMMU-VM: HEARTBEAT ' | wc -l)
	now=$(date +%s)
	if [ "$n" != "$seen" ]; then echo "$n $now" >"$d/heartbeat.seen"; return 1; fi
	[ "$n" = 0 ] && lost=$((lost + 60))	# its boot, before the first beat
	[ $((now - at)) -ge "$lost" ] || return 1
	if [ "$n" = 0 ]; then
		vm__err "VM '$VM_CUR' stopped running: no heartbeat for $((now - at)) s (beats every ${beat} s; none since it started)"
	else
		vm__err "VM '$VM_CUR' stopped running: no heartbeat for $((now - at)) s (beats every ${beat} s;" \
			"$n seen, the last at guest uptime $(vm__grep '^PVIOMMU-VM: HEARTBEAT ' | tail -n 1 | cut -d' ' -f3) s)"
	fi
	# what its vCPUs were doing: registers, and the words on each one's stack that may be
	# return addresses into the kernel or a module (a frozen QEMU does not answer: 5 s)
	local -a cmds=()
	if python3 "$VM_HERE/hmp.py" "$d/hmp.sock" "info registers -a" >"$d/frozen.hmp" 2>&1; then
		# frozen.txt: a line per vCPU; frozen.rsp: "N RSP" per vCPU, for the stack reads
		tr -d '\r' <"$d/frozen.hmp" | awk -v rspf="$d/frozen.rsp" '/^CPU#/ { c = $1 }
			/ RSP=/ { match($0, /RSP=[0-9a-f]+/); rsp = substr($0, RSTART + 4, 16); print substr(c, 5), rsp > rspf }
			/^RIP=/ { f = substr($2, 5); f = index("0123456789abcdef", substr(f, length(f) - 2, 1)) - 1
				printf "  %s %s RSP=%s %s IF=%d", c, $1, rsp, $2, int(f / 2) % 2
				for (i = 3; i <= NF; i++) if ($i ~ /^(CPL|HLT)=/) printf " %s", $i; print "" }' >"$d/frozen.txt"
		while read -r c rsp; do cmds+=("cpu $c" "x/64gx 0x$rsp"); done <"$d/frozen.rsp"
		python3 "$VM_HERE/hmp.py" "$d/hmp.sock" "${cmds[@]}" >"$d/frozen.stack" 2>&1
		awk '/^== cpu / { c = $3 } /^[0-9a-f]+:/ { for (i = 2; i <= NF; i++) if ($i ~ /^0xffffffff[89a-f]/) w[c] = w[c] " " substr($i, 3) }
			END { for (c in w) print "  CPU#" c " stack:" w[c] }' "$d/frozen.stack" | sort >>"$d/frozen.txt"
		cat "$d/frozen.txt" >&2
	else
		vm__err "  (its monitor did not answer: QEMU itself is stuck)"
	fi
	: >"$d/frozen"
	vm_kill
	return 0
}

vm_wait_marker() {
	local name=$1 t=${2:-60} re start n=0
	re="PVIOMMU-VM: MARK $(vm__re "$name")[[:space:]]*\$"
	start=$(date +%s)
	while :; do
		vm__grep "$re" >/dev/null && return 0
		if ! vm__alive; then
			vm__grep "$re" >/dev/null && return 0
			vm__err "VM '$VM_CUR' exited before marker '$name'"; return 1
		fi
		[ $(($(date +%s) - start)) -ge "$t" ] && { vm__err "timeout (${t}s) waiting for marker '$name'"; return 1; }
		n=$((n + 1))
		if [ $((n % 10)) = 0 ] && vm__frozen; then vm__err "(while waiting for marker '$name')"; return 1; fi
		sleep 0.1
	done
}

vm_send() {
	local d
	d=$(vm__dir)
	vm__alive || { vm__err "vm_send: VM '$VM_CUR' is not running"; return 1; }
	# the pipe has a reader (QEMU holds it O_RDWR); the timeout guards against a dead QEMU
	# shellcheck disable=SC2016
	timeout 5 sh -c 'printf "%s\n" "$1" >"$2"' sh "$1" "$d/ctl.in" ||
		{ vm__err "vm_send: cannot write to $d/ctl.in"; return 1; }
}

# vm_insns FILE: the guest's instructions so far, summed over the vCPUs, from a --count-insns
# FILE; fails while the file holds no counters
vm_insns() {
	od -An -t u8 -v "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) s += $i; n += NF }
		END { if (n) printf "%.0f\n", s; else exit 1 }'
}

vm_value() {
	vm__grep "PVIOMMU-VM: VALUE $(vm__re "$1") " | tail -n1 | sed "s/.*PVIOMMU-VM: VALUE [^ ]* //"
}

vm_checks() {
	local p f
	p=$(vm__grep 'PVIOMMU-VM: CHECK PASS ' | wc -l)
	f=$(vm__grep 'PVIOMMU-VM: CHECK FAIL ' | wc -l)
	echo "$p $f"
}

vm_tail() { tr -d '\r' <"$(vm_log)" | tail -n "${1:-40}"; }

vm_kill() {
	local name=${1:-$VM_CUR} d pid
	d=$(vm__dir "$name")
	pid=$(cat "$d/pid" 2>/dev/null || true)
	if [ -n "$pid" ] && [ ! -e "$d/rc" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
	pid=$(cat "$d/runner.pid" 2>/dev/null || true)
	if [ -n "$pid" ]; then
		for _ in $(seq 1 50); do [ -e "$d/rc" ] && break; sleep 0.1; done
		if [ ! -e "$d/rc" ]; then kill -KILL "$(cat "$d/pid" 2>/dev/null)" 2>/dev/null || true; sleep 0.2; fi
		wait "$pid" 2>/dev/null || true
	fi
	return 0
}

vm_cleanup() {
	local n
	for n in $VM_STARTED; do vm_kill "$n"; done
	VM_STARTED=
}

vm_wait() {
	local t=${1:-0} d start rc now n=0 stalled=""
	d=$(vm__dir)
	start=$SECONDS
	while [ ! -e "$d/rc" ]; do
		now=$SECONDS
		if [ "$t" -gt 0 ] && [ $((now - start)) -ge "$t" ]; then
			vm__err "vm_wait: VM '$VM_CUR' still running after ${t}s: killing it"
			vm_kill; echo 124 >"$d/rc.wait"; break
		fi
		# a stall the guest reported (VM_STALL_PATTERN): VM_STALL_GRACE seconds to recover
		n=$((n + 1))
		if [ $((n % 10)) = 0 ] && vm__frozen; then echo 124 >"$d/rc.wait"; break; fi
		if [ -n "${VM_STALL_PATTERN:-}" ] && [ $((n % 10)) = 0 ]; then
			if [ -z "$stalled" ] && vm__grep "$VM_STALL_PATTERN" >/dev/null; then
				stalled=$now
				vm__err "vm_wait: VM '$VM_CUR' reported '$VM_STALL_PATTERN': ${VM_STALL_GRACE:-90} s to finish"
			elif [ -n "$stalled" ] && [ $((now - stalled)) -ge "${VM_STALL_GRACE:-90}" ]; then
				vm__err "vm_wait: VM '$VM_CUR' still running ${VM_STALL_GRACE:-90} s after '$VM_STALL_PATTERN': killing it"
				vm_kill; echo 124 >"$d/rc.wait"; break
			fi
		fi
		sleep 0.1
	done
	wait "$(cat "$d/runner.pid" 2>/dev/null)" 2>/dev/null || true
	date +%s.%N >"$d/end"
	rc=$(cat "$d/rc.wait" 2>/dev/null || cat "$d/rc")
	if vm__grep 'PVIOMMU-VM: RESULT PASS' >/dev/null; then
		return 0
	elif vm__grep 'PVIOMMU-VM: RESULT FAIL' >/dev/null; then
		return 1
	elif [ -e "$d/frozen" ]; then
		return 124
	elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		vm__err "VM '$VM_CUR' hit its hard timeout"
		return 124
	else
		vm__err "VM '$VM_CUR' exited (QEMU rc $rc) without a verdict"
		return 1
	fi
}

# seconds from vm_boot to QEMU exit (after vm_wait)
vm_elapsed() {
	local d
	d=$(vm__dir "$@")
	awk -v a="$(cat "$d/start")" -v b="$(cat "$d/end")" 'BEGIN { printf "%.1f\n", b - a }'
}

# vm_tcp_server WORKDIR [BLOB]: start tests/vm/tcp-server.py, the host end of guest TCP
# workloads (GET n / PUT n, see the script). Sets VM_TCP_PORT and VM_TCP_PID (kill it when
# done); returns 1, the reason in WORKDIR/server.err, when it does not come up.
vm_tcp_server() {
	local dir=$1 blob=${2:-}
	python3 -u "$VM_HERE/tcp-server.py" ${blob:+"$blob"} >"$dir/server.port" 2>"$dir/server.err" &
	VM_TCP_PID=$! VM_TCP_PORT=
	for _ in $(seq 1 50); do
		VM_TCP_PORT=$(head -n1 "$dir/server.port" 2>/dev/null)
		[ -n "$VM_TCP_PORT" ] && return 0
		sleep 0.1
	done
	return 1
}

# vm_blob_server SIZE: a random blob of SIZE bytes in $work/blob served by vm_tcp_server; sets
# blob_md5, port and SPID (the host cleanup stops it). Fails the test (nok, finish) when the
# server does not come up.
vm_blob_server() {
	head -c "$1" /dev/urandom >"$work/blob"
	blob_md5=$(md5sum <"$work/blob" | cut -d' ' -f1)
	if vm_tcp_server "$work" "$work/blob"; then SPID=$VM_TCP_PID port=$VM_TCP_PORT
	else SPID=$VM_TCP_PID; nok "tcp-server" "$(cat "$work/server.err")"; finish; fi
}

vm_host_init() {
	export PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-$1-$$
	work=$VM_RUNS/$NAME.host
	rm -rf "$work"; mkdir -p "$work"
	SPID=
	trap vm__host_cleanup EXIT
	trap 'exit 130' INT TERM
}

vm__host_cleanup() {
	vm_cleanup
	if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi
	[ -d "$PVIOMMU_PIN_DIR" ] && "$CTL" unload --force >/dev/null 2>&1
	return 0
}
