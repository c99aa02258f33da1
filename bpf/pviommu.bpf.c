// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pviommu policy core: the maps, the hypercall handlers (KVM tracepoint,
 * TCG cpuid uprobe), domain cleanup at QEMU exit, and test wrappers that let
 * BPF_PROG_TEST_RUN drive every path.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "pviommu.h"
#include "../qemu-hooks/qemu_layout.h"
#include "pviommu_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* set by the loader; must match the pinned index */
const volatile __u32 index_slots = PVIOMMU_DEF_INDEX_SLOTS;
/* set by the loader from pviommu_ctl.hash_key: the index's placement */
const volatile __u64 hash_key = 0;
/* programs act only while ctl->active_gen == load_gen (atomic reload) */
const volatile __u64 load_gen = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct pviommu_ctl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_ctl SEC(".maps");

/* uprobe plane: AddressSpace * of a QEMU process -> guest BDF */
struct as_key {
	__u32	domain;
	__u32	pad;
	__u64	as;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct as_key);
	__type(value, struct pviommu_as_ident);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_as_cache SEC(".maps");

/* the event budget of each domain's calls (pviommu.h, PVIOMMU_EV_BUDGET) */
struct ev_rate {
	__u64	window;		/* bpf_ktime_get_ns() >> 30 */
	__u32	n;		/* events of the window */
	__u32	limited;	/* of them, not sent */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PVIOMMU_MAX_DOMAINS);
	__type(key, __u32);
	__type(value, struct ev_rate);
} pviommu_ev_rate SEC(".maps");

/* loop steps are global functions, checked once (pviommu_range.h) */
#define PV_STEP			__attribute__((noinline))
#define PV_CTX_ENV
#define PV_CTX_SET_ENV(e)
#define PV_CTX_PUT_ENV(c, e)	((void)(e))
#define PV_STEP_ENV(c)		struct pv_env __env = PV_ENV, *env = &__env

/* the purge lets the writer lock go between chunks (pviommu_range.h) */
static __always_inline int pv_purge_yield(void);
#define PV_PURGE_YIELD()	pv_purge_yield()

#include "pviommu_range.h"

PV_SLOT_READ_GLOBAL()

__attribute__((noinline)) int pv_fast_set_bits(__u32 lane, __u64 pfn, __u32 bits)
{
	struct pv_env e = {};

	pv_fast_write(&e, lane, pfn, bits);
	return 0;
}

/* ---- helpers -------------------------------------------------------------- */
static __always_inline struct pviommu_ctl *ctl_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pviommu_ctl, &zero);
}

static __always_inline int active(struct pviommu_ctl *c)
{
	return c && c->active_gen == load_gen;
}

/*
 * The writer lock of the index: a bounded spin, then give up (fail closed:
 * the call fails with -EBUSY, and the guest, which gets no status, later
 * sees its device's DMA denied). The holder can be preempted (test_run from
 * QEMU's vCPU threads, raw_tp in a preemptible kernel), so the bound is
 * generous: up to 2^23 tries through bpf_loop (about 75 ms on this 2-core
 * host). 4096 tried inline lost about one MAP per 10^6 guest DMA transfers
 * here; 2^20 (about 10 ms) still let a writer give up, now and then, while
 * a purging holder was preempted between two chunks (test_bpf purge_chunks,
 * 1 run in 7).
 */
#define LOCK_TRIES	(1u << 23)

/*
 * The domain locks: a domain's calls, its purges (REGISTER, UNREGISTER,
 * DEV_DEL, QEMU's start and exit) and nothing else of it run one at a time,
 * so a purge can let the writer lock go between chunks without a call of
 * its own domain slipping in. Striped by domain (two domains may share a
 * stripe: they then wait for each other, nothing else); an array, so a
 * lock word never moves nor goes away; pinned, so every generation of a
 * reload takes the same ones. Order: domain lock, then writer lock.
 * A purge holds its domain lock from start to end, so a waiter on it (the
 * domain's own calls, or another domain's on the same stripe) has to
 * outlast a whole purge, not one chunk: it tries DLOCK_MARGIN times the
 * purge's walk of the index this load made (every position, the tail's
 * too, twice; about a try a slot), in rounds of LOCK_TRIES: 1 round at the
 * default size, 4 at 2^22 slots.
 */
#define PV_DLOCKS	1024u

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PV_DLOCKS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_dlocks SEC(".maps");

struct spin_ctx {
	__u32	*w;
	__u32	got;
};

/*
 * SPIN_UNROLL tries per loop step: one callback frame for any wait (the
 * 6.1 verifier allows 512 bytes of stack over a whole call chain, and a
 * nested loop for long waits cost one more frame than kvm_entry had)
 */
#define SPIN_UNROLL	8
#define SPIN_MAX_STEPS	(1u << 23)	/* bpf_loop's limit: 2^26 tries at most */

static long lock_try_cb(__u32 i, void *data)
{
	struct spin_ctx *x = data;

#pragma unroll
	for (int k = 0; k < SPIN_UNROLL; k++) {
		if (!__sync_val_compare_and_swap(x->w, 0, 1)) {
			x->got = 1;
			return 1;
		}
	}
	return 0;
}

/* a bounded spin on *w (0 = free), rounds of LOCK_TRIES: 0, or -EBUSY */
static __always_inline int spin_word(__u32 *w, __u32 rounds)
{
	struct spin_ctx x = { .w = w };
	__u64 steps = (__u64)rounds * (LOCK_TRIES / SPIN_UNROLL);

	if (__sync_val_compare_and_swap(w, 0, 1) == 0)
		return 0;
	bpf_loop(steps > SPIN_MAX_STEPS ? SPIN_MAX_STEPS : (__u32)steps, lock_try_cb, &x, 0);
	return x.got ? 0 : -PV_EBUSY;
}

/*
 * a lock word let go: on x86 (PV_WRITE_TSO) a plain store releases (every
 * load and store before it is seen first), without a locked instruction
 */
static __always_inline void spin_release(__u32 *w)
{
#ifdef PV_WRITE_TSO
	pv_barrier();
	*(volatile __u32 *)w = 0;
#else
	__sync_lock_test_and_set(w, 0);
#endif
}

/* a writer lock holder keeps it for one call or one chunk of a purge */
static __always_inline int lock_index(struct pviommu_ctl *c)
{
	if (!spin_word(&c->lock, 1))
		return 0;
	__sync_fetch_and_add(&c->lock_busy, 1);
	return -PV_EBUSY;
}

static __always_inline void unlock_index(struct pviommu_ctl *c)
{
	spin_release(&c->lock);
}

static __always_inline __u32 *dlock_word(__u32 dom)
{
	__u32 k = (dom * 0x9e3779b1u) >> 22;	/* 10 bits: PV_DLOCKS */

	return bpf_map_lookup_elem(&pviommu_dlocks, &k);
}

#define DLOCK_MARGIN	4

/* rounds of LOCK_TRIES that outlast a purge DLOCK_MARGIN times */
static __always_inline __u32 dlock_rounds(void)
{
	__u64 walk = 2 * ((__u64)index_slots + PVIOMMU_INDEX_TAIL);	/* every position, twice */

	return (__u32)((walk * DLOCK_MARGIN + LOCK_TRIES - 1) / LOCK_TRIES);
}

/* the domain lock of dom: 0, or -EBUSY (its word is 0 only while free) */
static __always_inline int lock_domain(__u32 dom)
{
	__u32 *w = dlock_word(dom);
	struct pviommu_ctl *c;

	if (!w)
		return -PV_EBUSY;
	if (!spin_word(w, dlock_rounds()))
		return 0;
	c = ctl_get();
	if (c)
		__sync_fetch_and_add(&c->lock_busy, 1);
	return -PV_EBUSY;
}

static __always_inline void unlock_domain(__u32 dom)
{
	__u32 *w = dlock_word(dom);

	if (w)
		spin_release(w);
}

