// SPDX-License-Identifier: GPL-2.0
/*
 * pvhostile.ko - a hostile pviommu guest (tests/vm/test_hostile.sh).
 *
 * Issues raw hypercalls through the TCG transport (bpf/pviommu.h: cpuid
 * with rax = PVIOMMU_CPUID_LEAF, rbx, rcx, rdx, rsi = a0..a3) without
 * pviommu.ko, and counts what the host answered: the in-process plane of
 * 'pviommuctl run' acknowledges every call from the guest kernel with
 * eax = PVIOMMU_HC_ACK and ebx = 0 or -errno. No device of this guest does
 * any DMA: every device it names is made up (segment 0x7e) or belongs to
 * the other VM's numbering (0000:00:04.0, 0000:00:06.0).
 *
 * A round runs the phases in this order (module parameters size them):
 *   setup     REGISTER, DEV_ADD of 'devs' fake devices
 *   cross     the other VM's devices: MAP, UNMAP, DEV_DEL before this
 *             guest added them (refused), then DEV_ADD, MAP, DEV_DEL of
 *             them in this domain
 *   badabi    unknown op codes, wrong ABI versions, bad perm bits, zero
 *             sizes, a device never added, UNMAP of what was never mapped,
 *             UNMAP with the wrong size or perm, a double UNMAP
 *   bigmap    MAP of all of guest RAM (and twice that, and 4 GiB) for each
 *             fake device; 2^44 bytes, the whole 2^64 space, ranges that
 *             wrap past 2^64, zero size; the last page below 2^64
 *   smallmap  4 KiB MAPs and 64-byte sub-page MAPs, alternately, until the
 *             host has refused 'small_after' + 1 of them (at most
 *             'small_max', more records than the host's index holds), then
 *             'hold_ms' of badabi calls with all of them in place
 *   unmap     UNMAP of every small MAP the host granted, then a second
 *             UNMAP of the first 64 of them
 *   fill      MAPs of halving sizes, from all of guest RAM down to a page,
 *             each size for as long as the host grants it ('fill_max'
 *             calls at most): as much of the shared index as the host
 *             lets this guest have; then 'hold_ms' of badabi calls
 *   (the badabi calls while a phase holds what it got count as "hold")
 *   devadd    a flood of 'flood' DEV_ADDs of further fake devices
 *   regloop   'loops' times REGISTER, DEV_ADD, MAP, UNREGISTER, UNREGISTER
 *             again, MAP after it
 *   garbage   'garbage' calls with random words in every register, then as
 *             many with the right ABI version and random op, perm, device
 *             and range (late in the round: a random UNREGISTER or DEV_DEL
 *             would turn the phases after it into refusals)
 *   page      the shared page (pviommu.h) with hostile headers and indexes:
 *             SETUPs with a bad magic, a wrong version, nents 0, not a power
 *             of two, above PVIOMMU_CHAN_NENTS_MAX (each must stay unacknowledged),
 *             then a good one (acknowledged); KICKs with prod past the ring
 *             and behind the host's cons (each refused with -EPROTO and
 *             counted in the page's errors); prod put right (a KICK does
 *             nothing, 0); detach. Not hypercalls: counted apart (page line)
 *   final     REGISTER, then UNMAP and DEV_DEL with a wrong ABI version
 *             (refused; the host fails this domain closed)
 * A call that only a refusal may answer (EXP_REFUSE) and that the host
 * accepted, or any call the host did not acknowledge, counts as 'wrong'.
 *
 * debugfs (mount -t debugfs none /sys/kernel/debug), directory pvhostile/:
 *   run     write "round" (one round) or a phase name (that phase alone)
 *   total   one line: PVHOSTILE total rounds=R calls=N acked=N ok=N
 *           refused=N noack=N wrong=N (any time: a running round's calls
 *           are in it)
 *   stats   one line per phase: PVHOSTILE phase=P calls=N acked=N ok=N
 *           refused=N noack=N wrong=N errs=ENOSPC:N,EINVAL:N,...
 *   reset   write anything: the counters start again from zero
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include "pviommu.h"

static unsigned int devs = 4;
module_param(devs, uint, 0444);
MODULE_PARM_DESC(devs, "fake devices a round protects first (default 4)");

static unsigned int flood = 64;
module_param(flood, uint, 0444);
MODULE_PARM_DESC(flood, "DEV_ADDs of the device flood per round (default 64)");

/* more records than the host's index holds (2^19 slots by default): a quota stops them */
static unsigned int small_max = 1 << 18;
module_param(small_max, uint, 0444);
MODULE_PARM_DESC(small_max, "small MAPs per round at most (default 262144)");

