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
 *                                                   'void *tbl',
 *                                                   '__u32 slots' (the hash
 *                                                   slots; slot 'slots' is
 *                                                   the header) and
 *                                                   '__u64 key' (hash)
 *   struct pviommu_slot *pv_slot_at(struct pv_env *, __u32 idx)
 *                                   slot idx (0 .. slots), NULL past it
 *   long pv_loop(__u32 n, long (*cb)(__u32, void *), void *ctx)
 *                                   calls cb(i, ctx) for i < n until cb
 *                                   returns 1; returns the calls made
 *   __u64 *pv_fast_word(struct pv_env *, __u32 idx)
 *                                   element idx of pviommu_fast (pviommu.h),
 *                                   NULL when there is none
 *   pv_slot_read(e, ...)            optional: how readers reach
 *                                   pv_slot_read_inl() (BPF: a global
 *                                   function)
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
#define PV_EFAULT	14
#define PV_EBUSY	16
#define PV_EEXIST	17
#define PV_ENODEV	19
#define PV_EINVAL	22
#define PV_ENOSPC	28
#define PV_ERANGE	34
#define PV_EPROTO	71
#define PV_EOVERFLOW	75
#define PV_EOPNOTSUPP	95
#define PV_ESTALE	116
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

/*
 * Loop bodies. A pv_loop callback only hands its step to a PV_STEP
 * function. The hypercall programs (pviommu.bpf.c) make those global BPF
 * functions: the verifier checks each one once, with unknown arguments,
 * instead of walking the body again at every call site until the loop's
 * state converges (Linux 6.7+ does that for bpf_loop callbacks; the
 * hypercall program took 487k instructions and 2 s to verify). A global
 * function's pointer argument must point to plain data, so the loop
 * contexts hold no pointer there: PV_CTX_ENV is the field that carries the
 * tables (none in BPF, where PV_STEP_ENV builds them from the program's
 * globals) and the steps find slots by index. The default (userspace, the
 * LSM gate, which has no frame to spare) keeps every step inline.
 */
#ifndef PV_STEP
#define PV_STEP			static PV_INLINE
#define PV_CTX_ENV		struct pv_env *env;
#define PV_CTX_SET_ENV(e)	.env = (e),
#define PV_CTX_PUT_ENV(c, e)	((c)->env = (e))
#define PV_STEP_ENV(c)		struct pv_env *env = (c)->env
#endif