/*
 * The lock of a MAP or UNMAP of dom (no purge): the writer lock, taken
 * while dom's domain lock is free. A purge holds its domain lock from its
 * start to its end and does its work under the writer lock: with the
 * writer lock held and the domain lock's word seen free, no purge of dom is
 * under way (none between two chunks), and none starts before the writer
 * lock goes. When the word is taken (a purge of dom, or of a domain sharing
 * its stripe, or a call waiting), the writer lock goes back and both are
 * taken in order, as every other call takes them; then the domain lock
 * goes, which leaves the same state. 0 (the writer lock held), or -EBUSY.
 */
static __always_inline int lock_map_unmap(struct pviommu_ctl *c, __u32 dom)
{
	__u32 *w = dlock_word(dom);

	if (!w || lock_index(c))
		return -PV_EBUSY;
	if (!PV_READ_ONCE(*w))
		return 0;
	unlock_index(c);
	if (lock_domain(dom))
		return -PV_EBUSY;
	if (lock_index(c)) {
		unlock_domain(dom);
		return -PV_EBUSY;
	}
	unlock_domain(dom);
	return 0;
}

/* between two chunks of a purge: other writers get the lock */
static __always_inline int pv_purge_yield(void)
{
	struct pviommu_ctl *c = ctl_get();

	if (!c)
		return 1;
	unlock_index(c);
	stat_inc(PVIOMMU_ST_PURGE_YIELD);
	return lock_index(c);
}

static const struct ev_rate ev_rate_new;

/*
 * 1 when an event of domain dom's calls may go out. A new window first
 * reports what the last one held back. Unlocked: a domain's vCPUs race on
 * the counts, which only makes the limit approximate. A subprogram: the
 * hypercall programs' frames stay within 512 bytes.
 */
static __noinline int ev_budget(__u32 dom, __u32 plane)
{
	__u64 w = bpf_ktime_get_ns() >> 30;
	struct ev_rate *r;
	__u32 held;

	r = bpf_map_lookup_elem(&pviommu_ev_rate, &dom);
	if (!r) {
		bpf_map_update_elem(&pviommu_ev_rate, &dom, &ev_rate_new, BPF_NOEXIST);
		r = bpf_map_lookup_elem(&pviommu_ev_rate, &dom);
		if (!r)
			return 1;
	}
	if (r->window != w) {
		r->window = w;
		r->n = 0;
		held = __sync_lock_test_and_set(&r->limited, 0);
		if (held)
			emit(PVIOMMU_EV_LIMITED, dom, 0, 0, held, 0, 0, 0,
			     PVIOMMU_ACT_NONE, (__u16)plane);
	}
	if (__sync_fetch_and_add(&r->n, 1) < PVIOMMU_EV_BUDGET)
		return 1;
	__sync_fetch_and_add(&r->limited, 1);
	return 0;
}

/* an event of a guest's call: within its domain's budget */
static __always_inline void emit_hc(__u32 type, __u32 dom, __u32 bdf,
				    __u64 addr, __u64 len, __u32 perm,
				    __u32 op, int err, __u16 action,
				    __u16 plane)
{
	if (ev_budget(dom, plane))
		emit(type, dom, bdf, addr, len, perm, op, err, action, plane);
}

/*
 * revoke everything of (dom, bdf) or of every device of dom (with its
 * DOMAIN slot too when with_domain): its pages, pieces and records, all in
 * the index. Called with dom's domain lock and the writer lock held;
 * returns 0 with both still held, or -EBUSY without the writer lock (lost
 * between chunks: the caller fails the domain closed). The index goes in
 * chunks (pviommu_range.h): other VMs' writers wait one chunk at most.
 */
static __always_inline int purge(struct pviommu_ctl *c, struct pv_env *e,
				 struct pviommu_domain *d, __u32 dom, __u32 bdf,
				 __u32 all_devices, __u32 with_domain)
{
	struct pv_purged sum = {};
	int lane = all_devices ? 0 : pv_device_lane(e, dom, bdf);

	if (pv_purge_index(e, dom, bdf, all_devices, with_domain, &sum) < 0)
		return -PV_EBUSY;
	if (d) {
		d->nr_records = d->nr_records > sum.records ? d->nr_records - sum.records : 0;
		d->nr_pages = d->nr_pages > sum.pages ? d->nr_pages - sum.pages : 0;
		d->mapped_bytes = d->mapped_bytes > sum.bytes ? d->mapped_bytes - sum.bytes : 0;
		if (all_devices) {
			d->nr_devices = 0;
			d->nr_records = 0;
			d->nr_pages = 0;
			d->nr_lanes = 0;
			d->mapped_bytes = 0;
		} else {
			if (d->nr_devices)
				d->nr_devices--;
			if (lane > 0 && d->nr_lanes)
				d->nr_lanes--;
		}
		d->generation++;
	}
	return 0;
}

/*
 * Fail closed (pviommu.h, the state machine): the domain (bdf ~0u) or one
 * device is denied from now on, without the writer lock (it may be what
 * failed); counted, and an event says why. Without a DOMAIN slot the
 * domain was never reserved nor registered: nothing of it is protected.
 */
static __always_inline void fail_closed(struct pv_env *e, __u32 dom, __u32 bdf,
					__u32 op, int err, __u32 why,
					__u16 plane)
{
	struct pviommu_domain *d;

	if (pv_mark_failed(e, dom, bdf, why) && bdf != ~0u &&
	    pv_mark_failed(e, dom, ~0u, why))
		return;
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	if (d)
		__sync_fetch_and_or(&d->flags, PVIOMMU_DOM_FAILED);
	stat_inc(PVIOMMU_ST_FAILED);
	emit_hc(PVIOMMU_EV_FAILED, dom, bdf, 0, 0, why, op, err,
		PVIOMMU_ACT_DENIED, plane);
}

/*
 * What a refused call leaves behind (pviommu.h): MAP, nothing (its range
 * was never granted); a call that revokes or protects, FAILED.
 */
static __always_inline void refused(struct pv_env *e, __u32 dom, __u32 op,
				    __u32 bdf, int err, __u16 plane)
{
	__u32 why = err == -PV_EBUSY ? PVIOMMU_FAIL_LOCK :
		    err == -PV_ENOSPC ? PVIOMMU_FAIL_NOSPACE :
		    err == -PV_ENODEV ? PVIOMMU_FAIL_UNREG :
		    err == -PV_EPROTO ? PVIOMMU_FAIL_PROTO : PVIOMMU_FAIL_INDEX;

	switch (op) {
	case PVIOMMU_OP_UNMAP:
	case PVIOMMU_OP_DEV_DEL:
		/* a lost revocation: -EBUSY (lock), -EUCLEAN (index), -EPROTO
		 * (another ABI); the other refusals revoke nothing granted */
		if (err == -PV_EBUSY || err == -PV_EUCLEAN || err == -PV_EPROTO)
			fail_closed(e, dom, bdf, op, err, why, plane);
		return;
	case PVIOMMU_OP_UNREGISTER:
		if (err == -PV_ENODEV)	/* never registered: nothing to do */
			return;
		fail_closed(e, dom, ~0u, op, err, why, plane);
		return;
	case PVIOMMU_OP_REGISTER:
	case PVIOMMU_OP_DEV_ADD:
		/* the guest believes in a protection the host does not have */
		fail_closed(e, dom, ~0u, op, err, why, plane);
		return;
	}
}

/* the domain record of dom when its guest registered, else NULL (a reserved one is not) */
static __always_inline struct pviommu_domain *registered(__u32 dom)
{
	struct pviommu_domain *d = bpf_map_lookup_elem(&pviommu_domains, &dom);

	return d && (d->flags & PVIOMMU_DOM_REGISTERED) ? d : 0;
}

/*
 * REGISTER's new domain record, from the old one (d, may be NULL): a
 * subprogram of its own, so that the record is not on hc_register's frame
 * while that calls into the index (6.1 allows 512 bytes for all frames)
 */
