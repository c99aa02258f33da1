# shellcheck shell=bash disable=SC2034
# tests/vm/attacks-lib.sh - host side of the rogue-DMA tests (bash; source after tests/vm/lib.sh).
# Used by tests/vm/test_attacks.sh and scripts/demo.sh. The guest side is tests/vm/attacks-guest.sh,
# the guest module tests/vm/guest-modules/pvattack.c.
#
# atk_init                 paths, private pin dir, host httpd with a blob; call once (sets a trap
#                          through atk_cleanup: call it from the caller's EXIT trap)
# atk_planes               detect the enforcement planes: sets ATK_INPROC (1/0, the wrapper
#                          command in ATK_WRAP) and ATK_UPROBE (1/0, the attach words in
#                          ATK_UPROBE_CMD, with P for the pid)
# atk_load MODE            pviommuctl load (if not loaded) + mode MODE (the default for new domains)
# atk_boot NAME PLANE [--benign]   boot a guest (edu + e1000 [+ virtio-net, virtio-blk]); PLANE =
#                          none|inproc|uprobe: how QEMU is run / what is attached; waits for "armed"
# atk_run S                run scenario S; prints its result line (empty if the guest died)
# atk_field LINE KEY       value of KEY= in a result line
# atk_events_start/stop    follow `pviommuctl -j events` into $ATK_EV
# atk_event_text JSONLINE  the same event as `pviommuctl events` prints it (text form)
# atk_violations [BDF [ADDR LEN DIR [ACTION]]]  count violation events of the current VM's QEMU
#                          that overlap [ADDR, ADDR+LEN) with access DIR (read|write)
# atk_finish               send "end", wait for the VM, stop the event reader; 0 = RESULT PASS
ATK_SRC=${ATK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CTL=${CTL:-$VM_OUT/pviommuctl}
ATK_PVIOMMU_KO=${ATK_PVIOMMU_KO:-$VM_OUT/guest-module/pviommu.ko}
ATK_ATTACK_KO=${ATK_ATTACK_KO:-$VM_OUT/guest-attack/pvattack.ko}
ATK_OLDOPS_KO=${ATK_OLDOPS_KO:-$VM_OUT/guest-attack/pvoldops.ko}
ATK_BOOTS=0
ATK_EVPID=
ATK_HPID=
BDF_EDU=0000:00:06.0
BDF_E1000=0000:00:04.0
BDF_VIRTIO_NET=0000:00:05.0
BDF_VIRTIO_BLK=0000:00:07.0
BDF_NVME=0000:00:08.0

atk_init() {
	local p
	[ -x "$CTL" ] || { echo "attacks: $CTL missing (make)" >&2; return 2; }
	[ -f "$ATK_PVIOMMU_KO" ] || { echo "attacks: $ATK_PVIOMMU_KO missing (make guest-module)" >&2; return 2; }
	[ -f "$ATK_ATTACK_KO" ] || { echo "attacks: $ATK_ATTACK_KO missing (make guest-attack)" >&2; return 2; }
	export PVIOMMU_PIN_DIR=${PVIOMMU_PIN_DIR:-/sys/fs/bpf/pviommu-atk-$$}
	ATK_WORK=${ATK_WORK:-$VM_RUNS/attacks.host}
	rm -rf "$ATK_WORK"; mkdir -p "$ATK_WORK/www"
	head -c 1000000 /dev/urandom >"$ATK_WORK/www/blob"
	ATK_BLOBSUM=$(md5sum <"$ATK_WORK/www/blob" | cut -d' ' -f1)
	ATK_PORT=
	for p in $(seq $((30000 + $$ % 20000)) $((30000 + $$ % 20000 + 50))); do
		busybox netstat -ltn 2>/dev/null | grep -q ":$p " && continue
		ATK_PORT=$p; break
	done
	[ -n "$ATK_PORT" ] || { echo "attacks: no free port" >&2; return 2; }
	(cd "$ATK_WORK/www" && exec busybox httpd -f -p "127.0.0.1:$ATK_PORT") &
	ATK_HPID=$!
	ATK_T0=$(date +%s)
}

atk_cleanup() {
	vm_cleanup
	atk_events_stop
	[ -n "$ATK_HPID" ] && kill "$ATK_HPID" 2>/dev/null
	ATK_HPID=
	[ -d "${PVIOMMU_PIN_DIR:-/nonexistent}" ] && "$CTL" unload --force >/dev/null 2>&1
	return 0
}

# both planes are part of pviommuctl and the library is built with it: a missing one fails the
# modes that need it (decided by what was built, never by reading help text)
atk_planes() {
	ATK_INPROC=1 ATK_WRAP="$CTL run --" ATK_INPROC_WHY=""
	ATK_UPROBE=1 ATK_UPROBE_CMD="attach --pid P --enforce" ATK_UPROBE_WHY=""
	# the in-process library serves the TCG hypercall transport itself (cpu_x86_cpuid detour)
	ATK_INPROC_HC=${ATK_INPROC_HC:-1}
	if [ ! -f "$(dirname "$CTL")/libpviommu-qemu.so" ]; then
		ATK_INPROC=0 ATK_INPROC_WHY="$(dirname "$CTL")/libpviommu-qemu.so was not built"
	fi
}

atk_load() {
	"$CTL" status >/dev/null 2>&1 || "$CTL" load >"$ATK_WORK/load.out" 2>&1 ||
		{ echo "attacks: pviommuctl load failed: $(cat "$ATK_WORK/load.out")" >&2; return 1; }
	"$CTL" mode "$1" >/dev/null || return 1
}

atk_events_start() {
	atk_events_stop
	ATK_EV=$ATK_WORK/events.$1.json
	"$CTL" -j events >"$ATK_EV" 2>"$ATK_EV.err" &
	ATK_EVPID=$!
	sleep 0.3
}

atk_events_stop() {
	[ -n "$ATK_EVPID" ] || return 0
	sleep 0.5	# let the last events arrive
	kill -TERM "$ATK_EVPID" 2>/dev/null
	wait "$ATK_EVPID" 2>/dev/null
	ATK_EVPID=
}

# atk_boot NAME PLANE [--benign]; ATK_BRIDGE=1: edu behind a pci-bridge (00:10.0), at
# 01:02.0 (set BDF_EDU accordingly), instead of 00:06.0 on the root bus; ATK_OLDOPS=1: the
# protected devices get pvoldops.ko's DMA ops (another layer's) before pviommu.ko wraps them;
# ATK_NVME=1: an nvme disk too, protected, in the benign workload (its driver maps scatterlists)
atk_boot() {
	local name=$1 plane=$2 benign=${3:-} devs=$BDF_E1000,$BDF_EDU pid
	# edu reaches 4 GiB (QEMU's default is 28 bits): its BAR, for the peer-to-peer scenario h
	local extra=${VM_QEMU_EXTRA:-} edu=edu,dma_mask=0xffffffff
	if [ "${ATK_BRIDGE:-0}" = 1 ]; then
		extra="$extra -device pci-bridge,id=pvbr,chassis_nr=1,addr=10.0 -device $edu,bus=pvbr,addr=02.0"
		edu=""
	else
		edu="$edu,addr=06.0"
	fi
	local -a args=(--name "atk-$name" --script "$ATK_SRC/tests/vm/attacks-guest.sh"
		--file "$ATK_PVIOMMU_KO" --file "$ATK_ATTACK_KO" --net e1000 --timeout "${ATK_VM_TIMEOUT:-300}"
		--append "pviommu.edubits=32")
	[ -n "$edu" ] && args+=(--device "$edu")
	if [ "$benign" = --benign ]; then
		args+=(--net virtio --disk virtio-blk 64M --virtio-opts "iommu_platform=on,disable-legacy=on")
		devs=$BDF_E1000,$BDF_VIRTIO_NET,$BDF_EDU,$BDF_VIRTIO_BLK
	fi
	[ "${ATK_NO_PVIOMMU_KO:-0}" = 1 ] && devs=""
	if [ "${ATK_NVME:-0}" = 1 ]; then
		args+=(--disk nvme 64M)
		devs=$devs,$BDF_NVME
	fi
	[ "${ATK_OLDOPS:-0}" = 1 ] && args+=(--file "$ATK_OLDOPS_KO" --append "pviommu.oldops=1")
	args+=(--append "pviommu.devices=$devs pviommu.edu=$BDF_EDU pviommu.port=$ATK_PORT pviommu.blobsum=$ATK_BLOBSUM")
	# only the in-process plane answers the guest's hypercalls (pviommu.h): elsewhere the
	# module is told not to wait for an acknowledgement
	[ "$plane" = inproc ] || args+=(--append "pviommu.verify=0")
	ATK_PLANE=$plane
	atk_events_start "$name"
	# (the filter drops bash's "Killed" job notice from lib.sh's runner: kill mode kills QEMU)
	if [ "$plane" = inproc ]; then
		VM_QEMU_EXTRA=$extra VM_QEMU_WRAPPER="$ATK_WRAP" vm_boot "${args[@]}" 2> >(grep -v ' Killed  *timeout ' >&2) || return 1
	else
		VM_QEMU_EXTRA=$extra VM_QEMU_WRAPPER="" vm_boot "${args[@]}" 2> >(grep -v ' Killed  *timeout ' >&2) || return 1
	fi
	ATK_BOOTS=$((ATK_BOOTS + 1))
	vm_wait_marker ready 120 || return 1
	pid=$(vm_pid) || return 1
	ATK_PID=$pid
	# uprobe plane: 'attach --pid P --enforce' = TCG transport + enforcement (attach once only:
	# a second transport uprobe would count every map/unmap twice). Otherwise the plain TCG
	# hypercall transport (uprobe on cpu_x86_cpuid), unless the in-process library serves it.
	if [ "$plane" = uprobe ]; then
		# shellcheck disable=SC2086
		"$CTL" ${ATK_UPROBE_CMD//P/$pid} >"$ATK_WORK/enforce.out" 2>&1 ||
			{ echo "attacks: pviommuctl ${ATK_UPROBE_CMD//P/$pid} failed: $(cat "$ATK_WORK/enforce.out")" >&2; return 1; }
	elif [ "$plane" != inproc ] || [ "$ATK_INPROC_HC" != 1 ]; then
		if [ "${ATK_NO_TRANSPORT:-0}" != 1 ]; then
			"$CTL" attach --pid "$pid" >"$ATK_WORK/attach.out" 2>&1 ||
				{ echo "attacks: pviommuctl attach failed: $(cat "$ATK_WORK/attach.out")" >&2; return 1; }
		fi
	fi
	vm_send go || return 1
	vm_wait_marker armed 120 || return 1
	ATK_INFO=$(vm_value info)
}

atk_run() {
	vm_send "run $1" || return 1
	vm_wait_marker "done-$1" "${2:-60}" >/dev/null 2>&1 || return 1
	vm_value "result-$1"
}

atk_benign() {
	vm_send benign || return 1
	vm_wait_marker benign-done 180
}

atk_field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }

# violation lines of this VM's QEMU, as "bdf addr len access action plane"
atk__viol() {
	[ -s "$ATK_EV" ] || return 0
	grep '"type":"violation"' "$ATK_EV" | grep "\"pid\":$ATK_PID," |
		sed -E 's/.*"bdf":"([^"]*)".*"addr":([0-9]+),"len":([0-9]+),"access":"([^"]*)".*"action":"([^"]*)","plane":"([^"]*)".*/\1 \2 \3 \4 \5 \6/'
}

# atk_violations [BDF [ADDR LEN DIR [ACTION]]]: count of matching violation events
atk_violations() {
	local bdf=${1:-} addr=${2:-} len=${3:-} dir=${4:-} act=${5:-}
	[ -n "$addr" ] && addr=$((addr))
	atk__viol | awk -v bdf="$bdf" -v a="$addr" -v l="$len" -v d="$dir" -v act="$act" '
		bdf != "" && $1 != bdf { next }
		a != "" && !($2 < a + l && $2 + $3 > a) { next }
		d == "read" && $4 !~ /r/ { next }
		d == "write" && $4 !~ /w/ { next }
		act != "" && $5 != act { next }
		{ n++ } END { print n + 0 }'
}

# print the matching event lines (for the report)
atk_event_lines() {
	local addr=$(($2))
	atk__viol | awk -v bdf="$1" -v a="$addr" -v l="$3" '$1 == bdf && $2 < a + l && $2 + $3 > a'
}

atk_finish() {
	local rc=0
	vm_send end >/dev/null 2>&1
	vm_wait 120 || rc=$?
	atk_events_stop
	return $rc
}

# seconds since atk_init
atk_elapsed() { echo $(($(date +%s) - ATK_T0)); }

# atk_event_text: a JSON event line in the text form of `pviommuctl events`
atk_event_text() {
	sed -E 's/.*"ts_ns":([0-9]+),"type":"violation","pid":([0-9]+),"tid":[0-9]+,"bdf":"([^"]*)","addr":([0-9]+),"len":([0-9]+),"access":"([^"]*)",.*"reason":"([^"]*)","action":"([^"]*)","plane":"([^"]*)".*/\1 \2 \3 \4 \5 \6 \7 \8 \9/' <<<"$1" |
		awk '{ printf "%d.%06d violation pid=%s bdf=%s addr=0x%x len=%s %s reason=%s action=%s plane=%s\n",
			int($1 / 1e9), int(($1 % 1e9) / 1e3), $2, $3, $4, $5, ($6 ~ /w/ ? "write" : "read"), $7, $8, $9 }'
}

# atk_event_json BDF ADDR LEN: the first violation event (JSON line) of this VM overlapping the range
atk_event_json() {
	local a=$(($2)) l=$3 line ad ln
	[ -s "$ATK_EV" ] || return 1
	while IFS= read -r line; do
		ad=$(sed -nE 's/.*"addr":([0-9]+),.*/\1/p' <<<"$line")
		ln=$(sed -nE 's/.*"len":([0-9]+),.*/\1/p' <<<"$line")
		[ -n "$ad" ] && [ "$ad" -lt $((a + l)) ] && [ $((ad + ln)) -gt "$a" ] && { echo "$line"; return 0; }
	done < <(grep '"type":"violation"' "$ATK_EV" | grep "\"pid\":$ATK_PID," | grep "\"bdf\":\"$1\"")
	return 1
}
