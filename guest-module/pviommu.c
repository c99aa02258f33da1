// SPDX-License-Identifier: GPL-2.0
/*
 * pviommu - para-virtualized IOMMU policy for chosen PCI devices (guest side)
 *
 * For each protected device the module replaces the device's DMA ops with a
 * per-device copy of its own (struct pviommu_dev embeds it, so a callback
 * finds its device with container_of). Every mapping first tells the host
 * which bytes the device may touch (OP_MAP bdf iova size perm, identity IOVA
 * = guest-physical) and only then hands the address to the driver; every
 * unmap revokes them (OP_UNMAP), at once in strict mode or batched in lazy
 * mode (at most lazy_batch entries or lazy_ms milliseconds, like the IOTLB
 * flush queue). Devices are protected before a driver probes them: a bound
 * driver is unbound and rebound so that it maps everything again through
 * the new ops. Module exit does the reverse (unbind, restore the old ops,
 * DEV_DEL, rebind), then UNREGISTER. See README in this directory.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/types.h>
#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/dma-direct.h>
#include <linux/dma-map-ops.h>
#include <linux/gfp.h>
#include <linux/hashtable.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/kvm_para.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/timer.h>
#include <linux/virtio.h>
#include <uapi/linux/virtio_config.h>
#include <xen/xen.h>

#include "pviommu.h"

#define PVIOMMU_MAX_NAMED	16
#define PVIOMMU_LAZY_MAX	256
#define PVIOMMU_VENDOR_VIRTIO	0x1af4

static char *devices;
module_param(devices, charp, 0444);
MODULE_PARM_DESC(devices, "PCI devices to protect: [DDDD:]BB:DD.F[,...]");

static bool all;
module_param(all, bool, 0444);
MODULE_PARM_DESC(all, "protect every PCI device except bridges");

static bool hotplug;
module_param(hotplug, bool, 0444);
MODULE_PARM_DESC(hotplug,
		 "protect an absent devices= entry when it appears (default: insmod fails)");

static char *transport = "auto";
module_param(transport, charp, 0444);
MODULE_PARM_DESC(transport, "hypercall transport: auto (kvm if available, else tcg), kvm or tcg");

static char *channel = "auto";
module_param(channel, charp, 0444);
MODULE_PARM_DESC(channel,
		 "auto: every operation goes through the shared page when the host answers it (status on every transport), else the hypercall transport; page: the shared page or nothing; off: the hypercall transport");

static int post = -1;
module_param(post, int, 0444);
MODULE_PARM_DESC(post,
		 "1: MAP and UNMAP of emulated devices are posted in the shared page without an exit, and the host carries them out before it checks any transfer of this VM (strict stays strict; a refused MAP then shows as a denied transfer and the failures counter, not as a mapping error); 0: a kick (exit) per operation; default: 1 when the host offers it");

static unsigned int ring = PVIOMMU_CHAN_NENTS_MAX;
module_param(ring, uint, 0444);
MODULE_PARM_DESC(ring,
		 "entries of the shared page's ring, a power of two up to 512 (default 512: six pages; 64: one page, what older hosts take, tried when a larger ring goes unanswered). The guest kicks (exits) only when the ring is full");

static int verify = -1;
module_param(verify, int, 0444);
MODULE_PARM_DESC(verify,
		 "1: insmod fails unless the host acknowledges REGISTER and every DEV_ADD, and a refused MAP fails the DMA mapping; 0: no answer is expected (the uprobe TCG transport of 'pviommuctl attach', KVM without the in-process plane); default: 1 when the host answers (shared page, or transport tcg), else 0");

static char *mode = "strict";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "unmap policy: strict (at once) or lazy (batched)");

static unsigned int lazy_ms = 10;
module_param(lazy_ms, uint, 0444);
MODULE_PARM_DESC(lazy_ms, "lazy mode: longest delay of a queued unmap in ms (1-1000)");

static unsigned int lazy_batch = 64;
module_param(lazy_batch, uint, 0444);
MODULE_PARM_DESC(lazy_batch, "lazy mode: queued unmaps that force a flush (1-256)");

static bool track;
module_param(track, bool, 0444);
MODULE_PARM_DESC(track,
		 "list every live mapping in debugfs pviommu/mappings (tests: compare with the host's records; costs a locked hash update per map and unmap)");

struct pviommu_dev;

/* a protected device's DMA ops, built once (kmemdup of a const template) */
struct pviommu_ops {
	const struct dma_map_ops	ops;
	struct pviommu_dev		*pd;
};

/*
 * The map/unmap path's counters are per CPU, summed when read: a locked
 * instruction per counter per operation is what an emulated guest (TCG)
 * pays most for (make bench: bench_guest_ops).
 */
struct pviommu_dev_pcpu {
	u64				maps;
	u64				unmaps;
	s64				live;		/* ranges the host holds */
	s64				live_bytes;
};

struct pviommu_pcpu {
	u64				hc;		/* hypercalls sent (their cookie) */
	u64				lazy_queued;	/* unmaps queued (lazy) */
	u64				lazy_reused;	/* ... cancelled by a MAP */
};
static DEFINE_PER_CPU(struct pviommu_pcpu, pviommu_pcpu);

/* the sum over every CPU of field f of per-CPU struct *p */
#define pviommu_sum(p, f) ({						\
	s64 __s = 0;							\
	int __c;							\
	for_each_possible_cpu(__c)					\
		__s += per_cpu_ptr(p, __c)->f;				\
	__s;								\
})

struct pviommu_dev {
	struct list_head		node;		/* in pviommu_devs */
	struct pci_dev			*pdev;		/* holds a reference */
	u32				bdf;		/* PVIOMMU_BDF() */
	u64				hc_hdr;		/* a0 of its operations, op and perm 0 */
	bool				installed;	/* our ops are dev->dma_ops */
	bool				removed;	/* the device is gone */
	bool				warned_bypass;
	const struct dma_map_ops	*old_ops;	/* NULL: dma-direct */
	struct pviommu_ops		*ops;		/* installed as dev->dma_ops */
	struct pviommu_dev_pcpu __percpu *pcpu;	/* maps, unmaps, live ranges */
	atomic64_t			failures;
	atomic64_t			revoked;	/* left over by a driver */
	bool				kick;		/* assigned: each operation kicks */
};

/*
 * The posting path's lock (the channel's, the lazy queue's): a word taken with
 * xchg, interrupts off (DMA is mapped from interrupts). An HVM guest's
 * interrupt flag is the CPU's own (KVM, TCG; a Xen PV domain is refused at
 * load), so the native instructions serve, without the paravirt calls of
 * local_irq_save(); and the critical sections are a few stores, so a
 * test-and-set lock serves without the queued spinlock's. Both counted: 19
 * guest instructions per map + unmap pair of 254 (bench_guest_ops). The
 * irq-flag tracer (lockdep kernels) is told, as local_irq_save() tells it.
 */
typedef struct { int locked; } pviommu_lock_t;

static __always_inline unsigned long pviommu_lock_irqsave(pviommu_lock_t *l)
{
	unsigned long flags = native_save_fl();

	native_irq_disable();
	if (flags & X86_EFLAGS_IF)
		trace_hardirqs_off();
	while (xchg(&l->locked, 1))
		cpu_relax();
	return flags;
}

static __always_inline void pviommu_unlock_irqrestore(pviommu_lock_t *l, unsigned long flags)
{
	smp_store_release(&l->locked, 0);
	if (flags & X86_EFLAGS_IF) {
		trace_hardirqs_on();
		native_irq_enable();
	}
}

struct pviommu_lazy_ent {
	struct pviommu_dev		*pd;
	u64				iova;
	u64				size;
	u32				perm;
	u16				next;	/* the next entry of its bucket + 1, 0: none */
	bool				dead;	/* cancelled or sent: the flush skips it */
};

/*
 * The queue's buckets: a MAP looks for a queued unmap of its (device, iova)
 * in one bucket, not through the whole queue (which it did on every MAP:
 * 1.29x the guest instructions of no IOMMU on virtio-blk 64 KiB reads, more
 * than strict mode's 1.13x)
 */
#define PVIOMMU_LAZY_BUCKET_BITS	7

static struct {
	atomic64_t			failures;
	atomic64_t			lazy_flushes;
	atomic64_t			lazy_conflicts;
	atomic64_t			exits;		/* kicks and hypercalls: exits */
	atomic64_t			posted_refused;	/* ... later answered non-zero */
	atomic64_t			ring_full;	/* kicks because no entry was free */
} pviommu_stats;

static struct {
	pviommu_lock_t			lock;		/* protects n, ent[], bucket[] */
	unsigned int			n;		/* entries used, dead ones included */
	struct pviommu_lazy_ent		ent[PVIOMMU_LAZY_MAX];
	u16				bucket[1 << PVIOMMU_LAZY_BUCKET_BITS];	/* first entry + 1 */
	struct timer_list		timer;
} pviommu_lazy = {
};

