// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Unit tests of the range logic (bpf/pviommu_range.h) in plain C: every
 * rule documented in pviommu.h, then a randomized comparison against a
 * byte-level reference model.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

/* the purge's yields between chunks (pviommu_range.h): counted, and lost on demand */
static int ut_yields, ut_lose_at;
static int ut_yield(void)
{
	return ++ut_yields == ut_lose_at;
}
#define PV_PURGE_YIELD()	ut_yield()
#include "pv_user.h"
#include "../testlib.h"

#define DOM	1000
#define DEV_A	PVIOMMU_BDF(0, 0, 4, 0)
#define DEV_B	PVIOMMU_BDF(0, 0, 5, 0)
#define R	PVIOMMU_PERM_READ
#define W	PVIOMMU_PERM_WRITE
#define RW	PVIOMMU_PERM_RW

struct fx {
	struct pv_env		e;
	struct pviommu_domain	d;
};

/* an index of 'slots' slots; the domain may hold max_recs records (quota) */
static void fx_init(struct fx *f, __u32 slots, __u32 max_recs)
{
	memset(f, 0, sizeof(*f));
	f->e.tbl = calloc(PVIOMMU_INDEX_ENTRIES(slots), sizeof(struct pviommu_slot));
	/* the fast path's page bits: devices get lanes, checks use them */
	f->e.fast = calloc(PVIOMMU_FAST_ENTRIES, sizeof(__u64));
	f->e.slots = slots;
	f->d.quota.records = max_recs;
	pv_op_dev_add(&f->e, &f->d, DOM, DEV_A);
	pv_op_dev_add(&f->e, &f->d, DOM, DEV_B);
}

static void fx_fini(struct fx *f)
{
	free(f->e.fast);
	free(f->e.tbl);
}

static int map(struct fx *f, __u32 bdf, __u64 iova, __u64 size, __u32 perm)
{
	return pv_op_map(&f->e, &f->d, DOM, bdf, iova, size, perm, 0);
}

static int unmap(struct fx *f, __u32 bdf, __u64 iova, __u64 size)
{
	return pv_op_unmap(&f->e, &f->d, DOM, bdf, iova, size, 0);
}

static int chk(struct fx *f, __u32 bdf, __u64 addr, __u64 len, __u32 need)
{
	return pv_check(&f->e, DOM, bdf, addr, len, need);
}

/*
 * every free position of the index (its slots and the tail after them)
 * taken by an entry of another domain: a full index, whatever the homes
 */
static void fill_free(struct fx *f)
{
	for (__u32 i = 0; i < pv_positions(&f->e); i++) {
		struct pviommu_slot *s = pv_slot_at(&f->e, i);

		if (s->kind != PVIOMMU_SLOT_EMPTY && s->kind != PVIOMMU_SLOT_TOMB)
			continue;
		s->kind = PVIOMMU_SLOT_PAGE;
		s->domain = DOM + 999;
		s->bdf = DEV_A;
		s->pfn = 0xf000000 + i;
		s->cnt_r = 1;
	}
}

/* slots of one kind */
static __u32 kind_slots(struct fx *f, __u32 kind)
{
	__u32 n = 0;

	for (__u32 i = 0; i < pv_positions(&f->e); i++)
		n += pv_slot_at(&f->e, i)->kind == kind;
	return n;
}

/* the slots mappings use: pages, their extension slots, records of their own */
static __u32 page_slots(struct fx *f)
{
	return kind_slots(f, PVIOMMU_SLOT_PAGE) + kind_slots(f, PVIOMMU_SLOT_SUBX) +
	       kind_slots(f, PVIOMMU_SLOT_RECORD);
}

static int count_cb(const struct pviommu_mapping *m, void *arg)
{
	(void)m;
	(*(long *)arg)++;
	return 0;
}

/* a walk's callback that plays another writer's series of moves */
static int move_cb(const struct pviommu_mapping *m, void *arg)
{
	struct fx *f = arg;

	(void)m;
	pv_moves_begin(&f->e);
	pv_moves_end(&f->e);
	return 0;
}

/* pv_rec_walk_whole's callbacks: another writer's moves during the first walks */
struct whole_ctx {
	struct fx	*f;
	int		moving_walks, walks, seen;
};

static int whole_cb(const struct pviommu_mapping *m, void *arg)
{
	struct whole_ctx *w = arg;

	w->seen++;
	if (w->walks <= w->moving_walks)
		move_cb(m, w->f);
	return 0;
}

static void whole_restart(void *arg)
{
	struct whole_ctx *w = arg;

	w->walks++;
	w->seen = 0;
}

/* live records in the index, as readers find them */
static long records(struct fx *f)
{
	return pv_rec_walk(&f->e, 0, NULL, NULL);
}

/* the record of (DOM, bdf, iova) as readers see it; refs 0: none */
static struct pviommu_mapping rec_of(struct fx *f, __u32 bdf, __u64 iova)
{
	struct pviommu_mapping m = { 0 };
	struct pviommu_slot tmp;

	if (pv_rec_get(&f->e, DOM, bdf, iova, &tmp, &m) != 1)
		memset(&m, 0, sizeof(m));
	return m;
}

static unsigned long long rng = 88172645463325252ull;
static __u64 rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void t_bad_input(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_EQ(map(&f, DEV_A, 0x1000, 0, R), -EINVAL, "map size 0");
	ASSERT_EQ(map(&f, DEV_A, ~0ull - 10, 100, R), -EOVERFLOW, "map wraps");
	ASSERT_EQ(map(&f, DEV_A, ~0ull - 99, 100, R), 0, "map ending at 2^64-1");
	ASSERT_EQ(map(&f, DEV_A, 0x1000, 16, 0), -EINVAL, "perm 0");
	ASSERT_EQ(map(&f, DEV_A, 0x1000, 16, 4), -EINVAL, "unknown perm bit");
	ASSERT_EQ(map(&f, PVIOMMU_BDF(0, 0, 9, 0), 0x1000, 16, R), -ENODEV,
		  "device never added");
	ASSERT_EQ(map(&f, DEV_A, 0, (__u64)PVIOMMU_MAX_OP_PAGES * 4096 + 1, R),
		  -E2BIG, "map larger than 4 GiB");
	ASSERT_EQ(unmap(&f, DEV_A, 0x1000, 0), -EINVAL, "unmap size 0");
	ASSERT_EQ(unmap(&f, DEV_A, ~0ull, 2), -EOVERFLOW, "unmap wraps");
	ASSERT_EQ(unmap(&f, DEV_A, 0x5000, 16), -ENOENT, "unmap never mapped");
	ASSERT_EQ(chk(&f, DEV_A, ~0ull - 1, 4, R), PV_DENY_WRAP, "check wraps");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 0, R), PV_ALLOW, "zero-length check");
	fx_fini(&f);
}

