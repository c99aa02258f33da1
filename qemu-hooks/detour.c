// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* detour.c - see detour.h */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <capstone/capstone.h>
#include "detour.h"

#define JMP_REL32_LEN	5
#define ABS_JMP_LEN	14	/* ff 25 00 00 00 00 + 8-byte address */
#define TRAMP_SLOT	48	/* relocated (<= 4 + 15) + abs jmp (14) */
#define RELAY_SLOT	16
#define NEAR_SPAN	0x7fff0000LL

static long page_size(void)
{
	static long ps;

	if (!ps)
		ps = sysconf(_SC_PAGESIZE);
	return ps;
}

static int within_rel32(const void *from_next, const void *to)
{
	long long d = (long long)((intptr_t)to - (intptr_t)from_next);

	return d >= -NEAR_SPAN && d <= NEAR_SPAN;
}

/* one RW page within +-2 GiB of [lo, hi) (so that rel32 reaches it) */
static uint8_t *alloc_near(uintptr_t lo, uintptr_t hi, size_t len)
{
	uintptr_t ps = page_size(), step = 1ul << 20, a;
	long i;

	for (i = 1; i < 2000; i++) {
		void *p;

		/* alternate above the end and below the start */
		a = (i & 1) ? ((hi + ps - 1) & ~(ps - 1)) + (uintptr_t)(i / 2) * step
			    : (lo & ~(ps - 1)) - (uintptr_t)(i / 2 + 1) * step;
		if (a < 0x10000)
			continue;
		p = mmap((void *)a, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED)
			continue;
		if ((uintptr_t)p != a ||
		    !within_rel32((void *)lo, (uint8_t *)p + len) ||
		    !within_rel32((void *)hi, p)) {
			munmap(p, len);
			continue;
		}
		return p;
	}
	return NULL;
}

static void emit_abs_jmp(uint8_t *p, const void *to)
{
	uint64_t a = (uintptr_t)to;

	p[0] = 0xff;
	p[1] = 0x25;
	memset(p + 2, 0, 4);
	memcpy(p + 6, &a, 8);
}

static int is_rip_relative(const cs_insn *in)
{
	const cs_x86 *x = &in->detail->x86;

	for (int i = 0; i < x->op_count; i++)
		if (x->operands[i].type == X86_OP_MEM &&
		    (x->operands[i].mem.base == X86_REG_RIP ||
		     x->operands[i].mem.index == X86_REG_RIP))
			return 1;
	return 0;
}

static int in_group(const cs_insn *in, int g)
{
	const cs_detail *d = in->detail;

	for (int i = 0; i < d->groups_count; i++)
		if (d->groups[i] == g)
			return 1;
	return 0;
}

/*
 * Decide how many bytes to relocate and write the trampoline. 0 or -errno
 * with d->why set.
 */