/*
 * track=1: what the guest believes the host holds, one entry per distinct
 * (device, iova, size, perm) with the number of live maps of it, the way
 * the host keeps its records (an identical MAP is refcounted). Added after
 * a MAP the host acknowledged, dropped when the UNMAP goes out (strict, or
 * the lazy flush) and when a DEV_DEL revokes a device's mappings.
 */
struct pviommu_live {
	struct hlist_node		node;
	struct pviommu_dev		*pd;
	u64				iova;
	u64				size;
	u32				perm;
	u32				refs;
};

#define PVIOMMU_LIVE_BITS	10
static DEFINE_HASHTABLE(pviommu_live_ht, PVIOMMU_LIVE_BITS);
static DEFINE_SPINLOCK(pviommu_live_lock);
static atomic64_t pviommu_live_lost;		/* no memory for an entry */
static atomic64_t pviommu_live_unmatched;	/* unmap of no entry */

/*
 * pviommu_mutex protects pviommu_devs and the flags of its entries; it nests
 * inside device_lock(). Entries are only freed by init's error path and by
 * exit, both without the bus notifier: an entry never goes away under a user.
 */
static DEFINE_MUTEX(pviommu_mutex);
static LIST_HEAD(pviommu_devs);

static u32 pviommu_named[PVIOMMU_MAX_NAMED];
static unsigned int pviommu_nr_named;
static bool pviommu_use_kvm;
static bool pviommu_lazy_mode;
static struct dentry *pviommu_debugfs;

/* ------------------------------------------------------------------ */
/* transports */

/* the host's answer: 0 or -errno, or PVIOMMU_NOACK when nobody answered */
#define PVIOMMU_NOACK	1

static int pviommu_cpuid(u64 a0, u64 a1, u64 a2, u64 a3)
{
	u64 ax = PVIOMMU_CPUID_LEAF, bx = a0, cx = a1, dx = a2;

	asm volatile("cpuid"
		     : "+a" (ax), "+b" (bx), "+c" (cx), "+d" (dx)
		     : "S" (a3)
		     : "memory");
	/* pviommu.h: the in-process plane answers; an unknown leaf is zeros */
	if ((u32)ax != PVIOMMU_HC_ACK)
		return PVIOMMU_NOACK;
	return (s32)(u32)bx;
}

/*
 * The shared page (pviommu.h): attached at load when the host answers it,
 * then every operation is an entry of its ring. An entry is either kicked
 * (a port read: an exit to QEMU under TCG and KVM alike; the host carries
 * out everything published and answers in the entries) or, with posting
 * (pviommu.h, "Posting"), only published: the host carries it out before
 * it checks any transfer. Entries are published in order under one lock.
 */
static struct pviommu_chan *pviommu_chan;
static unsigned int pviommu_chan_nents;	/* the ring's entries (pviommu_chan->nents, ours) */
static unsigned int pviommu_chan_order;	/* its pages: 2^order */
static bool pviommu_chan_ports;
static bool pviommu_post;
static pviommu_lock_t pviommu_chan_lock;
/*
 * under pviommu_chan_lock: the ring's operations, and those of them kicked.
 * An entry's status is the guest's to read once the host has answered: a
 * kicked operation's answer is read at once, a posted one's when its entry
 * is used again or the ring is flushed; either way set back to 0 when read,
 * so a nonzero status is an answer nobody has read yet.
 */
static u64 pviommu_chan_seq, pviommu_chan_kicked;

static void pviommu_chan_detach(void)
{
	if (pviommu_chan) {
		outl(0, PVIOMMU_PORT_SETUP);	/* the host lets go of the page */
		free_pages((unsigned long)pviommu_chan, pviommu_chan_order);
		pviommu_chan = NULL;
	}
	if (pviommu_chan_ports)
		release_region(PVIOMMU_PORT_SETUP, PVIOMMU_PORT_COUNT);
	pviommu_chan_ports = false;
	pviommu_post = false;
}

/* 0: attached; else no page (nobody answered, or no memory, or ports taken) */
static int pviommu_chan_attach(void)
{
	struct pviommu_chan *c;
	unsigned int nents;
	phys_addr_t pa;

	if (!request_region(PVIOMMU_PORT_SETUP, PVIOMMU_PORT_COUNT, KBUILD_MODNAME)) {
		pr_warn("I/O ports %#x-%#x are taken: no shared page\n", PVIOMMU_PORT_SETUP,
			PVIOMMU_PORT_SETUP + PVIOMMU_PORT_COUNT - 1);
		return -EBUSY;
	}
	pviommu_chan_ports = true;
	BUILD_BUG_ON(PVIOMMU_CHAN_PAGE != PAGE_SIZE);
	BUILD_BUG_ON(offsetof(struct pviommu_chan, ent) != PVIOMMU_CHAN_HDR);
	BUILD_BUG_ON(sizeof(struct pviommu_chan_ent) != PVIOMMU_CHAN_ENT_SIZE);
	/* the ring asked for, then one page (a host before 512-entry rings) */
	for (nents = ring;; nents = PVIOMMU_CHAN_NENTS_PAGE) {
		unsigned int order = get_order(PVIOMMU_CHAN_BYTES(nents));

		c = (struct pviommu_chan *)__get_free_pages(GFP_KERNEL | __GFP_ZERO, order);
		if (!c) {
			pviommu_chan_detach();
			return -ENOMEM;
		}
		pa = virt_to_phys(c);	/* the buddy allocator's pages are contiguous */
		if (pa >> PAGE_SHIFT > U32_MAX) {
			free_pages((unsigned long)c, order);
			pviommu_chan_detach();
			return -ERANGE;
		}
		c->magic = PVIOMMU_CHAN_MAGIC;
		c->version = PVIOMMU_CHAN_VERSION;
		c->nents = nents;
		outl((u32)(pa >> PAGE_SHIFT), PVIOMMU_PORT_SETUP);	/* serializing */
		if (READ_ONCE(c->host_ack) == PVIOMMU_CHAN_ACK &&
		    (READ_ONCE(c->host_flags) & PVIOMMU_CHAN_F_STATUS)) {
			pviommu_chan_order = order;
			break;
		}
		free_pages((unsigned long)c, order);
		if (nents == PVIOMMU_CHAN_NENTS_PAGE) {
			pviommu_chan_detach();
			return -ENODEV;
		}
		pr_info("the host serves no ring of %u entries: trying one page of %u\n", nents,
			PVIOMMU_CHAN_NENTS_PAGE);
	}
	pviommu_chan = c;
	pviommu_chan_nents = nents;
	pviommu_post = post && (READ_ONCE(c->host_flags) & PVIOMMU_CHAN_F_DRAIN);
	return 0;
}

/*
 * A posted entry's answer, read under pviommu_chan_lock when its entry is
 * used again or the ring is flushed: nonzero is a refusal (or no answer)
 * nobody has read (a kicked one's was read and cleared at once)
 */
static noinline void pviommu_chan_refused(struct pviommu_chan_ent *e, int r)
{
	WRITE_ONCE(e->status, 0);
	atomic64_inc(&pviommu_stats.posted_refused);
	atomic64_inc(&pviommu_stats.failures);
	pr_err_ratelimited("the host refused a posted %s (bdf %#x iova %#llx size %#llx): %d%s\n",
			   PVIOMMU_HC_OP(e->a[0]) == PVIOMMU_OP_MAP ? "MAP" : "UNMAP",
			   PVIOMMU_HC_BDF(e->a[0]), e->a[1], e->a[2], r,
			   r == PVIOMMU_CHAN_PENDING ? " (no answer)" : "");
}

static __always_inline void pviommu_chan_reap(struct pviommu_chan_ent *e)
{
	int r = READ_ONCE(e->status);

	/* the rare refusal out of line: the posting path keeps few registers */
	if (unlikely(r))
		pviommu_chan_refused(e, r);
}

/* a port read: the host carries out every published entry (an exit) */
static void pviommu_chan_kick(struct pviommu_chan *c)
{
	atomic64_inc(&pviommu_stats.exits);
	inl(PVIOMMU_PORT_KICK);
}

/* no free entry: carried out now (a kick); true when the ring stays full */
static noinline bool pviommu_chan_full(struct pviommu_chan *c, u32 prod)
{
	atomic64_inc(&pviommu_stats.ring_full);
	pviommu_chan_kick(c);
	return prod - smp_load_acquire(&c->cons) >= pviommu_chan_nents;
}

/*
 * Publish one entry; kick unless it may be posted. Returns its answer
 * (kicked), 0 (posted) or PVIOMMU_NOACK (the host went away).
 */
