/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pviommu_maps.bpf.h - what more than one BPF object uses (pviommu.bpf.c,
 * pviommu_lsm.bpf.c), defined once: the shared pinned maps (pinned by name:
 * the second object to load re-uses the first one's maps, so definitions
 * and the loader's max_entries must agree), the read-side glue of
 * pviommu_range.h, counters and events. An object defines pv_rec_*()
 * after this and before including pviommu_range.h.
 */
#ifndef __PVIOMMU_MAPS_BPF_H
#define __PVIOMMU_MAPS_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVIOMMU_MAX_DOMAINS);
	__type(key, __u32);
	__type(value, struct pviommu_domain);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PVIOMMU_INDEX_ENTRIES(PVIOMMU_DEF_INDEX_SLOTS));
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct pviommu_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pviommu_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_events SEC(".maps");

/* the fast path's page bits (pviommu.h) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PVIOMMU_FAST_ENTRIES);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_fast SEC(".maps");

/* host requester id -> the VM of an assigned device (IOMMU fault events) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVIOMMU_VFIO_HW_MAX);
	__type(key, __u32);
	__type(value, struct pviommu_vfio_hw);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_vfio_hw SEC(".maps");

/* the devices a domain's VFIO containers serve (the LSM gate) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVIOMMU_MAX_DOMAINS);
	__type(key, __u32);
	__type(value, struct pviommu_vfio_devs);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_vfio_devs SEC(".maps");

/* ---- glue for pviommu_range.h: pviommu_index, pviommu_fast ---------------- */
#define PV_INLINE __always_inline
#ifdef __TARGET_ARCH_x86
#define PV_WRITE_TSO	/* x86 orders stores: the seqcounts need no atomic (pviommu_range.h) */
#endif

struct pv_env {
	void	*tbl;
	__u32	slots;	/* the index's hash slots (its header after them) */
	__u64	key;	/* the index hash's secret (pviommu_ctl.hash_key) */
};

/* every program's view of the index: its size and hash key (the loader's) */
#define PV_ENV	{ .slots = index_slots, .key = hash_key }

static __always_inline struct pviommu_slot *pv_slot_at(struct pv_env *e,
						       __u32 idx)
{
	return bpf_map_lookup_elem(&pviommu_index, &idx);
}

static __always_inline __u64 *pv_fast_word(struct pv_env *e, __u32 idx)
{
	return bpf_map_lookup_elem(&pviommu_fast, &idx);
}

/*
 * The writers set a page's fast bits through a global function (defined
 * by pviommu.bpf.c around pv_fast_write()): the verifier checks it once
 * with unknown arguments instead of at every writer's call site.
 */
int pv_fast_set_bits(__u32 lane, __u64 pfn, __u32 bits);
#define pv_fast_set(e, lane, pfn, bits)	pv_fast_set_bits((lane), (pfn), (bits))

#define pv_loop(n, cb, ctx) bpf_loop((n), (cb), (ctx), 0)

/*
 * The readers' slot lookup, a global function for the same reason
 * (defined after pviommu_range.h by PV_SLOT_READ_GLOBAL()); *idx must be
 * a real location.
 */
int pv_slot_read_g(__u64 kind_dom, __u32 bdf, __u64 pfn,
		   struct pviommu_slot *out, __u32 *idx);
#define pv_slot_read(e, kind, dom, bdf, pfn, out, idx)			\
	pv_slot_read_g((__u64)(kind) << 32 | (dom), (bdf), (pfn), (out), (idx))
long pv_slot_find_g(__u64 kind_dom, __u32 bdf, __u64 pfn);
#define pv_slot_find(e, kind, dom, bdf, pfn)				\
	pv_slot_find_g((__u64)(kind) << 32 | (dom), (bdf), (pfn))
int pv_check_page_g(__u64 dom_bdf, __u32 lane, __u64 pfn, __u32 fln);
#define pv_check_page(e, dom, bdf, lane, pfn, first, last, need)		\
	pv_check_page_g((__u64)(dom) << 32 | (bdf), (lane), (pfn),	\
			(first) | (last) << 12 | (need) << 24)
long pv_slot_claim_g(__u64 kind_dom, __u32 bdf, __u64 pfn, int insert);
#define pv_slot_claim(e, kind, dom, bdf, pfn, insert)			\
	pv_slot_claim_g((__u64)(kind) << 32 | (dom), (bdf), (pfn), (insert))