/* verdicts of a check */
enum pv_verdict {
	PV_ALLOW		= 0,
	PV_DENY_UNMAPPED	= 1,	/* some byte is not mapped at all */
	PV_DENY_PERM		= 2,	/* mapped, but not for this direction */
	PV_DENY_WRAP		= 3,	/* addr + len wraps, or too long */
	PV_DENY_BUSY		= 4,	/* index kept changing: fail closed */
	PV_DENY_FAILED		= 5,	/* the domain or device failed closed */
	PV_DENY_INFLIGHT	= 6,	/* revoked while QEMU held it mapped
					 * (address_space_map): reported, and
					 * only kill mode can stop it */
	PV_DENY_IOMMU		= 7,	/* an assigned device's host IOMMU could
					 * not follow: a MAP refused (denied), or
					 * an UNMAP's page kept (allowed) */
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

/* keyed with the load's secret (pviommu_ctl.hash_key, in e->key) */
static PV_INLINE __u32 pv_hash(struct pv_env *e, __u32 kind, __u32 dom,
			       __u32 bdf, __u64 pfn)
{
	return (__u32)pv_mix64((pfn * 0x9e3779b97f4a7c15ULL ^
				((__u64)dom << 32 | bdf) ^
				((__u64)kind << 62)) + e->key);
}

/* where a key's probe chain starts: its hash scaled to the table (any size) */
static PV_INLINE __u32 pv_home(struct pv_env *e, __u32 h)
{
	return (__u32)(((__u64)h * e->slots) >> 32);
}

static PV_INLINE __u32 pv_key_home(struct pv_env *e, __u32 kind, __u32 dom,
				   __u32 bdf, __u64 pfn)
{
	return pv_home(e, pv_hash(e, kind, dom, bdf, pfn));
}

/*
 * Chains never wrap: one that starts in the last slots runs on into the
 * tail after them (PVIOMMU_INDEX_TAIL), so a probe's slot is home + i,
 * which the BPF verifier follows as cheaply as a masked index.
 */
/* the positions entries may take: the hash slots and the tail */
static PV_INLINE __u32 pv_positions(struct pv_env *e)
{
	return e->slots + PVIOMMU_INDEX_TAIL;
}

/* the header after the tail: its seq counts the moves (pviommu.h) */
static PV_INLINE struct pviommu_slot *pv_hdr(struct pv_env *e)
{
	return pv_slot_at(e, e->slots + PVIOMMU_INDEX_TAIL);
}

/* PAGE, SUBX and RECORD entries move; DOMAIN and DEVICE ones never do */
static PV_INLINE int pv_kind_moves(__u32 kind)
{
	return kind == PVIOMMU_SLOT_PAGE || kind == PVIOMMU_SLOT_SUBX ||
	       kind == PVIOMMU_SLOT_RECORD;
}

static PV_INLINE int pv_key_eq(const struct pviommu_slot *s, __u32 kind,
			       __u32 dom, __u32 bdf, __u64 pfn)
{
	return s->kind == kind && s->domain == dom && s->bdf == bdf &&
	       s->pfn == pfn;
}

/* ---- writer side (serialized) ---------------------------------------- */

/*
 * A slot's seqcount, bumped by the one writer (under the writer lock) around
 * each change. On x86 (PV_WRITE_TSO, the includer's) stores are seen in
 * program order and loads are not reordered with loads: a plain store of
 * the count, kept in place by compiler barriers, is enough for the
 * lock-free readers, and costs no locked instruction (about half of a
 * map + unmap's BPF time). Elsewhere an atomic add orders it.
 */
static PV_INLINE void pv_write_begin(struct pviommu_slot *s)
{
#ifdef PV_WRITE_TSO
	*(volatile __u32 *)&s->seq = s->seq + 1;
	pv_barrier();
#else
	__sync_fetch_and_add(&s->seq, 1);
#endif
}

static PV_INLINE void pv_write_end(struct pviommu_slot *s)
{
#ifdef PV_WRITE_TSO
	pv_barrier();
	*(volatile __u32 *)&s->seq = s->seq + 1;
#else
	__sync_fetch_and_add(&s->seq, 1);
#endif
}

/*
 * Moves (pviommu.h): the header's seq is odd while writers move entries and
 * grows by 2 with each series of moves. Readers that miss a key, or walked
 * a chain of extension slots, check it did not change meanwhile; writers
 * check it to know whether a slot they hold may have moved.
 */
static PV_INLINE void pv_moves_begin(struct pv_env *e)
{
	struct pviommu_slot *h = pv_hdr(e);

	if (h)
		pv_write_begin(h);
}

static PV_INLINE void pv_moves_end(struct pv_env *e)
{
	struct pviommu_slot *h = pv_hdr(e);

	if (h)
		pv_write_end(h);
}

static PV_INLINE __u32 pv_moves(struct pv_env *e)
{
	struct pviommu_slot *h = pv_hdr(e);

	return h ? PV_READ_ONCE(h->seq) : 0;
}

/*
 * readers: the moves count once no series of moves is under way, waiting
 * for one to end (a series moves a chain's entries by one slot each: well
 * under a microsecond); odd when it did not end within PV_MOVE_SPINS reads
 */
#ifndef PV_MOVE_SPINS
#define PV_MOVE_SPINS	128
#endif
static PV_INLINE __u32 pv_moves_settled(struct pv_env *e)
{
	struct pviommu_slot *h = pv_hdr(e);
	__u32 m = 0, k;

	if (!h)
		return 0;
	m = PV_READ_ONCE(h->seq);
	/* while odd: 8 reads a step, a long wait in few steps for the verifier */
	for (k = 0; k < PV_MOVE_SPINS && (m & 1); k++) {
		(void)PV_READ_ONCE(h->seq);
		(void)PV_READ_ONCE(h->seq);
		(void)PV_READ_ONCE(h->seq);
		(void)PV_READ_ONCE(h->seq);
		(void)PV_READ_ONCE(h->seq);
		(void)PV_READ_ONCE(h->seq);
		(void)PV_READ_ONCE(h->seq);
		m = PV_READ_ONCE(h->seq);
	}
	return m;
}

/*
 * v, its value hidden from the BPF verifier's range tracking (salt: a value
 * it does not know, read from a map): the code after a loop that ends on
 * any of its steps is then checked once, not once per step it may end on.
 * Costs two instructions.
 */
static PV_INLINE __u32 pv_opaque(__u32 v, __u32 salt)
{
	v ^= salt;
	__asm__ __volatile__("" : "+r"(v));
	return v ^ salt;
}

/* writers: slot dst := the entry of slot src (dst keeps its own seq) */
static PV_INLINE void pv_slot_move(struct pviommu_slot *dst,
				   const struct pviommu_slot *src)
{
	pv_write_begin(dst);
	dst->domain = src->domain;
	dst->bdf = src->bdf;
	dst->nsub = src->nsub;
	dst->pfn = src->pfn;
	dst->cnt_r = src->cnt_r;
	dst->cnt_w = src->cnt_w;
	dst->rec = src->rec;
	dst->kind = src->kind;
	pv_write_end(dst);
}

/*
 * How far past a Robin Hood insertion point the free slot that entries
 * move up to may be: a run of occupied slots, which chains share, can be
 * longer than any one chain (runs of 150 in a table of 4096 slots 68%
 * full, while no entry was more than 10 slots from its home)
 */
#define PV_MAX_SHIFT	256u

/*
 * Find the slot of a key; with 'insert', claim a slot for it when it is
 * absent. Its index, -1 when absent (or no slot within PVIOMMU_MAX_PROBE of
 * its home could take it: the table is full for this key); pv_slot_lookup()
 * gives the slot itself (NULL when absent).
 *
 * Linear probing in Robin Hood order: a new PAGE, SUBX or RECORD entry
 * takes the first free slot of its chain or, before that, the place of the
 * first entry nearer its own home than the new one is (the insertion point
 * at); the entries from there to the next free slot move one slot on, last
 * first, so that a reader walking forward meets each entry at its old or
 * its new place. The shift is not made when a DOMAIN or DEVICE entry is in
 * the way (those never move: pv_mark_failed reaches them without the
 * writer lock), when an entry would end PVIOMMU_MAX_PROBE or more slots
 * from its home, or when the free slot is further than PV_MAX_SHIFT: the
 * key then takes the first free slot of its chain, as a DOMAIN or DEVICE
 * entry always does.
 *
 * No call and no state carried from step to step in any loop: the
 * hypercall programs' call chains are at 6.1's 512 bytes, and the BPF
 * verifier checks each loop once (pv_opaque between them).
 */
static PV_INLINE long pv_slot_claim_inl(struct pv_env *e, __u32 kind,
					__u32 dom, __u32 bdf, __u64 pfn,
					int insert)
{
	__u32 home = pv_key_home(e, kind, dom, bdf, pfn), i, at, to, salt = 0;
	struct pviommu_slot *s = pv_slot_at(e, home), *src;
	int shift = 0;

	/* the common cases at once: the key at its home, or its home free */
	if (!s)
		return -1;
	if (pv_key_eq(s, kind, dom, bdf, pfn))
		return home;
	if (s->kind == PVIOMMU_SLOT_EMPTY) {
		if (!insert)
			return -1;
		at = home;
		goto put;
	}
	/* is the key there? */
	for (i = 0; i < PVIOMMU_MAX_PROBE; i++) {
		s = pv_slot_at(e, home + i);
		if (!s || s->kind == PVIOMMU_SLOT_EMPTY)
			break;
		if (pv_key_eq(s, kind, dom, bdf, pfn))
			return home + i;
	}
	if (!insert)
		return -1;
	/* the chain's first free slot, or the Robin Hood point before it */
	for (i = 0; i < PVIOMMU_MAX_PROBE; i++) {
		s = pv_slot_at(e, home + i);
		if (!s || s->kind == PVIOMMU_SLOT_EMPTY ||
		    s->kind == PVIOMMU_SLOT_TOMB)
			break;
		if (pv_kind_moves(kind) && pv_kind_moves(s->kind) &&
		    pv_key_home(e, s->kind, s->domain, s->bdf, s->pfn) > home) {
			shift = 1;
			break;
		}
	}
	if (i == PVIOMMU_MAX_PROBE || !s)
		return -1;
	at = home + i;
	to = at;
	if (shift) {
		salt = pv_moves(e);
		at = pv_opaque(at, salt);
		/* the free slot after it, if every entry from it on may move up */
		for (i = 0; i < PV_MAX_SHIFT; i++) {
			s = pv_slot_at(e, at + i);
			if (!s || s->kind == PVIOMMU_SLOT_EMPTY ||
			    s->kind == PVIOMMU_SLOT_TOMB)
				break;
			/*
			 * each entry moves to the next slot a DOMAIN or DEVICE
			 * entry does not hold: two on at most, so two of those
			 * in a row stop the shift
			 */
			if (pv_kind_moves(s->kind) ?
			    at + i + 2 - pv_key_home(e, s->kind, s->domain, s->bdf,
						     s->pfn) >= PVIOMMU_MAX_PROBE :
			    (src = pv_slot_at(e, at + i + 1)) && src->kind != PVIOMMU_SLOT_EMPTY &&
			    src->kind != PVIOMMU_SLOT_TOMB && !pv_kind_moves(src->kind))
				break;
		}
		to = pv_opaque(at + i, salt);
		s = pv_slot_at(e, to);
		if (!s || (s->kind != PVIOMMU_SLOT_EMPTY &&
			   s->kind != PVIOMMU_SLOT_TOMB)) {
			/* no shift: the chain's first free slot */
			shift = 0;
			for (i = 0; i < PVIOMMU_MAX_PROBE; i++) {
				s = pv_slot_at(e, home + i);
				if (!s || s->kind == PVIOMMU_SLOT_EMPTY ||
				    s->kind == PVIOMMU_SLOT_TOMB)
					break;
			}
			if (i == PVIOMMU_MAX_PROBE || !s)
				return -1;
			at = pv_opaque(home + i, salt);
		}
	}
	if (shift) {
		/* last first, each into the next slot a DOMAIN or DEVICE entry leaves */
		__u32 dst = to;

		pv_moves_begin(e);
		for (i = 1; i < PV_MAX_SHIFT; i++) {
			if (to - i < at)
				break;
			src = pv_slot_at(e, to - i);
			s = pv_slot_at(e, dst);
			if (!src || !s || !pv_kind_moves(src->kind))
				continue;
			pv_slot_move(s, src);
			dst = pv_opaque(to - i, salt);
		}
	}
put:
	s = pv_slot_at(e, at);
	if (s) {
		pv_write_begin(s);
		s->domain = dom;
		s->bdf = bdf;
		s->pfn = pfn;
		s->cnt_r = 0;
		s->cnt_w = 0;
		s->nsub = 0;
		for (i = 0; i < PVIOMMU_SUB_SLOTS; i++)
			s->sub[i] = 0;
		s->kind = kind;
		pv_write_end(s);
	}
	if (shift)
		pv_moves_end(e);
	return s ? (long)at : -1;
}

#ifndef pv_slot_claim
#define pv_slot_claim	pv_slot_claim_inl
#endif

static PV_INLINE struct pviommu_slot *
pv_slot_lookup(struct pv_env *e, __u32 kind, __u32 dom, __u32 bdf, __u64 pfn,
	       int insert)
{
	long idx = pv_slot_claim(e, kind, dom, bdf, pfn, insert);

	return idx < 0 ? 0 : pv_slot_at(e, (__u32)idx);
}

static PV_INLINE int pv_slot_unused(const struct pviommu_slot *s)
{
	return s->kind == PVIOMMU_SLOT_PAGE && !s->cnt_r && !s->cnt_w &&
	       !s->nsub && !s->rec.refs;
}

/* does slot s (a consistent copy, or a writer's) hold a record? */
static PV_INLINE int pv_slot_has_rec(const struct pviommu_slot *s)
{
	return (s->kind == PVIOMMU_SLOT_RECORD ||
		(s->kind == PVIOMMU_SLOT_PAGE && !s->nsub)) && s->rec.refs;
}

/* the iova of the record in slot s (pv_slot_has_rec) */
static PV_INLINE __u64 pv_slot_rec_iova(const struct pviommu_slot *s)
{
	return s->kind == PVIOMMU_SLOT_RECORD ? s->pfn :
	       s->pfn << PVIOMMU_PAGE_SHIFT;
}

static PV_INLINE void pv_rec_clear(struct pviommu_rec *r)
{
	r->size = 0;
	r->cookie = 0;
	r->generation = 0;
	r->refs = 0;
	r->perm = 0;
	r->lane = 0;
	r->pad = 0;
}

/* writers: slot s's record := *r, or none (r NULL), as one change of s */
static PV_INLINE void pv_rec_write(struct pviommu_slot *s,
				   const struct pviommu_rec *r)
{
	pv_write_begin(s);
	if (r)
		s->rec = *r;
	else
		pv_rec_clear(&s->rec);
	pv_write_end(s);
}

/*
 * Free slot idx. Entries further on whose chain runs through the hole move
 * back into it, one after the other, the hole going on with them; what is
 * left is EMPTY, or a tombstone when a DOMAIN or DEVICE entry's chain runs
 * through it (those never move: the scan stops there). A walk meets each
 * moved entry at its old or its new place but may pass it: readers that
 * miss check the moves count (pv_slot_get). So deleting leaves no
 * tombstones behind, however long a guest maps and unmaps. One loop, no
 * state carried but the hole (hidden from the verifier: pv_opaque).
 */
static PV_INLINE int pv_slot_free_inl(struct pv_env *e, __u32 idx)
{
	struct pviommu_slot *x, *hole, *n = pv_slot_at(e, idx + 1);
	__u32 hidx = idx, q, j, salt;
	int tomb = 1, scan = !n || n->kind != PVIOMMU_SLOT_EMPTY;

	if (!scan) {
		tomb = 0;	/* the end of its chain (the common case) */
	} else {
		salt = pv_moves(e);
		pv_moves_begin(e);
		for (j = 1; j < 2 * PVIOMMU_MAX_PROBE; j++) {
			q = idx + j;
			/* this far from the hole an entry cannot have its home before it */
			if (q - hidx >= PVIOMMU_MAX_PROBE) {
				tomb = 0;
				break;
			}
			x = pv_slot_at(e, q);
			if (!x)
				break;
			if (x->kind == PVIOMMU_SLOT_EMPTY) {
				tomb = 0;
				break;
			}
			if (x->kind == PVIOMMU_SLOT_TOMB ||
			    pv_key_home(e, x->kind, x->domain, x->bdf,
					x->pfn) > hidx)
				continue;	/* its chain starts after the hole */
			if (!pv_kind_moves(x->kind))
				break;	/* a DOMAIN or DEVICE entry's chain: a tombstone */
			hole = pv_slot_at(e, hidx);
			if (!hole)
				break;
			pv_slot_move(hole, x);
			hidx = pv_opaque(q, salt);
		}
	}
	hole = pv_slot_at(e, hidx);
	if (hole) {
		pv_write_begin(hole);
		hole->kind = tomb ? PVIOMMU_SLOT_TOMB : PVIOMMU_SLOT_EMPTY;
		hole->domain = 0;
		hole->bdf = 0;
		hole->pfn = 0;
		pv_write_end(hole);
	}
	if (scan)
		pv_moves_end(e);
	return hole ? 0 : -1;
}

/* the includer may route it through a function of its own (BPF: a global one) */
#ifndef pv_slot_free_idx
#define pv_slot_free_idx	pv_slot_free_inl
#endif
#define pv_slot_free(e, idx)	pv_slot_free_idx((e), (idx))

static PV_INLINE __u32 pv_slot_index(struct pv_env *e, struct pviommu_slot *s,
				     __u32 kind, __u32 dom, __u32 bdf,
				     __u64 pfn)
{
	__u32 home = pv_key_home(e, kind, dom, bdf, pfn), i;

	for (i = 0; i < PVIOMMU_MAX_PROBE; i++)
		if (pv_slot_at(e, home + i) == s)
			return home + i;
	return home;
}

/* ---- records (pviommu.h, struct pviommu_rec) ----------------------------- */

/*
 * Writers: the index of the slot holding the record of (dom, bdf, iova),
 * -1 when there is none. A page-aligned record is in its first page's slot
 * or, when it had no room there, in a RECORD slot; that page's slot exists
 * while the record lives (its first piece is on it), so no page slot means
 * no record. With fresh (a MAP): a page-aligned iova's page slot, when
 * absent, is claimed on the way (-1: no record), its index + 1 in *fresh
 * (0: none claimed), so that the MAP walks the page's chain only once.
 */
static PV_INLINE long pv_rec_idx(struct pv_env *e, __u32 dom, __u32 bdf,
				 __u64 iova, long *fresh)
{
	struct pviommu_slot *s;
	long idx;

	if (!(iova & PV_PAGE_MASK)) {
		idx = pv_slot_claim(e, PVIOMMU_SLOT_PAGE, dom, bdf,
				    iova >> PVIOMMU_PAGE_SHIFT, fresh != 0);
		if (idx < 0)
			return -1;
		s = pv_slot_at(e, (__u32)idx);
		if (!s)
			return -1;
		if (pv_slot_has_rec(s))
			return idx;
		if (fresh && pv_slot_unused(s)) {
			*fresh = idx + 1;
			return -1;
		}
	}
	return pv_slot_claim(e, PVIOMMU_SLOT_RECORD, dom, bdf, iova, 0);
}

/* a RECORD slot for (dom, bdf, iova) holding *r: 0, or -ENOSPC */
static PV_INLINE int pv_rec_own_slot(struct pv_env *e, __u32 dom, __u32 bdf,
				     __u64 iova, const struct pviommu_rec *r)
{
	struct pviommu_slot *x = pv_slot_lookup(e, PVIOMMU_SLOT_RECORD, dom,
						bdf, iova, 1);

	if (!x)
		return -PV_ENOSPC;
	pv_rec_write(x, r);
	return 0;
}

/*
 * The slot of page pfn, which holds a record, needs sub[] for a piece: the
 * record moves to a RECORD slot of its own first. The RECORD slot's
 * insertion may move the page's entry, so the page is found again and its
 * record copied slot to slot (no copy on the stack, whose every byte the
 * hypercall programs need). Returns the index of the page's slot, now
 * without a record; -ENOSPC when there was no room for the RECORD slot
 * (nothing moved), -EUCLEAN when the page's slot is gone (the index is
 * inconsistent).
 */
static PV_INLINE long pv_rec_evict(struct pv_env *e, __u32 dom, __u32 bdf, __u64 pfn)
{
	struct pviommu_slot *x, *s;
	long idx;

	x = pv_slot_lookup(e, PVIOMMU_SLOT_RECORD, dom, bdf,
			   pfn << PVIOMMU_PAGE_SHIFT, 1);
	if (!x)
		return -PV_ENOSPC;
	idx = pv_slot_claim(e, PVIOMMU_SLOT_PAGE, dom, bdf, pfn, 0);
	s = idx < 0 ? 0 : pv_slot_at(e, (__u32)idx);
	if (!s)
		return -PV_EUCLEAN;
	pv_rec_write(x, &s->rec);
	pv_rec_write(s, 0);
	return idx;
}

/* ---- a page's sub-page pieces: a dense chain of slots (pviommu.h) ------ */

/*
 * sub[] index of piece j: the mask stays in the code (an older verifier,
 * 6.1, loses the bound the compiler relies on when it drops the mask)
 */
static PV_INLINE __u32 pv_sub_idx(__u32 j)
{
	__asm__ __volatile__("" : "+r"(j));
	return j & (PVIOMMU_SUB_SLOTS - 1);
}


static PV_INLINE __u64 pv_subx_pfn(__u64 pfn, __u32 k)
{
	return pfn | (__u64)k << PVIOMMU_SUBX_SHIFT;
}

/*
 * Index of the slot of a key, or -1 when absent: keys compared in place,
 * no consistency check (for writers, and for readers that validate what
 * they read afterwards: pv_slot_get). Inline: the loop carries nothing but
 * its counter, which the BPF verifier follows cheaply, and a call per step
 * would put two more frames under the readers (6.1: 512 bytes in all).
 */
static PV_INLINE long pv_slot_find_inl(struct pv_env *e, __u32 kind,
				       __u32 dom, __u32 bdf, __u64 pfn)
{
	__u32 home = pv_key_home(e, kind, dom, bdf, pfn), i;
	struct pviommu_slot *s;

	for (i = 0; i < PVIOMMU_MAX_PROBE; i++) {
		s = pv_slot_at(e, home + i);
		if (!s || PV_READ_ONCE(s->kind) == PVIOMMU_SLOT_EMPTY)
			return -1;
		if (PV_READ_ONCE(s->kind) == kind && PV_READ_ONCE(s->pfn) == pfn &&
		    PV_READ_ONCE(s->domain) == dom && PV_READ_ONCE(s->bdf) == bdf)
			return home + i;
	}
	return -1;
}

#ifndef pv_slot_find
#define pv_slot_find	pv_slot_find_inl
#endif

/* chain slot k of page pfn (k = 0: the page slot s itself); NULL: none */
static PV_INLINE struct pviommu_slot *
pv_chain_at(struct pv_env *e, struct pviommu_slot *s, __u32 dom, __u32 bdf,
	    __u64 pfn, __u32 k, int insert)
{
	if (!k)
		return s;
	return pv_slot_lookup(e, PVIOMMU_SLOT_SUBX, dom, bdf,
			      pv_subx_pfn(pfn, k), insert);
}

struct pv_find_ctx {
	PV_CTX_ENV
	__u64		pfn;
	__u32		pidx;	/* the page slot's index */
	__u32		dom;
	__u32		bdf;
	__u32		want;
	__u32		k;	/* chain slot in xidx (0: the page slot) */
	__u32		xidx;
	__u32		found;	/* piece index + 1, 0: not found */
};

/*
 * One piece per step. The extension slot is found inline, not through the
 * includer's pv_slot_find: one more BPF frame does not fit under the
 * hypercall program (6.1 allows 512 bytes for all).
 */
PV_STEP long pv_find_step(__u32 j, struct pv_find_ctx *c)
{
	PV_STEP_ENV(c);
	struct pviommu_slot *x;
	__u32 k;
	long idx;

	if (!c)
		return 1;
	k = j / PVIOMMU_SUB_SLOTS;
	if (k && k != c->k) {
		idx = pv_slot_find_inl(env, PVIOMMU_SLOT_SUBX, c->dom, c->bdf,
				       pv_subx_pfn(c->pfn, k));
		if (idx < 0)
			return 1;
		c->k = k;
		c->xidx = (__u32)idx;
	}
	x = pv_slot_at(env, k ? c->xidx : c->pidx);
	if (!x)
		return 1;
	if (x->sub[pv_sub_idx(j)] != c->want)
		return 0;
	c->found = j + 1;
	return 1;
}

static long pv_find_cb(__u32 j, void *data)
{
	return pv_find_step(j, (struct pv_find_ctx *)data) ? 1 : 0;
}

/* add one piece [first, last] with perm to page slot s (page pfn) */
static PV_INLINE int pv_piece_add(struct pv_env *e, struct pviommu_slot *s,
				  __u32 dom, __u32 bdf, __u64 pfn,
				  __u32 first, __u32 last, __u32 perm)
{
	struct pviommu_slot *x;
	__u32 n = s->nsub;

	if (first == 0 && last == PV_PAGE_MASK) {
		pv_write_begin(s);
		if (perm & PVIOMMU_PERM_READ)
			s->cnt_r++;
		if (perm & PVIOMMU_PERM_WRITE)
			s->cnt_w++;
		pv_write_end(s);
		return 0;
	}
	if (n >= PVIOMMU_MAX_PIECES)
		return -PV_ENOSPC;
	if (pv_slot_has_rec(s)) {
		long i = pv_rec_evict(e, dom, bdf, pfn);

		if (i < 0)
			return (int)i;
		s = pv_slot_at(e, (__u32)i);
		if (!s)
			return -PV_EUCLEAN;
	}
	x = pv_chain_at(e, s, dom, bdf, pfn, n / PVIOMMU_SUB_SLOTS, 1);
	if (!x)
		return -PV_ENOSPC;
	/* a new extension slot may have moved the page's entry */
	if (x != s)
		s = pv_slot_lookup(e, PVIOMMU_SLOT_PAGE, dom, bdf, pfn, 0);
	if (!s)
		return -PV_EUCLEAN;
	/* the entry first, then the count that publishes it */
	pv_write_begin(s);
	x->sub[pv_sub_idx(n)] = PVIOMMU_SUB(first, last, perm);
	s->nsub = (__u16)(n + 1);
	pv_write_end(s);
	return 0;
}

/* remove one piece previously added with the same arguments (s: slot sidx) */
static PV_INLINE int pv_piece_del(struct pv_env *e, struct pviommu_slot *s,
				  __u32 sidx, __u32 dom, __u32 bdf, __u64 pfn,
				  __u32 first, __u32 last, __u32 perm)
{
	struct pv_find_ctx f = {
		PV_CTX_SET_ENV(e) .pfn = pfn, .pidx = sidx, .dom = dom,
		.bdf = bdf, .want = PVIOMMU_SUB(first, last, perm),
	};
	struct pviommu_slot *xj, *xl;
	__u32 n = s->nsub, j, l;

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
	if (!n || n > PVIOMMU_MAX_PIECES)
		return -PV_EUCLEAN;
	pv_loop(n, pv_find_cb, &f);
	if (!f.found)
		return -PV_EUCLEAN;
	j = f.found - 1;
	l = n - 1;
	xj = pv_chain_at(e, s, dom, bdf, pfn, j / PVIOMMU_SUB_SLOTS, 0);
	xl = pv_chain_at(e, s, dom, bdf, pfn, l / PVIOMMU_SUB_SLOTS, 0);
	if (!xj || !xl)
		return -PV_EUCLEAN;
	/* the last piece fills the hole: the chain stays dense */
	pv_write_begin(s);
	xj->sub[pv_sub_idx(j)] = xl->sub[pv_sub_idx(l)];
	xl->sub[pv_sub_idx(l)] = 0;
	s->nsub = (__u16)l;
	pv_write_end(s);
	/* an extension slot left empty goes */
	if (l && !(l % PVIOMMU_SUB_SLOTS) && xl != s)
		pv_slot_free(e, pv_slot_index(e, xl, PVIOMMU_SLOT_SUBX,
				dom, bdf, pv_subx_pfn(pfn, l / PVIOMMU_SUB_SLOTS)));
	return 0;
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
#ifdef PV_WRITE_TSO
	{
		/*
		 * the word's one writer (the writer lock): one plain store,
		 * seen in order with the slot's (pv_write_begin)
		 */
		__u64 old = *w, val = (old & ~(3ull << sh)) | (__u64)(bits & 3) << sh;

		if (val != old)
			*(volatile __u64 *)w = val;
	}
#else
	/* a reader between the two sees the bits clear: it asks the index */
	__sync_fetch_and_and(w, ~(3ull << sh));
	__sync_fetch_and_or(w, (__u64)(bits & 3) << sh);
#endif
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
	PV_CTX_ENV
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

PV_STEP long pv_pieces_step(__u32 i, struct pv_pieces_ctx *c)
{
	PV_STEP_ENV(c);
	struct pviommu_slot *s = 0;
	__u32 first, last, moves;
	__u64 pfn;
	long idx;
	int err;

	if (!c)
		return 1;
	pv_piece_of(c->iova, c->size, c->from + i, &pfn, &first, &last);
	idx = pv_slot_claim(env, PVIOMMU_SLOT_PAGE, c->dom, c->bdf, pfn,
			    !c->del);
	if (idx >= 0)
		s = pv_slot_at(env, (__u32)idx);
	if (!s) {
		/* a delete goes on with the other pages; an add stops */
		c->err = c->del ? -PV_EUCLEAN : -PV_ENOSPC;
		return !c->del;
	}
	moves = pv_moves(env);
	err = c->del ? pv_piece_del(env, s, (__u32)idx, c->dom, c->bdf, pfn,
				    first, last, c->perm) :
		       pv_piece_add(env, s, c->dom, c->bdf, pfn, first, last,
				    c->perm);
	if (pv_moves(env) != moves) {
		/* an extension or record slot came or went: the page may have moved */
		s = 0;
		idx = pv_slot_find(env, PVIOMMU_SLOT_PAGE, c->dom, c->bdf, pfn);
		if (idx >= 0)
			s = pv_slot_at(env, (__u32)idx);
		if (!s) {
			c->err = -PV_EUCLEAN;
			return !c->del;
		}
	}
	pv_fast_sync(env, c->lane, pfn, s);
	if (pv_slot_unused(s))
		pv_slot_free(env, (__u32)idx);
	if (err) {
		c->err = err;
		return !c->del;
	}
	c->done++;
	return 0;
}

static long pv_pieces_cb(__u32 i, void *data)
{
	return pv_pieces_step(i, (struct pv_pieces_ctx *)data) ? 1 : 0;
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
		PV_CTX_SET_ENV(e) .iova = iova, .size = size, .dom = dom, .bdf = bdf,
		.lane = lane, .perm = perm, .from = from, .del = del,
	};

	if (!n)
		return 0;
	/* one page (most calls): its step directly, without a loop's call */
	if (n == 1)
		pv_pieces_step(0, &c);
	else
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
	if (d->quota.devices && d->nr_devices >= d->quota.devices) {
		d->refused++;
		return -PV_ENOSPC;
	}
	s = pv_slot_lookup(e, PVIOMMU_SLOT_DEVICE, dom, bdf, 0, 1);
	if (!s)
		return -PV_ENOSPC;
	lane = !d->quota.lanes || d->nr_lanes < d->quota.lanes ? pv_fast_alloc(e) : 0;
	if (lane) {
		pv_write_begin(s);
		s->cnt_r = lane;
		pv_write_end(s);
		d->nr_lanes++;
	}
	d->nr_devices++;
	d->generation++;
	return 0;
}

/*
 * Store new record *r of (dom, bdf, iova) after its pieces were added: in
 * its first page's slot when it starts that page, covers it and sub[] is
 * free there, else in a RECORD slot. 0, or -ENOSPC.
 */
static PV_INLINE int pv_rec_put(struct pv_env *e, __u32 dom, __u32 bdf,
				__u64 iova, const struct pviommu_rec *r)
{
	struct pviommu_slot *s;

	if (!(iova & PV_PAGE_MASK) && r->size >= PVIOMMU_PAGE_SIZE) {
		s = pv_slot_lookup(e, PVIOMMU_SLOT_PAGE, dom, bdf,
				   iova >> PVIOMMU_PAGE_SHIFT, 0);
		if (s && !s->nsub && !s->rec.refs) {
			pv_rec_write(s, r);
			return 0;
		}
	}
	return pv_rec_own_slot(e, dom, bdf, iova, r);
}

/* MAP, as documented in pviommu.h */
static PV_INLINE int pv_op_map(struct pv_env *e, struct pviommu_domain *d,
			       __u32 dom, __u32 bdf, __u64 iova, __u64 size,
			       __u32 perm, __u64 cookie)
{
	struct pviommu_rec r = {};
	struct pviommu_slot *s;
	long idx, fresh = 0;
	int err, lane;
	__u64 np;

	err = pv_range_ok(iova, size);
	if (err)
		return err;
	if (!perm || (perm & ~PVIOMMU_PERM_RW))
		return -PV_EINVAL;
	lane = pv_device_lane(e, dom, bdf);
	if (lane < 0)
		return -PV_ENODEV;

	/* the same mapping again: one more reference */
	idx = pv_rec_idx(e, dom, bdf, iova, &fresh);
	s = idx < 0 ? 0 : pv_slot_at(e, (__u32)idx);
	if (s) {
		if (s->rec.size != size || s->rec.perm != perm)
			return -PV_EEXIST;
		if (s->rec.refs == ~0u)
			return -PV_EOVERFLOW;
		pv_write_begin(s);
		s->rec.refs++;
		s->rec.generation = ++d->generation;
		pv_write_end(s);
		return 0;
	}

	np = pv_npages(iova, size);
	if ((d->quota.records && d->nr_records >= d->quota.records) ||
	    (d->quota.pages && d->nr_pages + np > d->quota.pages)) {
		/* this VM's own quota: other VMs keep their room */
		d->refused++;
		if (fresh)	/* the page slot claimed above */
			pv_slot_free(e, (__u32)(fresh - 1));
		return -PV_ENOSPC;
	}
	r.size = size;
	r.cookie = cookie;
	r.generation = d->generation + 1;
	r.refs = 1;
	r.perm = (__u8)perm;
	r.lane = (__u8)lane;
	s = fresh ? pv_slot_at(e, (__u32)(fresh - 1)) : 0;
	if (s && size == PVIOMMU_PAGE_SIZE) {
		/* one whole new page: its piece and its record in one change */
		pv_write_begin(s);
		s->cnt_r = !!(perm & PVIOMMU_PERM_READ);
		s->cnt_w = !!(perm & PVIOMMU_PERM_WRITE);
		s->rec = r;
		pv_write_end(s);
		pv_fast_sync(e, (__u32)lane, iova >> PVIOMMU_PAGE_SHIFT, s);
		goto mapped;
	}
	err = pv_pieces(e, dom, bdf, (__u32)lane, iova, size, perm, 0, (__u32)np, 0);
	if (err)
		return err;
	if (pv_rec_put(e, dom, bdf, iova, &r)) {
		pv_pieces(e, dom, bdf, (__u32)lane, iova, size, perm, 0, (__u32)np, 1);
		return -PV_ENOSPC;
	}
mapped:
	d->nr_records++;
	d->nr_pages += np;
	d->mapped_bytes += size;
	d->generation++;
	return 0;
}

/* UNMAP, as documented in pviommu.h: revokes exactly what one MAP granted */
static PV_INLINE int pv_op_unmap(struct pv_env *e, struct pviommu_domain *d,
				 __u32 dom, __u32 bdf, __u64 iova, __u64 size,
				 __u32 perm)
{
	struct pviommu_slot *s;
	__u32 lane;
	long idx;
	int err;

	err = pv_range_ok(iova, size);
	if (err)
		return err;
	idx = pv_rec_idx(e, dom, bdf, iova, 0);
	s = idx < 0 ? 0 : pv_slot_at(e, (__u32)idx);
	if (!s)
		return -PV_ENOENT;
	if (size != s->rec.size || (perm && perm != s->rec.perm))
		return -PV_ERANGE;
	if (s->rec.refs > 1) {
		pv_write_begin(s);
		s->rec.refs--;
		s->rec.generation = ++d->generation;
		pv_write_end(s);
		return 0;
	}
	perm = s->rec.perm;
	lane = s->rec.lane;	/* the device's, for its whole life */
	if (s->kind == PVIOMMU_SLOT_PAGE && size == PVIOMMU_PAGE_SIZE) {
		/*
		 * a one-page record on its page's slot: its one piece is the
		 * whole page, counted here. Record and piece go in one change.
		 */
		err = ((perm & PVIOMMU_PERM_READ) && !s->cnt_r) ||
		      ((perm & PVIOMMU_PERM_WRITE) && !s->cnt_w) ? -PV_EUCLEAN : 0;
		pv_write_begin(s);
		pv_rec_clear(&s->rec);
		if (!err) {
			s->cnt_r -= !!(perm & PVIOMMU_PERM_READ);
			s->cnt_w -= !!(perm & PVIOMMU_PERM_WRITE);
		}
		pv_write_end(s);
		pv_fast_sync(e, lane, iova >> PVIOMMU_PAGE_SHIFT, s);
		if (pv_slot_unused(s))
			pv_slot_free(e, (__u32)idx);
		goto unmapped;
	}
	/* the record goes first: its page slot may go with the pieces */
	pv_rec_write(s, 0);
	if (s->kind == PVIOMMU_SLOT_RECORD)
		pv_slot_free(e, (__u32)idx);
	err = pv_pieces(e, dom, bdf, lane, iova, size, perm, 0,
			(__u32)pv_npages(iova, size), 1);
unmapped:
	d->nr_records--;
	d->nr_pages -= pv_npages(iova, size);
	d->mapped_bytes -= size;
	d->generation++;
	return err;
}

/* ---- purge: every slot of a domain, or of one device ------------------- */

/*
 * A purge walks the whole index (a domain's slots are spread by the keyed
 * hash), which takes milliseconds at the default size and grows with it.
 * Every PV_PURGE_CHUNK slots it calls PV_PURGE_YIELD(): the BPF side lets
 * the writer lock go and takes it again, so other VMs' writers wait for one
 * chunk at most, never for a whole index (the purging domain's own calls
 * wait on its domain lock meanwhile). Nonzero from it: the lock was lost,
 * the purge stops and returns -EBUSY without the lock (the caller fails
 * the domain closed). Its slots are tombstoned in place. Between chunks
 * other writers may move entries of the domain the walk has not reached
 * yet, back towards their home (never further than PVIOMMU_MAX_PROBE - 1
 * slots from it: chains do not wrap), possibly behind the walk. So after a
 * yield during which anything moved, the walk goes over the
 * PVIOMMU_MAX_PROBE slots behind it again: no entry of the domain is left
 * behind.
 */
#ifndef PV_PURGE_CHUNK
#define PV_PURGE_CHUNK	4096u	/* a power of two */
#endif
#ifndef PV_PURGE_YIELD
#define PV_PURGE_YIELD()	0	/* no lock (userspace): never yields */
#endif

/* what a purge dropped: the domain's counters go down by as much */
struct pv_purged {
	__u64	records;
	__u64	pages;
	__u64	bytes;
};

struct pv_purge_ctx {
	struct pv_env	*env;
	__u32		dom;
	__u32		bdf;
	__u32		all_devices;
	__u32		with_domain;	/* the DOMAIN slot too (QEMU gone) */
	__u32		freed;
	__u32		lost;		/* PV_PURGE_YIELD() lost the lock */
	__u32		moves;		/* pv_moves() when the lock was last taken */
	__u32		again;		/* the last yield after which entries had moved */
	__u64		lanes;	/* fast lanes of the purged devices (0-based) */
	struct pv_purged sum;	/* the records dropped */
};

/* slot i: tombstoned when it is the purge's */
static PV_INLINE void pv_purge_slot(struct pv_purge_ctx *c, __u32 i)
{
	struct pviommu_slot *s = pv_slot_at(c->env, i);

	if (!s || i >= pv_positions(c->env))
		return;
	if (s->domain != c->dom)
		return;
	if (s->kind == PVIOMMU_SLOT_DOMAIN) {
		if (!c->with_domain)
			return;
	} else if (s->kind != PVIOMMU_SLOT_PAGE &&
		   s->kind != PVIOMMU_SLOT_SUBX &&
		   s->kind != PVIOMMU_SLOT_RECORD &&
		   s->kind != PVIOMMU_SLOT_DEVICE) {
		return;
	} else if (!c->all_devices && s->bdf != c->bdf) {
		return;
	}
	if (pv_slot_has_rec(s)) {
		c->sum.records++;
		c->sum.pages += pv_npages(pv_slot_rec_iova(s), s->rec.size);
		c->sum.bytes += s->rec.size;
	}
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
	pv_rec_clear(&s->rec);
	pv_write_end(s);
	c->freed++;
}

/*
 * Slot i; after a yield at slot c->again during which entries moved, the
 * PVIOMMU_MAX_PROBE steps that follow also take the window behind it, one
 * slot each (no loop inside a loop: the hypercall programs' frames would
 * pass 512 bytes)
 */
static long pv_purge_cb(__u32 i, void *data)
{
	struct pv_purge_ctx *c = data;
	__u32 k;

	if (i && !(i & (PV_PURGE_CHUNK - 1))) {
		if (PV_PURGE_YIELD()) {
			c->lost = 1;
			return 1;
		}
		if (pv_moves(c->env) != c->moves) {
			c->moves = pv_moves(c->env);
			c->again = i;
		}
	}
	k = i - c->again;
	if (c->again && k < PVIOMMU_MAX_PROBE && k < c->again)
		pv_purge_slot(c, c->again - 1 - k);
	pv_purge_slot(c, i);
	return 0;
}

/* tombstones that end a chain become EMPTY again (one backward sweep) */
static long pv_sweep_cb(__u32 i, void *data)
{
	struct pv_purge_ctx *c = data;
	__u32 idx = pv_positions(c->env) - 1 - i;
	struct pviommu_slot *s = pv_slot_at(c->env, idx);
	struct pviommu_slot *n = pv_slot_at(c->env, idx + 1);	/* the header after the last */

	if (i && !(i & (PV_PURGE_CHUNK - 1)) && PV_PURGE_YIELD()) {
		c->lost = 1;
		return 1;
	}
	if (s && n && s->kind == PVIOMMU_SLOT_TOMB &&
	    n->kind == PVIOMMU_SLOT_EMPTY) {
		pv_write_begin(s);
		s->kind = PVIOMMU_SLOT_EMPTY;
		pv_write_end(s);
	}
	return 0;
}

/*
 * drop the index slots of (dom, bdf), or of all of dom's devices (and its
 * DOMAIN slot with with_domain), adding what records it dropped to *sum
 * (may be NULL). Returns the slots freed, or -EBUSY when a
 * yield lost the writer lock. Either way the lanes of the DEVICE slots it
 * tombstoned go back (an atomic and on the mask, no lock needed): no slot
 * names them any more, and whoever takes one zeroes it first.
 */
static PV_INLINE int pv_purge_index(struct pv_env *e, __u32 dom, __u32 bdf,
				    __u32 all_devices, __u32 with_domain,
				    struct pv_purged *sum)
{
	struct pv_purge_ctx c = {
		.env = e, .dom = dom, .bdf = bdf, .all_devices = all_devices,
		.with_domain = with_domain,
	};