static int build_trampoline(csh cs, struct detour *d, uint8_t *tramp)
{
	cs_insn *insn = NULL;
	size_t n, i, used = 0;
	int err = 0;

	n = cs_disasm(cs, d->target, 32, (uintptr_t)d->target, 0, &insn);
	if (!n) {
		snprintf(d->why, sizeof(d->why), "cannot decode the prologue");
		return -ENOEXEC;
	}
	for (i = 0; i < n && used < JMP_REL32_LEN; i++) {
		cs_insn *in = &insn[i];

		if (in->id == X86_INS_INT3) {
			snprintf(d->why, sizeof(d->why),
				 "int3 at +%zu (a uprobe is installed here?)", used);
			err = -EBUSY;
			break;
		}
		if (is_rip_relative(in)) {
			snprintf(d->why, sizeof(d->why), "RIP-relative '%.16s %.60s' at +%zu",
				 in->mnemonic, in->op_str, used);
			err = -EOPNOTSUPP;
			break;
		}
		if (in->id == X86_INS_JMP && in->detail->x86.op_count == 1 &&
		    in->detail->x86.operands[0].type == X86_OP_IMM) {
			/* tail jump: nothing falls through, relocate absolute */
			memcpy(tramp, d->target, used);
			emit_abs_jmp(tramp + used,
				     (void *)(uintptr_t)in->detail->x86.operands[0].imm);
			used += in->size;
			d->tail_jmp = 1;
			d->nreloc = used;
			cs_free(insn, n);
			return used >= JMP_REL32_LEN ? 0 : -EOPNOTSUPP;
		}
		if (in_group(in, CS_GRP_JUMP) || in_group(in, CS_GRP_CALL) ||
		    in_group(in, CS_GRP_RET) || in_group(in, CS_GRP_INT) ||
		    in_group(in, CS_GRP_IRET) ||
		    in_group(in, CS_GRP_BRANCH_RELATIVE)) {
			snprintf(d->why, sizeof(d->why), "branch '%.16s %.60s' at +%zu",
				 in->mnemonic, in->op_str, used);
			err = -EOPNOTSUPP;
			break;
		}
		used += in->size;
	}
	cs_free(insn, n);
	if (err)
		return err;
	if (used < JMP_REL32_LEN) {
		snprintf(d->why, sizeof(d->why), "prologue shorter than 5 bytes");
		return -ENOEXEC;
	}
	memcpy(tramp, d->target, used);
	emit_abs_jmp(tramp + used, d->target + used);
	d->nreloc = used;
	return 0;
}

/* put the original text of [page, page + len) back from the mapped file */
static int remap_from_file(uintptr_t page, size_t len)
{
	char line[512], path[400];
	unsigned long s, e, off;
	FILE *f = fopen("/proc/self/maps", "re");
	int ok = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		path[0] = 0;
		if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %399s", &s, &e, &off,
			   path) < 3)
			continue;
		if (page < s || page >= e || path[0] != '/')
			continue;
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd >= 0) {
			void *p = mmap((void *)page, len, PROT_READ | PROT_EXEC,
				       MAP_PRIVATE | MAP_FIXED, fd,
				       off + (page - s));
			ok = p == MAP_FAILED ? -errno : 0;
			close(fd);
		}
		break;
	}
	fclose(f);
	return ok;
}

/* write 'len' bytes at text address 'at', never W+X; 0, or -errno */
static int text_write(uint8_t *at, const uint8_t *bytes, size_t len,
		      int *wx_refused, char *why, size_t whylen)
{
	uintptr_t ps = page_size();
	uintptr_t pg = (uintptr_t)at & ~(ps - 1);
	size_t plen = (((uintptr_t)at + len + ps - 1) & ~(ps - 1)) - pg;
	int err;

	if (mprotect((void *)pg, plen, PROT_READ | PROT_WRITE)) {
		err = -errno;
		*wx_refused = 1;
		snprintf(why, whylen, "mprotect(text, RW) refused: %s (W^X policy?)",
			 strerror(-err));
		return err;
	}
	memcpy(at, bytes, len);
	__builtin___clear_cache((char *)at, (char *)at + len);
	if (mprotect((void *)pg, plen, PROT_READ | PROT_EXEC) == 0)
		return 0;
	err = -errno;
	*wx_refused = 1;
	/* the page is not executable now: give it its file contents back */
	if (remap_from_file(pg, plen))
		snprintf(why, whylen,
			 "mprotect(text, RX) refused after patching (%s) and the page could not be restored",
			 strerror(-err));
	else
		snprintf(why, whylen,
			 "mprotect(text, RX) refused after patching: %s (W^X/execmod policy); page restored",
			 strerror(-err));
	return err;
}