static __noinline int hc_register_record(struct pviommu_ctl *c,
					 struct pviommu_domain *d, __u32 dom,
					 __u32 abi)
{
	struct pviommu_domain nd = {};

	if (!c)
		return -PV_ENODEV;
	nd.abi = abi;
	nd.flags = PVIOMMU_DOM_REGISTERED;
	nd.mode = c->default_mode;
	nd.registered_ns = bpf_ktime_get_ns();
	nd.generation = d ? d->generation + 1 : 1;
	nd.quota = c->quota;
	if (d) {
		nd.mode = d->mode;
		/* a count for the VM's life (QEMU's), not the guest's: it cannot wipe it */
		nd.refused = d->refused;
		nd.flags |= d->flags & PVIOMMU_DOM_RESERVED;
		if (d->flags & PVIOMMU_DOM_RESERVED)
			nd.quota = d->quota;	/* taken at QEMU start */
	}
	return bpf_map_update_elem(&pviommu_domains, &dom, &nd, BPF_ANY) ? -PV_ENOSPC : 0;
}

/*
 * REGISTER: the guest starts from nothing (a reboot forgets the old state).
 * A subprogram of its own: the new domain record stays off the frame of
 * the hypercall program, whose deepest call chain must fit 512 bytes (6.1).
 */
static __noinline int hc_register(struct pviommu_ctl *c, __u32 dom, __u32 abi)
{
	struct pv_env e = PV_ENV;
	struct pviommu_domain *d;
	int err;

	if (!c)
		return -PV_ENODEV;
	if (lock_domain(dom))
		return -PV_EBUSY;
	if (lock_index(c)) {
		unlock_domain(dom);
		return -PV_EBUSY;
	}
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	if (purge(c, &e, d, dom, 0, 1, 0)) {
		unlock_domain(dom);
		return -PV_EBUSY;
	}
	err = pv_op_register(&e, dom, 1);
	if (err || hc_register_record(c, d, dom, abi))
		err = -PV_ENOSPC;
	c->generation++;
	unlock_index(c);
	unlock_domain(dom);
	return err;
}

/* MAP or UNMAP of registered domain d, with its domain lock and the writer lock */
static __always_inline int hc_map_unmap(struct pv_env *e, struct pviommu_domain *d,
					__u32 dom, __u32 op, __u32 bdf, __u32 perm,
					__u64 a1, __u64 a2, __u64 a3)
{
	int err;

	if (op == PVIOMMU_OP_UNMAP) {
		err = pv_op_unmap(e, d, dom, bdf, a1, a2, perm);
		if (!err)
			stat_inc(PVIOMMU_ST_UNMAP);
		return err;
	}
	err = pv_op_map(e, d, dom, bdf, a1, a2, perm, a3);
	if (!err)
		stat_inc(PVIOMMU_ST_MAP);
	if (err == -PV_ENOSPC) {
		d->flags |= PVIOMMU_DOM_TABLE_FULL;
		stat_inc(PVIOMMU_ST_TABLE_FULL);
	}
	if (d->refused)
		d->flags |= PVIOMMU_DOM_QUOTA;
	return err;
}

/* a refused call: counted, an event (within the domain's budget), and what it leaves */
static __always_inline void hc_refused(struct pv_env *e, __u32 dom, __u32 op, __u32 bdf,
				       __u32 perm, __u64 a1, __u64 a2, int err,
				       __u16 plane)
{
	stat_inc(PVIOMMU_ST_HC_ERR);
	emit_hc(err == -PV_ENOSPC ? PVIOMMU_EV_TABLE_FULL : PVIOMMU_EV_HC_ERROR,
		dom, bdf, a1, a2, perm, op, err, PVIOMMU_ACT_NONE, plane);
	refused(e, dom, op, bdf, err, plane);
}

/*
 * UNREGISTER, DEV_ADD, DEV_DEL of registered domain d, with its domain lock
 * and the writer lock: a subprogram of its own, so that the purge's state
 * is not on the frame of every hypercall program's MAP and UNMAP path
 * (6.1 allows 512 bytes for a whole call chain). -EBUSY: a purge lost the
 * writer lock (it is not held any more).
 */
static __noinline int hc_admin(struct pviommu_ctl *c, struct pviommu_domain *d,
			       __u32 dom, __u32 op, __u32 bdf)
{
	struct pv_env e = PV_ENV;
	int err = 0;

	if (!c || !d)
		return -PV_ENODEV;
	switch (op) {
	case PVIOMMU_OP_UNREGISTER:
		/* one purge; the DOMAIN slot goes too unless QEMU reserved it */
		if (purge(c, &e, d, dom, 0, 1, !(d->flags & PVIOMMU_DOM_RESERVED)))
			return -PV_EBUSY;
		if (d->flags & PVIOMMU_DOM_RESERVED) {
			/* QEMU lives on: back to RESERVED */
			err = pv_op_register(&e, dom, 0);
			d->flags &= ~(PVIOMMU_DOM_REGISTERED | PVIOMMU_DOM_FAILED);
		} else {
			bpf_map_delete_elem(&pviommu_domains, &dom);
		}
		break;
	case PVIOMMU_OP_DEV_ADD:
		err = pv_op_dev_add(&e, d, dom, bdf);
		break;
	case PVIOMMU_OP_DEV_DEL:
		if (!pv_device_protected(&e, dom, bdf))
			err = -PV_ENODEV;
		else if (purge(c, &e, d, dom, bdf, 0, 0))
			return -PV_EBUSY;
		break;
	}
	return err;
}

/*
 * The index slot where an operation on [iova, ...) of bdf starts (its first
 * page's home), read and nothing more: its cache miss is under way while
 * the caller does other work (a touch; the operation reads it again)
 */
static __always_inline __u32 home_touch(struct pv_env *e, __u32 dom, __u32 bdf, __u64 iova)
{
	struct pviommu_slot *s = pv_slot_at(e, pv_key_home(e, PVIOMMU_SLOT_PAGE, dom, bdf,
							    iova >> PVIOMMU_PAGE_SHIFT));

	return s ? s->kind : 0;
}

/*
 * One hypercall of domain 'dom' (always the caller's own tgid: a guest can
 * only change its own domain). Returns 0 or a negative errno. (The shared
 * page's batches go through pviommu_hc_batch, which takes the locks once
 * for all its operations.)
 */
static __always_inline int handle_hc(__u32 dom, __u64 a0, __u64 a1, __u64 a2,
				     __u64 a3, __u16 plane)
{
	struct pv_env e = PV_ENV;
	struct pviommu_domain *d;
	struct pviommu_ctl *c = ctl_get();
	__u32 op = PVIOMMU_HC_OP(a0), bdf = PVIOMMU_HC_BDF(a0);
	__u32 perm = PVIOMMU_HC_PERM(a0);
	int err = 0;

	/*
	 * A program of an older load: the caller holds a stale program (the
	 * in-process library opens the pinned one again and retries); the
	 * attached links of a reload are never both active.
	 */
	if (!active(c))
		return c && c->active_gen > load_gen ? -PV_ESTALE : 0;
	stat_inc(PVIOMMU_ST_HC);

	if (PVIOMMU_HC_ABI(a0) != PVIOMMU_ABI_VERSION) {
		err = -PV_EPROTO;
		goto out;
	}
	if (!op || op >= PVIOMMU_OP_MAX) {
		err = -PV_EOPNOTSUPP;
		goto out;
	}

	if (op == PVIOMMU_OP_REGISTER) {
		err = hc_register(c, dom, PVIOMMU_HC_ABI(a0));
		if (!err)
			emit_hc(PVIOMMU_EV_DOMAIN, dom, 0, 0, 0, 0, op, 0, 0,
				plane);
		goto out;
	}
	if (op == PVIOMMU_OP_MAP || op == PVIOMMU_OP_UNMAP) {
		__u32 t;

		if (lock_map_unmap(c, dom)) {
			err = -PV_EBUSY;
			goto out;
		}
		/* the new page's slot on its way while the domain is looked up */
		t = home_touch(&e, dom, bdf, a1);
		__asm__ __volatile__("" : : "r"(t));
		d = registered(dom);
		if (!d) {
			err = -PV_ENODEV;
		} else {
			err = hc_map_unmap(&e, d, dom, op, bdf, perm, a1, a2, a3);
			c->generation++;
		}
		unlock_index(c);
		goto out;
	}
	if (lock_domain(dom)) {
		err = -PV_EBUSY;
		goto out;
	}
	d = registered(dom);
	if (!d) {
		err = -PV_ENODEV;
		goto out_domain;
	}
	if (lock_index(c)) {
		err = -PV_EBUSY;
		goto out_domain;
	}
	/* UNREGISTER, DEV_ADD, DEV_DEL */
	err = hc_admin(c, d, dom, op, bdf);
	if (err == -PV_EBUSY)
		goto out_domain;	/* the purge lost the writer lock */
	c->generation++;
	unlock_index(c);
out_domain:
	unlock_domain(dom);
out:
	if (err)
		hc_refused(&e, dom, op, bdf, perm, a1, a2, err, plane);
	return err;
}