static __always_inline int pviommu_chan_call(u64 a0, u64 a1, u64 a2, bool may_post)
{
	struct pviommu_chan *c = pviommu_chan;
	struct pviommu_chan_ent *e;
	unsigned long flags;
	unsigned int i;
	u32 prod;
	int r = 0;

	flags = pviommu_lock_irqsave(&pviommu_chan_lock);
	prod = c->prod;
	if (unlikely(prod - smp_load_acquire(&c->cons) >= pviommu_chan_nents) &&
	    pviommu_chan_full(c, prod)) {
		pviommu_unlock_irqrestore(&pviommu_chan_lock, flags);
		return PVIOMMU_NOACK;	/* the host stopped serving the page */
	}
	i = prod & (pviommu_chan_nents - 1);	/* a power of two: no division (a helper under TCG) */
	e = &c->ent[i];
	pviommu_chan_reap(e);
	e->a[0] = a0;
	e->a[1] = a1;
	e->a[2] = a2;
	e->a[3] = ++pviommu_chan_seq;	/* the cookie: the ring's operations in order */
	e->status = PVIOMMU_CHAN_PENDING;
	smp_store_release(&c->prod, prod + 1);
	if (!may_post || !pviommu_post) {
		pviommu_chan_kicked++;
		pviommu_chan_kick(c);	/* the host serves the entries, then returns */
		r = smp_load_acquire(&e->status);
		WRITE_ONCE(e->status, 0);	/* read: nobody's any more */
		/* still pending: the host went away (QEMU without the page any more) */
		if (r == PVIOMMU_CHAN_PENDING)
			r = PVIOMMU_NOACK;
	}
	pviommu_unlock_irqrestore(&pviommu_chan_lock, flags);
	return r;
}

/* operations sent: the hypercall transports' (per CPU) and the ring's */
static s64 pviommu_ops_sent(void)
{
	return pviommu_sum(&pviommu_pcpu, hc) + (s64)READ_ONCE(pviommu_chan_seq);
}

/* the ring's operations published without a kick */
static s64 pviommu_ops_posted(void)
{
	return (s64)(READ_ONCE(pviommu_chan_seq) - READ_ONCE(pviommu_chan_kicked));
}

/* everything posted is carried out and its answers read (a read of the stats file) */
static void pviommu_chan_flush(void)
{
	struct pviommu_chan *c = pviommu_chan;
	unsigned long flags;
	unsigned int i;

	if (!c || !pviommu_post)
		return;
	flags = pviommu_lock_irqsave(&pviommu_chan_lock);
	if (c->prod != smp_load_acquire(&c->cons))
		pviommu_chan_kick(c);
	for (i = 0; i < pviommu_chan_nents; i++)
		pviommu_chan_reap(&c->ent[i]);
	pviommu_unlock_irqrestore(&pviommu_chan_lock, flags);
}

/*
 * Returns the host's answer where the channel carries one (the shared
 * page; the TCG transport of the in-process plane), else PVIOMMU_NOACK
 * (KVM: the BPF handler cannot set RAX; the uprobe TCG transport cannot
 * write registers).
 */
static __always_inline int __pviommu_hypercall(u64 a0, u64 iova, u64 size, bool may_post)
{
	u64 cookie;

	if (pviommu_chan)
		return pviommu_chan_call(a0, iova, size, may_post);
	/* the hypercall's cookie: the CPU in bits 48-63, its count of operations below */
	cookie = this_cpu_inc_return(pviommu_pcpu.hc) | (u64)raw_smp_processor_id() << 48;
	atomic64_inc(&pviommu_stats.exits);
	if (pviommu_use_kvm) {
		kvm_hypercall4(PVIOMMU_KVM_HC_NR, a0, iova, size, cookie);
		return PVIOMMU_NOACK;
	}
	return pviommu_cpuid(a0, iova, size, cookie);
}

/* an operation that needs its answer now: kicked */
static int pviommu_hypercall(u32 op, u32 perm, u32 bdf, u64 iova, u64 size)
{
	return __pviommu_hypercall(PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, op, perm, bdf), iova, size,
				   false);
}

/* DEV_ADD; an assigned device's answer says its operations are kicked */
static int pviommu_dev_add(struct pviommu_dev *pd)
{
	int r = pviommu_hypercall(PVIOMMU_OP_DEV_ADD, 0, pd->bdf, 0, 0);

	if (r == PVIOMMU_CHAN_ST_KICK && pviommu_chan) {
		pd->kick = true;
		return 0;
	}
	return r;
}

/*
 * MAP or UNMAP of pd: posted where the host drains (pviommu.h, "Posting");
 * its header from the device's (ABI and bdf) with op and perm added
 */
static __always_inline int pviommu_dev_call(struct pviommu_dev *pd, u32 op, u32 perm, u64 iova, u64 size)
{
	return __pviommu_hypercall(pd->hc_hdr | PVIOMMU_HC_HDR(0, op, perm, 0), iova, size,
				   !pd->kick);
}

/* with verify: anything but an acknowledged success is a refusal */
static __always_inline bool pviommu_refused(int r)
{
	return r && verify;	/* r first: a posted operation's 0 decides at once */
}

static noinline void pviommu_op_refused(struct pviommu_dev *pd, u32 op, u64 iova, u64 size,
					int r)
{
	atomic64_inc(&pviommu_stats.failures);
	atomic64_inc(&pd->failures);
	pr_err_ratelimited("%s: the host refused %s [%#llx+%#llx]: %d\n", pci_name(pd->pdev),
			   op == PVIOMMU_OP_MAP ? "MAP" : "UNMAP", iova, size, r);
}

/* MAP or UNMAP of pd; a refusal is counted and said (out of line). Returns the answer */
static __always_inline int pviommu_dev_op(struct pviommu_dev *pd, u32 op, u32 perm, u64 iova, u64 size)
{
	int r = pviommu_dev_call(pd, op, perm, iova, size);

	if (unlikely(pviommu_refused(r)))
		pviommu_op_refused(pd, op, iova, size, r);
	return r;
}

static __always_inline u32 pviommu_perm(enum dma_data_direction dir)
{
	switch (dir) {
	case DMA_TO_DEVICE:
		return PVIOMMU_PERM_READ;
	case DMA_FROM_DEVICE:
		return PVIOMMU_PERM_WRITE;
	default:
		return PVIOMMU_PERM_RW;
	}
}

/* ------------------------------------------------------------------ */
/* the list of live mappings (track=1) */

static struct pviommu_live *__pviommu_live_find(struct pviommu_dev *pd, u64 iova,
						  u64 size, u32 perm)
{
	struct pviommu_live *l;

	lockdep_assert_held(&pviommu_live_lock);
	hash_for_each_possible(pviommu_live_ht, l, node, iova)
		if (l->pd == pd && l->iova == iova && l->size == size && l->perm == perm)
			return l;
	return NULL;
}

/* any context: DMA mappings are made from interrupts and with locks held */
static void __pviommu_live_add(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	struct pviommu_live *l;
	unsigned long flags;

	spin_lock_irqsave(&pviommu_live_lock, flags);
	l = __pviommu_live_find(pd, iova, size, perm);
	if (l) {
		l->refs++;
	} else {
		l = kmalloc(sizeof(*l), GFP_ATOMIC);
		if (l) {
			*l = (struct pviommu_live){ .pd = pd, .iova = iova, .size = size,
						    .perm = perm, .refs = 1 };
			hash_add(pviommu_live_ht, &l->node, iova);
		} else {
			atomic64_inc(&pviommu_live_lost);
		}
	}
	spin_unlock_irqrestore(&pviommu_live_lock, flags);
}

static __always_inline void pviommu_live_add(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	if (track)
		__pviommu_live_add(pd, iova, size, perm);
}

static void __pviommu_live_del(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	struct pviommu_live *l;
	unsigned long flags;

	spin_lock_irqsave(&pviommu_live_lock, flags);
	l = __pviommu_live_find(pd, iova, size, perm);
	if (!l) {
		atomic64_inc(&pviommu_live_unmatched);
	} else if (!--l->refs) {
		hash_del(&l->node);
		kfree(l);
	}
	spin_unlock_irqrestore(&pviommu_live_lock, flags);
}

static __always_inline void pviommu_live_del(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	if (track)
		__pviommu_live_del(pd, iova, size, perm);
}

/* pd's mappings are revoked (DEV_DEL), or every device's (pd NULL: exit) */
static void pviommu_live_drop(struct pviommu_dev *pd)
{
	struct pviommu_live *l;
	struct hlist_node *tmp;
	unsigned long flags;
	unsigned int b;

	if (!track)
		return;
	spin_lock_irqsave(&pviommu_live_lock, flags);
	hash_for_each_safe(pviommu_live_ht, b, tmp, l, node) {
		if (pd && l->pd != pd)
			continue;
		hash_del(&l->node);
		kfree(l);
	}
	spin_unlock_irqrestore(&pviommu_live_lock, flags);
}

/* ------------------------------------------------------------------ */
/* map / unmap bookkeeping, lazy queue */

/*
 * The host revokes exactly the mapping of this iova, size and perm. A
 * refusal is counted and said (it cannot fail the unmap: the device is
 * done with the memory either way); a posted UNMAP's is read when its
 * entry is reused.
 */
static __always_inline void pviommu_unmap_now(struct pviommu_dev *pd, u64 iova, u64 size,
			      u32 perm)
{
	struct pviommu_dev_pcpu __percpu *pc = pd->pcpu;

	pviommu_dev_op(pd, PVIOMMU_OP_UNMAP, perm, iova, size);
	pviommu_live_del(pd, iova, size, perm);
	this_cpu_dec(pc->live);
	this_cpu_sub(pc->live_bytes, size);
}

