// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * test_chan - the host side of the shared page (qemu-hooks/pv_chan.c)
 * against a guest that writes the page while the host serves it.
 * The page sits in front of a guard page of canaries: no store may reach it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "testlib.h"
#include "../../qemu-hooks/pv_chan.c"

/* the tests' view of a kick: one operation at a time (the library batches) */
typedef int (*op_fn)(const uint64_t a[4], void *ctx);
struct one_by_one {
	op_fn	op;
	void	*ctx;
};

static void one_by_one(const uint64_t (*a)[4], int *status, uint32_t n, void *ctx)
{
	struct one_by_one *o = ctx;

	for (uint32_t i = 0; i < n; i++)
		status[i] = o->op(a[i], o->ctx);
}

static int pv_chan_kick(struct pv_chan *c, op_fn op, void *ctx)
{
	struct one_by_one o = { op, ctx };

	return pv_chan_kick_batch(c, one_by_one, &o);
}

#define CANARY 0xa5
#define RING_MAX_BYTES	(6 * PVIOMMU_CHAN_PAGE)	/* PVIOMMU_CHAN_BYTES(512), in pages */

static uint8_t mem[RING_MAX_BYTES + PVIOMMU_CHAN_PAGE] __attribute__((aligned(4096)));
static struct pviommu_chan *pg = (struct pviommu_chan *)mem;
static uint64_t maplen = PVIOMMU_CHAN_PAGE;	/* what the "host" mapped; a guard after it */

static void page_init(uint16_t nents, uint32_t prod)
{
	memset(mem, 0, maplen);
	memset(mem + maplen, CANARY, sizeof(mem) - maplen);
	pg->magic = PVIOMMU_CHAN_MAGIC;
	pg->version = PVIOMMU_CHAN_VERSION;
	pg->nents = nents;
	pg->prod = prod;
}

static int guard_intact(void)
{
	for (uint64_t i = maplen; i < sizeof(mem); i++)
		if (mem[i] != CANARY)
			return 0;
	return 1;
}

/* the guest publishes one entry: words a0 = op tag, a1..a3 = tag + k */
static void publish(uint64_t tag)
{
	struct pviommu_chan_ent *e = &pg->ent[pg->prod % pg->nents];

	for (int k = 0; k < 4; k++)
		e->a[k] = tag + k;
	e->status = PVIOMMU_CHAN_PENDING;
	pg->prod++;
}

/* the entries inside what the "host" mapped */
static unsigned int pg_nents_mapped(void)
{
	return (unsigned int)((maplen - PVIOMMU_CHAN_HDR) / PVIOMMU_CHAN_ENT_SIZE);
}

struct rec {
	uint64_t a0[256];
	int n;
	int pending_seen;	/* the op ran while its status was still PENDING */
	int hostile;		/* rewrite the page during each op */
	int stable;		/* ops whose words did not change under them */
};

static int op_rec(const uint64_t a[4], void *ctx)
{
	struct rec *r = ctx;
	uint32_t cons = (uint32_t)(a[0] >> 32);	/* see publish_at() */

	if (pg->ent[cons % (pg->nents ? pg->nents : 1)].status == PVIOMMU_CHAN_PENDING)
		r->pending_seen++;
	if (r->n < 256)
		r->a0[r->n] = a[0];
	r->n++;
	if (r->hostile) {
		/* another vCPU scribbles over the header and the entries */
		pg->nents = 0xffff;
		pg->prod += 1000;
		pg->cons = 0xdeadbeef;
		for (unsigned int i = 0; i < pg_nents_mapped(); i++)
			pg->ent[i].a[0] = ~0ull;
		if (a[0] == r->a0[r->n - 1])
			r->stable++;
	}
	/* status: -(index of the call) so the test can tell them apart */
	return -(r->n);
}

/* publish with the entry's ring position in a0's high half (op_rec checks it) */
static void publish_at(uint32_t i)
{
	publish((uint64_t)pg->prod << 32 | i);
}