/*
 * RESERVE, BPF_PROG_TEST_RUN only (root: the pins are root's): args[0] =
 * the domain, 0 for the caller's own process (its tgid in the host's PID
 * namespace, which a QEMU in a container cannot learn otherwise); args[1]
 * = mode + 1, 0 for the default; args[2] = records << 32 | pages, args[3]
 * = devices << 32 | lanes: the domain's quotas (a 0 takes the default of
 * pviommu_ctl). Takes the domain's capacity at QEMU start (pviommu.h, the
 * state machine). Returns the domain, or a negative errno as (__u32).
 */
SEC("raw_tp")
int pviommu_reserve(struct bpf_raw_tracepoint_args *ctx)
{
	struct pv_env e = PV_ENV;
	struct pviommu_ctl *c = ctl_get();
	struct pviommu_domain nd = {}, *d;
	__u32 dom = (__u32)ctx->args[0], mode = (__u32)ctx->args[1];
	int err;

	if (!c)
		return -PV_ENODEV;
	if (!dom)
		dom = bpf_get_current_pid_tgid() >> 32;
	if (lock_domain(dom))
		return -PV_EBUSY;
	if (lock_index(c)) {
		unlock_domain(dom);
		return -PV_EBUSY;
	}
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	nd.mode = mode ? mode - 1 : d ? d->mode : c->default_mode;
	nd.flags = PVIOMMU_DOM_RESERVED;
	nd.generation = d ? d->generation + 1 : 1;
	nd.quota = c->quota;
	if (ctx->args[2] >> 32)
		nd.quota.records = ctx->args[2] >> 32;
	if ((__u32)ctx->args[2])
		nd.quota.pages = (__u32)ctx->args[2];
	if (ctx->args[3] >> 32)
		nd.quota.devices = ctx->args[3] >> 32;
	if ((__u32)ctx->args[3])
		nd.quota.lanes = (__u32)ctx->args[3];
	nd.registered_ns = bpf_ktime_get_ns();
	/* a former process of this pid */
	if (purge(c, &e, 0, dom, 0, 1, 1)) {
		unlock_domain(dom);
		return -PV_EBUSY;
	}
	err = bpf_map_update_elem(&pviommu_domains, &dom, &nd, BPF_ANY) ?
	      -PV_ENOSPC : pv_op_reserve(&e, dom);
	if (err)	/* no half-made domain */
		bpf_map_delete_elem(&pviommu_domains, &dom);
	c->generation++;
	unlock_index(c);
	unlock_domain(dom);
	if (err) {
		stat_inc(PVIOMMU_ST_TABLE_FULL);
		emit(PVIOMMU_EV_TABLE_FULL, dom, 0, 0, 0, 0, 0, err,
		     PVIOMMU_ACT_DENIED, PVIOMMU_PLANE_TEST);
		return err;
	}
	emit(PVIOMMU_EV_DOMAIN, dom, 0, 0, 0, 0, 0, 0, 0, PVIOMMU_PLANE_TEST);
	return dom;
}

/* ---- transports ------------------------------------------------------------ */

/*
 * KVM: kvm_emulate_hypercall() fires kvm:kvm_hypercall(nr, a0, a1, a2, a3)
 * on the vCPU thread of the QEMU process, before KVM's own CPL check.
 * raw_tp works on 6.1 and 6.18 and needs no kvm BTF; it also supports
 * BPF_PROG_TEST_RUN, which the tests use with the same args.
 */
SEC("raw_tp/kvm_hypercall")
int pviommu_kvm_hypercall(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 dom = bpf_get_current_pid_tgid() >> 32;

	if ((__u32)ctx->args[0] != PVIOMMU_KVM_HC_NR)
		return 0;
	return handle_hc(dom, ctx->args[1], ctx->args[2], ctx->args[3],
			 ctx->args[4], PVIOMMU_PLANE_HC_KVM);
}

/*
 * The operations of the batch being carried out, copied in with one read:
 * used only under the writer lock, which one batch holds at a time.
 */
__u64 pv_batch_buf[PVIOMMU_BATCH_MAX][4];

/* op w of a batch refused with err (reported as handle_hc() reports one) */
static __always_inline int batch_refuse(__u32 dom, const __u64 *w, int err)
{
	struct pv_env e = PV_ENV;

	hc_refused(&e, dom, PVIOMMU_HC_OP(w[0]), PVIOMMU_HC_BDF(w[0]),
		   PVIOMMU_HC_PERM(w[0]), w[1], w[2], err, PVIOMMU_PLANE_PAGE);
	return err;
}

/*
 * Operation i of the batch in pv_batch_buf, under the locks the batch
 * holds, for d, the caller's registered domain: a global function,
 * verified once on its own (a body inlined into the loop is explored again
 * for every iteration, past the verifier's limit).
 */
__noinline int pv_batch_one(struct pviommu_domain *d, __u32 dom, __u32 i)
{
	struct pv_env e = PV_ENV;
	__u64 *w = pv_batch_buf[i & (PVIOMMU_BATCH_MAX - 1)];
	__u32 op = PVIOMMU_HC_OP(w[0]);
	int err;

	if (!d)
		return -PV_ENODEV;
	if (PVIOMMU_HC_ABI(w[0]) != PVIOMMU_ABI_VERSION)
		return batch_refuse(dom, w, -PV_EPROTO);
	if (op != PVIOMMU_OP_MAP && op != PVIOMMU_OP_UNMAP)
		return batch_refuse(dom, w, -PV_EOPNOTSUPP);
	err = hc_map_unmap(&e, d, dom, op, PVIOMMU_HC_BDF(w[0]), PVIOMMU_HC_PERM(w[0]),
			   w[1], w[2], w[3]);
	return err ? batch_refuse(dom, w, err) : 0;
}

/*
 * Before a batch's operations are carried out: the index slot each one
 * starts at (its first page's home) is read, all of them in one pass. The
 * reads do not depend on one another, so the CPU has their cache misses in
 * flight together instead of one after the other inside the operations (a
 * new page's home slot is a miss once the index outgrows the caches). Only
 * a touch: the operations read what they need again.
 */
__noinline int pv_batch_touch(__u32 dom, __u32 n)
{
	struct pv_env e = PV_ENV;
	__u32 i, sum = 0;
	__u64 *w;

	for (i = 0; i < PVIOMMU_BATCH_MAX; i++) {
		if (i >= n)
			break;
		w = pv_batch_buf[i];
		sum += home_touch(&e, dom, PVIOMMU_HC_BDF(w[0]), w[1]);
	}
	__asm__ __volatile__("" : : "r"(sum));	/* the reads stay */
	return 0;
}