static unsigned int small_after = 16;
module_param(small_after, uint, 0444);
MODULE_PARM_DESC(small_after, "refused small MAPs after the first before the phase ends (default 16)");

static unsigned int loops = 20;
module_param(loops, uint, 0444);
MODULE_PARM_DESC(loops, "REGISTER/UNREGISTER iterations per round (default 20)");

static unsigned int fill_max = 64;
module_param(fill_max, uint, 0444);
MODULE_PARM_DESC(fill_max, "MAPs of the fill per round at most (default 64)");

static unsigned int hold_ms = 300;
module_param(hold_ms, uint, 0444);
MODULE_PARM_DESC(hold_ms, "ms of badabi calls while smallmap's and fill's MAPs are in place (default 300)");

static unsigned int garbage = 64;
module_param(garbage, uint, 0444);
MODULE_PARM_DESC(garbage, "calls with random registers per round, of each kind (default 64)");

enum phase {
	PH_SETUP, PH_CROSS, PH_BADABI, PH_BIGMAP, PH_SMALLMAP, PH_UNMAP,
	PH_FILL, PH_HOLD, PH_DEVADD, PH_REGLOOP, PH_GARBAGE, PH_PAGE, PH_FINAL, PH_MAX,
};

static const char * const phase_name[PH_MAX] = {
	"setup", "cross", "badabi", "bigmap", "smallmap", "unmap", "fill", "hold",
	"devadd", "regloop", "garbage", "page", "final",
};

/* what the host may answer */
enum expect {
	EXP_ANY,	/* success or refusal (quotas, state) */
	EXP_REFUSE,	/* only a refusal is right */
};

#define NR_ERR		128	/* err[e]: answers -e; err[0]: anything else */
#define NOACK		1	/* hc(): nobody answered */

struct pstat {
	u64	calls;
	u64	acked;
	u64	ok;
	u64	refused;
	u64	noack;
	u64	wrong;
	u64	err[NR_ERR];
};

static struct pstat st[PH_MAX];
static u64 rounds;
static DEFINE_MUTEX(lock);	/* one round or phase at a time; stats, reset */
static struct dentry *dir;

/* a fake device: segment 0x7e, no such device in any VM */
static u32 fake(unsigned int i)
{
	return PVIOMMU_BDF(0x7e, 0x10 + (i >> 8), (i >> 3) & 31, i & 7);
}

static u64 hdr(u32 op, u32 perm, u32 bdf)
{
	return PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, op, perm, bdf);
}

/* one raw hypercall; returns the host's answer (0, -errno) or NOACK */
static int hc(enum phase ph, enum expect exp, u64 a0, u64 a1, u64 a2, u64 a3)
{
	u64 ax = PVIOMMU_CPUID_LEAF, bx = a0, cx = a1, dx = a2;
	struct pstat *s = &st[ph];
	int r;

	asm volatile("cpuid"
		     : "+a" (ax), "+b" (bx), "+c" (cx), "+d" (dx)
		     : "S" (a3)
		     : "memory");
	s->calls++;
	if (!(s->calls & 15))
		cond_resched();
	if ((u32)ax != PVIOMMU_HC_ACK) {
		s->noack++;
		s->wrong++;
		return NOACK;
	}
	s->acked++;
	r = (s32)(u32)bx;
	if (!r) {
		s->ok++;
		if (exp == EXP_REFUSE)
			s->wrong++;
	} else {
		s->refused++;
		s->err[r < 0 && r > -NR_ERR ? -r : 0]++;
	}
	return r;
}