static void t_byte_granularity(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	/* a 100-byte buffer at 0x1234: the rest of the page holds a secret */
	ASSERT_OK(map(&f, DEV_A, 0x1234, 100, W), "map sub-page");
	ASSERT_EQ(chk(&f, DEV_A, 0x1234, 100, W), PV_ALLOW, "whole buffer");
	ASSERT_EQ(chk(&f, DEV_A, 0x1234 + 99, 1, W), PV_ALLOW, "last byte");
	ASSERT_EQ(chk(&f, DEV_A, 0x1234 + 100, 1, W), PV_DENY_UNMAPPED,
		  "one byte past the end");
	ASSERT_EQ(chk(&f, DEV_A, 0x1233, 1, W), PV_DENY_UNMAPPED,
		  "one byte before");
	ASSERT_EQ(chk(&f, DEV_A, 0x1234, 101, W), PV_DENY_UNMAPPED,
		  "buffer plus one");
	ASSERT_EQ(chk(&f, DEV_A, 0x1234, 100, R), PV_DENY_PERM,
		  "read of a write-only buffer");
	ASSERT_EQ(chk(&f, DEV_B, 0x1234, 10, W), PV_DENY_UNMAPPED,
		  "other device (isolation)");
	ASSERT_EQ(pv_check_range(&f.e, DOM + 1, DEV_A, 0x1234, 10, W),
		  PV_DENY_UNMAPPED, "other domain");
	ASSERT_OK(unmap(&f, DEV_A, 0x1234, 100), "unmap");
	ASSERT_EQ(chk(&f, DEV_A, 0x1234, 1, W), PV_DENY_UNMAPPED,
		  "after unmap (strict)");
	ASSERT_EQ(page_slots(&f), 0, "no page slot left");
	fx_fini(&f);
}

static void t_multi_page(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_OK(map(&f, DEV_A, 0x10800, 0x2c00, RW), "map 0x10800+0x2c00");
	ASSERT_EQ(page_slots(&f), 5, "four pages touched, and the record");
	ASSERT_EQ(kind_slots(&f, PVIOMMU_SLOT_RECORD), 1,
		  "a mapping from mid-page: its record has a slot of its own");
	ASSERT_EQ(chk(&f, DEV_A, 0x10800, 0x2c00, RW), PV_ALLOW, "whole range");
	ASSERT_EQ(chk(&f, DEV_A, 0x107ff, 2, R), PV_DENY_UNMAPPED, "head - 1");
	ASSERT_EQ(chk(&f, DEV_A, 0x133ff, 1, R), PV_ALLOW, "tail");
	ASSERT_EQ(chk(&f, DEV_A, 0x13400, 1, R), PV_DENY_UNMAPPED, "tail + 1");
	ASSERT_EQ(chk(&f, DEV_A, 0x11000, 0x2000, W), PV_ALLOW, "full pages");
	ASSERT_OK(unmap(&f, DEV_A, 0x10800, 0x2c00), "unmap");
	ASSERT_EQ(page_slots(&f), 0, "no page slot left");
	ASSERT_EQ(f.d.nr_records, 0, "no records");
	ASSERT_EQ(f.d.mapped_bytes, 0, "no bytes");
	fx_fini(&f);
}

static void t_duplicate_overlap(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_OK(map(&f, DEV_A, 0x4000, 0x100, R), "map");
	ASSERT_OK(map(&f, DEV_A, 0x4000, 0x100, R), "identical map");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x4000).refs, 2, "refcount 2");
	ASSERT_EQ(map(&f, DEV_A, 0x4000, 0x200, R), -EEXIST, "same iova, other size");
	ASSERT_EQ(map(&f, DEV_A, 0x4000, 0x100, RW), -EEXIST, "same iova, other perm");
	ASSERT_EQ(unmap(&f, DEV_A, 0x4000, 0x80), -ERANGE, "no partial unmap");
	ASSERT_OK(unmap(&f, DEV_A, 0x4000, 0x100), "unmap one ref");
	ASSERT_EQ(chk(&f, DEV_A, 0x4000, 0x100, R), PV_ALLOW, "still mapped");
	ASSERT_EQ(unmap(&f, DEV_A, 0x4080, 0x80), -ENOENT, "tail unmap: no record there");
	ASSERT_OK(unmap(&f, DEV_A, 0x4000, 0x100), "unmap last ref");
	ASSERT_EQ(chk(&f, DEV_A, 0x4000, 1, R), PV_DENY_UNMAPPED, "gone");
	fx_fini(&f);

	fx_init(&f, 1024, 64);
	/* overlapping records: the union of permissions, byte by byte */
	ASSERT_OK(map(&f, DEV_A, 0x1000, 0x800, R), "A = [1000,1800) r");
	ASSERT_OK(map(&f, DEV_A, 0x1400, 0xc00, W), "B = [1400,2000) w");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 0x800, R), PV_ALLOW, "A read");
	ASSERT_EQ(chk(&f, DEV_A, 0x1400, 0xc00, W), PV_ALLOW, "B write");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 0x1000, R), PV_DENY_PERM, "read past A");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 0x800, W), PV_DENY_PERM, "write into A only part");
	ASSERT_OK(map(&f, DEV_A, 0x3000, 0x100, RW), "C = [3000,3100)");
	ASSERT_OK(map(&f, DEV_A, 0x3100, 0x100, RW), "D = [3100,3200)");
	ASSERT_EQ(chk(&f, DEV_A, 0x3000, 0x200, RW), PV_ALLOW, "C+D adjacent");
	ASSERT_OK(map(&f, DEV_A, 0x3001, 0xfff, R), "E = [3001,4000) r");
	ASSERT_OK(unmap(&f, DEV_A, 0x3100, 0x100), "unmap D");
	ASSERT_EQ(chk(&f, DEV_A, 0x3100, 0x100, R), PV_ALLOW, "E still covers D's bytes for read");
	ASSERT_EQ(chk(&f, DEV_A, 0x3100, 0x100, W), PV_DENY_PERM, "but not for write");
	fx_fini(&f);
}

/* an unmap revokes exactly what one map granted, never a neighbour's tail */
static void t_exact_unmap(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_OK(map(&f, DEV_A, 0x20000, 0x4000, RW), "A = 4 pages");
	ASSERT_EQ(map(&f, DEV_A, 0x20000, 0x1800, RW), -EEXIST,
		  "B at A's iova, other size: refused, never granted");
	ASSERT_EQ(unmap(&f, DEV_A, 0x20000, 0x1800), -ERANGE,
		  "B's unmap revokes nothing of A");
	ASSERT_EQ(chk(&f, DEV_A, 0x20000, 0x4000, RW), PV_ALLOW, "A intact");
	ASSERT_EQ(unmap(&f, DEV_A, 0x20000, 0x5000), -ERANGE, "unmap larger");
	ASSERT_OK(unmap(&f, DEV_A, 0x20000, 0x4000), "A's unmap");
	ASSERT_EQ(chk(&f, DEV_A, 0x21800, 1, R), PV_DENY_UNMAPPED, "no tail left");
	ASSERT_EQ(page_slots(&f), 0, "no page slot left");
	ASSERT_EQ(records(&f), 0, "no record left");

	ASSERT_OK(map(&f, DEV_A, 0x30000, 0x100, R), "C read");
	ASSERT_EQ(map(&f, DEV_A, 0x30000, 0x100, W), -EEXIST, "D write: refused");
	ASSERT_EQ(pv_op_unmap(&f.e, &f.d, DOM, DEV_A, 0x30000, 0x100, W), -ERANGE,
		  "D's unmap (perm w) leaves C");
	ASSERT_EQ(chk(&f, DEV_A, 0x30000, 0x100, R), PV_ALLOW, "C intact");
	ASSERT_OK(pv_op_unmap(&f.e, &f.d, DOM, DEV_A, 0x30000, 0x100, R), "C's unmap");
	ASSERT_EQ(page_slots(&f), 0, "no page slot left");
	fx_fini(&f);
}