/*
 * A batch whose operations could not be read: what they were (an UNMAP,
 * maybe) is unknown, so the whole domain fails closed. -EFAULT.
 */
__noinline int pv_batch_unreadable(__u32 dom)
{
	struct pv_env e = PV_ENV;

	fail_closed(&e, dom, ~0u, 0, -PV_EFAULT, PVIOMMU_FAIL_CHANNEL, PVIOMMU_PLANE_PAGE);
	return -PV_EFAULT;
}

/* the first operation of a batch that could not start: refused with err */
__noinline int pv_batch_refuse(__u32 dom, __u64 uptr, int err)
{
	__u64 w[4];

	if (bpf_probe_read_user(w, sizeof(w), (void *)uptr))
		return pv_batch_unreadable(dom);
	stat_inc(PVIOMMU_ST_HC);
	return batch_refuse(dom, w, err);
}

/*
 * The shared page's operations, many per BPF_PROG_TEST_RUN (pviommu.h,
 * pviommu_hc_batch): the in-process plane drains a guest's posted entries
 * with one syscall instead of one each. The operations are read from the
 * caller's memory (bpf_probe_read_user: test_run runs in the caller's
 * context), all at once, each validated exactly like a hypercall of the
 * caller's own domain, MAP and UNMAP only. The domain lock, the domain's
 * record and the writer lock are taken once for the batch (at most
 * PVIOMMU_BATCH_MAX operations: other VMs' writers wait that long at most).
 * Not attached anywhere: a guest cannot reach it.
 */
SEC("raw_tp")
int pviommu_hc_batch(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 uptr = ctx->args[0];
	__u32 n = (__u32)ctx->args[1], dom = bpf_get_current_pid_tgid() >> 32, i = 0;
	struct pviommu_ctl *c = ctl_get();
	struct pviommu_domain *d;
	int err = 0;

	if (!n || n > PVIOMMU_BATCH_MAX)
		return -PV_EINVAL;
	/* a program of an older load: the caller opens the pinned one again */
	if (!active(c))
		return PVIOMMU_BATCH_RET(0, c && c->active_gen > load_gen ? -PV_ESTALE : -PV_EBUSY);
	if (lock_map_unmap(c, dom))
		return PVIOMMU_BATCH_RET(0, pv_batch_refuse(dom, uptr, -PV_EBUSY));
	d = registered(dom);
	if (!d) {
		err = pv_batch_refuse(dom, uptr, -PV_ENODEV);
		goto out_lock;
	}
	if (bpf_probe_read_user(pv_batch_buf, n * sizeof(pv_batch_buf[0]),
				(void *)uptr)) {
		err = pv_batch_unreadable(dom);
		goto out;
	}
	pv_batch_touch(dom, n);
	/* a plain loop: a bpf_loop callback would add a frame to the chain */
	for (i = 0; i < PVIOMMU_BATCH_MAX; i++) {
		if (i >= n)
			break;
		err = pv_batch_one(d, dom, i);
		if (err)
			break;
	}
	stat_add(PVIOMMU_ST_HC, err ? i + 1 : i);
out:
	c->generation++;
out_lock:
	unlock_index(c);
	return PVIOMMU_BATCH_RET(i, err);
}

/*
 * The same with the guest's CPL, on AMD SVM hosts (the loader picks one of
 * the two: this one when kvm_amd's BTF is there). KVM checks the CPL only
 * after the tracepoint (kvm_emulate_hypercall()), so a vmmcall from guest
 * user space arrives here too; KVM then answers it -KVM_EPERM, and we must
 * ignore it. The vCPU is kvm.ko's per-CPU kvm_running_vcpu (set by
 * vcpu_load()/kvm_sched_in() for the whole KVM_RUN ioctl); SVM keeps the CPL
 * in memory: to_svm(vcpu)->vmcb->save.cpl, what svm_get_cpl() returns.
 * (VMX reads it from the VMCS in vmx_get_cpl(): out of reach of BPF.)
 * Types from the kvm/kvm_amd module BTF by CO-RE; the extern is weak and
 * guarded, so the object opens without KVM.
 */
struct kvm_vcpu___pv {
	int vcpu_id;
} __attribute__((preserve_access_index));

struct vmcb_save_area___pv {
	__u8 cpl;
} __attribute__((preserve_access_index));

struct vmcb___pv {
	struct vmcb_save_area___pv save;
} __attribute__((preserve_access_index));

struct vcpu_svm___pv {
	struct kvm_vcpu___pv vcpu;
	struct vmcb___pv *vmcb;
} __attribute__((preserve_access_index));

extern struct kvm_vcpu___pv *kvm_running_vcpu __ksym __weak;

/* the CPL of the vCPU running on this CPU, or -1 if unknown */
static __always_inline int svm_guest_cpl(void)
{
	struct kvm_vcpu___pv **pv, *vcpu;
	struct vcpu_svm___pv *svm;
	struct vmcb___pv *vmcb;
	__u8 cpl;

	if (!&kvm_running_vcpu || !bpf_core_type_exists(struct vcpu_svm___pv))
		return -1;
	pv = bpf_this_cpu_ptr(&kvm_running_vcpu);
	vcpu = *pv;
	if (!vcpu)
		return -1;
	svm = (void *)vcpu - bpf_core_field_offset(struct vcpu_svm___pv, vcpu);
	vmcb = BPF_CORE_READ(svm, vmcb);
	if (!vmcb || bpf_core_read(&cpl, sizeof(cpl), &vmcb->save.cpl))
		return -1;
	return cpl;
}

SEC("?raw_tp/kvm_hypercall")	/* "?": loaded only when the loader asks */
int pviommu_kvm_hypercall_svm(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 dom = bpf_get_current_pid_tgid() >> 32;

	if ((__u32)ctx->args[0] != PVIOMMU_KVM_HC_NR)
		return 0;
	/* guest user space (or no vCPU to ask): KVM refuses it, so do we */
	if (svm_guest_cpl() != 0) {
		stat_inc(PVIOMMU_ST_USER_HC);
		return 0;
	}
	return handle_hc(dom, ctx->args[1], ctx->args[2], ctx->args[3],
			 ctx->args[4], PVIOMMU_PLANE_HC_KVM);
}

/*
 * Any vendor (Intel VMX included, where the CPL lives in the VMCS): hold
 * the call, and let KVM decide. kvm_emulate_hypercall() fires the
 * tracepoint, then checks the CPL itself and writes its answer to the
 * guest's RAX: -KVM_EPERM (-1) for a call from guest user space, else
 * -KVM_ENOSYS (our number is not KVM's). The same vCPU thread enters the
 * guest again (kvm:kvm_entry) before the guest runs one more instruction:
 * there the call is carried out, unless RAX says -KVM_EPERM. So the guest
 * sees its MAP/UNMAP in force when it resumes, exactly as with the direct
 * handler (strict unmap keeps its meaning).
 * Held calls live in pviommu_held, keyed by the vCPU thread (pid_tgid),
 * one at most per thread; shared by every load (pinned), so a call held by
 * one generation is carried out by whichever generation is active at the
 * entry (an old program that finds itself stale hands it back). A call
 * that cannot be held, or whose answer cannot be read, fails the domain
 * closed; a thread that exits with a held call drops it (pviommu_proc_exit).
 */
struct pv_held {
	__u64 a[4];
	__u32 claimed;	/* a kvm_entry program is carrying it out */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pv_held);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_held SEC(".maps");

struct kvm_vcpu_arch___pvh {
	unsigned long regs[1];	/* regs[VCPU_REGS_RAX = 0] */
} __attribute__((preserve_access_index));

struct kvm_vcpu___pvh {
	struct kvm_vcpu_arch___pvh arch;
} __attribute__((preserve_access_index));

#define PV_KVM_EPERM	1	/* include/uapi/linux/kvm_para.h */

