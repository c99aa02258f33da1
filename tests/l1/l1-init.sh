# shellcheck shell=sh
# l1-init.sh - /test/run.sh of an L1 guest (busybox sh, run by tests/vm/guest/init).
# Mounts what a BPF host needs, enters the host root (9p, read-only) and runs the inner script
# given by pviommu.l1script=PATH there. See tests/l1/lib.sh.
# shellcheck source=tests/vm/guest/pviommu-vm.sh
. /lib/pviommu-vm.sh
R=/mnt/hostroot
script=$(karg l1script) || fail "no pviommu.l1script= on the kernel command line"
value l1_kernel "$(uname -r)"
# where the kernel and its modules lie (KASLR): what the host needs to name the addresses of a
# frozen L1's vCPUs (tests/vm/lib.sh vm__frozen, tests/l1/lib.sh l1_failed)
value l1_ktext "$(awk '$3 == "_text" { print $1; exit }' /proc/kallsyms)"
value l1_kmods "$(awk '{ printf "%s%s:%s", n++ ? "," : "", $1, $6 }' /proc/modules)"
value l1_init_uptime "$(cut -d' ' -f1 /proc/uptime)"
grep -q " $R 9p " /proc/mounts || fail "host root not mounted at $R"
[ -f "$R$script" ] || fail "inner script $script not found in the host root"

# mount before binding: busybox mounts do not propagate into an earlier bind
mount -t bpf bpf /sys/fs/bpf || fail "mount bpffs"
mount -t tracefs tracefs /sys/kernel/tracing || fail "mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
for d in dev proc sys; do
	mount -o rbind "/$d" "$R/$d" || fail "bind /$d into $R"
done
# L1's /tmp (a tmpfs) goes over the host's /tmp in the chroot; host folders
# that the run needs and that live under /tmp (a checkout there, as CI may
# use) are kept visible: set aside first, bound back on top afterwards
keep=""
for p in "$script" "$(karg l1out)" "$(karg l1src)" "$(karg l1ctl)"; do
	case "$p" in /tmp/?*) top=$(echo "$p" | cut -d/ -f3); case " $keep " in *" $top "*) ;; *) keep="$keep $top" ;; esac ;; esac
done
for top in $keep; do
	mkdir -p "/mnt/hosttmp/$top" && mount -o bind "$R/tmp/$top" "/mnt/hosttmp/$top" ||
		fail "set aside $R/tmp/$top"
done
mount -o bind /tmp "$R/tmp" || fail "bind /tmp into $R"
for top in $keep; do
	mkdir -p "/tmp/$top" && mount -o bind "/mnt/hosttmp/$top" "$R/tmp/$top" ||
		fail "bind the host's /tmp/$top back into $R"
done
value l1_kvm "$([ -c /dev/kvm ] && echo yes || echo no)"

# KVM's first VM and the end of its last flip a static key with a site in __schedule
# (preempt_notifier_key: kvm_create_vm, kvm_destroy_vm). Under TCG the text patching that
# follows froze L1 now and then as an L2's QEMU started: both vCPUs at that site
# (__schedule+0x2ab, named by the heartbeat's report), 3 times in about 20 runs of l1-assign.
# A VM held open from here to the end keeps the key on: no L2 flips it.
if [ -c /dev/kvm ]; then
	chroot "$R" /usr/bin/python3 -c '
import fcntl, os, signal
vm = fcntl.ioctl(os.open("/dev/kvm", os.O_RDWR), 0xAE01, 0)	# KVM_CREATE_VM
open("/tmp/.l1-kvm-held", "w").write(str(os.getpid()))
signal.pause()' </dev/null >/dev/null 2>&1 &
	for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s /tmp/.l1-kvm-held ] && break; sleep 0.5; done
	value l1_kvm_vm_held "$([ -s /tmp/.l1-kvm-held ] && echo "yes (pid $(cat /tmp/.l1-kvm-held))" || echo no)"
fi

chroot "$R" /usr/bin/env -i \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TERM=dumb LANG=C \
	L1_OUT="$(karg l1out)" L1_SRC="$(karg l1src)" L1_CTL="$(karg l1ctl || echo "$(karg l1out)/pviommuctl")" \
	/bin/bash "$script" </dev/null >/dev/console 2>&1
rc=$?
value l1_inner_rc "$rc"
value l1_done_uptime "$(cut -d' ' -f1 /proc/uptime)"
exit "$rc"