/*
 * The queue's lock: taken on every lazy map and unmap, so the posting path's
 * kind (pviommu_lock_irqsave); the channel's lock nests inside it (a flush
 * posts)
 */
#define pviommu_lazy_lock(flags)	((flags) = pviommu_lock_irqsave(&pviommu_lazy.lock))
#define pviommu_lazy_unlock(flags)	pviommu_unlock_irqrestore(&pviommu_lazy.lock, flags)

static __always_inline u16 *pviommu_lazy_bucket(struct pviommu_dev *pd, u64 iova)
{
	return &pviommu_lazy.bucket[hash_64(iova ^ (uintptr_t)pd, PVIOMMU_LAZY_BUCKET_BITS)];
}

/* unmaps in the lazy queue (not cancelled, not yet sent) */
static unsigned int pviommu_lazy_pending(void)
{
	unsigned long flags;
	unsigned int i, n = 0;

	pviommu_lazy_lock(flags);
	for (i = 0; i < pviommu_lazy.n; i++)
		n += !pviommu_lazy.ent[i].dead;
	pviommu_lazy_unlock(flags);
	return n;
}

/* every live entry is sent; the queue starts empty */
static void __pviommu_lazy_flush(void)
{
	struct pviommu_lazy_ent *e;
	unsigned int i;

	if (!pviommu_lazy.n)
		return;
	for (i = 0; i < pviommu_lazy.n; i++) {
		e = &pviommu_lazy.ent[i];
		if (!e->dead)
			pviommu_unmap_now(e->pd, e->iova, e->size, e->perm);
	}
	pviommu_lazy.n = 0;
	memset(pviommu_lazy.bucket, 0, sizeof(pviommu_lazy.bucket));
	atomic64_inc(&pviommu_stats.lazy_flushes);
}

static void pviommu_lazy_flush(void)
{
	unsigned long flags;

	pviommu_lazy_lock(flags);
	__pviommu_lazy_flush();
	pviommu_lazy_unlock(flags);
}

static void pviommu_lazy_timer(struct timer_list *t)
{
	pviommu_lazy_flush();
}

static void pviommu_lazy_add(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	u16 *b = pviommu_lazy_bucket(pd, iova);
	struct pviommu_lazy_ent *e;
	unsigned long flags;

	pviommu_lazy_lock(flags);
	e = &pviommu_lazy.ent[pviommu_lazy.n++];
	e->pd = pd;
	e->iova = iova;
	e->size = size;
	e->perm = perm;
	e->dead = false;
	e->next = *b;
	*b = pviommu_lazy.n;	/* its index + 1 */
	this_cpu_inc(pviommu_pcpu.lazy_queued);
	if (pviommu_lazy.n >= lazy_batch)
		__pviommu_lazy_flush();
	else if (!timer_pending(&pviommu_lazy.timer))
		mod_timer(&pviommu_lazy.timer, jiffies + msecs_to_jiffies(lazy_ms));
	pviommu_lazy_unlock(flags);
}

/*
 * Lazy mode, before a MAP: a queued unmap of the same range is cancelled (the
 * host still holds it: no hypercall at all); a queued unmap at the same iova
 * with another size or perm is sent first, since the host refuses a second
 * record at one iova that differs in size or perm.
 */
static bool pviommu_lazy_reuse(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	struct pviommu_lazy_ent *e;
	unsigned long flags;
	bool reused = false;
	u16 *link;

	pviommu_lazy_lock(flags);
	link = pviommu_lazy_bucket(pd, iova);
	while (*link) {
		e = &pviommu_lazy.ent[*link - 1];
		if (e->pd != pd || e->iova != iova) {
			link = &e->next;
			continue;
		}
		/* out of the bucket, dead: cancelled, or sent now */
		*link = e->next;
		e->dead = true;
		if (e->size == size && e->perm == perm) {
			this_cpu_inc(pviommu_pcpu.lazy_reused);
			reused = true;
			break;
		}
		pviommu_unmap_now(e->pd, e->iova, e->size, e->perm);
		atomic64_inc(&pviommu_stats.lazy_conflicts);
	}
	pviommu_lazy_unlock(flags);
	return reused;
}

/* 0, or the host's refusal (verify): the caller fails the DMA mapping */
static __always_inline int pviommu_map(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	struct pviommu_dev_pcpu __percpu *pc = pd->pcpu;
	int r;

	if (!size)
		return 0;
	this_cpu_inc(pc->maps);
	if (pviommu_lazy_mode && pviommu_lazy_reuse(pd, iova, size, perm))
		return 0;
	r = pviommu_dev_op(pd, PVIOMMU_OP_MAP, perm, iova, size);
	if (pviommu_refused(r))
		return r < 0 ? r : -EIO;
	this_cpu_inc(pc->live);
	this_cpu_add(pc->live_bytes, size);
	pviommu_live_add(pd, iova, size, perm);
	return 0;
}

static __always_inline void pviommu_unmap(struct pviommu_dev *pd, u64 iova, u64 size, u32 perm)
{
	if (!size)
		return;
	this_cpu_inc(pd->pcpu->unmaps);
	if (pviommu_lazy_mode)
		pviommu_lazy_add(pd, iova, size, perm);
	else
		pviommu_unmap_now(pd, iova, size, perm);
}

static void pviommu_fail(struct pviommu_dev *pd, const char *what, u64 addr, u64 size)
{
	atomic64_inc(&pviommu_stats.failures);
	atomic64_inc(&pd->failures);
	pr_err_ratelimited("%s: %s [%#llx+%#llx] failed: beyond the DMA mask and no bounce buffering\n",
			   pci_name(pd->pdev), what, addr, size);
}

/* ------------------------------------------------------------------ */
/* DMA ops: old ops, or identity (dma-direct without swiotlb) */

static struct pviommu_dev *pviommu_pd(struct device *dev)
{
	return container_of(get_dma_ops(dev), struct pviommu_ops, ops)->pd;
}

/* a device with old ops (swiotlb, another IOMMU's): theirs, then ours */
static dma_addr_t pviommu_map_page(struct device *dev, struct page *page,
				   unsigned long offset, size_t size,
				   enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);
	dma_addr_t dma;

	dma = pd->old_ops->map_page(dev, page, offset, size, dir, attrs);
	if (dma == DMA_MAPPING_ERROR)
		return dma;
	if (pviommu_map(pd, dma, size, pviommu_perm(dir))) {
		pd->old_ops->unmap_page(dev, dma, size, dir, attrs);
		return DMA_MAPPING_ERROR;
	}
	return dma;
}

static void pviommu_unmap_page(struct device *dev, dma_addr_t dma, size_t size,
			       enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);

	pviommu_unmap(pd, dma, size, pviommu_perm(dir));
	pd->old_ops->unmap_page(dev, dma, size, dir, attrs);
}

/*
 * dma-direct's devices (old ops NULL, most of them): the identity, then
 * ours. Functions of their own, with no call on their way: the compiler
 * keeps fewer registers for them (guest instructions per pair, make bench).
 */
static dma_addr_t pviommu_map_page_direct(struct device *dev, struct page *page,
					  unsigned long offset, size_t size,
					  enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);
	dma_addr_t dma = phys_to_dma(dev, page_to_phys(page) + offset);

	if (unlikely(!dma_capable(dev, dma, size, true))) {
		pviommu_fail(pd, "map_page", dma, size);
		return DMA_MAPPING_ERROR;
	}
	if (pviommu_map(pd, dma, size, pviommu_perm(dir)))
		return DMA_MAPPING_ERROR;
	return dma;
}

static void pviommu_unmap_page_direct(struct device *dev, dma_addr_t dma, size_t size,
				      enum dma_data_direction dir, unsigned long attrs)
{
	pviommu_unmap(pviommu_pd(dev), dma, size, pviommu_perm(dir));
}

static void pviommu_unmap_sg_segs(struct pviommu_dev *pd, struct scatterlist *sgl,
				  int nents, u32 perm)
{
	struct scatterlist *s;
	int i;

	for_each_sg(sgl, s, nents, i)
		pviommu_unmap(pd, sg_dma_address(s), sg_dma_len(s), perm);
}