SEC("?raw_tp/kvm_hypercall")
int pviommu_kvm_hypercall_held(struct bpf_raw_tracepoint_args *ctx)
{
	struct pviommu_ctl *c = ctl_get();
	__u64 key = bpf_get_current_pid_tgid();
	struct pv_held h = {};
	struct pv_env e = PV_ENV;

	if ((__u32)ctx->args[0] != PVIOMMU_KVM_HC_NR || !active(c))
		return 0;
	h.a[0] = ctx->args[1];
	h.a[1] = ctx->args[2];
	h.a[2] = ctx->args[3];
	h.a[3] = ctx->args[4];
	if (bpf_map_update_elem(&pviommu_held, &key, &h, BPF_ANY))
		fail_closed(&e, key >> 32, ~0u, PVIOMMU_HC_OP(h.a[0]), -PV_ENOSPC,
			    PVIOMMU_FAIL_NOSPACE, PVIOMMU_PLANE_HC_KVM);
	return 0;
}

/* KVM's answer could not be read: neither applied nor dropped silently */
static __noinline int held_unknown(__u64 key, __u64 a0)
{
	struct pv_env e = PV_ENV;

	fail_closed(&e, key >> 32, ~0u, PVIOMMU_HC_OP(a0), -PV_EUCLEAN,
		    PVIOMMU_FAIL_INDEX, PVIOMMU_PLANE_HC_KVM);
	return 0;
}

/*
 * kvm:kvm_entry(vcpu, ...): carry out this thread's held call, if any.
 * The call stays in the map while it is carried out (claimed), so that
 * no copy of it sits on the stack next to handle_hc()'s (6.1's verifier
 * limits a call chain to 512 bytes); it goes once done.
 */
SEC("?raw_tp/kvm_entry")
int pviommu_kvm_entry(struct bpf_raw_tracepoint_args *ctx)
{
	struct kvm_vcpu___pvh *vcpu = (void *)ctx->args[0];
	__u64 key = bpf_get_current_pid_tgid(), rax = 0;
	struct pv_held *h;
	int r;

	h = bpf_map_lookup_elem(&pviommu_held, &key);
	if (!h)
		return 0;	/* the common case: one lookup per VM entry */
	if (!active(ctl_get()))
		return 0;	/* the active generation's program carries it out */
	if (__sync_val_compare_and_swap(&h->claimed, 0, 1))
		return 0;	/* another program is at it */
	if (!bpf_core_field_exists(vcpu->arch.regs) ||
	    bpf_core_read(&rax, sizeof(rax), &vcpu->arch.regs[0])) {
		r = held_unknown(key, h->a[0]);
	} else if ((__u32)rax == (__u32)-PV_KVM_EPERM) {	/* guest user space */
		stat_inc(PVIOMMU_ST_USER_HC);
		r = 0;
	} else {
		r = handle_hc(key >> 32, h->a[0], h->a[1], h->a[2], h->a[3],
			      PVIOMMU_PLANE_HC_KVM);
	}
	if (r == -PV_ESTALE) {	/* a reload flipped meanwhile: the new one does it */
		__sync_lock_test_and_set(&h->claimed, 0);
		return 0;
	}
	bpf_map_delete_elem(&pviommu_held, &key);
	return 0;
}

/*
 * TCG: a uprobe on QEMU's exported cpu_x86_cpuid(env, index, count, ...).
 * CPUX86State starts with regs[16] (target/i386/cpu.h, QEMU 7.x), then eip,
 * eflags, cc_dst, cc_src, cc_src2, cc_op, df, hflags: hflags & 3 is the CPL.
 */
SEC("uprobe")
int BPF_KPROBE(pviommu_tcg_cpuid, void *env, __u32 index)
{
	__u32 dom = bpf_get_current_pid_tgid() >> 32;
	/* regs[1..3], then hflags and regs[6] in turn: a small frame (6.1: 512 bytes a chain) */
	__u64 rcx_rdx_rbx[3], rsi = 0;

	if (index != PVIOMMU_CPUID_LEAF)
		return 0;
	if (bpf_probe_read_user(rcx_rdx_rbx, sizeof(rcx_rdx_rbx),
				(__u64 *)env + QEMU_R_ECX) ||
	    bpf_probe_read_user(&rsi, sizeof(__u32), (char *)env + QEMU_ENV_HFLAGS_OFF))
		return 0;
	if (rsi & 3) {	/* hflags: the CPL */
		stat_inc(PVIOMMU_ST_USER_HC);
		return 0;
	}
	if (bpf_probe_read_user(&rsi, sizeof(rsi), (__u64 *)env + QEMU_R_ESI))
		return 0;
	return handle_hc(dom, rcx_rdx_rbx[QEMU_R_EBX - QEMU_R_ECX],
			 rcx_rdx_rbx[0], rcx_rdx_rbx[QEMU_R_EDX - QEMU_R_ECX],
			 rsi, PVIOMMU_PLANE_HC_TCG);
}

/*
 * MODE, BPF_PROG_TEST_RUN only (pviommuctl mode): args[0] = the domain (0:
 * every domain), args[1] = the mode. Only the mode word of each record is
 * written (a userspace read-modify-write of the record could undo a
 * concurrent hypercall's update of its counters or flags). Returns the
 * number of domains changed, or -ENOENT.
 */
struct set_mode_ctx {
	__u32	mode;
	__u32	n;
};

static long set_mode_cb(struct bpf_map *map, __u32 *k, struct pviommu_domain *d,
			struct set_mode_ctx *c)
{
	__sync_lock_test_and_set(&d->mode, c->mode);
	c->n++;
	return 0;
}

SEC("raw_tp")
int pviommu_set_mode(struct bpf_raw_tracepoint_args *ctx)
{
	struct set_mode_ctx c = { .mode = (__u32)ctx->args[1] };
	__u32 dom = (__u32)ctx->args[0];
	struct pviommu_domain *d;

	if (c.mode > PVIOMMU_MODE_KILL)
		return -PV_EINVAL;
	if (!dom) {
		bpf_for_each_map_elem(&pviommu_domains, set_mode_cb, &c, 0);
		return c.n;
	}
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	if (!d)
		return -PV_ENOENT;
	__sync_lock_test_and_set(&d->mode, c.mode);
	return 1;
}

/* the last thread of a QEMU process exits: its domain goes */
static long vfio_hw_drop(void *map, __u32 *rid, struct pviommu_vfio_hw *v, __u32 *dom)
{
	if (v->domain == *dom)
		bpf_map_delete_elem(map, rid);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int pviommu_proc_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 dom = bpf_get_current_pid_tgid() >> 32;
	struct pv_env e = PV_ENV;
	struct pviommu_ctl *c = ctl_get();
	struct pviommu_domain *d;
	__u64 tid = bpf_get_current_pid_tgid();

	/* a vCPU thread gone with a held call: the call goes with it */
	bpf_map_delete_elem(&pviommu_held, &tid);
	if (!active(c))
		return 0;
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	/* its assigned devices name nobody any more */
	bpf_for_each_map_elem(&pviommu_vfio_hw, vfio_hw_drop, &dom, 0);
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	if (!d && pv_domain_state(&e, dom) <= 0)
		return 0;
	/* lost locks: the next process of this pid starts from FAILED (denied) */
	if (lock_domain(dom)) {
		fail_closed(&e, dom, ~0u, PVIOMMU_OP_UNREGISTER, -PV_EBUSY,
			    PVIOMMU_FAIL_LOCK, PVIOMMU_PLANE_EXIT);
		return 0;
	}
	if (lock_index(c) ||
	    (d = bpf_map_lookup_elem(&pviommu_domains, &dom),
	     purge(c, &e, d, dom, 0, 1, 1))) {
		unlock_domain(dom);
		fail_closed(&e, dom, ~0u, PVIOMMU_OP_UNREGISTER, -PV_EBUSY,
			    PVIOMMU_FAIL_LOCK, PVIOMMU_PLANE_EXIT);
		return 0;
	}
	bpf_map_delete_elem(&pviommu_domains, &dom);
	c->generation++;
	unlock_index(c);
	unlock_domain(dom);
	stat_inc(PVIOMMU_ST_DOM_GONE);
	emit(PVIOMMU_EV_DOMAIN, dom, 0, 0, 0, 0, PVIOMMU_OP_UNREGISTER, 0, 0,
	     PVIOMMU_PLANE_EXIT);
	return 0;
}