static int op(enum phase ph, enum expect exp, u32 o, u32 perm, u32 bdf, u64 iova,
	      u64 size)
{
	return hc(ph, exp, hdr(o, perm, bdf), iova, size, 0x5eed);
}

/* a page-aligned address somewhere in the first 256 MiB */
static u64 rnd_page(void)
{
	return (get_random_u64() & ((1ull << 28) - 1)) & ~0xfffull;
}

static void ph_setup(void)
{
	unsigned int i;

	op(PH_SETUP, EXP_ANY, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	for (i = 0; i < devs; i++)
		op(PH_SETUP, EXP_ANY, PVIOMMU_OP_DEV_ADD, 0, fake(i), 0, 0);
}

/* the numbers of the other VM's devices mean nothing in this domain */
static void ph_cross(void)
{
	static const u32 theirs[] = { PVIOMMU_BDF(0, 0, 4, 0), PVIOMMU_BDF(0, 0, 6, 0) };
	unsigned int i, j;

	for (i = 0; i < ARRAY_SIZE(theirs); i++) {
		for (j = 0; j < 4; j++)
			op(PH_CROSS, EXP_REFUSE, PVIOMMU_OP_UNMAP, 0, theirs[i], rnd_page(),
			   4096);
		op(PH_CROSS, EXP_REFUSE, PVIOMMU_OP_DEV_DEL, 0, theirs[i], 0, 0);
		op(PH_CROSS, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, theirs[i],
		   rnd_page(), 4096);
	}
	/* this domain's own devices of those numbers: nothing to do with theirs */
	for (i = 0; i < ARRAY_SIZE(theirs); i++) {
		op(PH_CROSS, EXP_ANY, PVIOMMU_OP_DEV_ADD, 0, theirs[i], 0, 0);
		op(PH_CROSS, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, theirs[i], 0x100000,
		   64 << 20);
		op(PH_CROSS, EXP_ANY, PVIOMMU_OP_DEV_DEL, 0, theirs[i], 0, 0);
	}
}

static void badabi(enum phase ph)
{
	static const u32 bad_ops[] = { 0, PVIOMMU_OP_MAX, 8, 0x3f, 0x80, 0xff };
	static const u32 bad_abis[] = { 0, PVIOMMU_ABI_VERSION + 1, 0x7fff, 0xffff };
	static const u32 bad_perms[] = { 0, 4, 8, 0x7, 0x80, 0xff };
	static const u32 abi_ops[] = { PVIOMMU_OP_REGISTER, PVIOMMU_OP_DEV_ADD,
				       PVIOMMU_OP_MAP };
	u32 d = fake(0);
	u64 w = 0x7000000;
	unsigned int i, j;

	for (i = 0; i < ARRAY_SIZE(bad_ops); i++)
		op(ph, EXP_REFUSE, bad_ops[i], PVIOMMU_PERM_RW, d, 0x100000, 4096);
	for (i = 0; i < ARRAY_SIZE(bad_abis); i++)
		for (j = 0; j < ARRAY_SIZE(abi_ops); j++)
			hc(ph, EXP_REFUSE,
			   PVIOMMU_HC_HDR(bad_abis[i], abi_ops[j], PVIOMMU_PERM_RW, d),
			   0x100000, 4096, 0);
	for (i = 0; i < ARRAY_SIZE(bad_perms); i++)
		op(ph, EXP_REFUSE, PVIOMMU_OP_MAP, bad_perms[i], d, 0x200000, 4096);
	op(ph, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, 0x200000, 0);
	op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_RW, d, 0x200000, 0);
	/* devices never added */
	op(ph, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, fake(1000), 0x200000, 4096);
	op(ph, EXP_REFUSE, PVIOMMU_OP_DEV_DEL, 0, fake(1001), 0, 0);
	/* UNMAP of what was never mapped (the pages of the MAPs below excepted) */
	for (i = 0; i < 8; i++)
		op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, 0, d, 0x8000000 + rnd_page(), 4096);
	/* a real record, then UNMAPs of it with the wrong size or perm */
	if (!op(ph, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, w, 4096)) {
		op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, 0, d, w, 8192);
		op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, 0, d, w, 4095);
		op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_READ, d, w, 4096);
		op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, 0, d, w + 1, 4095);
		op(ph, EXP_ANY, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_RW, d, w, 4096);
		op(ph, EXP_REFUSE, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_RW, d, w, 4096);
	}
}