int detour_install(struct detour *d, int n, int *wx_refused)
{
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	uint8_t *near, *tramp, *relay;
	size_t nlen;
	csh cs;
	int i, done = 0;

	*wx_refused = 0;
	for (i = 0; i < n; i++) {
		d[i].err = 0;
		d[i].why[0] = 0;
		d[i].target = dlsym(RTLD_DEFAULT, d[i].name);
		if (!d[i].target) {
			d[i].err = -ENOENT;
			snprintf(d[i].why, sizeof(d[i].why), "symbol not exported");
			continue;
		}
		if ((uintptr_t)d[i].target < lo)
			lo = (uintptr_t)d[i].target;
		if ((uintptr_t)d[i].target > hi)
			hi = (uintptr_t)d[i].target;
	}
	if (!hi)
		return 0;
	nlen = ((size_t)n * (TRAMP_SLOT + RELAY_SLOT) + page_size() - 1) &
	       ~(page_size() - 1);
	near = alloc_near(lo, hi, nlen);
	if (!near) {
		for (i = 0; i < n; i++)
			if (!d[i].err) {
				d[i].err = -ENOMEM;
				snprintf(d[i].why, sizeof(d[i].why),
					 "no free page within 2 GiB of the text");
			}
		return 0;
	}
	memset(near, 0xcc, nlen);
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) {
		munmap(near, nlen);
		for (i = 0; i < n; i++)
			if (!d[i].err) {
				d[i].err = -ENOEXEC;
				snprintf(d[i].why, sizeof(d[i].why), "capstone unavailable");
			}
		return 0;
	}
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);

	/* 1: trampolines and relays, in a RW page */
	for (i = 0; i < n; i++) {
		if (d[i].err)
			continue;
		tramp = near + (size_t)i * TRAMP_SLOT;
		relay = near + (size_t)n * TRAMP_SLOT + (size_t)i * RELAY_SLOT;
		d[i].err = build_trampoline(cs, &d[i], tramp);
		if (d[i].err)
			continue;
		d[i].via_relay = !within_rel32(d[i].target + JMP_REL32_LEN, d[i].hook);
		if (d[i].via_relay)
			emit_abs_jmp(relay, d[i].hook);
	}
	cs_close(&cs);
	/* 2: the page becomes RX (never W+X) */
	if (mprotect(near, nlen, PROT_READ | PROT_EXEC)) {
		int err = -errno;

		*wx_refused = 1;
		for (i = 0; i < n; i++)
			if (!d[i].err) {
				d[i].err = err;
				snprintf(d[i].why, sizeof(d[i].why),
					 "mprotect(trampolines, RX) refused: %s (W^X policy?)",
					 strerror(-err));
			}
		munmap(near, nlen);
		return 0;
	}
	/* 3: the jumps into the text */
	for (i = 0; i < n; i++) {
		uint8_t jmp[32];
		void *dest;
		int32_t rel;

		if (d[i].err)
			continue;
		tramp = near + (size_t)i * TRAMP_SLOT;
		relay = near + (size_t)n * TRAMP_SLOT + (size_t)i * RELAY_SLOT;
		dest = d[i].via_relay ? (void *)relay : d[i].hook;
		rel = (int32_t)((intptr_t)dest - (intptr_t)(d[i].target + JMP_REL32_LEN));
		memset(jmp, 0xcc, sizeof(jmp));
		jmp[0] = 0xe9;
		memcpy(jmp + 1, &rel, 4);
		*d[i].orig = tramp;
		d[i].err = text_write(d[i].target, jmp, d[i].nreloc, wx_refused,
				      d[i].why, sizeof(d[i].why));
		if (d[i].err) {
			*d[i].orig = NULL;
			/* a page restored from the file lost earlier patches too */
			for (int j = 0; j < i; j++)
				if (!d[j].err && d[j].target[0] != 0xe9) {
					d[j].err = d[i].err;
					*d[j].orig = NULL;
					done--;
					snprintf(d[j].why, sizeof(d[j].why),
						 "undone: its page was restored after a refusal");
				}
			/* a policy that refused once refuses every page */
			for (int j = i + 1; j < n; j++)
				if (!d[j].err) {
					d[j].err = d[i].err;
					snprintf(d[j].why, sizeof(d[j].why),
						 "not attempted: text patching refused");
				}
			break;
		}
		done++;
	}
	return done;
}