	c.moves = pv_moves(e);
	pv_loop(pv_positions(e), pv_purge_cb, &c);
	if (!c.lost)
		pv_loop(pv_positions(e), pv_sweep_cb, &c);
	/* no DEVICE slot names those lanes any more: hand them back */
	pv_fast_release(e, c.lanes);
	if (sum) {
		sum->records += c.sum.records;
		sum->pages += c.sum.pages;
		sum->bytes += c.sum.bytes;
	}
	if (c.lost)
		return -PV_EBUSY;

	return (int)c.freed;
}

/* ---- the protection state machine (pviommu.h) --------------------------- */

/*
 * RESERVE (QEMU start, under the writer lock, after the caller purged
 * whatever a former process of this pid left): the domain gets its DOMAIN
 * slot in state RESERVED. -ENOSPC when the index has no room for it.
 */
static PV_INLINE int pv_op_reserve(struct pv_env *e, __u32 dom)
{
	struct pviommu_slot *s;

	s = pv_slot_lookup(e, PVIOMMU_SLOT_DOMAIN, dom, 0, 0, 1);
	if (!s)
		return -PV_ENOSPC;
	pv_write_begin(s);
	s->cnt_r = PVIOMMU_DS_RESERVED;
	s->cnt_w = PVIOMMU_FAIL_NONE;
	pv_write_end(s);
	return 0;
}

/*
 * REGISTER (under the lock, after the caller purged the domain's devices):
 * the guest starts from nothing; its DOMAIN slot (made here when the
 * domain was not reserved) says REGISTERED, with any earlier failure
 * cleared. UNREGISTER (on = 0): back to RESERVED.
 */
static PV_INLINE int pv_op_register(struct pv_env *e, __u32 dom, int on)
{
	struct pviommu_slot *s;

	s = pv_slot_lookup(e, PVIOMMU_SLOT_DOMAIN, dom, 0, 0, 1);
	if (!s)
		return -PV_ENOSPC;
	pv_write_begin(s);
	s->cnt_r = on ? PVIOMMU_DS_REGISTERED : PVIOMMU_DS_RESERVED;
	s->cnt_w = PVIOMMU_FAIL_NONE;
	pv_write_end(s);
	return 0;
}

/*
 * Fail closed without the writer lock (it may be what failed): one atomic
 * bit in the domain's (bdf == ~0u) or the device's slot. -ENOENT when
 * there is no such slot (then nothing of it is protected or granted).
 */
static PV_INLINE int pv_mark_failed(struct pv_env *e, __u32 dom, __u32 bdf,
				    __u32 why)
{
	int dev = bdf != ~0u;
	long idx = pv_slot_find(e, dev ? PVIOMMU_SLOT_DEVICE :
					 PVIOMMU_SLOT_DOMAIN, dom,
				dev ? bdf : 0, 0);
	struct pviommu_slot *s;

	if (idx < 0)
		return -PV_ENOENT;
	s = pv_slot_at(e, (__u32)idx);
	if (!s)
		return -PV_ENOENT;
	if (!why)
		why = PVIOMMU_FAIL_INDEX;
	__sync_val_compare_and_swap(&s->cnt_w, 0, why);
	if (!dev)
		__sync_fetch_and_or(&s->cnt_r, PVIOMMU_DS_FAILED);
	return 0;
}

/* ---- reader side (lock-free) ------------------------------------------- */

/* seqcount retries before a reader gives up (fail closed: PV_DENY_BUSY) */
#ifndef PV_READ_TRIES
#define PV_READ_TRIES	8
#endif

/*
 * Slot s copied consistently (seqcount) into *out: the whole slot with
 * 'full', else only its key and counts. 0, or -EBUSY when it kept changing.
 */
static PV_INLINE int pv_slot_copy(const struct pviommu_slot *s,
				  struct pviommu_slot *out, int full)
{
	__u32 try, seq;