static void t_attach(void)
{
	struct pv_chan c = { 0 };

	page_init(4, 0);
	pg->magic = 0x12345678;
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), -EPROTO, "bad magic refused");
	ASSERT_EQ(pg->host_ack, 0, "... and not answered");
	page_init(4, 0);
	pg->version = 2;
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), -EPROTO, "unknown version refused");
	page_init(0, 0);
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), -EPROTO, "nents 0 refused");
	page_init(PVIOMMU_CHAN_NENTS_PAGE * 2, 0);
	ASSERT_EQ(pv_chan_bytes(mem), PVIOMMU_CHAN_BYTES(128), "128 entries: the bytes to map");
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), -EPROTO,
		  "a ring longer than what was mapped refused (the guest grew nents after the look)");
	page_init(PVIOMMU_CHAN_NENTS_MAX * 2, 0);
	ASSERT_EQ(pv_chan_bytes(mem), 0, "nents beyond 512: nothing to map");
	ASSERT_EQ(pv_chan_attach(&c, mem, sizeof(mem), 0x1000, 0), -EPROTO, "nents beyond 512 refused");
	page_init(3, 0);
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), -EPROTO, "nents not a power of two refused");
	ASSERT_EQ(pg->host_ack, 0, "no answer to a refused page");
	ASSERT_TRUE(c.page == NULL, "no page held");
	ASSERT_EQ(pv_chan_kick(&c, op_rec, NULL), -ENODEV, "kick without a page");

	page_init(PVIOMMU_CHAN_NENTS_PAGE, 7);
	ASSERT_EQ(pv_chan_bytes(mem), PVIOMMU_CHAN_BYTES(64), "64 entries: one page");
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x1000, 0), "a good page");
	ASSERT_EQ(pg->host_ack, PVIOMMU_CHAN_ACK, "answered");
	ASSERT_EQ(pg->host_flags & PVIOMMU_CHAN_F_STATUS, PVIOMMU_CHAN_F_STATUS, "statuses promised");
	ASSERT_EQ(pg->cons, 7, "what was published before the attach is not served");
	ASSERT_TRUE(pv_chan_detach(&c) == (void *)mem, "detach gives the page back");
	ASSERT_EQ(pv_chan_kick(&c, op_rec, NULL), -ENODEV, "kick after detach");
	ASSERT_TRUE(guard_intact(), "nothing written past the page");
}

static void t_kick_in_order(void)
{
	struct pv_chan c = { 0 };
	struct rec r = { 0 };

	page_init(4, 0xfffffffe);	/* prod and cons wrap during the test */
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x2000, 0), "attach");
	for (int round = 0; round < 4; round++) {
		int n = round < 3 ? round + 2 : 4;	/* 2, 3, 4, 4 */
		r.n = 0;
		r.pending_seen = 0;
		for (int i = 0; i < n; i++)
			publish_at(i);
		ASSERT_EQ(pv_chan_kick(&c, op_rec, &r), n, "kick serves what was published");
		ASSERT_EQ(r.n, n, "one op per entry");
		ASSERT_EQ(r.pending_seen, n, "each status written after its op ran");
		for (int i = 0; i < n && i < r.n; i++)
			ASSERT_EQ((uint32_t)r.a0[i], i, "in order");
		ASSERT_EQ(pg->cons, pg->prod, "cons caught up");
		for (int i = 0; i < n; i++)
			ASSERT_EQ(pg->ent[(pg->prod - n + i) % 4].status, -(i + 1),
				  "each entry got its own status");
	}
	ASSERT_EQ(pv_chan_kick(&c, op_rec, &r), 0, "nothing published: nothing done");
	ASSERT_EQ(c.cons, pg->prod, "host cons wrapped with prod");
	ASSERT_TRUE(guard_intact(), "nothing written past the page");
}