/*
 * A virtio-blk queue: hundreds of 16-byte headers and 1-byte status bytes
 * of one slab page live at once. Every one fits, each grants exactly its
 * bytes, and they go in any order.
 */
static void t_many_sub_page(void)
{
	enum { N = 400 };
	__u64 iova[N], size[N];
	int order[N], err = 0, bad = 0;
	struct fx f;

	fx_init(&f, 4096, 2 * N);
	for (int i = 0; i < N; i++) {
		iova[i] = 0x7000 + (i < 256 ? i * 16 : (i - 256) * 16 + 8);
		size[i] = i < 256 ? 4 + i % 9 : 1;
		err |= map(&f, DEV_A, iova[i], size[i], i & 1 ? W : RW);
		order[i] = i;
	}
	ASSERT_OK(err, "400 sub-page buffers in one page");
	for (int i = 0; i < N; i++)
		bad += chk(&f, DEV_A, iova[i], size[i], W) != PV_ALLOW;
	ASSERT_EQ(bad, 0, "each one writable");
	ASSERT_EQ(chk(&f, DEV_A, 0x7000 + 15, 1, W), PV_DENY_UNMAPPED, "a gap between two");
	ASSERT_EQ(chk(&f, DEV_A, iova[3], size[3], R), PV_DENY_PERM, "direction kept");
	for (int i = N - 1; i > 0; i--) {
		int j = (int)(rnd() % (__u64)(i + 1)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int n = 0; n < N; n++) {
		int i = order[n];

		err |= unmap(&f, DEV_A, iova[i], size[i]);
		bad += chk(&f, DEV_A, iova[i], size[i], W) != PV_DENY_UNMAPPED &&
		       !(i >= 256 && iova[i] < 0x7000 + 256 * 16 &&
			 chk(&f, DEV_A, iova[i], 1, W) == PV_ALLOW);
		if (n % 50 == 0)
			for (int m = n + 1; m < N; m++)
				bad += chk(&f, DEV_A, iova[order[m]], size[order[m]], W) !=
				       PV_ALLOW;
	}
	ASSERT_OK(err, "every unmap, in random order");
	ASSERT_EQ(bad, 0, "exact answers while the chain shrinks");
	ASSERT_EQ(page_slots(&f), 0, "no page or extension slot left");
	fx_fini(&f);

	/* no room for an extension slot: -ENOSPC, rolled back, denied */
	fx_init(&f, 8, 64);
	{
		int i;

		for (i = 0; i < 64 && !err; i++)
			err = map(&f, DEV_A, 0x9000 + i * 32, 8, W);
		ASSERT_EQ(err, -ENOSPC, "a full index refuses");
		ASSERT_EQ(records(&f), i - 1, "the refused buffer left no record");
		ASSERT_EQ(chk(&f, DEV_A, 0x9000 + (__u64)(i - 1) * 32, 8, W), PV_DENY_UNMAPPED,
			  "the refused buffer stays denied");
	}
	fx_fini(&f);
}

/* the VFIO gate's page view: a page with any byte of the device's, per direction */
static void t_page_touched(void)
{
	struct fx f;
	int bad = 0;

	fx_init(&f, 4096, 256);
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 7, R), 0, "nothing mapped");
	ASSERT_OK(map(&f, DEV_A, 0x7ff0, 16, W), "16 bytes write-only at the end of page 7");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 7, W), 1, "page 7 writable somewhere");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 7, R), 0, "... not readable");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 7, RW), 0, "... not both");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_B, 7, W), 0, "not the other device's");
	ASSERT_EQ(pv_page_touched(&f.e, DOM + 1, DEV_A, 7, W), 0, "not the other domain's");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 8, W), 0, "not the next page");
	/* many pieces: the only readable one lies in an extension slot */
	for (int i = 0; i < 40; i++)
		bad |= map(&f, DEV_A, 0x9000 + i * 64, 8, W);
	ASSERT_OK(bad, "40 write-only pieces in page 9");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 9, R), 0, "page 9 not readable");
	ASSERT_OK(map(&f, DEV_A, 0x9000 + 40 * 64, 8, R), "a 41st piece, read-only");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 9, RW), 1, "page 9 both now");
	ASSERT_OK(unmap(&f, DEV_A, 0x9000 + 40 * 64, 8), "it goes");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 9, R), 0, "page 9 not readable again");
	/* a whole-page range counts too */
	ASSERT_OK(map(&f, DEV_A, 0x20000, 0x3000, R), "three whole pages");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 0x21, R), 1, "the middle one");
	ASSERT_EQ(pv_page_touched(&f.e, DOM, DEV_A, 0x21, W), 0, "read-only");
	fx_fini(&f);
}

