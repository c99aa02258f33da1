// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pv_chan.c - the host side of the shared page (pv_chan.h).
 *
 * The page is guest memory: any vCPU of the guest may write any byte of it
 * at any time, also while a kick is served. So every field the host acts
 * on is loaded once (nents at attach, prod per kick, an entry's words
 * before they are used), the host's cons is its own, and every store
 * stays inside the page whatever the guest wrote.
 */
#include <errno.h>
#include <stddef.h>
#include "pv_chan.h"

_Static_assert(sizeof(struct pviommu_chan) == PVIOMMU_CHAN_HDR, "channel header size");
_Static_assert(sizeof(struct pviommu_chan_ent) == PVIOMMU_CHAN_ENT_SIZE, "channel entry size");
_Static_assert(PVIOMMU_CHAN_BYTES(PVIOMMU_CHAN_NENTS_PAGE) <= PVIOMMU_CHAN_PAGE,
	       "64 entries fit one page");

#define LOAD(p)		__atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define STORE(p, v)	__atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

static uint32_t max_nents = PVIOMMU_CHAN_NENTS_MAX;

int pv_chan_set_max_nents(uint32_t n)
{
	if (n < PVIOMMU_CHAN_NENTS_PAGE || n > PVIOMMU_CHAN_NENTS_MAX || (n & (n - 1)))
		return -EINVAL;
	max_nents = n;
	return 0;
}

/* the ring's entries from one load of its header; 0 when it is not one we serve */
static uint32_t header_nents(const struct pviommu_chan *h)
{
	uint32_t magic = LOAD(h->magic);
	uint16_t version = LOAD(h->version), nents = LOAD(h->nents);

	if (magic != PVIOMMU_CHAN_MAGIC || version != PVIOMMU_CHAN_VERSION ||
	    !nents || nents > max_nents || (nents & (nents - 1)))
		return 0;
	return nents;
}

uint64_t pv_chan_bytes(const void *page)
{
	uint32_t nents = header_nents(page);

	return nents ? PVIOMMU_CHAN_BYTES((uint64_t)nents) : 0;
}

int pv_chan_attach(struct pv_chan *c, void *page, uint64_t len, uint64_t gpa, uint32_t flags)
{
	struct pviommu_chan *h = page;
	uint32_t nents = header_nents(h);

	/* nents is read here once more: the ring must fit what the caller mapped */
	if (!nents || PVIOMMU_CHAN_BYTES((uint64_t)nents) > len)
		return -EPROTO;
	c->gpa = gpa;
	c->len = len;
	c->nents = nents;
	STORE(c->cons, LOAD(h->prod));	/* what was there before is not ours */
	STORE(h->cons, c->cons);
	STORE(h->kicks, 0);
	STORE(h->errors, 0);
	STORE(h->ops, 0);
	STORE(h->runs, 0);
	STORE(h->host_flags, PVIOMMU_CHAN_F_STATUS | flags);
	STORE(c->page, h);		/* the lockless pending check may look now */
	STORE(h->host_ack, PVIOMMU_CHAN_ACK);
	return 0;
}

void *pv_chan_detach(struct pv_chan *c)
{
	void *p = c->page;

	STORE(c->page, NULL);
	c->gpa = 0;
	c->len = 0;
	c->nents = 0;
	return p;
}

int pv_chan_spares(struct pv_chan *c, struct pv_chan_pend *p, uint32_t bdf, uint64_t addr,
		   uint64_t len, pv_chan_unmap_fn fn, void *ctx)
{
	struct pviommu_chan *h = c->page;
	uint64_t last = addr + (len ? len - 1 : 0);
	uint32_t prod;

	if (!h)
		return 0;
	prod = LOAD(h->prod);
	/* out of range (the kick refuses it and says so), or half full: carried out
	 * now, so the guest seldom finds the ring full (a kick, an exit) */
	if (prod - c->cons > c->nents / 2)
		return 0;
	if (p->upto - c->cons > prod - c->cons)
		pv_chan_pend_reset(c, p);	/* not this ring's summary */
	for (; p->upto != prod && !p->any; p->upto++) {
		const struct pviommu_chan_ent *e = &h->ent[p->upto % c->nents];
		uint64_t a0 = LOAD(e->a[0]), iova, size;

		if (PVIOMMU_HC_OP(a0) == PVIOMMU_OP_MAP)
			continue;
		iova = LOAD(e->a[1]);
		size = LOAD(e->a[2]);
		if (PVIOMMU_HC_OP(a0) != PVIOMMU_OP_UNMAP || p->n == PV_CHAN_PEND_UNMAPS || !size ||
		    iova + size - 1 < iova ||
		    (fn && fn(PVIOMMU_HC_BDF(a0), iova, iova + size - 1, ctx))) {
			p->any = 1;
			break;
		}
		p->u[p->n].bdf = PVIOMMU_HC_BDF(a0);
		p->u[p->n].first = iova;
		p->u[p->n].last = iova + size - 1;
		p->n++;
	}
	if (p->any || last < addr)
		return 0;
	for (uint32_t i = 0; i < p->n; i++)
		if (p->u[i].bdf == bdf && p->u[i].first <= last && addr <= p->u[i].last)
			return 0;
	return 1;
}

int pv_chan_kick_batch(struct pv_chan *c, pv_chan_batch_fn fn, void *ctx)
{
	struct pviommu_chan *h = c->page;
	uint64_t a[PVIOMMU_CHAN_NENTS_MAX][4];	/* 16 KiB: on any QEMU stack, coroutines too */
	int status[PVIOMMU_CHAN_NENTS_MAX];
	uint32_t prod, n;

	if (!h)
		return -ENODEV;
	prod = LOAD(h->prod);
	n = prod - c->cons;
	if (n > c->nents) {
		c->refused++;
		STORE(h->errors, LOAD(h->errors) + 1);
		return -EPROTO;
	}
	if (!n)
		return 0;
	for (uint32_t i = 0; i < n; i++) {	/* every word once, before any is used */
		struct pviommu_chan_ent *e = &h->ent[(c->cons + i) % c->nents];

		for (int k = 0; k < 4; k++)
			a[i][k] = LOAD(e->a[k]);
		status[i] = PVIOMMU_CHAN_PENDING;
	}
	fn((const uint64_t (*)[4])a, status, n, ctx);
	for (uint32_t i = 0; i < n; i++)
		STORE(h->ent[(c->cons + i) % c->nents].status, status[i]);
	STORE(c->cons, prod);
	c->ops += n;
	c->kicks++;
	STORE(h->cons, prod);
	STORE(h->kicks, LOAD(h->kicks) + 1);
	STORE(h->ops, LOAD(h->ops) + n);
	return (int)n;
}
