/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * detour.h - x86-64 function-entry detours for the in-process plane.
 *
 * A target's first whole instructions (>= 5 bytes, decoded with capstone)
 * are copied into a trampoline that then jumps back behind them; the target
 * starts with "jmp rel32" to the hook (or, when the hook is more than 2 GiB
 * away, to a relay stub "jmp *[rip]" placed in a page mapped within +-2 GiB
 * of the target). The hook calls the original through the trampoline.
 *
 * Refused (logged, target left untouched): RIP-relative operands, calls,
 * returns, conditional/relative branches, int3 (an installed uprobe) inside
 * the relocated bytes. One exception is made on purpose: an unconditional
 * jmp that ends the relocated bytes (a tail call such as QEMU's
 * address_space_stq: "xor r9d,r9d; jmp rel32") is relocated as an absolute
 * jmp to the same destination, since nothing falls through after it.
 *
 * Text pages are made writable without exec (PROT_READ|PROT_WRITE), patched,
 * then made PROT_READ|PROT_EXEC again: never W+X at once. When a policy
 * refuses either step (PaX MPROTECT, SELinux execmod, ...) the page is
 * restored (remapped from the file if need be) and the refusal reported.
 * Must run while the process has one thread (a preload constructor).
 */
#ifndef __PVIOMMU_DETOUR_H
#define __PVIOMMU_DETOUR_H

#include <stddef.h>
#include <stdint.h>

struct detour {
	const char	*name;		/* exported symbol */
	void		*hook;		/* our replacement */
	void		**orig;		/* set to the trampoline */
	/* filled in by detour_install() */
	uint8_t		*target;
	unsigned	nreloc;		/* bytes relocated */
	int		via_relay;
	int		tail_jmp;
	int		err;		/* 0 installed, else -errno */
	char		why[200];	/* reason of a refusal */
};

/*
 * Patch every entry of d[0..n). Returns the number installed; each entry's
 * err/why tells what happened. *wx_refused is set when a W^X policy refused
 * text or trampoline patching.
 */
int detour_install(struct detour *d, int n, int *wx_refused);

#endif