/* the protection state machine (pviommu.h): failures deny, never open */
static void t_fail_closed(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_EQ(chk(&f, PVIOMMU_BDF(0, 0, 9, 0), 0x1000, 1, R), PV_ALLOW,
		  "no domain slot: unprotected devices pass");
	ASSERT_OK(pv_op_reserve(&f.e, DOM), "reserve");
	ASSERT_EQ(pv_domain_state(&f.e, DOM), PVIOMMU_DS_RESERVED, "RESERVED");
	ASSERT_OK(pv_op_register(&f.e, DOM, 1), "register");
	ASSERT_EQ(pv_domain_state(&f.e, DOM), PVIOMMU_DS_REGISTERED, "REGISTERED");
	ASSERT_OK(map(&f, DEV_A, 0x1000, 0x1000, RW), "map A");
	ASSERT_OK(map(&f, DEV_B, 0x1000, 0x1000, RW), "map B");
	ASSERT_EQ(chk(&f, PVIOMMU_BDF(0, 0, 9, 0), 0x1000, 1, R), PV_ALLOW,
		  "registered: unprotected devices pass");

	/* a lost UNMAP of A: A denied, B still exact */
	ASSERT_OK(pv_mark_failed(&f.e, DOM, DEV_A, PVIOMMU_FAIL_LOCK), "fail A");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 1, R), PV_DENY_FAILED, "failed device denied");
	ASSERT_EQ(chk(&f, DEV_B, 0x1000, 1, R), PV_ALLOW, "other device exact");
	ASSERT_EQ(pv_mark_failed(&f.e, DOM, PVIOMMU_BDF(0, 0, 9, 0), 1), -ENOENT,
		  "a device never protected has nothing to fail");

	/* a lost DEV_ADD: every device of the domain is denied */
	ASSERT_OK(pv_mark_failed(&f.e, DOM, ~0u, PVIOMMU_FAIL_NOSPACE), "fail domain");
	ASSERT_EQ(pv_domain_state(&f.e, DOM), PVIOMMU_DS_REGISTERED | PVIOMMU_DS_FAILED,
		  "FAILED");
	ASSERT_EQ(chk(&f, PVIOMMU_BDF(0, 0, 9, 0), 0x1000, 1, R), PV_DENY_FAILED,
		  "the device whose DEV_ADD was lost is denied");
	ASSERT_EQ(chk(&f, DEV_B, 0x1000, 1, R), PV_DENY_FAILED, "and every other");
	ASSERT_EQ(chk(&f, DEV_B, 0x1000, 0, R), PV_DENY_FAILED, "even an empty one");

	/* REGISTER starts over from nothing */
	pv_purge_index(&f.e, DOM, 0, 1, 0, NULL);
	ASSERT_OK(pv_op_register(&f.e, DOM, 1), "register again");
	ASSERT_EQ(pv_domain_state(&f.e, DOM), PVIOMMU_DS_REGISTERED, "clean");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 1, R), PV_ALLOW, "A no longer protected: passes");
	ASSERT_EQ(chk(&f, DOM, 0x1000, 1, R), PV_ALLOW, "unprotected passes");
	/* QEMU gone: the domain slot goes */
	pv_purge_index(&f.e, DOM, 0, 1, 1, NULL);
	ASSERT_EQ(pv_domain_state(&f.e, DOM), 0, "no domain slot");
	ASSERT_EQ(pv_mark_failed(&f.e, DOM, ~0u, 1), -ENOENT, "nothing to fail");
	fx_fini(&f);

	/* capacity is taken at reserve: a full index refuses it */
	fx_init(&f, 2, 64);
	fill_free(&f);
	ASSERT_EQ(pv_op_reserve(&f.e, DOM + 7), -ENOSPC, "no room: reserve refused");
	fx_fini(&f);
}

static void t_full_tables(void)
{
	struct fx f;
	__u32 before;
	int i, err = 0;

	/* index of 16 slots (80 positions with its tail): a 100-page map cannot fit;
	 * nothing may remain */
	fx_init(&f, 16, 64);
	ASSERT_OK(map(&f, DEV_A, 0x1000, 0x3000, R), "small map fits");
	before = page_slots(&f);
	ASSERT_EQ(map(&f, DEV_A, 0x100000, 100 * 4096, R), -ENOSPC, "index full");
	ASSERT_EQ(page_slots(&f), before, "rolled back");
	ASSERT_EQ(records(&f), 1, "record rolled back");
	ASSERT_EQ(chk(&f, DEV_A, 0x100000, 1, R), PV_DENY_UNMAPPED, "fails closed");
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 0x3000, R), PV_ALLOW, "old map intact");
	fx_fini(&f);

	/* the domain's record quota */
	fx_init(&f, 1024, 4);
	for (i = 0; i < 4; i++)
		err |= map(&f, DEV_A, 0x10000 * (i + 1), 64, R);
	ASSERT_OK(err, "4 records fit");
	ASSERT_EQ(map(&f, DEV_A, 0x90000, 64, R), -ENOSPC, "5th record: over quota");
	ASSERT_EQ(chk(&f, DEV_A, 0x90000, 1, R), PV_DENY_UNMAPPED, "fails closed");
	fx_fini(&f);

}

static void t_purge(void)
{
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_OK(map(&f, DEV_A, 0x1000, 0x2000, R), "A");
	ASSERT_OK(map(&f, DEV_B, 0x1000, 0x2000, R), "B");
	pv_purge_index(&f.e, DOM, DEV_A, 0, 0, NULL);
	ASSERT_EQ(chk(&f, DEV_A, 0x1000, 1, R), PV_ALLOW,
		  "unprotected after purge: passes untouched");
	ASSERT_EQ(pv_device_protected(&f.e, DOM, DEV_A), 0, "A not protected");
	ASSERT_EQ(chk(&f, DEV_B, 0x1000, 0x2000, R), PV_ALLOW, "B intact");
	pv_purge_index(&f.e, DOM, 0, 1, 0, NULL);
	ASSERT_EQ(pv_device_protected(&f.e, DOM, DEV_B), 0, "B gone too");
	ASSERT_EQ(page_slots(&f), 0, "no page slot left");
	fx_fini(&f);
}

/*
 * The fast bits of every lane say exactly what the PAGE slots' whole-page
 * counts say (inside the window), and nothing else is set. Returns the
 * number of disagreements.
 */
static int fast_mismatches(struct fx *f)
{
	int bad = 0;
	__u64 want_set = 0, set = 0;

	for (__u32 i = 0; i < pv_positions(&f->e); i++) {
		struct pviommu_slot *s = pv_slot_at(&f->e, i);
		int lane;
		__u64 *w;
		__u32 have, want;

		if (s->kind != PVIOMMU_SLOT_PAGE)
			continue;
		lane = pv_device_lane(&f->e, s->domain, s->bdf);
		w = lane > 0 ? pv_fast_bits(&f->e, (__u32)lane, s->pfn) : NULL;
		want = (s->cnt_r ? 1 : 0) | (s->cnt_w ? 2 : 0);
		if (!w)
			continue;
		have = (__u32)(*w >> ((s->pfn & 31) * 2)) & 3;
		bad += have != want;
		want_set += __builtin_popcount(want);
	}
	for (__u32 i = 0; i < PVIOMMU_FAST_USED; i++)
		set += (__u64)__builtin_popcountll(f->e.fast[i]);
	return bad + (set != want_set);
}