	for (try = 0; try < PV_READ_TRIES; try++) {
		seq = PV_READ_ONCE(s->seq);
		if (seq & 1)
			continue;
		pv_barrier();
		if (full) {
			*out = *s;
		} else {
			out->kind = PV_READ_ONCE(s->kind);
			out->domain = PV_READ_ONCE(s->domain);
			out->bdf = PV_READ_ONCE(s->bdf);
			out->pfn = PV_READ_ONCE(s->pfn);
			out->cnt_r = PV_READ_ONCE(s->cnt_r);
			out->cnt_w = PV_READ_ONCE(s->cnt_w);
		}
		pv_barrier();
		if (PV_READ_ONCE(s->seq) == seq)
			return 0;
	}
	return -PV_EBUSY;
}

/* walks of a key's chain before a reader gives up (a slot or the index kept changing) */
#ifndef PV_CHAIN_TRIES
#define PV_CHAIN_TRIES	3
#endif

/*
 * The slot of a key, read consistently (seqcount): the whole slot into
 * *out with 'full', else only its key and counts (what the check needs of
 * DOMAIN and DEVICE slots, without copying 64 bytes); its index in *idx
 * when asked. 1 found, 0 absent, <0 busy. The walk compares keys in place;
 * the slot it stops at is then copied under its seqcount and must still
 * hold the key. A miss counts only when no entry moved during the walk
 * (pv_slot_free: a moving entry can pass a walker), else the walk goes
 * again: a PAGE or a DEVICE entry is never missed for a move.
 */
static PV_INLINE int pv_slot_get(struct pv_env *e, __u32 kind, __u32 dom,
				 __u32 bdf, __u64 pfn, struct pviommu_slot *out,
				 __u32 *idx, int full)
{
	__u32 try, m, home = pv_key_home(e, kind, dom, bdf, pfn);
	struct pviommu_slot *s = pv_slot_at(e, home);
	long at;

	/* most keys sit in their home slot: one consistent copy answers */
	if (s && !pv_slot_copy(s, out, full) && pv_key_eq(out, kind, dom, bdf, pfn)) {
		if (idx)
			*idx = home;
		return 1;
	}
	/*
	 * try 0 walks unchecked: a hit stands (a consistent copy of the key's
	 * entry wherever it was); a miss counts only if nothing moved during a
	 * walk, so the later tries take the moves count (settled) first
	 */
	for (try = 0; try <= PV_CHAIN_TRIES; try++) {
		m = try ? pv_moves_settled(e) : 1;
		pv_barrier();
		at = pv_slot_find_inl(e, kind, dom, bdf, pfn);
		if (at >= 0) {
			s = pv_slot_at(e, (__u32)at);
			if (s && !pv_slot_copy(s, out, full) &&
			    pv_key_eq(out, kind, dom, bdf, pfn)) {
				if (idx)
					*idx = (__u32)at;
				return 1;
			}
		} else {
			pv_barrier();
			if (!(m & 1) && pv_moves(e) == m)
				return 0;
		}
	}
	return -PV_EBUSY;
}

/* the includer may route calls through its own pv_slot_read (BPF: a
 * global function, verified once) */
static PV_INLINE int pv_slot_read_inl(struct pv_env *e, __u32 kind,
				      __u32 dom, __u32 bdf, __u64 pfn,
				      struct pviommu_slot *out, __u32 *idx)
{
	return pv_slot_get(e, kind, dom, bdf, pfn, out, idx, 1);
}

#ifndef pv_slot_read
#define pv_slot_read	pv_slot_read_inl
#endif

/* the record held in a consistent copy s of slot idx, as readers see it: 1, or 0 */
static PV_INLINE int pv_slot_rec_view(const struct pviommu_slot *s, __u32 idx,
				      struct pviommu_mapping *m)
{
	if (!pv_slot_has_rec(s))
		return 0;
	m->domain = s->domain;
	m->bdf = s->bdf;
	m->iova = pv_slot_rec_iova(s);
	m->size = s->rec.size;
	m->perm = s->rec.perm;
	m->refs = s->rec.refs;
	m->generation = s->rec.generation;
	m->cookie = s->rec.cookie;
	m->lane = s->rec.lane;
	m->slot = idx;
	return 1;
}

/*
 * Readers: the record of (dom, bdf, iova), read consistently into *m (the
 * slot copy in *tmp). 1 found, 0 none, <0 the index kept changing.
 */
static PV_INLINE int pv_rec_get(struct pv_env *e, __u32 dom, __u32 bdf,
				__u64 iova, struct pviommu_slot *tmp,
				struct pviommu_mapping *m)
{
	__u32 idx = 0;
	int r;