static void ph_badabi(void)
{
	badabi(PH_BADABI);
}

static void ph_bigmap(void)
{
	u64 ram = (u64)totalram_pages() << PAGE_SHIFT;
	u32 d = fake(0);
	unsigned int i;

	for (i = 0; i < devs; i++) {
		op(PH_BIGMAP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, fake(i), 0, ram);
		op(PH_BIGMAP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_READ, fake(i), 0x1000,
		   2 * ram);
		op(PH_BIGMAP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_WRITE, fake(i), 0x2000,
		   4ull << 30);
	}
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, 0, 1ull << 44);
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, 0, ~0ull);
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, 1ull << 63, 1ull << 63);
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, 4096, ~0ull);
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, ~0ull - 4095, 8192);
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, ~0ull, 2);
	op(PH_BIGMAP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, ~0ull, 0);
	/* legal, if odd: the last page and the last byte below 2^64, far above RAM */
	op(PH_BIGMAP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, ~0ull - 4095, 4096);
	op(PH_BIGMAP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, ~0ull, 1);
	op(PH_BIGMAP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, 1ull << 40, 1 << 20);
}

struct small {
	u64	iova;
	u32	size;
	u32	perm;
};

static struct small *granted;
static unsigned int nr_granted;

static void ph_smallmap(void)
{
	u32 d = fake(devs > 1 ? 1 : 0);
	unsigned int i, refused = 0, k;
	struct small m;

	nr_granted = 0;
	for (i = 0; i < small_max && refused <= small_after; i++) {
		k = i / 2;
		if (i & 1)	/* 64 sub-page buffers per page */
			m = (struct small){ 0x20000000 + (u64)(k / 64) * 4096 + (k % 64) * 64,
					    64, PVIOMMU_PERM_WRITE };
		else
			m = (struct small){ 0x10000000 + (u64)k * 4096, 4096,
					    PVIOMMU_PERM_READ };
		if (op(PH_SMALLMAP, EXP_ANY, PVIOMMU_OP_MAP, m.perm, d, m.iova, m.size))
			refused++;
		else if (granted)
			granted[nr_granted++] = m;
	}
}

static void ph_unmap(void)
{
	u32 d = fake(devs > 1 ? 1 : 0);
	unsigned int i;

	for (i = 0; i < nr_granted; i++)
		op(PH_UNMAP, EXP_ANY, PVIOMMU_OP_UNMAP, granted[i].perm, d, granted[i].iova,
		   granted[i].size);
	for (i = 0; i < nr_granted && i < 64; i++)
		op(PH_UNMAP, EXP_REFUSE, PVIOMMU_OP_UNMAP, granted[i].perm, d, granted[i].iova,
		   granted[i].size);
	nr_granted = 0;
}

static void ph_fill(void)
{
	u64 size = ((u64)totalram_pages() << PAGE_SHIFT) & ~0xfffull;
	u64 iova = 1ull << 36;	/* far above RAM: no other phase maps there */
	u32 d = fake(devs > 2 ? 2 : 0);
	unsigned int i;

	for (i = 0; i < fill_max && size >= 4096; i++) {
		if (op(PH_FILL, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, d, iova, size))
			size = (size / 2) & ~0xfffull;
		else
			iova += size;
	}
}

/* badabi calls for hold_ms: what the phase before got stays in place */
static void ph_hold(void)
{
	unsigned long end = jiffies + msecs_to_jiffies(hold_ms);

	while (hold_ms && time_before(jiffies, end))
		badabi(PH_HOLD);
}