/* ---- the check, and its test wrapper ---------------------------------------- */

/* verdict for one transfer; emits the event and counts */
static __always_inline int check_transfer(__u32 dom, __u32 bdf, __u64 addr,
					  __u64 len, __u32 need, __u16 plane,
					  __u32 *mode)
{
	struct pv_env e = PV_ENV;
	struct pviommu_domain *d;
	int v;

	stat_inc(PVIOMMU_ST_CHECK);
	v = pv_check(&e, dom, bdf, addr, len, need);
	if (v == PV_ALLOW) {
		stat_inc(PVIOMMU_ST_ALLOWED);
		return v;
	}
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	*mode = d ? d->mode : PVIOMMU_MODE_DENY;
	stat_inc(PVIOMMU_ST_VIOLATION);
	/* the uprobe plane cannot deny precisely: deny is a fail-stop there */
	emit(PVIOMMU_EV_VIOLATION, dom, bdf, addr, len, need, 0, -v,
	     *mode == PVIOMMU_MODE_AUDIT ? PVIOMMU_ACT_ALLOWED :
	     *mode == PVIOMMU_MODE_KILL || plane == PVIOMMU_PLANE_UPROBE ?
	     PVIOMMU_ACT_KILLED : PVIOMMU_ACT_DENIED, plane);
	return v;
}

/*
 * The host IOMMU's faults of assigned devices, as events. Intel's driver
 * has no fault tracepoint (6.1, 6.18) and dmar_fault_do_one() is inlined
 * into the interrupt handler, so the one signal the kernel gives is its log
 * line, seen here at printk:console (every printk, before any console):
 *   "DMAR: [DMA Read|Write ...] Request device [BB:DD.F] fault addr 0xA ..."
 * The requester id names the VM through pviommu_vfio_hw; A is the IOVA the
 * device used, a guest-physical address without a vIOMMU. Limits, said in
 * README: the kernel logs at most 10 faults per 5 s (its own rate limit),
 * so the events are a sample past that; segment 0 only; and root can write
 * such a line through /dev/kmsg (an event, nothing in the policy changes).
 */
#define DMAR_TEXT	128	/* a power of two: indexes are masked into it */
#define DMAR_C(i)	(t[(i) & (DMAR_TEXT - 1)])

static __always_inline int dmar_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

SEC("raw_tp/console")
int pviommu_iommu_fault(struct bpf_raw_tracepoint_args *ctx)
{
	static const char pfx[] = "DMAR: [DMA ", dev[] = "device [", fa[] = "] fault addr 0x";
	struct pviommu_vfio_hw *hw;
	char t[DMAR_TEXT];
	__u32 i, k, p = 0, rid, perm;
	__u64 addr = 0;
	int b1, b2, d1, d2, fn, h;

	if (bpf_probe_read_kernel_str(t, sizeof(t), (void *)ctx->args[0]) < 48)
		return 0;
	for (i = 0; i < sizeof(pfx) - 1; i++)
		if (t[i] != pfx[i])
			return 0;
	if (!active(ctl_get()))
		return 0;
	perm = t[11] == 'R' ? PVIOMMU_PERM_READ : PVIOMMU_PERM_WRITE;
	for (i = 16; i < 64 && !p; i++) {
		for (k = 0; k < sizeof(dev) - 1; k++)
			if (DMAR_C(i + k) != dev[k])
				break;
		if (k == sizeof(dev) - 1)
			p = i + k;
	}
	if (!p)
		return 0;
	b1 = dmar_hex(DMAR_C(p));
	b2 = dmar_hex(DMAR_C(p + 1));
	d1 = dmar_hex(DMAR_C(p + 3));
	d2 = dmar_hex(DMAR_C(p + 4));
	fn = DMAR_C(p + 6) - '0';
	if (b1 < 0 || b2 < 0 || d1 < 0 || d2 < 0 || DMAR_C(p + 2) != ':' ||
	    DMAR_C(p + 5) != '.' || fn < 0 || fn > 7 || d1 * 16 + d2 > 31)
		return 0;
	for (k = 0; k < sizeof(fa) - 1; k++)
		if (DMAR_C(p + 7 + k) != fa[k])
			return 0;
	p += 7 + sizeof(fa) - 1;
	for (k = 0; k < 16; k++) {
		h = dmar_hex(DMAR_C(p + k));
		if (h < 0)
			break;
		addr = addr << 4 | h;
	}
	if (!k)
		return 0;
	rid = (__u32)(b1 * 16 + b2) << 8 | (__u32)(d1 * 16 + d2) << 3 | (__u32)fn;
	hw = bpf_map_lookup_elem(&pviommu_vfio_hw, &rid);
	if (!hw)	/* not a device assigned through pviommu */
		return 0;
	stat_inc(PVIOMMU_ST_VIOLATION);
	stat_inc(PVIOMMU_ST_DENIED);
	emit(PVIOMMU_EV_VIOLATION, hw->domain, hw->bdf, addr, 1, perm, 0, -PV_DENY_IOMMU,
	     PVIOMMU_ACT_DENIED, PVIOMMU_PLANE_IOMMU);
	return 0;
}

/*
 * The in-process plane (qemu-hooks/) checks lock-free in QEMU and calls
 * this through BPF_PROG_TEST_RUN only when a transfer is refused, so that
 * its events and counters land where every other plane's do.
 * args = bdf, addr, len, need, verdict << 8 | action. The domain is the
 * caller's own tgid (a QEMU process reports only for itself). With
 * PVIOMMU_INPROC_PAGE_REFUSED in args[4]: the guest's shared page was
 * refused (a hostile producer index), reported like a refused hypercall.
 */
SEC("raw_tp")
int pviommu_inproc_event(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 dom = bpf_get_current_pid_tgid() >> 32;
	__u32 action = ctx->args[4] & 0xff, verdict = (ctx->args[4] >> 8) & 0xff;

	/* an event only: a kick is not a hypercall (the page counts its errors).
	 * Not held back by the domain's budget, which its refused calls may have
	 * spent: the library sends at most one a second. */
	if (ctx->args[4] & PVIOMMU_INPROC_PAGE_REFUSED) {
		emit(PVIOMMU_EV_HC_ERROR, dom, 0, ctx->args[1], ctx->args[2], 0, 0,
			-PV_EPROTO, PVIOMMU_ACT_NONE, PVIOMMU_PLANE_PAGE);
		return 0;
	}

	stat_inc(PVIOMMU_ST_VIOLATION);
	stat_inc(action == PVIOMMU_ACT_KILLED ? PVIOMMU_ST_KILLED :
		 action == PVIOMMU_ACT_DENIED ? PVIOMMU_ST_DENIED :
						PVIOMMU_ST_ALLOWED);
	emit(PVIOMMU_EV_VIOLATION, dom, (__u32)ctx->args[0], ctx->args[1],
	     ctx->args[2], (__u32)ctx->args[3], 0, -(int)verdict, action,
	     PVIOMMU_PLANE_INPROC);
	return 0;
}

/*
 * test_run wrapper: args = domain, bdf, addr, len, need.
 * Returns the pv_verdict. Never attached.
 */
SEC("raw_tp")
int pviommu_test_check(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 mode = 0;

	return check_transfer((__u32)ctx->args[0], (__u32)ctx->args[1],
			      ctx->args[2], ctx->args[3], (__u32)ctx->args[4],
			      PVIOMMU_PLANE_TEST, &mode);
}