static void t_hostile(void)
{
	struct pv_chan c = { 0 };
	struct rec r = { 0 };

	page_init(4, 0);
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x3000, 0), "attach");
	/* more published than the ring holds */
	pg->prod = 5;
	ASSERT_EQ(pv_chan_kick(&c, op_rec, &r), -EPROTO, "prod - cons > nents refused");
	ASSERT_EQ(r.n, 0, "... nothing done");
	ASSERT_EQ(pg->errors, 1, "... counted in the page");
	pg->prod = (uint32_t)-1;	/* "behind" cons: also out of range */
	ASSERT_EQ(pv_chan_kick(&c, op_rec, &r), -EPROTO, "prod behind cons refused");
	/* back in range: served with the host's own nents and cons */
	pg->prod = 0;
	for (int i = 0; i < 4; i++)
		publish_at(i);
	pg->nents = 0xffff;		/* changed after attach: ignored */
	pg->cons = 12345;		/* the page's cons is only a copy */
	r.hostile = 1;
	ASSERT_EQ(pv_chan_kick(&c, op_rec, &r), 4, "served with the values read at attach");
	ASSERT_EQ(r.n, 4, "four ops");
	ASSERT_EQ(r.stable, 4, "each op works on a copy the guest cannot change under it");
	ASSERT_EQ((uint32_t)r.a0[0], 0, "the first entry as published");
	ASSERT_EQ((uint32_t)r.a0[1], 1,
		  "every entry copied before the first op: a rewrite during an op changes nothing");
	ASSERT_EQ(c.cons, 4, "cons = the prod read once, at the kick's start");
	ASSERT_EQ(pg->cons, 4, "... and its copy in the page");
	ASSERT_TRUE(guard_intact(), "nothing written past the page (nents 0xffff ignored)");
	/* a kick far ahead after the hostile rewrites: refused, not served */
	r.hostile = 0;
	pg->prod = c.cons + 1000;
	ASSERT_EQ(pv_chan_kick(&c, op_rec, &r), -EPROTO, "a leap of 1000 refused");
	ASSERT_TRUE(guard_intact(), "guard intact at the end");
}

struct batch_rec {
	int calls;
	uint32_t n[8];
};

static void batch_rec(const uint64_t (*a)[4], int *status, uint32_t n, void *ctx)
{
	struct batch_rec *b = ctx;

	if (b->calls < 8)
		b->n[b->calls] = n;
	b->calls++;
	for (uint32_t i = 0; i < n; i++)
		status[i] = (int)(a[i][0] & 0xffff) == (int)i ? -100 - (int)i : 1;
}

/* posting: the pending hint and one batch per kick */
static void t_post(void)
{
	struct pv_chan c = { 0 };
	struct batch_rec b = { 0 };

	ASSERT_EQ(pv_chan_pending(&c), 0, "no page: nothing pending");
	page_init(8, 40);
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x4000, PVIOMMU_CHAN_F_DRAIN), "attach offering drains");
	ASSERT_EQ(pg->host_flags, PVIOMMU_CHAN_F_STATUS | PVIOMMU_CHAN_F_DRAIN,
		  "host_flags: statuses and drains");
	ASSERT_EQ(pv_chan_pending(&c), 0, "attach: nothing pending");
	pg->prod = 0;			/* entries at ring positions 0.. (publish_at) */
	c.cons = 0;
	for (int i = 0; i < 5; i++)
		publish_at(i);
	ASSERT_EQ(pv_chan_pending(&c), 1, "published: pending");
	ASSERT_EQ(pv_chan_kick_batch(&c, batch_rec, &b), 5, "five carried out");
	ASSERT_EQ(b.calls, 1, "in one batch");
	ASSERT_EQ(b.n[0], 5, "of five");
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(pg->ent[i].status, -100 - i, "each status from the batch, in order");
	ASSERT_EQ(pv_chan_pending(&c), 0, "drained: nothing pending");
	ASSERT_EQ(pv_chan_kick_batch(&c, batch_rec, &b), 0, "an empty kick");
	ASSERT_EQ(b.calls, 1, "... calls nothing");
	pg->prod = c.cons + 9;		/* beyond the ring: pending, and refused */
	ASSERT_EQ(pv_chan_pending(&c), 1, "a hostile prod reads as pending");
	ASSERT_EQ(pv_chan_kick_batch(&c, batch_rec, &b), -EPROTO, "... and is refused");
	ASSERT_EQ(b.calls, 1, "... with nothing done");
	pg->prod = c.cons;
	ASSERT_TRUE(pv_chan_detach(&c) == (void *)mem, "detach");
	pg->prod++;
	ASSERT_EQ(pv_chan_pending(&c), 0, "detached: nothing pending whatever the page says");
	ASSERT_TRUE(guard_intact(), "nothing written past the page");
}