static void ph_devadd(void)
{
	unsigned int i;

	for (i = 0; i < flood; i++)
		op(PH_DEVADD, EXP_ANY, PVIOMMU_OP_DEV_ADD, 0, fake(devs + 16 + i), 0, 0);
}

static void ph_regloop(void)
{
	unsigned int i;

	for (i = 0; i < loops; i++) {
		op(PH_REGLOOP, EXP_ANY, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
		op(PH_REGLOOP, EXP_ANY, PVIOMMU_OP_DEV_ADD, 0, fake(0), 0, 0);
		op(PH_REGLOOP, EXP_ANY, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, fake(0), 0x100000,
		   1 << 20);
		op(PH_REGLOOP, EXP_ANY, PVIOMMU_OP_UNREGISTER, 0, 0, 0, 0);
		/* not registered any more: refused */
		op(PH_REGLOOP, EXP_REFUSE, PVIOMMU_OP_UNREGISTER, 0, 0, 0, 0);
		op(PH_REGLOOP, EXP_REFUSE, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, fake(0), 0x100000,
		   4096);
	}
}

/* garbage in every register, then the same with the right ABI version */
static void ph_garbage(void)
{
	unsigned int i;

	op(PH_GARBAGE, EXP_ANY, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	for (i = 0; i < garbage; i++)
		hc(PH_GARBAGE, EXP_ANY, get_random_u64(), get_random_u64(), get_random_u64(),
		   get_random_u64());
	for (i = 0; i < garbage; i++)
		hc(PH_GARBAGE, EXP_ANY,
		   ((u64)PVIOMMU_ABI_VERSION << 48) | (get_random_u64() & ((1ull << 48) - 1)),
		   get_random_u64(), get_random_u64(), get_random_u64());
}

/* the page phase's own counters (its SETUPs and KICKs are not hypercalls) */
static struct {
	u64	setups, setups_acked, kicks, kicks_refused, page_errors;
} pg;

/* SETUP with this header; 1 when the host acknowledged it. want: what is right */
static int page_setup(struct pviommu_chan *c, u32 magic, u16 version, u16 nents, int want)
{
	int acked;

	memset(c, 0, PAGE_SIZE);
	c->magic = magic;
	c->version = version;
	c->nents = nents;
	outl((u32)(virt_to_phys(c) >> PAGE_SHIFT), PVIOMMU_PORT_SETUP);	/* serializing */
	acked = READ_ONCE(c->host_ack) == PVIOMMU_CHAN_ACK;
	pg.setups++;
	pg.setups_acked += acked;
	if (acked != want)
		st[PH_PAGE].wrong++;
	return acked;
}

/* KICK with prod as it is; want: the answer that is right (0 or -EPROTO) */
static void page_kick(struct pviommu_chan *c, int want)
{
	u32 errors = READ_ONCE(c->errors);
	int r = (s32)inl(PVIOMMU_PORT_KICK);

	pg.kicks++;
	pg.kicks_refused += r < 0;
	pg.page_errors += READ_ONCE(c->errors) - errors;
	/* a refused kick is counted in the page's errors (a drain may have counted one more) */
	if (r != want || (want < 0 && READ_ONCE(c->errors) == errors))
		st[PH_PAGE].wrong++;
}

static void ph_page(void)
{
	struct pviommu_chan *c = (void *)get_zeroed_page(GFP_KERNEL);

	if (!c) {
		st[PH_PAGE].wrong++;
		return;
	}
	page_setup(c, PVIOMMU_CHAN_MAGIC ^ 1, PVIOMMU_CHAN_VERSION, PVIOMMU_CHAN_NENTS_PAGE, 0);
	page_setup(c, PVIOMMU_CHAN_MAGIC, PVIOMMU_CHAN_VERSION + 1, PVIOMMU_CHAN_NENTS_PAGE, 0);
	page_setup(c, PVIOMMU_CHAN_MAGIC, PVIOMMU_CHAN_VERSION, 0, 0);
	page_setup(c, PVIOMMU_CHAN_MAGIC, PVIOMMU_CHAN_VERSION, PVIOMMU_CHAN_NENTS_PAGE - 16, 0);
	page_setup(c, PVIOMMU_CHAN_MAGIC, PVIOMMU_CHAN_VERSION, 2 * PVIOMMU_CHAN_NENTS_MAX, 0);
	if (page_setup(c, PVIOMMU_CHAN_MAGIC, PVIOMMU_CHAN_VERSION, PVIOMMU_CHAN_NENTS_PAGE, 1)) {
		WRITE_ONCE(c->prod, READ_ONCE(c->cons) + PVIOMMU_CHAN_NENTS_PAGE + 5);
		page_kick(c, -EPROTO);
		WRITE_ONCE(c->prod, READ_ONCE(c->cons) - 1);
		page_kick(c, -EPROTO);
		WRITE_ONCE(c->prod, READ_ONCE(c->cons));
		page_kick(c, 0);
	}
	outl(0, PVIOMMU_PORT_SETUP);	/* the host lets go of the page */
	free_page((unsigned long)c);
}

static void ph_final(void)
{
	op(PH_FINAL, EXP_ANY, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	op(PH_FINAL, EXP_ANY, PVIOMMU_OP_DEV_ADD, 0, fake(0), 0, 0);
	hc(PH_FINAL, EXP_REFUSE,
	   PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION + 1, PVIOMMU_OP_UNMAP, 0, fake(0)),
	   0x100000, 4096, 0);
	hc(PH_FINAL, EXP_REFUSE,
	   PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION + 1, PVIOMMU_OP_DEV_DEL, 0, fake(0)),
	   0, 0, 0);
}

static void (* const phase_fn[PH_MAX])(void) = {
	ph_setup, ph_cross, ph_badabi, ph_bigmap, ph_smallmap, ph_unmap, ph_fill,
	ph_hold, ph_devadd, ph_regloop, ph_garbage, ph_page, ph_final,
};

static void round_run(void)
{
	unsigned int i;

	for (i = 0; i < PH_MAX; i++) {
		if (i == PH_HOLD)
			continue;
		phase_fn[i]();
		if (i == PH_SMALLMAP || i == PH_FILL)
			ph_hold();
	}
	rounds++;
}

static const char *errname(unsigned int e)
{
	switch (e) {
	case 1: return "EPERM";
	case 2: return "ENOENT";
	case 7: return "E2BIG";
	case 16: return "EBUSY";
	case 17: return "EEXIST";
	case 19: return "ENODEV";
	case 22: return "EINVAL";
	case 28: return "ENOSPC";
	case 34: return "ERANGE";
	case 71: return "EPROTO";
	case 75: return "EOVERFLOW";
	case 95: return "EOPNOTSUPP";
	case 116: return "ESTALE";
	case 117: return "EUCLEAN";
	default: return NULL;
	}
}

static size_t put_counts(char *b, size_t len, const struct pstat *s)
{
	return scnprintf(b, len, "calls=%llu acked=%llu ok=%llu refused=%llu noack=%llu wrong=%llu",
			 s->calls, s->acked, s->ok, s->refused, s->noack, s->wrong);
}

static ssize_t run_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	char name[16];
	size_t n = min(len, sizeof(name) - 1);
	unsigned int i;

	if (copy_from_user(name, ubuf, n))
		return -EFAULT;
	name[n] = 0;
	strim(name);
	if (!strcmp(name, "round")) {
		mutex_lock(&lock);
		round_run();
		mutex_unlock(&lock);
		return len;
	}
	for (i = 0; i < PH_MAX; i++) {
		if (strcmp(name, phase_name[i]))
			continue;
		mutex_lock(&lock);
		phase_fn[i]();
		mutex_unlock(&lock);
		return len;
	}
	pr_err("pvhostile: unknown phase '%s' (round or a phase name)\n", name);
	return -EINVAL;
}