static void t_fast_lanes(void)
{
	struct fx f;
	__u32 i, bdf;
	int lane;

	fx_init(&f, 4096, 64);
	ASSERT_EQ(pv_device_lane(&f.e, DOM, DEV_A), 1, "A got lane 1");
	ASSERT_EQ(pv_device_lane(&f.e, DOM, DEV_B), 2, "B got lane 2");
	ASSERT_OK(map(&f, DEV_A, 0x10000, 0x3000, RW), "map 3 pages rw");
	ASSERT_OK(map(&f, DEV_A, 0x20010, 0x40, W), "sub-page w");
	ASSERT_EQ(fast_mismatches(&f), 0, "bits follow the counts");
	ASSERT_EQ(*pv_fast_bits(&f.e, 1, 0x11) >> (0x11 % 32 * 2) & 3, 3, "page 0x11 rw");
	ASSERT_EQ(*pv_fast_bits(&f.e, 1, 0x20) >> (0x20 % 32 * 2) & 3, 0,
		  "a sub-page piece sets no bit");
	ASSERT_EQ(chk(&f, DEV_A, 0x20010, 0x40, W), PV_ALLOW, "sub-page: the index answers");
	ASSERT_EQ(chk(&f, DEV_A, 0x20010, 0x41, W), PV_DENY_UNMAPPED, "one byte past");
	ASSERT_EQ(chk(&f, DEV_B, 0x10000, 1, R), PV_DENY_UNMAPPED, "B's lane is its own");
	ASSERT_OK(map(&f, DEV_A, 0x40000, 0x2000, RW), "map 2 more pages");
	ASSERT_OK(unmap(&f, DEV_A, 0x40000, 0x2000), "unmap them");
	ASSERT_EQ(chk(&f, DEV_A, 0x41000, 1, R), PV_DENY_UNMAPPED, "revoked page denied");
	ASSERT_EQ(fast_mismatches(&f), 0, "bits follow an unmap");
	/* above the window: the index alone, same answers */
	ASSERT_OK(map(&f, DEV_A, (__u64)PVIOMMU_FAST_PAGES << 12, 0x1000, R), "map above 4 GiB");
	ASSERT_EQ(chk(&f, DEV_A, (__u64)PVIOMMU_FAST_PAGES << 12, 0x1000, R), PV_ALLOW,
		  "above the window: allowed by the index");
	ASSERT_EQ(chk(&f, DEV_A, (__u64)PVIOMMU_FAST_PAGES << 12, 0x1000, W), PV_DENY_PERM,
		  "above the window: denied by the index");
	/* lanes run out: later devices have none and still work */
	for (i = 0; i < PVIOMMU_FAST_LANES; i++)
		pv_op_dev_add(&f.e, &f.d, DOM, PVIOMMU_BDF(0, 1, i, 0));
	lane = pv_device_lane(&f.e, DOM, PVIOMMU_BDF(0, 1, PVIOMMU_FAST_LANES - 1, 0));
	ASSERT_EQ(lane, 0, "17th and 18th devices: no lane");
	bdf = PVIOMMU_BDF(0, 1, PVIOMMU_FAST_LANES - 1, 0);
	ASSERT_OK(map(&f, bdf, 0x30000, 0x1000, R), "map for a device without a lane");
	ASSERT_EQ(chk(&f, bdf, 0x30000, 0x1000, R), PV_ALLOW, "checked by the index");
	/* a purge hands the lane back, zeroed before its next owner uses it */
	pv_purge_index(&f.e, DOM, DEV_A, 0, 0, NULL);
	pv_op_dev_add(&f.e, &f.d, DOM, PVIOMMU_BDF(0, 2, 0, 0));
	ASSERT_EQ(pv_device_lane(&f.e, DOM, PVIOMMU_BDF(0, 2, 0, 0)), 1, "lane 1 reused");
	ASSERT_EQ(chk(&f, PVIOMMU_BDF(0, 2, 0, 0), 0x11000, 1, R), PV_DENY_UNMAPPED,
		  "the new owner inherits none of A's pages");
	ASSERT_EQ(fast_mismatches(&f), 0, "no stale bit");
	pv_purge_index(&f.e, DOM, 0, 1, 0, NULL);
	ASSERT_EQ(f.e.fast[PVIOMMU_FAST_USED], 0, "every lane free after the domain's purge");
	fx_fini(&f);
}

/* ---- randomized: the index against a byte-level model ------------------ */
#define SPACE	0x8000
struct mrec { __u64 iova, size; __u32 perm, refs, bdf; int live; };


static int model_ok(struct mrec *m, int n, __u32 bdf, __u64 a, __u64 len,
		    __u32 need)
{
	for (__u64 x = a; x < a + len; x++) {
		__u32 have = 0;

		for (int i = 0; i < n; i++)
			if (m[i].live && m[i].bdf == bdf && x >= m[i].iova &&
			    x < m[i].iova + m[i].size)
				have |= m[i].perm;
		if ((have & need) != need)
			return 0;
	}
	return 1;
}

static void t_random_model(void)
{
	struct fx f;
	struct mrec m[512];
	int n = 0, mism = 0, ops = 0, checks = 0, allowed = 0;

	fx_init(&f, 4096, 512);
	for (int step = 0; step < 4000; step++) {
		__u32 bdf = rnd() & 1 ? DEV_A : DEV_B;
		int op = rnd() % 3;

		if (op == 0 && n < 500) {
			__u64 iova = rnd() % SPACE, size = 1 + rnd() % 0x1800;
			__u32 perm = 1 + rnd() % 3;
			int err, j = -1;

			/* one whole page, a third of the maps: the common DMA map's path */
			if (rnd() % 3 == 0) {
				iova &= ~0xfffull;
				size = 0x1000;
			}
			if (iova + size > SPACE)
				size = SPACE - iova;
			for (int i = 0; i < n; i++)
				if (m[i].live && m[i].bdf == bdf && m[i].iova == iova)
					j = i;
			err = map(&f, bdf, iova, size, perm);
			ops++;
			if (j >= 0) {
				int same = m[j].size == size && m[j].perm == perm;

				if (err != (same ? 0 : -EEXIST)) {
					mism++;
					printf("  model: step %d dup map err %d\n", step, err);
				}
				if (same && !err)
					m[j].refs++;
			} else if (!err) {
				m[n++] = (struct mrec){ iova, size, perm, 1, bdf, 1 };
			} else {	/* no -ENOSPC either: the index has room */
				mism++;
				printf("  model: step %d map [%llx,+%llx) err %d\n", step,
				       (unsigned long long)iova, (unsigned long long)size, err);
			}
		} else if (op == 1 && n) {
			struct mrec *r = &m[rnd() % n];
			__u64 sz = rnd() & 1 ? r->size : 1 + rnd() % r->size;
			int err, want;

			if (!r->live)
				continue;
			want = sz == r->size ? 0 : -ERANGE;
			err = unmap(&f, r->bdf, r->iova, sz);
			ops++;
			if (err != want) {
				mism++;
				printf("  model: step %d unmap [%llx,+%llx) of size %llx refs %u err %d want %d\n",
				       step, (unsigned long long)r->iova, (unsigned long long)sz,
				       (unsigned long long)r->size, r->refs, err, want);
				continue;
			}
			if (!err && !--r->refs)
				r->live = 0;
		} else {
			__u64 a = rnd() % SPACE, len = 1 + rnd() % 0x2000;
			__u32 need = 1 + rnd() % 3;
			int v = chk(&f, bdf, a, len, need);
			int vi = pv_check_range(&f.e, DOM, bdf, a, len, need);

			checks++;
			allowed += v == PV_ALLOW;
			if ((v == PV_ALLOW) != (vi == PV_ALLOW)) {
				mism++;
				printf("  model: step %d fast path %d, index alone %d\n", step, v, vi);
			}
			if ((v == PV_ALLOW) != model_ok(m, n, bdf, a, len, need)) {
				mism++;
				printf("  model: step %d check %x [%llx,+%llx) need %u got %d\n",
				       step, bdf, (unsigned long long)a,
				       (unsigned long long)len, need, v);
			}
		}
	}
	printf("  %d ops, %d checks against the model (%d allowed)\n", ops, checks, allowed);
	ASSERT_EQ(mism, 0, "mismatches against the byte model");
	/* not vacuous: many operations, and checks that go both ways */
	ASSERT_TRUE(ops > 1000 && checks > 1000, "enough operations and checks");
	ASSERT_TRUE(allowed > checks / 20 && checks - allowed > checks / 20,
		    "both verdicts well represented (> 5% each)");
	ASSERT_EQ(fast_mismatches(&f), 0, "fast bits agree with the index");
	/* unmap everything: nothing may be left */
	for (int i = 0; i < n; i++)
		while (m[i].live) {
			if (unmap(&f, m[i].bdf, m[i].iova, m[i].size))
				break;
			if (!--m[i].refs)
				m[i].live = 0;
		}
	ASSERT_EQ(page_slots(&f), 0, "no page slot left after unmapping all");
	ASSERT_EQ(records(&f), 0, "no record left");
	ASSERT_EQ(fast_mismatches(&f), 0, "no fast bit left");
	fx_fini(&f);
}