/* a ring of 512 entries over six pages: every entry served in order, nothing past the ring */
static void t_big(void)
{
	struct pv_chan c = { 0 };
	struct batch_rec b = { 0 };

	maplen = PVIOMMU_CHAN_BYTES(PVIOMMU_CHAN_NENTS_MAX);
	page_init(PVIOMMU_CHAN_NENTS_MAX, 0);
	ASSERT_EQ(pv_chan_bytes(mem), maplen, "512 entries: 20544 bytes to map");
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x5000, 0), "a ring of 512 entries");
	ASSERT_EQ(c.nents, PVIOMMU_CHAN_NENTS_MAX, "... of 512");
	for (unsigned int i = 0; i < PVIOMMU_CHAN_NENTS_MAX; i++)
		publish(i & 0xffff);
	ASSERT_EQ(pv_chan_kick_batch(&c, batch_rec, &b), PVIOMMU_CHAN_NENTS_MAX, "a full ring served");
	ASSERT_EQ(b.calls, 1, "in one batch");
	ASSERT_EQ(pg->ent[PVIOMMU_CHAN_NENTS_MAX - 1].status, -100 - 511, "the last entry (page six) got its own status");
	ASSERT_EQ(pg->ent[0].status, -100, "the first too");
	pg->prod = c.cons + PVIOMMU_CHAN_NENTS_MAX + 1;
	ASSERT_EQ(pv_chan_kick_batch(&c, batch_rec, &b), -EPROTO, "one more than the ring: refused");
	ASSERT_TRUE(guard_intact(), "nothing written past the ring's 20544 bytes");
	pv_chan_detach(&c);
	maplen = PVIOMMU_CHAN_PAGE;
}

/*
 * pv_chan_spares against the entries themselves: random MAPs, UNMAPs and
 * other operations of two devices published, summarized and kicked in a
 * random order; each answer must be the brute-force one, and a transfer it
 * spares must be one no pending entry can revoke.
 */
static void noop_fn(const uint64_t (*a)[4], int *status, uint32_t n, void *ctx)
{
	(void)a; (void)ctx;
	for (uint32_t i = 0; i < n; i++)
		status[i] = 0;
}

/* the UNMAPs of bdf 3 are "held mapped by QEMU" (the caller's own reason) */
static int held(uint32_t bdf, uint64_t first, uint64_t last, void *ctx)
{
	(void)first; (void)last;
	++*(int *)ctx;
	return bdf == 3;
}

/* the guest publishes op of bdf on [iova, iova + size) (perm rw) */
static void publish_op(uint32_t nents, uint32_t op, uint32_t bdf, uint64_t iova, uint64_t size)
{
	struct pviommu_chan_ent *e = &pg->ent[pg->prod % nents];

	e->a[0] = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, op, 3, bdf);
	e->a[1] = iova;
	e->a[2] = size;
	pg->prod++;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state % n;
}

/* 1 when the published, not carried out, entries could not revoke the transfer */
static int spares_model(const struct pv_chan *c, uint32_t bdf, uint64_t addr, uint64_t len)
{
	uint32_t prod = pg->prod, unmaps = 0;
	uint64_t last = addr + len - 1;

	if (prod - c->cons > c->nents / 2)
		return 0;
	for (uint32_t i = c->cons; i != prod; i++) {
		const struct pviommu_chan_ent *e = &pg->ent[i % c->nents];
		uint32_t op = PVIOMMU_HC_OP(e->a[0]), b = PVIOMMU_HC_BDF(e->a[0]);

		if (op == PVIOMMU_OP_MAP)
			continue;
		if (op != PVIOMMU_OP_UNMAP || !e->a[2] || b == 3 || ++unmaps > PV_CHAN_PEND_UNMAPS)
			return 0;
		if (b == bdf && e->a[1] <= last && addr <= e->a[1] + e->a[2] - 1)
			return 0;
	}
	return 1;
}