static int pviommu_map_sg(struct device *dev, struct scatterlist *sgl, int nents,
			  enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);
	u32 perm = pviommu_perm(dir);
	struct scatterlist *s;
	dma_addr_t dma;
	int i, ret;

	if (pd->old_ops) {
		ret = pd->old_ops->map_sg(dev, sgl, nents, dir, attrs);
		if (ret <= 0)
			return ret;
		for_each_sg(sgl, s, ret, i) {
			if (pviommu_map(pd, sg_dma_address(s), sg_dma_len(s), perm)) {
				pviommu_unmap_sg_segs(pd, sgl, i, perm);
				pd->old_ops->unmap_sg(dev, sgl, nents, dir, attrs);
				return -EIO;
			}
		}
		return ret;
	}
	for_each_sg(sgl, s, nents, i) {
		dma = phys_to_dma(dev, sg_phys(s));
		if (!dma_capable(dev, dma, s->length, true)) {
			pviommu_fail(pd, "map_sg", dma, s->length);
			pviommu_unmap_sg_segs(pd, sgl, i, perm);
			return -EIO;
		}
		sg_dma_address(s) = dma;
		sg_dma_len(s) = s->length;
		if (pviommu_map(pd, dma, s->length, perm)) {
			pviommu_unmap_sg_segs(pd, sgl, i, perm);
			return -EIO;
		}
	}
	return nents;
}

static void pviommu_unmap_sg(struct device *dev, struct scatterlist *sgl, int nents,
			     enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);

	pviommu_unmap_sg_segs(pd, sgl, nents, pviommu_perm(dir));
	if (pd->old_ops)
		pd->old_ops->unmap_sg(dev, sgl, nents, dir, attrs);
}

static dma_addr_t pviommu_map_resource(struct device *dev, phys_addr_t phys, size_t size,
				       enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);
	dma_addr_t dma = phys;

	if (pd->old_ops) {
		dma = pd->old_ops->map_resource(dev, phys, size, dir, attrs);
		if (dma == DMA_MAPPING_ERROR)
			return dma;
	} else if (!dma_capable(dev, dma, size, false)) {
		pviommu_fail(pd, "map_resource", dma, size);
		return DMA_MAPPING_ERROR;
	}
	if (pviommu_map(pd, dma, size, pviommu_perm(dir))) {
		if (pd->old_ops && pd->old_ops->unmap_resource)
			pd->old_ops->unmap_resource(dev, dma, size, dir, attrs);
		return DMA_MAPPING_ERROR;
	}
	return dma;
}

static void pviommu_unmap_resource(struct device *dev, dma_addr_t dma, size_t size,
				   enum dma_data_direction dir, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);

	pviommu_unmap(pd, dma, size, pviommu_perm(dir));
	if (pd->old_ops && pd->old_ops->unmap_resource)
		pd->old_ops->unmap_resource(dev, dma, size, dir, attrs);
}

static bool pviommu_dma_ok(struct device *dev, struct page *page, size_t size, u64 mask)
{
	return phys_to_dma(dev, page_to_phys(page)) + size - 1 <= mask;
}

/* like dma-direct: dma_alloc_*() strips the zone flags, pick them from the mask */
static struct page *pviommu_get_pages(struct device *dev, size_t size, gfp_t gfp)
{
	u64 mask = min_not_zero(dev->coherent_dma_mask, dev->bus_dma_limit);
	unsigned int order = get_order(size);
	struct page *page;
	gfp_t zone;

	if (order >= MAX_ORDER)
		return NULL;
	if (mask <= DMA_BIT_MASK(24))
		zone = GFP_DMA;
	else if (mask <= DMA_BIT_MASK(32))
		zone = GFP_DMA32;
	else
		zone = 0;
	gfp &= ~(__GFP_DMA | __GFP_DMA32 | __GFP_HIGHMEM);
	for (;;) {
		page = alloc_pages_node(dev_to_node(dev), gfp | zone | __GFP_ZERO, order);
		if (!page)
			return NULL;
		if (pviommu_dma_ok(dev, page, size, mask))
			return page;
		__free_pages(page, order);
		if (zone == 0)
			zone = GFP_DMA32;
		else if (zone == GFP_DMA32)
			zone = GFP_DMA;
		else
			return NULL;
	}
}

static void *pviommu_alloc(struct device *dev, size_t size, dma_addr_t *dma_handle,
			   gfp_t gfp, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);
	struct page *page;
	void *vaddr;

	if (pd->old_ops) {
		vaddr = pd->old_ops->alloc(dev, size, dma_handle, gfp, attrs);
		if (vaddr && pviommu_map(pd, *dma_handle, size, PVIOMMU_PERM_RW)) {
			pd->old_ops->free(dev, size, vaddr, *dma_handle, attrs);
			return NULL;
		}
		return vaddr;
	}
	/* DMA_ATTR_NO_KERNEL_MAPPING: the cookie is opaque, a kernel address does */
	page = pviommu_get_pages(dev, size, gfp);
	if (!page)
		return NULL;
	*dma_handle = phys_to_dma(dev, page_to_phys(page));
	if (pviommu_map(pd, *dma_handle, size, PVIOMMU_PERM_RW)) {
		__free_pages(page, get_order(size));
		return NULL;
	}
	return page_address(page);
}

static void pviommu_free(struct device *dev, size_t size, void *vaddr,
			 dma_addr_t dma, unsigned long attrs)
{
	struct pviommu_dev *pd = pviommu_pd(dev);

	pviommu_unmap(pd, dma, size, PVIOMMU_PERM_RW);
	if (pd->old_ops)
		pd->old_ops->free(dev, size, vaddr, dma, attrs);
	else
		__free_pages(virt_to_page(vaddr), get_order(size));
}

static struct page *pviommu_alloc_pages(struct device *dev, size_t size,
					dma_addr_t *dma_handle,
					enum dma_data_direction dir, gfp_t gfp)
{
	struct pviommu_dev *pd = pviommu_pd(dev);
	struct page *page;

	if (pd->old_ops)
		page = pd->old_ops->alloc_pages(dev, size, dma_handle, dir, gfp);
	else
		page = pviommu_get_pages(dev, size, gfp);
	if (!page)
		return NULL;
	if (!pd->old_ops)
		*dma_handle = phys_to_dma(dev, page_to_phys(page));
	if (pviommu_map(pd, *dma_handle, size, pviommu_perm(dir))) {
		if (pd->old_ops)
			pd->old_ops->free_pages(dev, size, page, *dma_handle, dir);
		else
			__free_pages(page, get_order(size));
		return NULL;
	}
	return page;
}

static void pviommu_free_pages(struct device *dev, size_t size, struct page *page,
			       dma_addr_t dma, enum dma_data_direction dir)
{
	struct pviommu_dev *pd = pviommu_pd(dev);

	pviommu_unmap(pd, dma, size, pviommu_perm(dir));
	if (pd->old_ops)
		pd->old_ops->free_pages(dev, size, page, dma, dir);
	else
		__free_pages(page, get_order(size));
}

/* identity only (old ops keep theirs): x86 is DMA-coherent, no pgprot change */
static int pviommu_mmap(struct device *dev, struct vm_area_struct *vma, void *cpu_addr,
			dma_addr_t dma, size_t size, unsigned long attrs)
{
	unsigned long count = PAGE_ALIGN(size) >> PAGE_SHIFT;
	unsigned long user_count = vma_pages(vma);
	unsigned long off = vma->vm_pgoff;

	if (off >= count || user_count > count - off)
		return -ENXIO;
	return remap_pfn_range(vma, vma->vm_start, page_to_pfn(virt_to_page(cpu_addr)) + off,
			       user_count << PAGE_SHIFT, vma->vm_page_prot);
}

static int pviommu_get_sgtable(struct device *dev, struct sg_table *sgt, void *cpu_addr,
			       dma_addr_t dma, size_t size, unsigned long attrs)
{
	int ret = sg_alloc_table(sgt, 1, GFP_KERNEL);

	if (!ret)
		sg_set_page(sgt->sgl, virt_to_page(cpu_addr), PAGE_ALIGN(size), 0);
	return ret;
}

/* dma-direct accepts any mask that covers ZONE_DMA (16 MiB on x86) */
static int pviommu_dma_supported(struct device *dev, u64 mask)
{
	return mask >= DMA_BIT_MASK(24);
}

static u64 pviommu_get_required_mask(struct device *dev)
{
	u64 top = phys_to_dma(dev, __pa((unsigned long)high_memory - 1));

	return DMA_BIT_MASK(fls64(top));
}

/*
 * Wrap everything that maps; the rest (syncs, mmap...) stays the old ops'.
 * dma_alloc_noncontiguous() falls back to ->alloc_pages when it has none.
 */