	if (!(iova & PV_PAGE_MASK)) {
		r = pv_slot_read(e, PVIOMMU_SLOT_PAGE, dom, bdf,
				 iova >> PVIOMMU_PAGE_SHIFT, tmp, &idx);
		if (r < 0)
			return r;
		if (r > 0 && pv_slot_rec_view(tmp, idx, m))
			return 1;
	}
	r = pv_slot_read(e, PVIOMMU_SLOT_RECORD, dom, bdf, iova, tmp, &idx);
	if (r <= 0)
		return r;
	return pv_slot_rec_view(tmp, idx, m);
}

/*
 * Are bytes [first, last] of page pfn (its slot copied in *s) covered for
 * perm bit p? A cursor walks from 'first' through the pieces that contain
 * it: passes over the whole chain of pieces until a pass moves it no more,
 * one piece per loop step so that the BPF verifier sees one small body.
 * Pieces beyond the copy are read from the live extension slots; the
 * caller validates the chain's seq afterwards. 'broken': an extension slot
 * was missing (a writer was changing the chain).
 */
struct pv_cov_ctx {
	PV_CTX_ENV
	__u32				sub0[PVIOMMU_SUB_SLOTS];	/* s->sub */
	__u64				pfn;
	__u32				dom;
	__u32				bdf;
	__u32				n;
	__u32				k;	/* chain slot in xidx */
	__u32				xidx;
	__u32				cur;
	__u32				last;
	__u32				p;
	/* bytes: the frame that holds this is under 6.1's 512-byte budget */
	__u8				moved;
	__u8				covered;
	__u8				broken;
	__u8				any;	/* one piece with p is enough (pv_page_touched) */
};

/*
 * how the coverage walk finds an extension slot: the includer's
 * pv_slot_find, or inline where one more call frame does not fit (the LSM
 * gate: 6.1 allows 512 bytes of stack over all frames)
 */
#ifndef PV_COV_FIND
#define PV_COV_FIND	pv_slot_find
#endif

/* steps of one coverage walk at most (n pieces need up to n passes) */
#define PV_COV_MAX_STEPS	(1u << 22)

PV_STEP long pv_cov_step(__u32 i, struct pv_cov_ctx *c)
{
	PV_STEP_ENV(c);
	__u32 j, k, sub;
	struct pviommu_slot *x;
	long idx;

	if (!c)
		return 1;
	j = c->n ? i % c->n : 0;
	k = j / PVIOMMU_SUB_SLOTS;
	if (!k) {
		sub = c->sub0[pv_sub_idx(j)];
	} else {
		if (k != c->k) {
			idx = PV_COV_FIND(env, PVIOMMU_SLOT_SUBX, c->dom,
					  c->bdf, pv_subx_pfn(c->pfn, k));
			if (idx < 0) {
				c->broken = 1;
				return 1;
			}
			c->k = k;
			c->xidx = (__u32)idx;
		}
		x = pv_slot_at(env, c->xidx);
		if (!x) {
			c->broken = 1;
			return 1;
		}
		sub = PV_READ_ONCE(x->sub[pv_sub_idx(j)]);
	}
	if ((PVIOMMU_SUB_PERM(sub) & c->p) && c->any) {
		c->covered = 1;
		return 1;
	}
	if ((PVIOMMU_SUB_PERM(sub) & c->p) && PVIOMMU_SUB_FIRST(sub) <= c->cur &&
	    PVIOMMU_SUB_LAST(sub) >= c->cur) {
		c->cur = PVIOMMU_SUB_LAST(sub) + 1;
		c->moved = 1;
		if (c->cur > c->last) {
			c->covered = 1;
			return 1;
		}
	}
	if (j == c->n - 1) {
		if (!c->moved)
			return 1;
		c->moved = 0;
	}
	return 0;
}

static long pv_cov_cb(__u32 i, void *data)
{
	return pv_cov_step(i, (struct pv_cov_ctx *)data) ? 1 : 0;
}

/* c's view of page slot copy s */
static PV_INLINE void pv_cov_init(struct pv_cov_ctx *c, struct pv_env *e,
				  const struct pviommu_slot *s, __u64 pfn,
				  __u32 last)
{
	__u32 i;

	PV_CTX_PUT_ENV(c, e);
	for (i = 0; i < PVIOMMU_SUB_SLOTS; i++)
		c->sub0[i] = s->sub[i];
	c->pfn = pfn;
	c->dom = s->domain;
	c->bdf = s->bdf;
	c->n = s->nsub;
	c->last = last;
}

/*
 * 1 covered, 0 not, -1 the chain changed under the walk. c holds the page
 * (pv_cov_init from the slot copy s); one ctx serves every call of a check
 * (one frame: the BPF stack is small)
 */
static PV_INLINE int pv_covered(struct pv_cov_ctx *c,
				const struct pviommu_slot *s, __u32 first,
				__u32 p)
{
	__u64 steps;

	if (((p & PVIOMMU_PERM_READ) && s->cnt_r) ||
	    ((p & PVIOMMU_PERM_WRITE) && s->cnt_w))
		return 1;
	if (!c->n)
		return 0;
	if (c->n > PVIOMMU_MAX_PIECES)
		return -1;
	c->k = 0;
	c->cur = first;
	c->p = p;
	c->moved = 0;
	c->covered = 0;
	c->broken = 0;
	steps = (__u64)c->n * c->n;
	pv_loop(steps > PV_COV_MAX_STEPS ? PV_COV_MAX_STEPS : (__u32)steps,
		pv_cov_cb, c);
	return c->broken ? -1 : (int)c->covered;
}

/* the verdict of one page from a consistent copy of its slot */
static PV_INLINE int pv_page_verdict(struct pv_env *e,
				     const struct pviommu_slot *s, __u64 pfn,
				     __u32 first, __u32 last, __u32 need)
{
	struct pv_cov_ctx c = {};
	int r;

	pv_cov_init(&c, e, s, pfn, last);

	if (need & PVIOMMU_PERM_READ) {
		r = pv_covered(&c, s, first, PVIOMMU_PERM_READ);
		if (r < 0)
			return PV_DENY_BUSY;
		if (!r)
			goto deny;
	}
	if (need & PVIOMMU_PERM_WRITE) {
		r = pv_covered(&c, s, first, PVIOMMU_PERM_WRITE);
		if (r < 0)
			return PV_DENY_BUSY;
		if (!r)
			goto deny;
	}
	return PV_ALLOW;
deny:
	/* tell "not for this direction" from "not mapped" */
	r = pv_covered(&c, s, first, PVIOMMU_PERM_RW);
	if (r < 0)
		return PV_DENY_BUSY;
	return r ? PV_DENY_PERM : PV_DENY_UNMAPPED;
}

/*
 * check one page: bytes [first, last] of page pfn for 'need'; lane is the
 * device's fast lane (1-based, 0: none): bits set there answer at once
 */
static PV_INLINE int pv_check_page_inl(struct pv_env *e, __u32 dom,
				       __u32 bdf, __u32 lane, __u64 pfn,
				       __u32 first, __u32 last, __u32 need)
{
	struct pviommu_slot s, *live;
	__u64 *w = pv_fast_bits(e, lane, pfn);
	__u32 idx = 0, try, m;
	int r, v = PV_DENY_BUSY;

	if (w && ((PV_READ_ONCE(*w) >> ((pfn & 31) * 2)) & need) == need)
		return PV_ALLOW;
	for (try = 0; try < 2; try++) {
		/* the extension slots are found by key: none may move meanwhile */
		m = pv_moves_settled(e);
		pv_barrier();
		r = pv_slot_read(e, PVIOMMU_SLOT_PAGE, dom, bdf, pfn, &s, &idx);
		if (r < 0)
			return PV_DENY_BUSY;
		if (!r)
			return PV_DENY_UNMAPPED;
		v = pv_page_verdict(e, &s, pfn, first, last, need);
		/* the whole chain was in the copy: nothing to validate */
		if (s.nsub <= PVIOMMU_SUB_SLOTS)
			return v;
		pv_barrier();
		live = pv_slot_at(e, idx);
		if (live && PV_READ_ONCE(live->seq) == s.seq && v != PV_DENY_BUSY &&
		    !(m & 1) && pv_moves(e) == m)
			return v;
	}
	return PV_DENY_BUSY;
}

#ifndef pv_check_page
#define pv_check_page	pv_check_page_inl
#endif

/*
 * Does device bdf hold at least one byte of page pfn for each direction of
 * need? 1 yes, 0 no, -1 a writer was changing the page. An IOMMU maps whole
 * pages: this is what "the page mirrors a live record" means (the VFIO gate).
 */
static PV_INLINE int pv_page_touched(struct pv_env *e, __u32 dom, __u32 bdf,
				     __u64 pfn, __u32 need)
{
	struct pviommu_slot s, *live;
	struct pv_cov_ctx c = {};
	__u32 idx = 0, m = pv_moves_settled(e);
	int r;

	pv_barrier();
	r = pv_slot_read(e, PVIOMMU_SLOT_PAGE, dom, bdf, pfn, &s, &idx);
	if (r <= 0)
		return r < 0 ? -1 : 0;
	pv_cov_init(&c, e, &s, pfn, PV_PAGE_MASK);
	c.any = 1;
	r = 1;
	if (need & PVIOMMU_PERM_READ)
		r = pv_covered(&c, &s, 0, PVIOMMU_PERM_READ);
	if (r > 0 && (need & PVIOMMU_PERM_WRITE))
		r = pv_covered(&c, &s, 0, PVIOMMU_PERM_WRITE);
	if (r < 0 || s.nsub <= PVIOMMU_SUB_SLOTS)
		return r;
	/* a walk of extension slots: valid while the chain and the index stood still */
	pv_barrier();
	live = pv_slot_at(e, idx);
	if (!live || PV_READ_ONCE(live->seq) != s.seq || (m & 1) || pv_moves(e) != m)
		return -1;
	return r;
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

/* the counts of the slot of a key: cnt_r | cnt_w << 32 in *counts */
static PV_INLINE int pv_slot_peek(struct pv_env *e, __u32 kind, __u32 dom,
				  __u32 bdf, __u64 pfn, __u64 *counts)
{
	struct pviommu_slot s;
	int r = pv_slot_get(e, kind, dom, bdf, pfn, &s, 0, 0);

	if (r == 1)
		*counts = s.cnt_r | (__u64)s.cnt_w << 32;
	return r;
}

/*
 * the domain's state bits (PVIOMMU_DS_*), 0: no DOMAIN slot, <0: busy.
 * Userspace readers (PV_ENV_DSLOT: a 'dslot' field in pv_env) remember
 * where the slot was: DOMAIN entries never move, so one seq-checked read of
 * that slot answers when its key still matches; anything else looks it up.
 */
static PV_INLINE long pv_domain_state_inl(struct pv_env *e, __u32 dom)
{
	__u64 c = 0;
	int r;

#ifdef PV_ENV_DSLOT
	__u32 at = PV_READ_ONCE(e->dslot);
	struct pviommu_slot *s = at ? pv_slot_at(e, at - 1) : 0;

	if (s) {
		__u32 seq = PV_READ_ONCE(s->seq), st;
		int hit;

		pv_barrier();
		hit = PV_READ_ONCE(s->kind) == PVIOMMU_SLOT_DOMAIN &&
		      PV_READ_ONCE(s->domain) == dom;
		st = PV_READ_ONCE(s->cnt_r);
		pv_barrier();
		if (!(seq & 1) && hit && PV_READ_ONCE(s->seq) == seq)
			return st;
	}
	{
		long idx = pv_slot_find_inl(e, PVIOMMU_SLOT_DOMAIN, dom, 0, 0);

		if (idx >= 0)
			e->dslot = (__u32)idx + 1;
	}
#endif
	r = pv_slot_peek(e, PVIOMMU_SLOT_DOMAIN, dom, 0, 0, &c);
	if (r <= 0)
		return r;
	return (__u32)c;
}

/*
 * A device's slot, as a number: -1 not protected, -2 busy, else its fast
 * lane (1-based, 0: none) | PV_DEV_FAILED when it failed closed
 */
#define PV_DEV_FAILED	(1L << 16)
static PV_INLINE long pv_device_state_inl(struct pv_env *e, __u32 dom,
					  __u32 bdf)
{
	__u64 c = 0;
	int r = pv_slot_peek(e, PVIOMMU_SLOT_DEVICE, dom, bdf, 0, &c);
	__u32 lane = (__u32)c;

	if (r < 0)
		return -2;
	if (!r)
		return -1;
	return (lane <= PVIOMMU_FAST_LANES ? (long)lane : 0) |
	       (c >> 32 ? PV_DEV_FAILED : 0);
}

/* BPF routes both through global functions: small frames for the check */
#ifndef pv_domain_state
#define pv_domain_state	pv_domain_state_inl
#endif
#ifndef pv_device_state
#define pv_device_state	pv_device_state_inl
#endif

/*
 * CHECK as documented in pviommu.h: a FAILED domain or device is denied,
 * unprotected devices pass untouched
 */
static PV_INLINE int pv_check(struct pv_env *e, __u32 dom, __u32 bdf,
			      __u64 addr, __u64 len, __u32 need)
{
	long ds = pv_domain_state(e, dom), dev;

	if (ds < 0)
		return PV_DENY_BUSY;
	if (ds & PVIOMMU_DS_FAILED)
		return PV_DENY_FAILED;
	dev = pv_device_state(e, dom, bdf);
	if (dev == -2)
		return PV_DENY_BUSY;
	if (dev < 0)
		return PV_ALLOW;
	if (dev & PV_DEV_FAILED)
		return PV_DENY_FAILED;
	return pv_check_lane(e, dom, bdf, (__u32)(dev & 0xffff), addr, len,
			     need);
}

#endif /* __PVIOMMU_RANGE_H */
