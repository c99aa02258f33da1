/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pv_user.h - the shared range logic (bpf/pviommu_range.h) instantiated for
 * userspace: the index is a plain array of slots (an mmap of the pinned
 * pviommu_index, or memory of one's own), records live in a small
 * open-addressing table (unit tests, models). Readers need only tbl/mask.
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

struct pv_rec_entry {
	int			used;	/* 0 free, 1 live, 2 deleted */
	struct pviommu_map_key	k;
	struct pviommu_mapping	v;
};

struct pv_rec_table {
	struct pv_rec_entry	*e;
	__u32			cap;	/* power of two */
	__u32			max;	/* like the BPF map's max_entries */
	__u32			n;
};

struct pv_env {
	void			*tbl;	/* struct pviommu_slot[mask + 1] */
	__u32			mask;
	__u64			key;	/* the index hash's secret (pviommu_ctl) */
	__u32			dslot;	/* where the domain's slot was + 1 (0: not known) */
	__u64			*fast;	/* pviommu_fast (PVIOMMU_FAST_ENTRIES), or NULL */
	struct pv_rec_table	*recs;	/* writers only */
};

static inline struct pviommu_slot *pv_slot_at(struct pv_env *e, __u32 idx)
{
	return (struct pviommu_slot *)e->tbl + (idx & e->mask);
}

static inline __u64 *pv_fast_word(struct pv_env *e, __u32 idx)
{
	return e->fast && idx < PVIOMMU_FAST_ENTRIES ? e->fast + idx : NULL;
}

static inline __u32 pv_rec_hash(const struct pviommu_map_key *k)
{
	__u64 x = k->iova * 0x9e3779b97f4a7c15ULL ^
		  ((__u64)k->domain << 32 | k->bdf);

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ULL;
	return (__u32)(x ^ (x >> 32));
}

static inline int pv_rec_keyeq(const struct pviommu_map_key *a,
			       const struct pviommu_map_key *b)
{
	return a->domain == b->domain && a->bdf == b->bdf &&
	       a->iova == b->iova;
}

static inline struct pv_rec_entry *pv_rec_slot(struct pv_rec_table *t,
					       const struct pviommu_map_key *k,
					       int insert)
{
	__u32 h = pv_rec_hash(k), i;
	struct pv_rec_entry *free = NULL;

	for (i = 0; i < t->cap; i++) {
		struct pv_rec_entry *x = &t->e[(h + i) & (t->cap - 1)];

		if (!x->used) {
			if (!free)
				free = x;
			break;
		}
		if (x->used == 2) {
			if (!free)
				free = x;
			continue;
		}
		if (pv_rec_keyeq(&x->k, k))
			return x;
	}
	return insert ? free : NULL;
}

static inline struct pviommu_mapping *
pv_rec_find(struct pv_env *e, const struct pviommu_map_key *k)
{
	struct pv_rec_entry *x = pv_rec_slot(e->recs, k, 0);

	return x ? &x->v : NULL;
}

static inline int pv_rec_insert(struct pv_env *e,
				const struct pviommu_map_key *k,
				const struct pviommu_mapping *v)
{
	struct pv_rec_entry *x;

	if (pv_rec_slot(e->recs, k, 0))
		return -17;	/* EEXIST */
	if (e->recs->n >= e->recs->max)
		return -28;	/* ENOSPC */
	x = pv_rec_slot(e->recs, k, 1);
	if (!x)
		return -28;
	x->used = 1;
	x->k = *k;
	x->v = *v;
	e->recs->n++;
	return 0;
}

static inline int pv_rec_delete(struct pv_env *e,
				const struct pviommu_map_key *k)
{
	struct pv_rec_entry *x = pv_rec_slot(e->recs, k, 0);

	if (!x)
		return -2;
	x->used = 2;
	e->recs->n--;
	return 0;
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

#endif /* __PV_USER_H */