static struct pviommu_ops *pviommu_ops_new(struct pviommu_dev *pd, const struct dma_map_ops *old)
{
	const struct pviommu_ops tmpl = {
		.pd = pd,
		.ops = {
			.flags = old ? old->flags : 0,
			.alloc = pviommu_alloc,
			.free = pviommu_free,
			.alloc_pages = !old || old->alloc_pages ? pviommu_alloc_pages : NULL,
			.free_pages = !old || old->alloc_pages ? pviommu_free_pages : NULL,
			.mmap = old ? old->mmap : pviommu_mmap,
			.get_sgtable = old ? old->get_sgtable : pviommu_get_sgtable,
			.map_page = old ? pviommu_map_page : pviommu_map_page_direct,
			.unmap_page = old ? pviommu_unmap_page : pviommu_unmap_page_direct,
			.map_sg = pviommu_map_sg,
			.unmap_sg = pviommu_unmap_sg,
			.map_resource = !old || old->map_resource ? pviommu_map_resource : NULL,
			.unmap_resource = !old || old->map_resource ? pviommu_unmap_resource : NULL,
			.sync_single_for_cpu = old ? old->sync_single_for_cpu : NULL,
			.sync_single_for_device = old ? old->sync_single_for_device : NULL,
			.sync_sg_for_cpu = old ? old->sync_sg_for_cpu : NULL,
			.sync_sg_for_device = old ? old->sync_sg_for_device : NULL,
			.cache_sync = old ? old->cache_sync : NULL,
			.dma_supported = old ? old->dma_supported : pviommu_dma_supported,
			.get_required_mask = old ? old->get_required_mask :
					     pviommu_get_required_mask,
			.max_mapping_size = old ? old->max_mapping_size : NULL,
			.opt_mapping_size = old ? old->opt_mapping_size : NULL,
			.get_merge_boundary = old ? old->get_merge_boundary : NULL,
		},
	};

	return kmemdup(&tmpl, sizeof(tmpl), GFP_KERNEL);
}

/* ------------------------------------------------------------------ */
/* devices */

static u32 pviommu_bdf(struct pci_dev *pdev)
{
	return PVIOMMU_BDF(pci_domain_nr(pdev->bus), pdev->bus->number,
			   PCI_SLOT(pdev->devfn), PCI_FUNC(pdev->devfn));
}

static bool pviommu_wanted(struct pci_dev *pdev)
{
	u32 bdf = pviommu_bdf(pdev);
	unsigned int i;

	if (all)
		return (pdev->class >> 16) != PCI_BASE_CLASS_BRIDGE;
	for (i = 0; i < pviommu_nr_named; i++)
		if (pviommu_named[i] == bdf)
			return true;
	return false;
}

/* 0, or -EBUSY if something else already translates the device's DMA */
static int pviommu_check(struct pci_dev *pdev, bool ratelimit)
{
	const struct dma_map_ops *old = get_dma_ops(&pdev->dev);
	const char *why = NULL;

	if (device_iommu_mapped(&pdev->dev))
		why = "is behind an IOMMU (has an iommu_group)";
	else if (old && (!old->map_page || !old->unmap_page || !old->map_sg ||
			 !old->unmap_sg || !old->alloc || !old->free))
		why = "has DMA ops that cannot be wrapped";
	if (!why)
		return 0;
	if (ratelimit)
		pr_err_ratelimited("%s %s: not protected\n", pci_name(pdev), why);
	else
		pr_err("%s %s: refusing\n", pci_name(pdev), why);
	return -EBUSY;
}

static struct pviommu_dev *pviommu_dev_new(struct pci_dev *pdev)
{
	struct pviommu_dev *pd = kzalloc(sizeof(*pd), GFP_KERNEL);

	if (!pd)
		return NULL;
	pd->pcpu = alloc_percpu(struct pviommu_dev_pcpu);
	if (!pd->pcpu) {
		kfree(pd);
		return NULL;
	}
	pd->old_ops = get_dma_ops(&pdev->dev);
	pd->ops = pviommu_ops_new(pd, pd->old_ops);
	if (!pd->ops) {
		free_percpu(pd->pcpu);
		kfree(pd);
		return NULL;
	}
	pd->pdev = pci_dev_get(pdev);
	pd->bdf = pviommu_bdf(pdev);
	pd->hc_hdr = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, 0, 0, pd->bdf);
	return pd;
}

/* the maps and unmaps of devices freed (under pviommu_mutex; counted in the totals) */
static s64 pviommu_freed_maps, pviommu_freed_unmaps;

/* every device's maps (or unmaps), freed devices' included: under pviommu_mutex */
#define pviommu_total(f) ({						\
	struct pviommu_dev *__pd;					\
	s64 __t = pviommu_freed_##f;					\
	lockdep_assert_held(&pviommu_mutex);				\
	list_for_each_entry(__pd, &pviommu_devs, node)			\
		__t += pviommu_sum(__pd->pcpu, f);			\
	__t;								\
})

/* under pviommu_mutex, off the list */
static void pviommu_dev_free(struct pviommu_dev *pd)
{
	lockdep_assert_held(&pviommu_mutex);
	pviommu_freed_maps += pviommu_sum(pd->pcpu, maps);
	pviommu_freed_unmaps += pviommu_sum(pd->pcpu, unmaps);
	pci_dev_put(pd->pdev);
	free_percpu(pd->pcpu);
	kfree(pd->ops);
	kfree(pd);
}

static struct pviommu_dev *__pviommu_find(struct device *dev)
{
	struct pviommu_dev *pd;

	lockdep_assert_held(&pviommu_mutex);
	list_for_each_entry(pd, &pviommu_devs, node)
		if (&pd->pdev->dev == dev)
			return pd;
	return NULL;
}

/* with device_lock() held and no driver bound (or about to probe) */
static void __pviommu_install(struct pviommu_dev *pd)
{
	struct device *dev = &pd->pdev->dev;

	lockdep_assert_held(&pviommu_mutex);
	if (pd->installed || pd->removed)
		return;
	if (get_dma_ops(dev) != pd->old_ops) {
		pr_err_ratelimited("%s: DMA ops changed under us: not protected\n",
				   pci_name(pd->pdev));
		return;
	}
	if (pviommu_refused(pviommu_dev_add(pd))) {
		pr_err_ratelimited("%s: the host did not acknowledge DEV_ADD: not protected\n",
				   pci_name(pd->pdev));
		return;
	}
	set_dma_ops(dev, &pd->ops->ops);
	pd->installed = true;
}

/* the device's live ranges are revoked: its counts start again */
static void pviommu_live_zero(struct pviommu_dev *pd)
{
	int c;

	for_each_possible_cpu(c) {
		per_cpu_ptr(pd->pcpu, c)->live = 0;
		per_cpu_ptr(pd->pcpu, c)->live_bytes = 0;
	}
}

/* no driver bound: nothing maps through our ops any more */
static void __pviommu_uninstall(struct pviommu_dev *pd)
{
	struct device *dev = &pd->pdev->dev;
	s64 left;

	lockdep_assert_held(&pviommu_mutex);
	if (!pd->installed)
		return;
	pviommu_lazy_flush();
	left = pviommu_sum(pd->pcpu, live);
	if (left)
		pr_warn("%s: %lld mappings left at detach: revoked\n", pci_name(pd->pdev), left);
	set_dma_ops(dev, pd->old_ops);
	pviommu_hypercall(PVIOMMU_OP_DEV_DEL, 0, pd->bdf, 0, 0);
	pviommu_live_drop(pd);
	atomic64_add(left, &pd->revoked);
	pviommu_live_zero(pd);
	pd->installed = false;
}

/* driver gone: whatever it did not unmap is revoked, the device stays protected */
static void __pviommu_driver_gone(struct pviommu_dev *pd)
{
	s64 left;

	lockdep_assert_held(&pviommu_mutex);
	if (!pd->installed)
		return;
	pviommu_lazy_flush();
	left = pviommu_sum(pd->pcpu, live);
	if (!left)
		return;
	pr_warn_ratelimited("%s: driver left %lld mappings: revoked\n", pci_name(pd->pdev), left);
	pviommu_hypercall(PVIOMMU_OP_DEV_DEL, 0, pd->bdf, 0, 0);
	pviommu_live_drop(pd);
	pviommu_dev_add(pd);
	atomic64_add(left, &pd->revoked);
	pviommu_live_zero(pd);
}

static int pviommu_virtio_child(struct device *child, void *data)
{
	struct virtio_device *vdev;

	if (!child->bus || strcmp(child->bus->name, "virtio") || !child->driver)
		return 0;
	vdev = dev_to_virtio(child);
	*(int *)data = !!(vdev->features & BIT_ULL(VIRTIO_F_ACCESS_PLATFORM));
	return 1;
}

/* 1: uses the DMA API, 0: bypasses it, -1: not a bound virtio device */
static int pviommu_virtio_platform(struct pci_dev *pdev)
{
	int platform = -1;

	if (pdev->vendor == PVIOMMU_VENDOR_VIRTIO)
		device_for_each_child(&pdev->dev, &platform, pviommu_virtio_child);
	return platform;
}

static void __pviommu_check_virtio(struct pviommu_dev *pd)
{
	lockdep_assert_held(&pviommu_mutex);
	if (pd->warned_bypass || pviommu_virtio_platform(pd->pdev) != 0)
		return;
	pd->warned_bypass = true;
	pr_warn("%s: virtio without VIRTIO_F_ACCESS_PLATFORM bypasses the DMA API: its DMA is not authorized (QEMU: iommu_platform=on,disable-legacy=on)\n",
		pci_name(pd->pdev));
}