int pv_slot_free_g(__u32 idx);
#define pv_slot_free_idx(e, idx)	pv_slot_free_g(idx)
long pv_domain_state_g(__u32 dom);
long pv_device_state_g(__u32 dom, __u32 bdf);
#define pv_domain_state(e, dom)		pv_domain_state_g(dom)
#define pv_device_state(e, dom, bdf)	pv_device_state_g((dom), (bdf))
#define PV_SLOT_READ_GLOBAL()						\
__attribute__((noinline)) long pv_domain_state_g(__u32 dom)		\
{									\
	struct pv_env e = PV_ENV;			\
									\
	return pv_domain_state_inl(&e, dom);				\
}									\
									\
__attribute__((noinline)) int pv_slot_free_g(__u32 idx)		\
{									\
	struct pv_env e = PV_ENV;			\
									\
	return pv_slot_free_inl(&e, idx);				\
}									\
									\
__attribute__((noinline)) long pv_device_state_g(__u32 dom, __u32 bdf)	\
{									\
	struct pv_env e = PV_ENV;			\
									\
	return pv_device_state_inl(&e, dom, bdf);			\
}									\
									\
__attribute__((noinline)) long						\
pv_slot_claim_g(__u64 kind_dom, __u32 bdf, __u64 pfn, int insert)	\
{									\
	struct pv_env e = PV_ENV;			\
									\
	return pv_slot_claim_inl(&e, (__u32)(kind_dom >> 32),		\
				 (__u32)kind_dom, bdf, pfn, insert);	\
}									\
									\
__attribute__((noinline)) int						\
pv_check_page_g(__u64 dom_bdf, __u32 lane, __u64 pfn, __u32 fln)	\
{									\
	struct pv_env e = PV_ENV;			\
									\
	return pv_check_page_inl(&e, (__u32)(dom_bdf >> 32),		\
				 (__u32)dom_bdf, lane, pfn,		\
				 fln & 0xfff, (fln >> 12) & 0xfff,	\
				 (fln >> 24) & 3);			\
}									\
									\
__attribute__((noinline)) long						\
pv_slot_find_g(__u64 kind_dom, __u32 bdf, __u64 pfn)			\
{									\
	struct pv_env e = PV_ENV;			\
									\
	return pv_slot_find_inl(&e, (__u32)(kind_dom >> 32),		\
				(__u32)kind_dom, bdf, pfn);		\
}									\
									\
__attribute__((noinline)) int						\
pv_slot_read_g(__u64 kind_dom, __u32 bdf, __u64 pfn,			\
	       struct pviommu_slot *out, __u32 *idx)			\
{									\
	struct pv_env e = PV_ENV;			\
									\
	if (!out || !idx)						\
		return 0;						\
	return pv_slot_read_inl(&e, (__u32)(kind_dom >> 32),		\
				(__u32)kind_dom, bdf, pfn, out, idx);	\
}

/* ---- counters and events ------------------------------------------------- */
static __always_inline void stat_add(__u32 which, __u64 n)
{
	__u32 zero = 0;
	struct pviommu_stats *st = bpf_map_lookup_elem(&pviommu_stats, &zero);

	/* atomic: preemptible (and sleepable) programs share the CPU's slot */
	if (st && which < PVIOMMU_ST_MAX)
		__sync_fetch_and_add(&st->v[which], n);
}

static __always_inline void stat_inc(__u32 which)
{
	stat_add(which, 1);
}

static __always_inline void emit(__u32 type, __u32 dom, __u32 bdf, __u64 addr,
				 __u64 len, __u32 perm, __u32 op, int err,
				 __u16 action, __u16 plane)
{
	struct pviommu_event *ev;

	ev = bpf_ringbuf_reserve(&pviommu_events, sizeof(*ev), 0);
	if (!ev) {
		stat_inc(PVIOMMU_ST_EV_DROPPED);
		return;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->type = type;
	ev->domain = dom;
	ev->tid = (__u32)bpf_get_current_pid_tgid();
	ev->bdf = bdf;
	ev->addr = addr;
	ev->len = len;
	ev->perm = perm;
	ev->op = op;
	ev->err = err;
	ev->action = action;
	ev->plane = plane;
	bpf_ringbuf_submit(ev, 0);
}

#endif
