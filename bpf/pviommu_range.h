/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pviommu_range.h - the map / unmap / check logic, written once.
 *
 * Header-only C that compiles for BPF (bpf/pviommu.bpf.c) and for userspace
 * (unit tests, benchmarks, the QEMU hook library). The semantics are those
 * documented in pviommu.h. The includer provides, before including:
 *
 *   struct pv_env;                                  opaque to this file but
 *                                                   must have fields
 *                                                   'void *tbl' and
 *                                                   '__u32 mask'
 *   struct pviommu_slot *pv_slot_at(struct pv_env *, __u32 idx)
 *   struct pviommu_mapping *pv_rec_find(struct pv_env *,
 *                                       const struct pviommu_map_key *)
 *   int pv_rec_insert(struct pv_env *, const struct pviommu_map_key *,
 *                     const struct pviommu_mapping *)  0, -EEXIST, -ENOSPC
 *   int pv_rec_delete(struct pv_env *, const struct pviommu_map_key *)
 *   long pv_loop(__u32 n, long (*cb)(__u32, void *), void *ctx)
 *                                   calls cb(i, ctx) for i < n until cb
 *                                   returns 1; returns the calls made
 *   __u64 *pv_fast_word(struct pv_env *, __u32 idx)
 *                                   element idx of pviommu_fast (pviommu.h),
 *                                   NULL when there is none
 *   pv_fast_set(e, lane, pfn, bits)  optional: how the writers reach
 *                                   pv_fast_write() (BPF: through a global
 *                                   function, which the verifier checks
 *                                   once); default pv_fast_write itself
 *   PV_INLINE                       __always_inline (BPF) or inline
 *   PV_EINVAL ... errno values      (the kernel's; BPF has no errno.h)
 *
 * Writers (pv_op_*) must be serialized by the caller; readers
 * (pv_check_range) are lock-free against one writer.
 */
#ifndef __PVIOMMU_RANGE_H
#define __PVIOMMU_RANGE_H

#define PV_EPERM	1
#define PV_ENOENT	2
#define PV_E2BIG	7
#define PV_EBUSY	16
#define PV_EEXIST	17
#define PV_ENODEV	19
#define PV_EINVAL	22
#define PV_ENOSPC	28
#define PV_ERANGE	34
#define PV_EPROTO	71
#define PV_EOVERFLOW	75
#define PV_EOPNOTSUPP	95
#define PV_EUCLEAN	117

/* largest MAP/UNMAP, in pages (4 GiB): bounds every loop */
#define PVIOMMU_MAX_OP_PAGES	(1u << 20)
/* largest single transfer checked, in pages (64 MiB) */
#define PVIOMMU_MAX_CHECK_PAGES	(1u << 14)

#define PV_PAGE_MASK	(PVIOMMU_PAGE_SIZE - 1)
#define PV_SUB_FULL	PVIOMMU_SUB(0, PV_PAGE_MASK, 0)

#ifndef PV_READ_ONCE
#define PV_READ_ONCE(x)	(*(volatile __typeof__(x) *)&(x))
#endif
#ifndef pv_barrier
#define pv_barrier()	__asm__ __volatile__("" ::: "memory")
#endif

/* verdicts of a check */
enum pv_verdict {
	PV_ALLOW		= 0,
	PV_DENY_UNMAPPED	= 1,	/* some byte is not mapped at all */
	PV_DENY_PERM		= 2,	/* mapped, but not for this direction */
	PV_DENY_WRAP		= 3,	/* addr + len wraps, or too long */
	PV_DENY_BUSY		= 4,	/* index kept changing: fail closed */
};

static PV_INLINE __u64 pv_mix64(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static PV_INLINE __u32 pv_hash(__u32 kind, __u32 dom, __u32 bdf, __u64 pfn)
{
	return (__u32)pv_mix64(pfn * 0x9e3779b97f4a7c15ULL ^
			       ((__u64)dom << 32 | bdf) ^ ((__u64)kind << 62));
}

static PV_INLINE int pv_key_eq(const struct pviommu_slot *s, __u32 kind,
			       __u32 dom, __u32 bdf, __u64 pfn)
{
	return s->kind == kind && s->domain == dom && s->bdf == bdf &&
	       s->pfn == pfn;
}

/* ---- writer side (serialized) ---------------------------------------- */

static PV_INLINE void pv_write_begin(struct pviommu_slot *s)
{
	__sync_fetch_and_add(&s->seq, 1);
}

static PV_INLINE void pv_write_end(struct pviommu_slot *s)
{
	__sync_fetch_and_add(&s->seq, 1);
}

/*
 * Find the slot of a key; with 'insert', claim the first free slot of the
 * probe chain when the key is absent. NULL when absent (or the chain is
 * full: the table is full for this key).
 */
static PV_INLINE struct pviommu_slot *
pv_slot_lookup(struct pv_env *e, __u32 kind, __u32 dom, __u32 bdf, __u64 pfn,
	       int insert)
{
	struct pviommu_slot *s, *free = 0;
	__u32 h = pv_hash(kind, dom, bdf, pfn), i;

	for (i = 0; i < PVIOMMU_MAX_PROBE; i++) {
		s = pv_slot_at(e, (h + i) & e->mask);
		if (!s)
			return 0;
		if (s->kind == PVIOMMU_SLOT_EMPTY) {
			if (!free)
				free = s;
			break;
		}
		if (s->kind == PVIOMMU_SLOT_TOMB) {
			if (!free)
				free = s;
			continue;
		}
		if (pv_key_eq(s, kind, dom, bdf, pfn))
			return s;
	}
	if (!insert || !free)
		return 0;
	pv_write_begin(free);
	free->domain = dom;
	free->bdf = bdf;
	free->pfn = pfn;
	free->cnt_r = 0;
	free->cnt_w = 0;
	free->nsub = 0;
	for (i = 0; i < PVIOMMU_SUB_SLOTS; i++)
		free->sub[i] = 0;
	free->kind = kind;
	pv_write_end(free);
	return free;
}

static PV_INLINE int pv_slot_unused(const struct pviommu_slot *s)
{
	return s->kind == PVIOMMU_SLOT_PAGE && !s->cnt_r && !s->cnt_w &&
	       !s->nsub;
}

/* free a slot: EMPTY when no chain runs through it, else a tombstone */
static PV_INLINE void pv_slot_free(struct pv_env *e, struct pviommu_slot *s,
				   __u32 idx)
{
	struct pviommu_slot *next = pv_slot_at(e, (idx + 1) & e->mask);

	pv_write_begin(s);
	s->kind = (next && next->kind == PVIOMMU_SLOT_EMPTY) ?
		  PVIOMMU_SLOT_EMPTY : PVIOMMU_SLOT_TOMB;
	s->domain = 0;
	s->bdf = 0;
	s->pfn = 0;
	pv_write_end(s);
}

static PV_INLINE __u32 pv_slot_index(struct pv_env *e, struct pviommu_slot *s,
				     __u32 kind, __u32 dom, __u32 bdf,
				     __u64 pfn)
{
	__u32 h = pv_hash(kind, dom, bdf, pfn), i;

	for (i = 0; i < PVIOMMU_MAX_PROBE; i++)
		if (pv_slot_at(e, (h + i) & e->mask) == s)
			return (h + i) & e->mask;
	return h & e->mask;
}

/* add one piece [first, last] with perm to a page slot */
static PV_INLINE int pv_piece_add(struct pviommu_slot *s, __u32 first,
				  __u32 last, __u32 perm)
{
	__u32 i;

	if (first == 0 && last == PV_PAGE_MASK) {
		pv_write_begin(s);
		if (perm & PVIOMMU_PERM_READ)
			s->cnt_r++;
		if (perm & PVIOMMU_PERM_WRITE)
			s->cnt_w++;
		pv_write_end(s);
		return 0;
	}
	for (i = 0; i < PVIOMMU_SUB_SLOTS; i++) {
		if (s->sub[i])
			continue;
		pv_write_begin(s);
		s->sub[i] = PVIOMMU_SUB(first, last, perm);
		s->nsub++;
		pv_write_end(s);
		return 0;
	}
	return -PV_ENOSPC;
}

/* remove one piece previously added with the same arguments */
static PV_INLINE int pv_piece_del(struct pviommu_slot *s, __u32 first,
				  __u32 last, __u32 perm)
{
	__u32 want = PVIOMMU_SUB(first, last, perm), i;

	if (first == 0 && last == PV_PAGE_MASK) {
		if (((perm & PVIOMMU_PERM_READ) && !s->cnt_r) ||
		    ((perm & PVIOMMU_PERM_WRITE) && !s->cnt_w))
			return -PV_EUCLEAN;
		pv_write_begin(s);
		if (perm & PVIOMMU_PERM_READ)
			s->cnt_r--;
		if (perm & PVIOMMU_PERM_WRITE)
			s->cnt_w--;
		pv_write_end(s);
		return 0;
	}
	for (i = 0; i < PVIOMMU_SUB_SLOTS; i++) {
		if (s->sub[i] != want)
			continue;
		pv_write_begin(s);
		s->sub[i] = 0;
		s->nsub--;
		pv_write_end(s);
		return 0;
	}
	return -PV_EUCLEAN;
}

/* the piece of [iova, iova + size) that falls in its page number i */
static PV_INLINE void pv_piece_of(__u64 iova, __u64 size, __u32 i,
				  __u64 *pfn, __u32 *first, __u32 *last)
{
	__u64 pfn0 = iova >> PVIOMMU_PAGE_SHIFT;
	__u64 pfnl = (iova + size - 1) >> PVIOMMU_PAGE_SHIFT;

	*pfn = pfn0 + i;
	*first = *pfn == pfn0 ? (__u32)(iova & PV_PAGE_MASK) : 0;
	*last = *pfn == pfnl ? (__u32)((iova + size - 1) & PV_PAGE_MASK) :
			       (__u32)PV_PAGE_MASK;
}

static PV_INLINE __u64 pv_npages(__u64 iova, __u64 size)
{
	return ((iova + size - 1) >> PVIOMMU_PAGE_SHIFT) -
	       (iova >> PVIOMMU_PAGE_SHIFT) + 1;
}

/* ---- the fast path's page bits (pviommu_fast, see pviommu.h) ----------- */

/* the word holding page pfn's bits in lane (1-based), or NULL */
static PV_INLINE __u64 *pv_fast_bits(struct pv_env *e, __u32 lane, __u64 pfn)
{
	if (!lane || lane > PVIOMMU_FAST_LANES || pfn >= PVIOMMU_FAST_PAGES)
		return 0;
	return pv_fast_word(e, (lane - 1) * PVIOMMU_FAST_LANE_WORDS +
			       (__u32)(pfn >> 5));
}

/* page pfn's 2 bits in lane (1-based) := bits; nothing outside the window */
static PV_INLINE void pv_fast_write(struct pv_env *e, __u32 lane, __u64 pfn,
				   __u32 bits)
{
	__u64 *w = pv_fast_bits(e, lane, pfn), sh;

	if (!w)
		return;
	sh = (pfn & 31) * 2;
	/* a reader between the two sees the bits clear: it asks the index */
	__sync_fetch_and_and(w, ~(3ull << sh));
	__sync_fetch_and_or(w, (__u64)(bits & 3) << sh);
}

#ifndef pv_fast_set
#define pv_fast_set	pv_fast_write
#endif

/* after a change of page slot s (pfn): its bits say what its counts say */
static PV_INLINE void pv_fast_sync(struct pv_env *e, __u32 lane, __u64 pfn,
				   const struct pviommu_slot *s)
{
	pv_fast_set(e, lane, pfn, (__u32)!!s->cnt_r | (__u32)!!s->cnt_w << 1);
}

struct pv_fast_clear_ctx {
	struct pv_env	*env;
	__u32		base;
};

static long pv_fast_clear_cb(__u32 i, void *data)
{
	struct pv_fast_clear_ctx *c = data;
	__u64 *w = pv_fast_word(c->env, c->base + i);

	if (w)
		*w = 0;
	return 0;
}

struct pv_fast_free_ctx {
	__u64	used;
	__u32	lane;	/* the first free one, 0-based; LANES: none */
};

static long pv_fast_free_cb(__u32 i, void *data)
{
	struct pv_fast_free_ctx *c = data;

	if (c->used & (1ull << (i & 63)))
		return 0;
	c->lane = i;
	return 1;
}

/* a free lane, zeroed and marked used (1-based); 0 when none is free */
static PV_INLINE __u32 pv_fast_alloc(struct pv_env *e)
{
	__u64 *used = pv_fast_word(e, PVIOMMU_FAST_USED);
	struct pv_fast_clear_ctx c = { .env = e };
	struct pv_fast_free_ctx f = { .lane = PVIOMMU_FAST_LANES };

	if (!used)
		return 0;
	f.used = *used;
	pv_loop(PVIOMMU_FAST_LANES, pv_fast_free_cb, &f);
	if (f.lane >= PVIOMMU_FAST_LANES)
		return 0;
	c.base = f.lane * PVIOMMU_FAST_LANE_WORDS;
	pv_loop(PVIOMMU_FAST_LANE_WORDS, pv_fast_clear_cb, &c);
	__sync_fetch_and_or(used, 1ull << f.lane);
	return f.lane + 1;
}

/* give lanes back (bitmask of 0-based lanes) */
static PV_INLINE void pv_fast_release(struct pv_env *e, __u64 lanes)
{
	__u64 *used = pv_fast_word(e, PVIOMMU_FAST_USED);

	if (used && lanes)
		__sync_fetch_and_and(used, ~lanes);
}

/* one pass over some pages of a range: add or delete its pieces */
struct pv_pieces_ctx {
	struct pv_env	*env;
	__u64		iova;
	__u64		size;
	__u32		dom;
	__u32		bdf;
	__u32		perm;
	__u32		from;	/* first page number (relative) */
	__u32		del;	/* 0: add, 1: delete */
	__u32		done;	/* pages processed successfully */
	int		err;
	/*
	 * the device's fast lane (1-based), 0: none. Last on purpose: placed
	 * between bdf and perm it pushed the hypercall program's verification
	 * past the kernel's limits (6.18).
	 */
	__u32		lane;
};

static long pv_pieces_cb(__u32 i, void *data)
{
	struct pv_pieces_ctx *c = data;
	struct pviommu_slot *s;
	__u32 first, last;
	__u64 pfn;
	int err;

	pv_piece_of(c->iova, c->size, c->from + i, &pfn, &first, &last);
	s = pv_slot_lookup(c->env, PVIOMMU_SLOT_PAGE, c->dom, c->bdf, pfn,
			   !c->del);
	if (!s) {
		/* a delete goes on with the other pages; an add stops */
		c->err = c->del ? -PV_EUCLEAN : -PV_ENOSPC;
		return !c->del;
	}
	err = c->del ? pv_piece_del(s, first, last, c->perm) :
		       pv_piece_add(s, first, last, c->perm);
	pv_fast_sync(c->env, c->lane, pfn, s);
	if (pv_slot_unused(s))
		pv_slot_free(c->env, s, pv_slot_index(c->env, s,
				PVIOMMU_SLOT_PAGE, c->dom, c->bdf, pfn));
	if (err) {
		c->err = err;
		return !c->del;
	}
	c->done++;
	return 0;
}

/* -1: bdf is not protected in dom; else its fast lane (1-based), 0: none */
static PV_INLINE int pv_device_lane(struct pv_env *e, __u32 dom, __u32 bdf)
{
	struct pviommu_slot *s = pv_slot_lookup(e, PVIOMMU_SLOT_DEVICE, dom,
						bdf, 0, 0);

	if (!s)
		return -1;
	return s->cnt_r <= PVIOMMU_FAST_LANES ? (int)s->cnt_r : 0;
}

/* add (del = 0) or delete the pieces of the range on pages [from, from+n) */
static PV_INLINE int pv_pieces(struct pv_env *e, __u32 dom, __u32 bdf,
			       __u32 lane, __u64 iova, __u64 size, __u32 perm,
			       __u32 from, __u32 n, __u32 del)
{
	struct pv_pieces_ctx c = {
		.env = e, .iova = iova, .size = size, .dom = dom, .bdf = bdf,
		.lane = lane, .perm = perm, .from = from, .del = del,
	};

	if (!n)
		return 0;
	pv_loop(n, pv_pieces_cb, &c);
	if (c.err && !del && c.done) {
		/* roll back what was added */
		c.del = 1;
		c.err = 0;
		pv_loop(c.done, pv_pieces_cb, &c);
		return -PV_ENOSPC;
	}
	return c.err;
}

static PV_INLINE int pv_range_ok(__u64 iova, __u64 size)
{
	if (!size)
		return -PV_EINVAL;
	if (iova + size - 1 < iova)
		return -PV_EOVERFLOW;
	if (pv_npages(iova, size) > PVIOMMU_MAX_OP_PAGES)
		return -PV_E2BIG;
	return 0;
}

static PV_INLINE int pv_device_protected(struct pv_env *e, __u32 dom,
					 __u32 bdf)
{
	return pv_device_lane(e, dom, bdf) >= 0;
}

/* DEV_ADD: mark bdf protected (idempotent), with a fast lane if one is free */
static PV_INLINE int pv_op_dev_add(struct pv_env *e,
				   struct pviommu_domain *d, __u32 dom,
				   __u32 bdf)
{
	struct pviommu_slot *s;
	__u32 lane;

	if (pv_device_protected(e, dom, bdf))
		return 0;
	s = pv_slot_lookup(e, PVIOMMU_SLOT_DEVICE, dom, bdf, 0, 1);
	if (!s)
		return -PV_ENOSPC;
	lane = pv_fast_alloc(e);
	if (lane) {
		pv_write_begin(s);
		s->cnt_r = lane;
		pv_write_end(s);
	}
	d->nr_devices++;
	d->generation++;
	return 0;
}

/* MAP, as documented in pviommu.h */
static PV_INLINE int pv_op_map(struct pv_env *e, struct pviommu_domain *d,
			       __u32 dom, __u32 bdf, __u64 iova, __u64 size,
			       __u32 perm, __u64 cookie)
{
	struct pviommu_map_key k = { .domain = dom, .bdf = bdf, .iova = iova };
	struct pviommu_mapping v = {}, *old;
	__u64 np;
	int err, lane;

	err = pv_range_ok(iova, size);
	if (err)
		return err;
	if (!perm || (perm & ~PVIOMMU_PERM_RW))
		return -PV_EINVAL;
	lane = pv_device_lane(e, dom, bdf);
	if (lane < 0)
		return -PV_ENODEV;

	/* the common case first: a new record (one hash operation) */
	v.iova = iova;
	v.size = size;
	v.perm = perm;
	v.refs = 1;
	v.cookie = cookie;
	v.lane = (__u32)lane;
	v.generation = d->generation + 1;
	err = pv_rec_insert(e, &k, &v);
	if (err == -PV_EEXIST) {
		old = pv_rec_find(e, &k);
		if (!old)
			return -PV_EBUSY;
		if (old->size != size || old->perm != perm)
			return -PV_EEXIST;
		old->refs++;
		old->generation = ++d->generation;
		return 0;
	}
	if (err)
		return -PV_ENOSPC;

	np = pv_npages(iova, size);
	err = pv_pieces(e, dom, bdf, (__u32)lane, iova, size, perm, 0, (__u32)np, 0);
	if (err) {
		pv_rec_delete(e, &k);
		return err;
	}
	d->nr_records++;
	d->mapped_bytes += size;
	d->generation++;
	return 0;
}

/* UNMAP, as documented in pviommu.h */
static PV_INLINE int pv_op_unmap(struct pv_env *e, struct pviommu_domain *d,
				 __u32 dom, __u32 bdf, __u64 iova, __u64 size)
{
	struct pviommu_map_key k = { .domain = dom, .bdf = bdf, .iova = iova };
	struct pviommu_map_key nk;
	struct pviommu_mapping *old, nv;
	__u64 end, np;
	__u32 perm, lane;
	int err;

	err = pv_range_ok(iova, size);
	if (err)
		return err;
	old = pv_rec_find(e, &k);
	if (!old)
		return -PV_ENOENT;
	if (size > old->size)
		return -PV_ERANGE;
	if (size == old->size && old->refs > 1) {
		old->refs--;
		old->generation = ++d->generation;
		return 0;
	}
	if (old->refs > 1)
		return -PV_EBUSY;

	perm = old->perm;
	lane = old->lane;	/* the device's, for its whole life */
	if (size == old->size) {
		np = pv_npages(iova, size);
		err = pv_pieces(e, dom, bdf, lane, iova, size, perm, 0,
				(__u32)np, 1);
		pv_rec_delete(e, &k);
		d->nr_records--;
		d->mapped_bytes -= size;
		d->generation++;
		return err;
	}

	/* partial unmap of the head: [iova, end) goes, [end, ...) stays */
	end = iova + size;
	nv = *old;
	nv.iova = end;
	nv.size = old->size - size;
	nv.generation = d->generation + 1;
	nk = k;
	nk.iova = end;
	err = pv_rec_insert(e, &nk, &nv);
	if (err)
		return err == -PV_EEXIST ? -PV_EBUSY : -PV_ENOSPC;
	if (end & PV_PAGE_MASK) {
		/* the page holding 'end' changes its piece: add the new one */
		err = pv_pieces(e, dom, bdf, lane, end, nv.size, perm, 0, 1, 0);
		if (err) {
			pv_rec_delete(e, &nk);
			return err;
		}
		np = pv_npages(iova, size + 1);
	} else {
		np = pv_npages(iova, size);
	}
	err = pv_pieces(e, dom, bdf, lane, iova, nv.size + size, perm, 0,
			(__u32)np, 1);
	pv_rec_delete(e, &k);
	d->mapped_bytes -= size;
	d->generation++;
	return err;
}

/* ---- purge: every slot of a domain, or of one device ------------------- */
struct pv_purge_ctx {
	struct pv_env	*env;
	__u32		dom;
	__u32		bdf;
	__u32		all_devices;
	__u32		freed;
	__u64		lanes;	/* fast lanes of the purged devices (0-based) */
};

static long pv_purge_cb(__u32 i, void *data)
{
	struct pv_purge_ctx *c = data;
	struct pviommu_slot *s = pv_slot_at(c->env, i);

	if (!s)
		return 1;
	if ((s->kind != PVIOMMU_SLOT_PAGE && s->kind != PVIOMMU_SLOT_DEVICE) ||
	    s->domain != c->dom || (!c->all_devices && s->bdf != c->bdf))
		return 0;
	if (s->kind == PVIOMMU_SLOT_DEVICE && s->cnt_r &&
	    s->cnt_r <= PVIOMMU_FAST_LANES)
		c->lanes |= 1ull << (s->cnt_r - 1);
	pv_write_begin(s);
	s->kind = PVIOMMU_SLOT_TOMB;
	s->domain = 0;
	s->bdf = 0;
	s->pfn = 0;
	s->cnt_r = 0;
	s->cnt_w = 0;
	s->nsub = 0;
	pv_write_end(s);
	c->freed++;
	return 0;
}

/* tombstones that end a chain become EMPTY again (one backward sweep) */
static long pv_sweep_cb(__u32 i, void *data)
{
	struct pv_purge_ctx *c = data;
	__u32 idx = c->env->mask - i;
	struct pviommu_slot *s = pv_slot_at(c->env, idx);
	struct pviommu_slot *n = pv_slot_at(c->env, (idx + 1) & c->env->mask);

	if (s && n && s->kind == PVIOMMU_SLOT_TOMB &&
	    n->kind == PVIOMMU_SLOT_EMPTY) {
		pv_write_begin(s);
		s->kind = PVIOMMU_SLOT_EMPTY;
		pv_write_end(s);
	}
	return 0;
}

/* drop the index slots of (dom, bdf), or of all of dom's devices */
static PV_INLINE __u32 pv_purge_index(struct pv_env *e, __u32 dom, __u32 bdf,
				      __u32 all_devices)
{
	struct pv_purge_ctx c = {
		.env = e, .dom = dom, .bdf = bdf, .all_devices = all_devices,
	};

	pv_loop(e->mask + 1, pv_purge_cb, &c);
	if (c.freed)
		pv_loop(e->mask + 1, pv_sweep_cb, &c);
	/* no DEVICE slot names those lanes any more: hand them back */
	pv_fast_release(e, c.lanes);

	return c.freed;
}

/* ---- reader side (lock-free) ------------------------------------------- */

/* a consistent copy of the slot of a key; 1 found, 0 absent, <0 busy */
static PV_INLINE int pv_slot_read(struct pv_env *e, __u32 kind, __u32 dom,
				  __u32 bdf, __u64 pfn,
				  struct pviommu_slot *out)
{
	__u32 h = pv_hash(kind, dom, bdf, pfn), i, try, seq;
	struct pviommu_slot *s;

	for (i = 0; i < PVIOMMU_MAX_PROBE; i++) {
		s = pv_slot_at(e, (h + i) & e->mask);
		if (!s)
			return 0;
		for (try = 0; try < 8; try++) {
			seq = PV_READ_ONCE(s->seq);
			if (seq & 1)
				continue;
			pv_barrier();
			*out = *s;
			pv_barrier();
			if (PV_READ_ONCE(s->seq) == seq)
				break;
		}
		if (try == 8)
			return -PV_EBUSY;
		if (out->kind == PVIOMMU_SLOT_EMPTY)
			return 0;
		if (pv_key_eq(out, kind, dom, bdf, pfn))
			return 1;
	}
	return 0;
}

/*
 * Are bytes [first, last] of the page in slot s covered for perm bit p?
 * Walks a cursor from 'first' through the sub-page pieces that contain it;
 * at most SUB_SLOTS passes over SUB_SLOTS pieces, one (pass, piece) pair per
 * loop step so that the BPF verifier sees one small body.
 */
struct pv_cov_ctx {
	const struct pviommu_slot	*s;
	__u32				cur;
	__u32				last;
	__u32				p;
	__u32				moved;
	__u32				covered;
};

static long pv_cov_cb(__u32 i, void *data)
{
	struct pv_cov_ctx *c = data;
	__u32 j = i & (PVIOMMU_SUB_SLOTS - 1);
	__u32 sub = c->s->sub[j];

	if ((PVIOMMU_SUB_PERM(sub) & c->p) && PVIOMMU_SUB_FIRST(sub) <= c->cur &&
	    PVIOMMU_SUB_LAST(sub) >= c->cur) {
		c->cur = PVIOMMU_SUB_LAST(sub) + 1;
		c->moved = 1;
		if (c->cur > c->last) {
			c->covered = 1;
			return 1;
		}
	}
	if (j == PVIOMMU_SUB_SLOTS - 1) {
		if (!c->moved)
			return 1;
		c->moved = 0;
	}
	return 0;
}

static PV_INLINE int pv_covered(const struct pviommu_slot *s, __u32 first,
				__u32 last, __u32 p)
{
	struct pv_cov_ctx c = { .s = s, .cur = first, .last = last, .p = p };

	if (((p & PVIOMMU_PERM_READ) && s->cnt_r) ||
	    ((p & PVIOMMU_PERM_WRITE) && s->cnt_w))
		return 1;
	if (!s->nsub)
		return 0;
	pv_loop(PVIOMMU_SUB_SLOTS * PVIOMMU_SUB_SLOTS, pv_cov_cb, &c);
	return c.covered;
}

/*
 * check one page: bytes [first, last] of page pfn for 'need'; lane is the
 * device's fast lane (1-based, 0: none): bits set there answer at once
 */
static PV_INLINE int pv_check_page(struct pv_env *e, __u32 dom, __u32 bdf,
				   __u32 lane, __u64 pfn, __u32 first,
				   __u32 last, __u32 need)
{
	struct pviommu_slot s;
	__u64 *w = pv_fast_bits(e, lane, pfn);
	int r;

	if (w && ((PV_READ_ONCE(*w) >> ((pfn & 31) * 2)) & need) == need)
		return PV_ALLOW;
	r = pv_slot_read(e, PVIOMMU_SLOT_PAGE, dom, bdf, pfn, &s);

	if (r < 0)
		return PV_DENY_BUSY;
	if (!r)
		return PV_DENY_UNMAPPED;
	if ((need & PVIOMMU_PERM_READ) &&
	    !pv_covered(&s, first, last, PVIOMMU_PERM_READ))
		goto deny;
	if ((need & PVIOMMU_PERM_WRITE) &&
	    !pv_covered(&s, first, last, PVIOMMU_PERM_WRITE))
		goto deny;
	return PV_ALLOW;
deny:
	/* tell "not for this direction" from "not mapped" */
	if (pv_covered(&s, first, last, PVIOMMU_PERM_RW))
		return PV_DENY_PERM;
	return PV_DENY_UNMAPPED;
}

struct pv_check_ctx {
	struct pv_env	*env;
	__u64		addr;
	__u64		len;
	__u32		dom;
	__u32		bdf;
	__u32		lane;
	__u32		need;
	int		verdict;
};

static long pv_check_cb(__u32 i, void *data)
{
	struct pv_check_ctx *c = data;
	__u32 first, last;
	__u64 pfn;

	pv_piece_of(c->addr, c->len, i, &pfn, &first, &last);
	c->verdict = pv_check_page(c->env, c->dom, c->bdf, c->lane, pfn, first,
				   last, c->need);
	return c->verdict != PV_ALLOW;
}

/*
 * The per-transfer check: may device bdf of domain dom (fast lane 'lane',
 * 1-based, 0: none) access [addr, addr + len) for 'need' (PVIOMMU_PERM_*)?
 * Returns enum pv_verdict.
 */
static PV_INLINE int pv_check_lane(struct pv_env *e, __u32 dom, __u32 bdf,
				   __u32 lane, __u64 addr, __u64 len,
				   __u32 need)
{
	struct pv_check_ctx c = {
		.env = e, .addr = addr, .len = len, .dom = dom, .bdf = bdf,
		.lane = lane, .need = need, .verdict = PV_ALLOW,
	};
	__u64 np;
	__u32 first, last;
	__u64 pfn;

	if (!len)
		return PV_ALLOW;
	if (addr + len - 1 < addr)
		return PV_DENY_WRAP;
	np = pv_npages(addr, len);
	if (np == 1) {
		pv_piece_of(addr, len, 0, &pfn, &first, &last);
		return pv_check_page(e, dom, bdf, lane, pfn, first, last, need);
	}
	if (np > PVIOMMU_MAX_CHECK_PAGES)
		return PV_DENY_WRAP;
	pv_loop((__u32)np, pv_check_cb, &c);
	return c.verdict;
}

/* the check of a protected device, from the index alone */
static PV_INLINE int pv_check_range(struct pv_env *e, __u32 dom, __u32 bdf,
				    __u64 addr, __u64 len, __u32 need)
{
	return pv_check_lane(e, dom, bdf, 0, addr, len, need);
}

/* CHECK as documented in pviommu.h: unprotected devices pass untouched */
static PV_INLINE int pv_check(struct pv_env *e, __u32 dom, __u32 bdf,
			      __u64 addr, __u64 len, __u32 need)
{
	int lane = pv_device_lane(e, dom, bdf);

	if (lane < 0)
		return PV_ALLOW;
	return pv_check_lane(e, dom, bdf, (__u32)lane, addr, len, need);
}

#endif /* __PVIOMMU_RANGE_H */