/* ---- uprobe plane: checks on QEMU's address-space functions -------------- */

struct as_names {
	char	a[QEMU_PCIDEV_NAME_LEN];
	char	b[QEMU_PCIDEV_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct as_names);
} as_scratch SEC(".maps");

/* the devfn of the PCIDevice whose bus_master_as is 'as', or -1 (qemu_layout.h) */
static __always_inline int up_devfn(__u64 as, struct as_names *n)
{
	__u64 name_ptr;
	__s32 devfn;
	int i;

	if (as < QEMU_PCIDEV_NAME_BEFORE_AS + QEMU_PCIDEV_NAME_OFF)
		return -1;
	if (bpf_probe_read_user(&name_ptr, sizeof(name_ptr),
				(void *)(as + QEMU_AS_NAME_OFF)) ||
	    bpf_probe_read_user_str(n->a, sizeof(n->a), (void *)name_ptr) <= 1 ||
	    bpf_probe_read_user(n->b, sizeof(n->b),
				(void *)(as - QEMU_PCIDEV_NAME_BEFORE_AS)))
		return -1;
	for (i = 0; i < QEMU_PCIDEV_NAME_LEN; i++) {
		if (n->a[i] != n->b[i])
			return -1;
		if (!n->a[i])
			break;
	}
	if (i == QEMU_PCIDEV_NAME_LEN ||
	    bpf_probe_read_user(&devfn, sizeof(devfn),
				(void *)(as - QEMU_PCIDEV_NAME_BEFORE_AS -
					 QEMU_PCIDEV_DEVFN_BEFORE_NAME)) ||
	    devfn < 0 || devfn > 0xff)
		return -1;
	return devfn;
}

/* the bdf of an identified address space: behind a bridge, read its bus now */
static __always_inline __u32 ident_bdf(const struct pviommu_as_ident *id)
{
	__u8 bus;

	if (!id->secbus || id->bdf == QEMU_AS_NOT_DEVICE)
		return id->bdf;
	if (bpf_probe_read_user(&bus, sizeof(bus), (void *)id->secbus))
		return QEMU_AS_NOT_DEVICE;
	return QEMU_BDF(bus, id->bdf);
}

/*
 * The device behind an AddressSpace, as qemu-hooks/qemu_layout.h defines:
 * the device itself, then its bus (pviommuctl attach --enforce checked the
 * binary's layout first).
 */
static __always_inline __u32 as_to_bdf(__u32 dom, __u64 as)
{
	struct as_key k = { .domain = dom, .as = as };
	struct pviommu_as_ident id = { .bdf = QEMU_AS_NOT_DEVICE }, *hit;
	struct as_names *n;
	__u64 pdev, bus, bridge, cfg;
	__u32 zero = 0;
	int devfn;

	hit = bpf_map_lookup_elem(&pviommu_as_cache, &k);
	if (hit)
		return ident_bdf(hit);
	n = bpf_map_lookup_elem(&as_scratch, &zero);
	if (!n)
		return QEMU_AS_NOT_DEVICE;
	devfn = up_devfn(as, n);
	if (devfn < 0)
		goto out;
	pdev = as - QEMU_PCIDEV_NAME_BEFORE_AS - QEMU_PCIDEV_NAME_OFF;
	if (bpf_probe_read_user(&bus, sizeof(bus), (void *)(pdev + QEMU_PCIDEV_PARENT_BUS_OFF)) ||
	    !bus ||
	    bpf_probe_read_user(&bridge, sizeof(bridge),
				(void *)(bus + QEMU_PCIBUS_PARENT_DEV_OFF)))
		goto out;
	if (bridge) {
		if (up_devfn(bridge + QEMU_PCIDEV_NAME_OFF + QEMU_PCIDEV_NAME_BEFORE_AS, n) < 0 ||
		    bpf_probe_read_user(&cfg, sizeof(cfg),
					(void *)(bridge + QEMU_PCIDEV_NAME_OFF -
						 QEMU_PCIDEV_CONFIG_BEFORE_NAME)) || !cfg)
			goto out;
		id.secbus = cfg + QEMU_PCI_SECONDARY_BUS;
	}
	id.bdf = (__u32)devfn;
out:
	bpf_map_update_elem(&pviommu_as_cache, &k, &id, BPF_ANY);
	return ident_bdf(&id);
}

/* one transfer seen by a uprobe: audit, or fail-stop (kill) */
static __always_inline int up_check(__u64 as, __u64 addr, __u64 len,
				    __u32 is_write)
{
	__u32 dom = bpf_get_current_pid_tgid() >> 32;
	struct pviommu_ctl *c = ctl_get();
	__u32 bdf, mode = PVIOMMU_MODE_DENY;
	int v;

	if (!active(c))
		return 0;
	bdf = as_to_bdf(dom, as);
	if (bdf == QEMU_AS_NOT_DEVICE)
		return 0;
	if (qemu_is_msi(addr, len, is_write))
		return 0;
	v = check_transfer(dom, bdf, addr, len,
			   is_write ? PVIOMMU_PERM_WRITE : PVIOMMU_PERM_READ,
			   PVIOMMU_PLANE_UPROBE, &mode);
	if (v == PV_ALLOW || mode == PVIOMMU_MODE_AUDIT)
		return 0;
	/*
	 * No register writes from uprobes here, so no precise deny: deny and
	 * kill both stop the VM before the transfer runs (fail-stop, like a
	 * machine check). The signal is delivered before QEMU resumes.
	 */
	stat_inc(PVIOMMU_ST_KILLED);
	bpf_send_signal(9);
	return 0;
}

/* MemTxResult address_space_rw(as, addr, attrs, buf, len, bool is_write) */
SEC("uprobe")
int BPF_KPROBE(pviommu_up_rw, void *as, __u64 addr, __u32 attrs, void *buf,
	       __u64 len)
{
	return up_check((__u64)as, addr, len, (__u8)ctx->r9);
}

/* address_space_read_full(as, addr, attrs, buf, len): the device reads */
SEC("uprobe")
int BPF_KPROBE(pviommu_up_read, void *as, __u64 addr, __u32 attrs, void *buf,
	       __u64 len)
{
	return up_check((__u64)as, addr, len, 0);
}

/* address_space_write(as, addr, attrs, buf, len): the device writes */
SEC("uprobe")
int BPF_KPROBE(pviommu_up_write, void *as, __u64 addr, __u32 attrs, void *buf,
	       __u64 len)
{
	return up_check((__u64)as, addr, len, 1);
}

/* void *address_space_map(as, addr, hwaddr *plen, bool is_write, attrs) */
SEC("uprobe")
int BPF_KPROBE(pviommu_up_map, void *as, __u64 addr, __u64 *plen,
	       __u32 is_write)
{
	__u64 len = 0;

	bpf_probe_read_user(&len, sizeof(len), plen);
	return up_check((__u64)as, addr, len, is_write & 1);
}

/* int64_t address_space_cache_init(cache, as, addr, len, bool is_write) */
SEC("uprobe")
int BPF_KPROBE(pviommu_up_cache_init, void *cache, void *as, __u64 addr,
	       __u64 len, __u32 is_write)
{
	return up_check((__u64)as, addr, len, is_write & 1);
}

/* address_space_ld*(as, addr, ...) and address_space_st*(as, addr, val, ...) */
#define UP_LDST(name, size, wr)						\
SEC("uprobe")								\
int BPF_KPROBE(pviommu_up_##name, void *as, __u64 addr)			\
{									\
	return up_check((__u64)as, addr, size, wr);			\
}
UP_LDST(ld1, 1, 0)
UP_LDST(ld2, 2, 0)
UP_LDST(ld4, 4, 0)
UP_LDST(ld8, 8, 0)
UP_LDST(st1, 1, 1)
UP_LDST(st2, 2, 1)
UP_LDST(st4, 4, 1)
UP_LDST(st8, 8, 1)