/* without the lock: the progress of a running round too */
static ssize_t total_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	struct pstat t = {};
	char b[256];
	size_t n;
	int i;

	for (i = 0; i < PH_MAX; i++) {
		t.calls += READ_ONCE(st[i].calls);
		t.acked += READ_ONCE(st[i].acked);
		t.ok += READ_ONCE(st[i].ok);
		t.refused += READ_ONCE(st[i].refused);
		t.noack += READ_ONCE(st[i].noack);
		t.wrong += READ_ONCE(st[i].wrong);
	}
	n = scnprintf(b, sizeof(b), "PVHOSTILE total rounds=%llu ", READ_ONCE(rounds));
	n += put_counts(b + n, sizeof(b) - n, &t);
	n += scnprintf(b + n, sizeof(b) - n, "\n");
	return simple_read_from_buffer(ubuf, len, pos, b, n);
}

static ssize_t stats_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	size_t size = PH_MAX * 512, n = 0;
	unsigned int i, e;
	const char *sep;
	ssize_t r;
	char *b;

	b = kmalloc(size, GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	mutex_lock(&lock);
	for (i = 0; i < PH_MAX; i++) {
		n += scnprintf(b + n, size - n, "PVHOSTILE phase=%s ", phase_name[i]);
		n += put_counts(b + n, size - n, &st[i]);
		sep = " errs=";
		for (e = 0; e < NR_ERR; e++) {
			if (!st[i].err[e])
				continue;
			if (errname(e))
				n += scnprintf(b + n, size - n, "%s%s:%llu", sep, errname(e),
					       st[i].err[e]);
			else
				n += scnprintf(b + n, size - n, "%se%u:%llu", sep, e, st[i].err[e]);
			sep = ",";
		}
		if (i == PH_PAGE)
			n += scnprintf(b + n, size - n,
				       " setups=%llu setups_acked=%llu kicks=%llu kicks_refused=%llu page_errors=%llu",
				       pg.setups, pg.setups_acked, pg.kicks, pg.kicks_refused,
				       pg.page_errors);
		n += scnprintf(b + n, size - n, "\n");
	}
	mutex_unlock(&lock);
	r = simple_read_from_buffer(ubuf, len, pos, b, n);
	kfree(b);
	return r;
}