static void t_spares(void)
{
	struct pv_chan c = { 0 };
	struct pv_chan_pend p;
	int asked = 0, spared = 0, denied = 0, wrong = 0, unsafe = 0, kicks = 0;
	/* mostly MAPs and UNMAPs of bdf 1 and 2; now and then another operation or bdf 3 */
	static const uint32_t ops[] = { PVIOMMU_OP_MAP, PVIOMMU_OP_MAP, PVIOMMU_OP_MAP,
		PVIOMMU_OP_MAP, PVIOMMU_OP_MAP, PVIOMMU_OP_UNMAP, PVIOMMU_OP_UNMAP, PVIOMMU_OP_UNMAP,
		PVIOMMU_OP_UNMAP, PVIOMMU_OP_UNMAP, PVIOMMU_OP_DEV_DEL, PVIOMMU_OP_REGISTER };

	page_init(64, 7);
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x4000, PVIOMMU_CHAN_F_DRAIN), "attach");
	pv_chan_pend_reset(&c, &p);
	ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0x1000, 8, held, &asked), 1, "nothing pending: spared");
	for (int step = 0; step < 50000; step++) {
		uint32_t r = (uint32_t)rnd(100);

		if (r < 45 && pg->prod - c.cons < c.nents) {
			uint32_t op = ops[rnd(sizeof(ops) / sizeof(ops[0]))];
			uint32_t bdf = rnd(20) ? 1 + (uint32_t)rnd(2) : 3;
			uint64_t iova = rnd(64) * 0x100;

			publish_op(c.nents, op, bdf, iova, rnd(8) * 0x80);	/* size 0: refused */
		} else if (r < 55) {
			ASSERT_TRUE(pv_chan_kick_batch(&c, noop_fn, NULL) >= 0, "kick");
			pv_chan_pend_reset(&c, &p);
			kicks++;
		} else {
			uint32_t bdf = 1 + (uint32_t)rnd(2);
			/* often a byte next to an UNMAP's first or last (multiples of 0x80) */
			static const uint64_t edge[] = { 0, 1, 0x7f, 0x80, 0x81 };
			uint64_t addr = rnd(64) * 0x100 + (rnd(2) ? edge[rnd(5)] : rnd(0x100));
			uint64_t len = rnd(2) ? rnd(6) * 0x80 + edge[rnd(5)] + 1 : 1 + rnd(0x300);
			int got = pv_chan_spares(&c, &p, bdf, addr, len, held, &asked);
			int want = spares_model(&c, bdf, addr, len);

			wrong += got != want;
			unsafe += got && !want;
			spared += got;
			denied += !got;
		}
	}
	ASSERT_EQ(wrong, 0, "every answer is the brute-force one");
	ASSERT_EQ(unsafe, 0, "no transfer spared that a pending entry revokes");
	ASSERT_TRUE(spared > 1000 && denied > 1000, "both answers, many times");
	ASSERT_TRUE(kicks > 500 && asked > 200, "kicks reset it, the caller is asked about UNMAPs");
	printf("  spares: %d spared, %d not, %d kicks, %d UNMAPs asked about\n", spared, denied, kicks, asked);
	pg->prod = c.cons + 65;
	ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0, 1, NULL, NULL), 0, "a hostile prod spares nothing");
	pg->prod = c.cons;
	pv_chan_detach(&c);
	ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0, 1, NULL, NULL), 0, "no page: nothing spared");
	ASSERT_TRUE(guard_intact(), "nothing written past the page");
}