/*
 * A purge lets the writer lock go every PV_PURGE_CHUNK slots; one that
 * loses it stops and says so (-EBUSY: the BPF side fails the domain closed)
 * and the next purge finishes the job.
 */
static void t_purge_chunks(void)
{
	struct fx f;
	int n;

	fx_init(&f, 1u << 15, 64);
	for (int i = 0; i < 40; i++)
		ASSERT_OK(map(&f, i & 1 ? DEV_B : DEV_A, 0x100000 + i * 0x3000, 0x2000, R), "map");
	ut_yields = 0;
	ut_lose_at = 5;
	ASSERT_EQ(pv_purge_index(&f.e, DOM, 0, 1, 0, NULL), -PV_EBUSY, "a yield that loses the lock stops the purge");
	ASSERT_EQ(ut_yields, 5, "... right there");
	ut_yields = 0;
	ut_lose_at = 0;
	n = pv_purge_index(&f.e, DOM, 0, 1, 0, NULL);
	ASSERT_TRUE(n > 0, "the next purge frees the rest");
	ASSERT_EQ(ut_yields, 2 * ((pv_positions(&f.e) - 1) / PV_PURGE_CHUNK),
		  "a yield per chunk of the slots and the tail, both passes");
	ASSERT_EQ(page_slots(&f), 0, "no page slot of the domain left");
	ASSERT_EQ(chk(&f, DEV_A, 0x100000, 1, R), PV_ALLOW, "nothing protected any more");
	fx_fini(&f);

	/* a purge that loses the lock in its sweep has tombstoned every DEVICE slot of the
	 * domain: their page-bit lanes go back all the same (no slot names them any more) */
	fx_init(&f, 1u << 15, 64);
	for (int i = 0; i < 8; i++)
		ASSERT_OK(map(&f, i & 1 ? DEV_B : DEV_A, 0x100000 + i * 0x3000, 0x1000, R), "map");
	ASSERT_EQ(f.e.fast[PVIOMMU_FAST_USED], 3, "two devices, two lanes");
	ut_yields = 0;
	ut_lose_at = (1 << 15) / PV_PURGE_CHUNK + 1;	/* the sweep's second yield */
	ASSERT_EQ(pv_purge_index(&f.e, DOM, 0, 1, 0, NULL), -PV_EBUSY, "the purge loses the lock in its sweep");
	ASSERT_EQ(f.e.fast[PVIOMMU_FAST_USED], 0, "... and hands both lanes back");
	ut_lose_at = 0;
	fx_fini(&f);
}

/*
 * Records live in the index: a mapping that starts a page and covers it
 * keeps its record in that page's slot (one slot for a 4 KiB map); a
 * sub-page piece arriving on that page moves the record to a slot of its
 * own first, and everything still unmaps exactly. A purge counts what it
 * drops; a record that has nowhere to move refuses the piece.
 */