static ssize_t reset_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	mutex_lock(&lock);
	memset(st, 0, sizeof(st));
	memset(&pg, 0, sizeof(pg));
	rounds = 0;
	mutex_unlock(&lock);
	return len;
}

static const struct file_operations run_fops = {
	.owner = THIS_MODULE,
	.write = run_write,
	.llseek = no_llseek,
};

static const struct file_operations total_fops = {
	.owner = THIS_MODULE,
	.read = total_read,
	.llseek = default_llseek,
};

static const struct file_operations stats_fops = {
	.owner = THIS_MODULE,
	.read = stats_read,
	.llseek = default_llseek,
};

static const struct file_operations reset_fops = {
	.owner = THIS_MODULE,
	.write = reset_write,
	.llseek = no_llseek,
};

static int __init pvhostile_init(void)
{
	if (!devs || devs > 16) {
		pr_err("pvhostile: devs must be 1-16\n");
		return -EINVAL;
	}
	granted = kvcalloc(small_max, sizeof(*granted), GFP_KERNEL);
	if (small_max && !granted)
		return -ENOMEM;
	dir = debugfs_create_dir("pvhostile", NULL);
	debugfs_create_file("run", 0200, dir, NULL, &run_fops);
	debugfs_create_file("total", 0444, dir, NULL, &total_fops);
	debugfs_create_file("stats", 0444, dir, NULL, &stats_fops);
	debugfs_create_file("reset", 0200, dir, NULL, &reset_fops);
	pr_info("pvhostile: ready (devs=%u flood=%u small_max=%u fill_max=%u hold_ms=%u loops=%u garbage=%u)\n",
		devs, flood, small_max, fill_max, hold_ms, loops, garbage);
	return 0;
}

static void __exit pvhostile_exit(void)
{
	debugfs_remove_recursive(dir);
	kvfree(granted);
}

module_init(pvhostile_init);
module_exit(pvhostile_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pviommu hostile guest: floods and malformed hypercalls");