/* the summary's room, in a ring of 512 (half of it may be pending) */
static void t_spares_room(void)
{
	struct pv_chan c = { 0 };
	struct pv_chan_pend p;

	maplen = PVIOMMU_CHAN_BYTES(PVIOMMU_CHAN_NENTS_MAX);
	page_init(PVIOMMU_CHAN_NENTS_MAX, 0);
	ASSERT_OK(pv_chan_attach(&c, mem, maplen, 0x5000, PVIOMMU_CHAN_F_DRAIN), "a ring of 512");
	pv_chan_pend_reset(&c, &p);
	/* PV_CHAN_PEND_UNMAPS UNMAPs of another device spare bdf 1, one more does not */
	for (int i = 0; i <= PV_CHAN_PEND_UNMAPS; i++) {
		ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0x100000, 4096, NULL, NULL), 1,
			  "UNMAPs of bdf 2 the summary holds spare bdf 1");
		publish_op(c.nents, PVIOMMU_OP_UNMAP, 2, 0x100000, 4096);
	}
	ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0x100000, 4096, NULL, NULL), 0,
		  "one UNMAP more than the summary holds: nothing spared");
	ASSERT_EQ(p.n, PV_CHAN_PEND_UNMAPS, "... and the summary did not grow past its room");
	/* MAPs up to half the ring spare, one more does not */
	ASSERT_TRUE(pv_chan_kick_batch(&c, noop_fn, NULL) >= 0, "kick");
	pv_chan_pend_reset(&c, &p);
	for (unsigned int i = 0; i <= PVIOMMU_CHAN_NENTS_MAX / 2; i++) {
		ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0x100000, 4096, NULL, NULL), 1,
			  "MAPs in a ring at most half full spare");
		publish_op(c.nents, PVIOMMU_OP_MAP, 1, 0x200000, 4096);
	}
	ASSERT_EQ(pv_chan_spares(&c, &p, 1, 0x100000, 4096, NULL, NULL), 0,
		  "more than half full: nothing spared (emptied before the guest must kick)");
	ASSERT_TRUE(guard_intact(), "nothing written past the ring");
	pv_chan_detach(&c);
	maplen = PVIOMMU_CHAN_PAGE;
}

/* a host that serves shorter rings (PVIOMMU_RING_MAX): a longer one gets no answer */
static void t_max_nents(void)
{
	struct pv_chan c = { 0 };

	ASSERT_EQ(pv_chan_set_max_nents(0), -EINVAL, "a ring of 0 entries: refused");
	ASSERT_EQ(pv_chan_set_max_nents(32), -EINVAL, "shorter than one page's 64: refused");
	ASSERT_EQ(pv_chan_set_max_nents(100), -EINVAL, "not a power of two: refused");
	ASSERT_EQ(pv_chan_set_max_nents(1024), -EINVAL, "longer than 512: refused");
	ASSERT_EQ(pv_chan_set_max_nents(PVIOMMU_CHAN_NENTS_PAGE), 0, "64: taken");
	maplen = sizeof(mem);
	page_init(PVIOMMU_CHAN_NENTS_PAGE * 2, 0);
	ASSERT_EQ(pv_chan_bytes(mem), 0, "128 entries past the cap: nothing to map");
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), -EPROTO, "... and no answer");
	ASSERT_EQ(pg->host_ack, 0, "... none written");
	page_init(PVIOMMU_CHAN_NENTS_PAGE, 0);
	ASSERT_EQ(pv_chan_bytes(mem), PVIOMMU_CHAN_BYTES(PVIOMMU_CHAN_NENTS_PAGE),
		  "the guest's fallback, one page of 64: served");
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), 0, "... attached");
	pv_chan_detach(&c);
	ASSERT_EQ(pv_chan_set_max_nents(PVIOMMU_CHAN_NENTS_MAX), 0, "512 again (the default)");
	page_init(PVIOMMU_CHAN_NENTS_PAGE * 2, 0);
	ASSERT_EQ(pv_chan_attach(&c, mem, maplen, 0x1000, 0), 0, "128 entries served again");
	pv_chan_detach(&c);
	maplen = PVIOMMU_CHAN_PAGE;
}

int main(void)
{
	SUBTEST("attach", t_attach());
	SUBTEST("max_nents", t_max_nents());
	SUBTEST("kick_in_order", t_kick_in_order());
	SUBTEST("hostile", t_hostile());
	SUBTEST("post", t_post());
	SUBTEST("big", t_big());
	SUBTEST("spares", t_spares());
	SUBTEST("spares_room", t_spares_room());
	return tl_done("chan");
}