static void t_records(void)
{
	struct pv_purged sum = { 0 };
	struct fx f;

	fx_init(&f, 1024, 64);
	ASSERT_OK(map(&f, DEV_A, 0x40000, 0x1000, RW), "4 KiB at a page");
	ASSERT_EQ(page_slots(&f), 1, "one slot: the page holds its record");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x40000).size, 0x1000, "the record reads back");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x40000).perm, RW, "... with its permission");
	ASSERT_OK(map(&f, DEV_A, 0x40000, 0x1000, RW), "again: a second reference");
	ASSERT_EQ(page_slots(&f), 1, "still one slot");
	ASSERT_OK(map(&f, DEV_A, 0x40800, 0x100, R), "a sub-page buffer on that page");
	ASSERT_EQ(kind_slots(&f, PVIOMMU_SLOT_RECORD), 2, "both records in slots of their own");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x40000).refs, 2, "the moved record kept its references");
	ASSERT_EQ(records(&f), 2, "two records");
	ASSERT_OK(unmap(&f, DEV_A, 0x40000, 0x1000), "one reference");
	ASSERT_OK(unmap(&f, DEV_A, 0x40000, 0x1000), "the last");
	ASSERT_EQ(chk(&f, DEV_A, 0x40000, 1, R), PV_DENY_UNMAPPED, "the page is revoked");
	ASSERT_EQ(chk(&f, DEV_A, 0x40800, 0x100, R), PV_ALLOW, "the sub-page buffer stays");
	ASSERT_OK(unmap(&f, DEV_A, 0x40800, 0x100), "and goes");
	ASSERT_EQ(page_slots(&f), 0, "no slot left");
	ASSERT_EQ(records(&f), 0, "no record left");

	/* a sub-page piece first: the page-aligned record takes a slot of its own */
	ASSERT_OK(map(&f, DEV_A, 0x50100, 0x80, W), "sub-page first");
	ASSERT_OK(map(&f, DEV_A, 0x50000, 0x2000, R), "then two pages from that page");
	ASSERT_EQ(kind_slots(&f, PVIOMMU_SLOT_RECORD), 2, "records in slots of their own");
	ASSERT_OK(unmap(&f, DEV_A, 0x50100, 0x80), "sub-page out");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x50000).size, 0x2000, "the other still found");
	ASSERT_OK(unmap(&f, DEV_A, 0x50000, 0x2000), "out");
	ASSERT_EQ(page_slots(&f), 0, "no slot left");

	/* a purge of one device counts what it drops */
	ASSERT_OK(map(&f, DEV_A, 0x60000, 0x3000, R), "A: 3 pages");
	ASSERT_OK(map(&f, DEV_A, 0x70010, 0x20, R), "A: 32 bytes");
	ASSERT_OK(map(&f, DEV_B, 0x60000, 0x1000, R), "B: 1 page");
	ASSERT_TRUE(pv_purge_index(&f.e, DOM, DEV_A, 0, 0, &sum) > 0, "purge A");
	ASSERT_EQ(sum.records, 2, "two records dropped");
	ASSERT_EQ(sum.pages, 4, "four pages");
	ASSERT_EQ(sum.bytes, 0x3020, "their bytes");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x60000).refs, 0, "A's records gone");
	ASSERT_EQ(rec_of(&f, DEV_B, 0x60000).size, 0x1000, "B's record stays");

	/* a slot a writer never lets go of: the walk says so and still lists the others */
	{
		struct pviommu_slot *busy = NULL;
		long seen = 0;

		ASSERT_OK(map(&f, DEV_B, 0x90000, 0x1000, R), "B: a second page");
		for (__u32 i = 0; i < pv_positions(&f.e) && !busy; i++)
			if (pv_slot_at(&f.e, i)->kind == PVIOMMU_SLOT_PAGE &&
			    pv_slot_at(&f.e, i)->pfn == 0x90)
				busy = pv_slot_at(&f.e, i);
		ASSERT_TRUE(busy != NULL, "its slot");
		busy->seq++;	/* odd: mid-write, for ever */
		ASSERT_EQ(pv_rec_walk(&f.e, DOM, count_cb, &seen), -EBUSY,
			  "a walk past a slot that never settles: -EBUSY");
		ASSERT_EQ(seen, 1, "... after listing the one it could read");
		busy->seq++;
		ASSERT_EQ(pv_rec_walk(&f.e, DOM, NULL, NULL), 2, "settled: both");
		/* entries moved during the walk (another writer's series of moves) */
		seen = 0;
		ASSERT_EQ(pv_rec_walk(&f.e, DOM, move_cb, &f), -EBUSY,
			  "a walk during which entries moved: -EBUSY (one may have passed it)");
		ASSERT_EQ(pv_rec_walk(&f.e, DOM, count_cb, &seen), 2, "... and again: both");
		/* walked until whole: moves during the first two walks, none in the third */
		{
			struct whole_ctx w = { .f = &f, .moving_walks = 2 };

			ASSERT_EQ(pv_rec_walk_whole(&f.e, DOM, whole_cb, whole_restart, &w, 8), 2,
				  "walked again while entries moved: both");
			ASSERT_EQ(w.walks, 3, "... in the third walk");
			ASSERT_EQ(w.seen, 2, "... and only that walk's records kept");
			w = (struct whole_ctx){ .f = &f, .moving_walks = 100 };
			ASSERT_EQ(pv_rec_walk_whole(&f.e, DOM, whole_cb, whole_restart, &w, 8), -EBUSY,
				  "moves during every walk: -EBUSY");
			ASSERT_EQ(w.walks, 8, "... after 8 walks");
		}
	}
	fx_fini(&f);

	/* two devices, two pages holding their records, the rest full: none to move one to */
	fx_init(&f, 4, 64);
	ASSERT_OK(map(&f, DEV_A, 0x80000, 0x1000, RW), "page 1");
	ASSERT_OK(map(&f, DEV_A, 0x90000, 0x1000, RW), "page 2");
	fill_free(&f);
	ASSERT_EQ(map(&f, DEV_A, 0x80400, 0x10, R), -ENOSPC,
		  "a sub-page buffer there: its page's record cannot move, refused");
	ASSERT_EQ(chk(&f, DEV_A, 0x80400, 0x10, W), PV_ALLOW, "page 1 still whole");
	ASSERT_EQ(rec_of(&f, DEV_A, 0x80000).size, 0x1000, "its record in place");
	ASSERT_OK(unmap(&f, DEV_A, 0x80000, 0x1000), "and it unmaps");
	ASSERT_EQ(chk(&f, DEV_A, 0x80400, 0x10, R), PV_DENY_UNMAPPED, "revoked");
	fx_fini(&f);
}

/*
 * A guest maps and unmaps ever new pages for as long as it runs: after
 * hundreds of thousands of such operations at 68% full the index must
 * still take every MAP, answer every check, and hold no pile of deleted
 * slots that every miss would walk.
 */
static void t_churn(void)
{
	enum { SLOTS = 4096, LIVE = 2800, ROUNDS = 300000 };
	static __u64 live[LIVE];
	__u64 next = 1;
	long refused = 0, lost = 0, leaked = 0;
	struct fx f;

	fx_init(&f, SLOTS, 0);
	/* distinct page numbers in a 64 GiB space, spread by the multiplier */
#define CHURN_PFN()	((next++ * 0x9e3779b97f4a7c15ull) & ((1ull << 24) - 1))
	for (int i = 0; i < LIVE; i++) {
		live[i] = CHURN_PFN();
		refused += map(&f, DEV_A, live[i] << 12, 0x1000, RW) != 0;
	}
	for (long r = 0; r < ROUNDS; r++) {
		int j = (int)(rnd() % LIVE);

		refused += unmap(&f, DEV_A, live[j] << 12, 0x1000) != 0;
		live[j] = CHURN_PFN();
		refused += map(&f, DEV_A, live[j] << 12, 0x1000, RW) != 0;
	}
	for (int i = 0; i < LIVE; i++)
		lost += chk(&f, DEV_A, live[i] << 12, 0x1000, W) != PV_ALLOW;
	for (int i = 0; i < 10000; i++)
		leaked += chk(&f, DEV_A, CHURN_PFN() << 12, 1, R) != PV_DENY_UNMAPPED;
#undef CHURN_PFN
	ASSERT_EQ(refused, 0, "no MAP or UNMAP refused in 600k operations at 68% full");
	ASSERT_EQ(lost, 0, "every live page allowed");
	ASSERT_EQ(leaked, 0, "every page never mapped denied");
	ASSERT_EQ(records(&f), LIVE, "as many records as live mappings");
	if (!ASSERT_TRUE(kind_slots(&f, PVIOMMU_SLOT_TOMB) <= 2 * PVIOMMU_MAX_PROBE,
			 "deleted slots do not pile up"))
		printf("  %u tombstones in %u slots\n",
		       kind_slots(&f, PVIOMMU_SLOT_TOMB), SLOTS);
	fx_fini(&f);
}

/*
 * Entries move (Robin Hood insertion, deletion without tombstones) while
 * readers walk their chains: a reader checking pages that stay mapped, a
 * page never mapped and devices with and without protection, on a copy of
 * the index's view without page bits (every answer from the index), never
 * gets a wrong verdict while a writer maps and unmaps pages around them in
 * a table about 60% full; fail closed (busy) seldom.
 */
#define MV_ANCHORS	8
#define DEV_C		PVIOMMU_BDF(0, 0, 6, 0)	/* never protected */
struct mv_ctx {
	struct pv_env	env;
	volatile int	stop;
	struct tl_verdicts v;
};

static void mv_count(struct mv_ctx *m, int v, int want)
{
	tl_verdict(&m->v, v, want, want, PV_DENY_BUSY);
}