static int pviommu_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct device *dev = data;
	struct pci_dev *pdev = to_pci_dev(dev);
	struct pviommu_dev *pd;

	mutex_lock(&pviommu_mutex);
	pd = __pviommu_find(dev);
	switch (action) {
	case BUS_NOTIFY_BIND_DRIVER:
		/* before probe, after dma_configure(): device_lock() held */
		if (!pd && pviommu_wanted(pdev) && !pviommu_check(pdev, true)) {
			pd = pviommu_dev_new(pdev);
			if (pd)
				list_add_tail(&pd->node, &pviommu_devs);
			else
				pr_err_ratelimited("%s: out of memory: not protected\n",
						   pci_name(pdev));
		}
		if (pd)
			__pviommu_install(pd);
		break;
	case BUS_NOTIFY_BOUND_DRIVER:
		if (pd)
			__pviommu_check_virtio(pd);
		break;
	case BUS_NOTIFY_UNBOUND_DRIVER:
	case BUS_NOTIFY_DRIVER_NOT_BOUND:
		if (pd)
			__pviommu_driver_gone(pd);
		break;
	case BUS_NOTIFY_REMOVED_DEVICE:
		if (pd) {
			__pviommu_uninstall(pd);
			pd->removed = true;
		}
		break;
	}
	mutex_unlock(&pviommu_mutex);
	return NOTIFY_DONE;
}

static struct notifier_block pviommu_nb = {
	.notifier_call = pviommu_notify,
};

/*
 * unbind, install (or uninstall), rebind: the driver maps everything again
 * through the ops it gets; uninstalling, no mapping made through our ops
 * outlives the module (the driver unmapped them all at unbind)
 */
static void pviommu_rebind(struct pviommu_dev *pd, bool install)
{
	struct device *dev = &pd->pdev->dev;
	bool bound = READ_ONCE(dev->driver);

	if (bound)
		device_release_driver(dev);
	device_lock(dev);
	mutex_lock(&pviommu_mutex);
	if (install)
		__pviommu_install(pd);
	else
		__pviommu_uninstall(pd);
	mutex_unlock(&pviommu_mutex);
	device_unlock(dev);
	if (bound && device_attach(dev) <= 0)
		pr_warn("%s: driver did not bind again\n", pci_name(pd->pdev));
}

/* ------------------------------------------------------------------ */
/* stats: /sys/kernel/debug/pviommu/stats, "key value" lines */

static int pviommu_stats_show(struct seq_file *m, void *v)
{
	struct pviommu_dev *pd;
	s64 live = 0;

	mutex_lock(&pviommu_mutex);
	list_for_each_entry(pd, &pviommu_devs, node)
		live += pviommu_sum(pd->pcpu, live);
	seq_printf(m, "abi %u\n", PVIOMMU_ABI_VERSION);
	seq_printf(m, "transport %s\n", pviommu_use_kvm ? "kvm" : "tcg");
	seq_printf(m, "channel %s\n", pviommu_chan ? "page" : "hypercall");
	pviommu_chan_flush();	/* the posted entries' answers are counted below */
	if (pviommu_chan)
		seq_printf(m, "page_kicks %u page_errors %u\npage_ops %u\npage_runs %u\n",
			   READ_ONCE(pviommu_chan->kicks), READ_ONCE(pviommu_chan->errors),
			   READ_ONCE(pviommu_chan->ops), READ_ONCE(pviommu_chan->runs));
	seq_printf(m, "ring %u\n", pviommu_chan ? pviommu_chan_nents : 0);
	seq_printf(m, "post %d\n", pviommu_post);
	seq_printf(m, "exits %lld\n", atomic64_read(&pviommu_stats.exits));
	seq_printf(m, "posted %lld\n", pviommu_ops_posted());
	seq_printf(m, "posted_refused %lld\n", atomic64_read(&pviommu_stats.posted_refused));
	seq_printf(m, "ring_full %lld\n", atomic64_read(&pviommu_stats.ring_full));
	seq_printf(m, "mode %s\n", pviommu_lazy_mode ? "lazy" : "strict");
	seq_printf(m, "hypercalls %lld\n", pviommu_ops_sent());
	seq_printf(m, "maps %lld\n", pviommu_total(maps));
	seq_printf(m, "unmaps %lld\n", pviommu_total(unmaps));
	seq_printf(m, "failures %lld\n", atomic64_read(&pviommu_stats.failures));
	seq_printf(m, "live %lld\n", live);
	seq_printf(m, "lazy_queued %lld\n", pviommu_sum(&pviommu_pcpu, lazy_queued));
	seq_printf(m, "lazy_pending %u\n", pviommu_lazy_pending());
	seq_printf(m, "lazy_flushes %lld\n", atomic64_read(&pviommu_stats.lazy_flushes));
	seq_printf(m, "lazy_reused %lld\n", pviommu_sum(&pviommu_pcpu, lazy_reused));
	seq_printf(m, "lazy_conflicts %lld\n", atomic64_read(&pviommu_stats.lazy_conflicts));
	if (track)
		seq_printf(m, "track_lost %lld\ntrack_unmatched %lld\n",
			   atomic64_read(&pviommu_live_lost),
			   atomic64_read(&pviommu_live_unmatched));
	list_for_each_entry(pd, &pviommu_devs, node) {
		seq_printf(m, "device %s bdf %#x protected %d driver %s virtio_platform %d",
			   pci_name(pd->pdev), pd->bdf, pd->installed,
			   pd->pdev->dev.driver ? pd->pdev->dev.driver->name : "-",
			   pviommu_virtio_platform(pd->pdev));
		seq_printf(m, " maps %lld unmaps %lld live %lld live_bytes %lld failures %lld revoked %lld\n",
			   pviommu_sum(pd->pcpu, maps), pviommu_sum(pd->pcpu, unmaps),
			   pviommu_sum(pd->pcpu, live), pviommu_sum(pd->pcpu, live_bytes),
			   atomic64_read(&pd->failures), atomic64_read(&pd->revoked));
	}
	mutex_unlock(&pviommu_mutex);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pviommu_stats);

/*
 * /sys/kernel/debug/pviommu/mappings (track=1): one line per live mapping,
 * "BDF IOVA SIZE PERM REFS" (decimal; perm r, w or rw as the host prints
 * it), in no particular order
 */
static int pviommu_mappings_show(struct seq_file *m, void *v)
{
	struct pviommu_live *l;
	unsigned long flags;
	unsigned int b;

	spin_lock_irqsave(&pviommu_live_lock, flags);
	hash_for_each(pviommu_live_ht, b, l, node)
		seq_printf(m, "%s %llu %llu %s %u\n", pci_name(l->pd->pdev), l->iova, l->size,
			   l->perm == PVIOMMU_PERM_RW ? "rw" :
			   l->perm == PVIOMMU_PERM_READ ? "r" : "w", l->refs);
	spin_unlock_irqrestore(&pviommu_live_lock, flags);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pviommu_mappings);

/* ------------------------------------------------------------------ */
/* init / exit */

static int pviommu_parse_bdf(const char *s, u32 *bdf)
{
	unsigned int dom = 0, bus, slot, fn;
	char c;

	if (sscanf(s, "%x:%x:%x.%x%c", &dom, &bus, &slot, &fn, &c) != 4 &&
	    sscanf(s, "%x:%x.%x%c", &bus, &slot, &fn, &c) != 3)
		return -EINVAL;
	if (dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7)
		return -EINVAL;
	*bdf = PVIOMMU_BDF(dom, bus, slot, fn);
	return 0;
}

