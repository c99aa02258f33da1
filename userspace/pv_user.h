/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pv_user.h - the shared range logic (bpf/pviommu_range.h) instantiated for
 * userspace: the index is a plain array of slots (an mmap of the pinned
 * pviommu_index, or memory of one's own), records included. Readers need
 * only tbl/slots/key.
 */
#ifndef __PV_USER_H
#define __PV_USER_H

#include <linux/types.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "pviommu.h"

#define PV_INLINE inline __attribute__((always_inline))
#define PV_ENV_DSLOT	/* pv_env remembers the domain's slot */

struct pv_env {
	void			*tbl;	/* struct pviommu_slot[PVIOMMU_INDEX_ENTRIES(slots)] */
	__u32			slots;
	__u64			key;	/* the index hash's secret (pviommu_ctl) */
	__u32			dslot;	/* where the domain's slot was + 1 (0: not known) */
	__u64			*fast;	/* pviommu_fast (PVIOMMU_FAST_ENTRIES), or NULL */
};

static inline struct pviommu_slot *pv_slot_at(struct pv_env *e, __u32 idx)
{
	return idx < PVIOMMU_INDEX_ENTRIES(e->slots) ? (struct pviommu_slot *)e->tbl + idx : NULL;
}

static inline __u64 *pv_fast_word(struct pv_env *e, __u32 idx)
{
	return e->fast && idx < PVIOMMU_FAST_ENTRIES ? e->fast + idx : NULL;
}

static inline long pv_loop(__u32 n, long (*cb)(__u32, void *), void *ctx)
{
	__u32 i;

	for (i = 0; i < n; i++)
		if (cb(i, ctx))
			return i + 1;
	return n;
}

#include "pviommu_range.h"

/*
 * Every record in the index (of domain dom; 0: of all), each read
 * consistently: cb(record, arg) for each until it returns nonzero. The
 * records seen, or -EBUSY when a slot kept changing past PV_WALK_TRIES
 * reads: the walk goes on without it, so the caller has all the others
 * and knows that one may be missing; -EBUSY too when entries moved during
 * the walk (one may have passed it: pv_slot_free), which the caller may
 * take again.
 */
#define PV_WALK_TRIES	256
static inline long pv_rec_walk(struct pv_env *e, __u32 dom,
			       int (*cb)(const struct pviommu_mapping *, void *),
			       void *arg)
{
	struct pviommu_mapping m;
	struct pviommu_slot c;
	__u32 moves = pv_moves(e);
	long n = 0;
	int busy = 0, t;

	pv_barrier();
	for (__u64 i = 0; i < pv_positions(e); i++) {
		const struct pviommu_slot *s = pv_slot_at(e, (__u32)i);
		__u16 kind = PV_READ_ONCE(s->kind);

		if ((kind != PVIOMMU_SLOT_PAGE && kind != PVIOMMU_SLOT_RECORD) ||
		    (dom && PV_READ_ONCE(s->domain) != dom))
			continue;
		for (t = 0; t < PV_WALK_TRIES && pv_slot_copy(s, &c, 1); t++)
			;
		if (t == PV_WALK_TRIES) {
			busy = 1;
			continue;
		}
		if (!pv_slot_rec_view(&c, (__u32)i, &m) || (dom && m.domain != dom))
			continue;
		n++;
		if (cb && cb(&m, arg))
			break;
	}
	pv_barrier();
	if ((moves & 1) || pv_moves(e) != moves)
		busy = 1;
	return busy ? -PV_EBUSY : n;
}

/*
 * pv_rec_walk() until a walk is whole: while entries moved during it (or a
 * slot kept changing), restart(arg) drops what that walk gave and the walk
 * goes again, at most tries walks. The last walk's result (-EBUSY: none
 * was whole; the caller has what the last one found).
 */
static inline long pv_rec_walk_whole(struct pv_env *e, __u32 dom,
				     int (*cb)(const struct pviommu_mapping *, void *),
				     void (*restart)(void *), void *arg, int tries)
{
	long r = -PV_EBUSY;

	for (int t = 0; t < tries && r == -PV_EBUSY; t++) {
		if (restart)
			restart(arg);
		r = pv_rec_walk(e, dom, cb, arg);
	}
	return r;
}

#endif /* __PV_USER_H */