static void *mv_reader(void *arg)
{
	struct mv_ctx *m = arg;

	while (!m->stop) {
		for (int a = 0; a < MV_ANCHORS; a++)
			mv_count(m, pv_check(&m->env, DOM, DEV_A, (0x500ull + a * 37) << 12,
					     0x1000, R), PV_ALLOW);
		mv_count(m, pv_check(&m->env, DOM, DEV_A, 0xdead000, 0x10, R), PV_DENY_UNMAPPED);
		mv_count(m, pv_check(&m->env, DOM, DEV_B, 0x500000, 0x10, R), PV_DENY_UNMAPPED);
		mv_count(m, pv_check(&m->env, DOM, DEV_C, 0x500000, 0x10, R), PV_ALLOW);
	}
	return NULL;
}

static void t_moving_readers(void)
{
	enum { SLOTS = 256, LIVE = 140, ROUNDS = 200000 };
	__u64 live[LIVE], next = 1;
	struct mv_ctx m;
	long refused = 0;
	pthread_t th;
	struct fx f;

	fx_init(&f, SLOTS, 0);
	for (int a = 0; a < MV_ANCHORS; a++)
		ASSERT_OK(map(&f, DEV_A, (0x500ull + a * 37) << 12, 0x1000, R), "an anchor page");
#define MV_PFN()	(0x100000 + ((next++ * 0x9e3779b97f4a7c15ull) & 0xfffff))
	for (int i = 0; i < LIVE; i++) {
		live[i] = MV_PFN();
		refused += map(&f, DEV_A, live[i] << 12, 0x1000, RW) != 0;
	}
	memset(&m, 0, sizeof(m));
	m.env = f.e;
	m.env.fast = NULL;	/* no page bits: the index answers */
	m.env.dslot = 0;
	if (!ASSERT_OK(pthread_create(&th, NULL, mv_reader, &m), "reader thread"))
		return;
	for (long r = 0; r < ROUNDS; r++) {
		int j = (int)(rnd() % LIVE);

		refused += unmap(&f, DEV_A, live[j] << 12, 0x1000) != 0;
		live[j] = MV_PFN();
		refused += map(&f, DEV_A, live[j] << 12, 0x1000, RW) != 0;
	}
#undef MV_PFN
	m.stop = 1;
	pthread_join(th, NULL);
	printf("  readers: %ld right, %ld busy (fail closed), %ld wrong, against %d x 2 writes"
	       " (%u moves)\n", m.v.ok, m.v.busy, m.v.wrong, ROUNDS, pv_moves(&f.e) / 2);
	ASSERT_EQ(refused, 0, "every map and unmap taken");
	ASSERT_TRUE(pv_moves(&f.e) / 2 > ROUNDS / 4, "entries moved all along");
	ASSERT_EQ(m.v.wrong, 0, "no verdict wrong: a moving entry is never missed");
	ASSERT_TRUE(m.v.ok > 10000, "the reader ran alongside");
	/*
	 * a writer in a tight loop on the other CPU, preempted now and then in
	 * the middle of its moves (which the BPF writers are not): 0-0.75% busy
	 * on a quiet host, up to 5% with other tests beside it; a header left
	 * odd would make every miss busy
	 */
	ASSERT_TRUE(m.v.busy * 4 < m.v.ok, "busy under 25% of the answers");
	fx_fini(&f);
}

/*
 * DOMAIN and DEVICE entries never move: Robin Hood shifts hop over them.
 * In a table of 8 slots and its tail of 64 holding 16 devices and up to
 * 55 pages (over 90% of its positions), through a long churn: no page
 * entry is ever further than a chain from its home (a lookup would miss
 * it), every page whose MAP was taken stays allowed, every refused MAP
 * says -ENOSPC and leaves nothing.
 */
static void t_pinned_hops(void)
{
	enum { SLOTS = 8, LIVE = 55, DEVS = 16, ROUNDS = 200000 };
	__u64 live[LIVE], next = 1;
	long strayed = 0, lost = 0, refused = 0, odd = 0;
	int taken[LIVE], err;
	struct fx f;

	fx_init(&f, SLOTS, 0);
	for (int d = 0; d < DEVS; d++)
		pv_op_dev_add(&f.e, &f.d, DOM, PVIOMMU_BDF(0, 1, d, 0));
#define PH_PFN()	(0x100000 + ((next++ * 0x9e3779b97f4a7c15ull) & 0xfffff))
	for (int i = 0; i < LIVE; i++) {
		live[i] = PH_PFN();
		err = map(&f, DEV_A, live[i] << 12, 0x1000, RW);
		taken[i] = !err;
		odd += err && err != -ENOSPC;
	}
	for (long r = 0; r < ROUNDS; r++) {
		int j = (int)(rnd() % LIVE);

		if (taken[j])
			odd += unmap(&f, DEV_A, live[j] << 12, 0x1000) != 0;
		live[j] = PH_PFN();
		err = map(&f, DEV_A, live[j] << 12, 0x1000, RW);
		taken[j] = !err;
		refused += err != 0;
		odd += err && err != -ENOSPC;
		if (r % 64)
			continue;
		for (__u32 i = 0; i < pv_positions(&f.e); i++) {
			struct pviommu_slot *s = pv_slot_at(&f.e, i);

			if (s->kind == PVIOMMU_SLOT_PAGE &&
			    i - pv_key_home(&f.e, s->kind, s->domain, s->bdf, s->pfn) >=
			    PVIOMMU_MAX_PROBE)
				strayed++;
		}
	}
#undef PH_PFN
	for (int i = 0; i < LIVE; i++)
		lost += taken[i] && chk(&f, DEV_A, live[i] << 12, 0x1000, W) != PV_ALLOW;
	printf("  %ld of %d maps refused (-ENOSPC) over 90%% full\n", refused, ROUNDS);
	ASSERT_EQ(odd, 0, "every call taken or refused -ENOSPC");
	ASSERT_EQ(strayed, 0, "no page entry further than a chain from its home");
	ASSERT_EQ(lost, 0, "every page whose MAP was taken is allowed");
	ASSERT_EQ(page_slots(&f), (__u32)records(&f), "one slot per live page, none left behind");
	fx_fini(&f);
}

int main(void)
{
	SUBTEST("bad_input", t_bad_input());
	SUBTEST("byte_granularity", t_byte_granularity());
	SUBTEST("multi_page", t_multi_page());
	SUBTEST("duplicate_overlap", t_duplicate_overlap());
	SUBTEST("records", t_records());
	SUBTEST("exact_unmap", t_exact_unmap());
	SUBTEST("many_sub_page", t_many_sub_page());
	SUBTEST("page_touched", t_page_touched());
	SUBTEST("fail_closed", t_fail_closed());
	SUBTEST("full_tables", t_full_tables());
	SUBTEST("purge", t_purge());
	SUBTEST("purge_chunks", t_purge_chunks());
	SUBTEST("fast_lanes", t_fast_lanes());
	SUBTEST("random_model", t_random_model());
	SUBTEST("churn", t_churn());
	SUBTEST("moving_readers", t_moving_readers());
	SUBTEST("pinned_hops", t_pinned_hops());
	return tl_done("unit");
}