static int pviommu_parse_params(void)
{
	char *buf, *p, *tok;
	int ret = 0;

	if (!strcmp(transport, "auto")) {
		pviommu_use_kvm = kvm_para_available();
	} else if (!strcmp(transport, "kvm")) {
		if (!kvm_para_available()) {
			pr_err("transport=kvm but no KVM paravirt interface (under TCG use transport=tcg)\n");
			return -ENODEV;
		}
		pviommu_use_kvm = true;
	} else if (strcmp(transport, "tcg")) {
		pr_err("unknown transport '%s' (auto, kvm or tcg)\n", transport);
		return -EINVAL;
	}
	if (verify < -1 || verify > 1) {
		pr_err("verify=%d: 0 or 1\n", verify);
		return -EINVAL;
	}
	if (post < -1 || post > 1) {
		pr_err("post=%d: 0 or 1\n", post);
		return -EINVAL;
	}
	if (strcmp(channel, "auto") && strcmp(channel, "page") && strcmp(channel, "off")) {
		pr_err("unknown channel '%s' (auto, page or off)\n", channel);
		return -EINVAL;
	}
	if (!ring || ring > PVIOMMU_CHAN_NENTS_MAX || (ring & (ring - 1))) {
		pr_err("ring=%u: a power of two up to %u\n", ring, PVIOMMU_CHAN_NENTS_MAX);
		return -EINVAL;
	}
	if (!strcmp(mode, "lazy")) {
		pviommu_lazy_mode = true;
	} else if (strcmp(mode, "strict")) {
		pr_err("unknown mode '%s' (strict or lazy)\n", mode);
		return -EINVAL;
	}
	if (!lazy_batch || lazy_batch > PVIOMMU_LAZY_MAX || !lazy_ms || lazy_ms > 1000) {
		pr_err("lazy_batch must be 1-%d and lazy_ms 1-1000\n", PVIOMMU_LAZY_MAX);
		return -EINVAL;
	}
	if (!devices || !*devices) {
		if (all)
			return 0;
		pr_err("nothing to protect: give devices=DDDD:BB:DD.F[,...] or all=1\n");
		return -EINVAL;
	}
	if (all) {
		pr_err("give devices= or all=1, not both\n");
		return -EINVAL;
	}
	buf = kstrdup(devices, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	p = buf;
	while ((tok = strsep(&p, ",")) != NULL) {
		if (pviommu_nr_named == PVIOMMU_MAX_NAMED) {
			pr_err("devices=: more than %d devices\n", PVIOMMU_MAX_NAMED);
			ret = -EINVAL;
			break;
		}
		if (pviommu_parse_bdf(tok, &pviommu_named[pviommu_nr_named])) {
			pr_err("devices=: bad PCI address '%s' (want [DDDD:]BB:DD.F)\n", tok);
			ret = -EINVAL;
			break;
		}
		pviommu_nr_named++;
	}
	kfree(buf);
	return ret;
}

static void pviommu_free_all(void)
{
	struct pviommu_dev *pd, *tmp;

	list_for_each_entry_safe(pd, tmp, &pviommu_devs, node) {
		list_del(&pd->node);
		pviommu_dev_free(pd);
	}
}

/* the devices present now; nothing is changed yet */
static int pviommu_collect(void)
{
	struct pci_dev *pdev = NULL;
	unsigned int i, skipped = 0;
	struct pviommu_dev *pd;
	u32 bdf;
	int ret;

	if (all) {
		for_each_pci_dev(pdev) {
			if (!pviommu_wanted(pdev))
				continue;
			if (device_iommu_mapped(&pdev->dev)) {
				skipped++;
				continue;
			}
			if (pviommu_check(pdev, true))
				continue;
			pd = pviommu_dev_new(pdev);
			if (!pd) {
				pci_dev_put(pdev);
				return -ENOMEM;
			}
			list_add_tail(&pd->node, &pviommu_devs);
		}
		if (skipped)
			pr_warn("all=1: %u device(s) behind an IOMMU left alone\n", skipped);
		if (list_empty(&pviommu_devs)) {
			pr_err("all=1: no PCI device to protect\n");
			return -ENODEV;
		}
		return 0;
	}
	for (i = 0; i < pviommu_nr_named; i++) {
		bdf = pviommu_named[i];
		pdev = pci_get_domain_bus_and_slot(bdf >> 16, (bdf >> 8) & 0xff, bdf & 0xff);
		if (!pdev) {
			if (hotplug)
				continue;
			pr_err("no PCI device %04x:%02x:%02x.%x\n", bdf >> 16,
			       (bdf >> 8) & 0xff, PCI_SLOT(bdf & 0xff), PCI_FUNC(bdf & 0xff));
			return -ENODEV;
		}
		ret = pviommu_check(pdev, false);
		pd = ret ? NULL : pviommu_dev_new(pdev);
		pci_dev_put(pdev);
		if (ret)
			return ret;
		if (!pd)
			return -ENOMEM;
		list_add_tail(&pd->node, &pviommu_devs);
	}
	return 0;
}

static int __init pviommu_init(void)
{
	struct pviommu_dev *pd;
	unsigned int n = 0;
	int ret, r;

	if (xen_pv_domain()) {	/* no native interrupt flag (pviommu_lock_irqsave) */
		pr_err("a Xen PV domain: not supported (HVM guests: KVM, TCG)\n");
		return -ENODEV;
	}
	ret = pviommu_parse_params();
	if (ret)
		return ret;
	mutex_lock(&pviommu_mutex);
	ret = pviommu_collect();
	mutex_unlock(&pviommu_mutex);
	if (ret)
		goto err_free;

	/* the channel decides what the host can tell us, hence verify's default */
	if (strcmp(channel, "off")) {
		r = pviommu_chan_attach();
		if (r && !strcmp(channel, "page")) {
			pr_err("channel=page: the host did not answer the shared page (%d): QEMU not started with 'pviommuctl run'?\n",
			       r);
			ret = -ENODEV;
			goto err_free;
		}
	}
	if (verify < 0)
		verify = pviommu_chan || !pviommu_use_kvm;
	if (verify && !pviommu_chan && pviommu_use_kvm) {
		pr_err("verify=1: no host answered the shared page, and the KVM hypercall gives no answer (the host's BPF handler cannot set RAX): start QEMU with 'pviommuctl run', or use verify=0\n");
		ret = -ENODEV;
		goto err_free;
	}
	timer_setup(&pviommu_lazy.timer, pviommu_lazy_timer, 0);
	r = pviommu_hypercall(PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	if (pviommu_refused(r)) {
		if (r == PVIOMMU_NOACK)
			pr_err("no host acknowledged REGISTER: pviommu is not listening (QEMU not started with 'pviommuctl run', or pviommu not loaded); nothing protected\n");
		else
			pr_err("the host refused REGISTER: %d; nothing protected\n", r);
		ret = r == PVIOMMU_NOACK ? -ENODEV : -EIO;
		goto err_free;
	}
	ret = bus_register_notifier(&pci_bus_type, &pviommu_nb);
	if (ret) {
		pr_err("cannot watch the PCI bus: %d\n", ret);
		goto err_unregister;
	}
	/* entries stay while the notifier runs: drop the lock around each one */
	mutex_lock(&pviommu_mutex);
	list_for_each_entry(pd, &pviommu_devs, node) {
		if (pd->installed || pd->removed)
			continue;
		mutex_unlock(&pviommu_mutex);
		pviommu_rebind(pd, true);
		n++;
		mutex_lock(&pviommu_mutex);
	}
	mutex_unlock(&pviommu_mutex);
	/*
	 * DEV_ADD goes out when a device's ops are swapped (its driver
	 * unbound: no DMA of the old ops is in flight); one the host did not
	 * acknowledge leaves its device unprotected, and then nothing loads
	 */
	list_for_each_entry(pd, &pviommu_devs, node) {
		if (pd->installed || pd->removed)
			continue;
		pr_err("%s: the host did not acknowledge DEV_ADD; nothing protected\n",
		       pci_name(pd->pdev));
		ret = -EIO;
	}
	if (ret)
		goto err_unprotect;
	pviommu_debugfs = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_file("stats", 0444, pviommu_debugfs, NULL, &pviommu_stats_fops);
	if (track)
		debugfs_create_file("mappings", 0444, pviommu_debugfs, NULL,
				    &pviommu_mappings_fops);
	pr_info("protecting %u device(s)%s, transport %s, mode %s, %s\n", n,
		hotplug || all ? " (more when they appear)" : "",
		pviommu_post ? "shared page (posted)" :
		pviommu_chan ? "shared page" : pviommu_use_kvm ? "kvm" : "tcg",
		pviommu_lazy_mode ? "lazy" : "strict",
		verify ? "acknowledged by the host" :
		"NOT verified (this transport gives no answer: check 'pviommuctl status' on the host)");
	return 0;

err_unprotect:
	bus_unregister_notifier(&pci_bus_type, &pviommu_nb);
	list_for_each_entry(pd, &pviommu_devs, node)
		pviommu_rebind(pd, false);
	del_timer_sync(&pviommu_lazy.timer);
err_unregister:
	pviommu_hypercall(PVIOMMU_OP_UNREGISTER, 0, 0, 0, 0);
err_free:
	pviommu_chan_detach();
	pviommu_live_drop(NULL);
	mutex_lock(&pviommu_mutex);
	pviommu_free_all();
	mutex_unlock(&pviommu_mutex);
	return ret;
}

static void __exit pviommu_exit(void)
{
	struct pviommu_dev *pd, *tmp;

	debugfs_remove_recursive(pviommu_debugfs);
	bus_unregister_notifier(&pci_bus_type, &pviommu_nb);
	list_for_each_entry_safe(pd, tmp, &pviommu_devs, node) {
		pviommu_rebind(pd, false);
		mutex_lock(&pviommu_mutex);
		list_del(&pd->node);
		pviommu_dev_free(pd);
		mutex_unlock(&pviommu_mutex);
	}
	del_timer_sync(&pviommu_lazy.timer);
	pviommu_lazy_flush();
	pviommu_hypercall(PVIOMMU_OP_UNREGISTER, 0, 0, 0, 0);
	pviommu_chan_detach();
	pviommu_live_drop(NULL);
	/* every device is freed: their counts are the totals */
	pr_info("unloaded: %lld maps, %lld unmaps, %lld hypercalls, %lld exits, %lld posted\n",
		pviommu_freed_maps, pviommu_freed_unmaps,
		pviommu_ops_sent(), atomic64_read(&pviommu_stats.exits), pviommu_ops_posted());
}

module_init(pviommu_init);
module_exit(pviommu_exit);

MODULE_DESCRIPTION("pviommu: para-virtualized IOMMU DMA policy, guest side");
MODULE_LICENSE("GPL");
