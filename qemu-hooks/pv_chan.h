/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pv_chan.h - the host side of the shared page (bpf/pviommu.h, "The
 * shared page"): attach a guest page, serve a kick. No QEMU, no BPF in
 * here: the caller maps the page and says how one entry is carried out,
 * so the protocol's rules (a hostile guest writes the page while the host
 * reads it) are tested on their own (tests/unit/test_chan.c).
 */
#ifndef PV_CHAN_H
#define PV_CHAN_H

#include <stdint.h>
#include <linux/types.h>
#include "pviommu.h"

struct pv_chan {
	struct pviommu_chan *page;	/* host mapping of the guest ring, NULL: none */
	uint64_t gpa;
	uint64_t len;			/* bytes mapped at page */
	uint32_t nents;			/* read once, at attach */
	uint32_t cons;			/* the host's own: the page's is only a copy */
	unsigned long kicks, ops, refused;
};

/*
 * carries out n entries' words (copies, in ring order) and fills status[i]
 * for each: what a caller that can do several operations at once provides
 */
typedef void (*pv_chan_batch_fn)(const uint64_t (*a)[4], int *status, uint32_t n, void *ctx);

/*
 * The longest ring this host serves (a power of two, PVIOMMU_CHAN_NENTS_PAGE
 * to PVIOMMU_CHAN_NENTS_MAX; the latter by default): a guest asking for more
 * gets no answer and tries one page. 0, or -EINVAL (nothing changed).
 */
int pv_chan_set_max_nents(uint32_t n);

/*
 * The bytes a ring needs, from one look at its header (the caller maps that
 * many next); 0 when the header is not one this host serves. The guest may
 * change the header in between: pv_chan_attach reads it again.
 */
uint64_t pv_chan_bytes(const void *page);

/*
 * Validate a freshly mapped ring of len bytes and answer in it (host_ack
 * last): host_flags = PVIOMMU_CHAN_F_STATUS | flags. 0, or -EPROTO (bad
 * magic, version or nents, or a ring longer than len): then nothing was
 * written and the caller unmaps it.
 */
int pv_chan_attach(struct pv_chan *c, void *page, uint64_t len, uint64_t gpa, uint32_t flags);

/* forget the page; returns it (for the caller to unmap), or NULL */
void *pv_chan_detach(struct pv_chan *c);

/*
 * Carry out the published entries in order, each status written once it
 * is done, then cons. Returns how many, -ENODEV without a page, -EPROTO
 * when prod is out of range (nothing done). The entries' words are all
 * copied before the first is carried out.
 */
int pv_chan_kick_batch(struct pv_chan *c, pv_chan_batch_fn fn, void *ctx);

/*
 * What the published entries not carried out yet could take away from a
 * transfer, summarized as they are published (the caller keeps it under
 * its lock and resets it after each kick): a MAP only adds; an UNMAP
 * revokes [iova, iova + size) of its own device, nothing else; any other
 * entry, or an UNMAP the summary has no room for, may revoke anything.
 */
#define PV_CHAN_PEND_UNMAPS	64
struct pv_chan_pend {
	uint32_t upto;		/* entries before it (free-running, as prod) are summarized */
	uint32_t n;		/* UNMAPs in u[] */
	int any;		/* an entry that may revoke any transfer */
	struct {
		uint32_t bdf;
		uint64_t first, last;	/* bytes, inclusive */
	} u[PV_CHAN_PEND_UNMAPS];
};

/* the caller's own reason to carry out a pending UNMAP before any transfer (nonzero) */
typedef int (*pv_chan_unmap_fn)(uint32_t bdf, uint64_t first, uint64_t last, void *ctx);

/* forget the summary: every entry before cons is carried out */
static inline void pv_chan_pend_reset(const struct pv_chan *c, struct pv_chan_pend *p)
{
	p->upto = c->cons;
	p->n = 0;
	p->any = 0;
}

/*
 * 1 when no published entry can revoke bdf's access to [addr, addr + len):
 * a transfer allowed now is allowed with them carried out, so it may be
 * checked before they are (a denied one still needs them: a pending MAP
 * may allow it). 0: carry them out first. Reads each new entry's words
 * once; an entry the guest rewrites after it was summarized is as if it
 * had been published after the transfer. fn (may be NULL) is asked about
 * each UNMAP as it is summarized. A ring more than half full spares
 * nothing: it is emptied before the guest has to kick for room.
 */
int pv_chan_spares(struct pv_chan *c, struct pv_chan_pend *p, uint32_t bdf, uint64_t addr,
		   uint64_t len, pv_chan_unmap_fn fn, void *ctx);

/*
 * 1 when the guest published entries the host has not carried out: a
 * lockless hint for the checking paths (PVIOMMU_CHAN_F_DRAIN), which then
 * take the caller's lock and kick. Safe against a concurrent attach or
 * detach: the page is guest RAM, which stays mapped while QEMU runs.
 */
static inline int pv_chan_pending(const struct pv_chan *c)
{
	const struct pviommu_chan *h = __atomic_load_n(&c->page, __ATOMIC_ACQUIRE);

	return h && __atomic_load_n(&h->prod, __ATOMIC_ACQUIRE) !=
		    __atomic_load_n(&c->cons, __ATOMIC_RELAXED);
}

#endif
