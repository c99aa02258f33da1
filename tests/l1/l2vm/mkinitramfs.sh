#!/bin/sh
# l2vm/mkinitramfs.sh - stand-in for tests/vm/mkinitramfs.sh when tests/vm/lib.sh runs inside L1
# (l2vm/lib.sh is a link to it, so lib.sh finds this file next to itself). L2's initramfs is
# built complete on the host (GUEST_INITRD_BASE); packing one in L1 costs ~15 s of TCG, since
# every exec there is ~0.5 s. "extra" writes an empty per-run archive (appending nothing).
if [ "$1" != extra ] || [ $# -ne 3 ]; then
	echo "l2vm/mkinitramfs.sh: only 'extra OUTDIR OUT' (no options) in L1" >&2; exit 2
fi
: >"$3"
