#!/bin/bash
# run-vm.sh [vm_boot options] - boot a pviommu test guest once and wait for its verdict.
#   exit 0 = RESULT PASS, 1 = RESULT FAIL (or QEMU died without a verdict), 124 = hard timeout,
#   2 = harness error. On failure prints the tail of the serial log (TAIL=N lines, default 40).
# Options: those of vm_boot in tests/vm/lib.sh (--name --script --file --module --net --disk
#   --edu --share --device --qemu-arg --virtio-opts --machine --cpu --mem --smp --timeout --append
#   --allow-oops), plus --prepare (fetch the kernel / build the base initramfs if missing) and
#   --log (print the whole serial log at the end, also on success).
# Example: tests/vm/run-vm.sh --name demo --script t.sh --net virtio,iommu_platform=on,disable-legacy=on
set -eu
# shellcheck source=tests/vm/lib.sh
. "$(dirname "$0")/lib.sh"

prepare=0 showlog=0
args=()
for a in "$@"; do
	case $a in
	--prepare) prepare=1 ;;
	--log) showlog=1 ;;
	-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) args+=("$a") ;;
	esac
done
[ $prepare = 1 ] && { vm_prepare || exit 2; }

trap 'vm_cleanup' EXIT
trap 'exit 130' INT TERM
rc=0
vm_boot "${args[@]+"${args[@]}"}" || exit 2
vm_wait || rc=$?
if [ $showlog = 1 ]; then
	tr -d '\r' <"$(vm_log)"
elif [ $rc != 0 ]; then
	echo "---- $(vm_log) (last ${TAIL:-40} lines) ----" >&2
	vm_tail "${TAIL:-40}" >&2
	[ -s "$(vm_dir)/qemu.out" ] && { echo "---- qemu.out ----" >&2; tail -n 20 "$(vm_dir)/qemu.out" >&2; }
fi
case $rc in
0) echo "run-vm: $VM_CUR: PASS ($(vm_elapsed) s)" ;;
124) echo "run-vm: $VM_CUR: TIMEOUT" >&2 ;;
*) echo "run-vm: $VM_CUR: FAIL" >&2 ;;
esac
exit $rc
