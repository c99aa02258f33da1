/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pviommu.h - the one header of shared types.
 *
 * Used by the BPF programs (bpf/), pviommuctl (userspace/), the QEMU hook
 * library (qemu-hooks/), the guest module (guest-module/) and the tests.
 * No includes: the includer provides __u8/__u16/__u32/__u64 (vmlinux.h in
 * BPF, <linux/types.h> in userspace and in the kernel).
 *
 * Terms
 *   domain   one VM = the tgid of its QEMU process on the host
 *   device   the guest's PCI requester id: segment << 16 | bus << 8 | devfn
 *   iova     the address the device uses; identity (= guest-physical) here
 *   perm     what the device may do to memory: READ (memory -> device,
 *            DMA_TO_DEVICE) and/or WRITE (device -> memory, DMA_FROM_DEVICE)
 */
#ifndef __PVIOMMU_H
#define __PVIOMMU_H

#define PVIOMMU_ABI_VERSION	1

/* ---------------------------------------------------------------------
 * Hypercall ABI (guest -> host)
 *
 * Every call carries four 64-bit words a0..a3:
 *   a0 = PVIOMMU_HC_HDR(abi, op, perm, bdf)
 *   a1 = iova           (MAP, UNMAP)
 *   a2 = size in bytes  (MAP, UNMAP)
 *   a3 = cookie         (free for the guest; echoed in events)
 *
 * KVM transport: vmcall/vmmcall with rax = PVIOMMU_KVM_HC_NR and
 *   rbx, rcx, rdx, rsi = a0..a3 (kvm_hypercall4). The host sees it on the
 *   kvm:kvm_hypercall tracepoint.
 * TCG transport: cpuid with rax = PVIOMMU_CPUID_LEAF and rbx, rcx, rdx, rsi
 *   = a0..a3. QEMU's cpu_x86_cpuid(env, ...) sees them in env->regs[].
 * Both transports only count calls made at CPL 0 (the guest kernel).
 * Status back to the guest: the in-process plane's TCG transport answers
 * the CPUID with eax = PVIOMMU_HC_ACK and ebx = the result (0 or -errno);
 * the guest module then refuses to load without the host's REGISTER and
 * DEV_ADD, and fails a refused MAP (DMA_MAPPING_ERROR). An unknown CPUID
 * leaf answers zeros: no pviommu listening. The KVM transport (the BPF
 * handler cannot set RAX) and the uprobe TCG transport of 'pviommuctl
 * attach' (no register writes here) give no answer; failures then show
 * as events and stats only, and the host fails closed (state machine).
 * --------------------------------------------------------------------- */
#define PVIOMMU_KVM_HC_NR	0x50564900u	/* "PVI\0", unused by KVM */
#define PVIOMMU_CPUID_LEAF	0x4f504d00u
#define PVIOMMU_HC_ACK		0x4b4f5650u	/* "PVOK" in eax: ebx = result */

enum pviommu_op {
	PVIOMMU_OP_REGISTER	= 1,	/* start (or restart) this domain */
	PVIOMMU_OP_UNREGISTER	= 2,	/* drop the domain, all its state */
	PVIOMMU_OP_DEV_ADD	= 3,	/* protect device bdf */
	PVIOMMU_OP_DEV_DEL	= 4,	/* stop protecting bdf, revoke its maps */
	PVIOMMU_OP_MAP		= 5,	/* allow bdf to access [iova, iova+size) */
	PVIOMMU_OP_UNMAP	= 6,	/* revoke it */
	PVIOMMU_OP_MAX,
};

#define PVIOMMU_HC_HDR(abi, op, perm, bdf)				\
	(((__u64)(abi) << 48) | ((__u64)((op) & 0xff) << 40) |	\
	 ((__u64)((perm) & 0xff) << 32) | (__u64)(__u32)(bdf))
#define PVIOMMU_HC_ABI(a0)	((__u32)((a0) >> 48))
#define PVIOMMU_HC_OP(a0)	((__u32)(((a0) >> 40) & 0xff))
#define PVIOMMU_HC_PERM(a0)	((__u32)(((a0) >> 32) & 0xff))
#define PVIOMMU_HC_BDF(a0)	((__u32)(a0))

#define PVIOMMU_PERM_READ	1u	/* device reads guest memory */
#define PVIOMMU_PERM_WRITE	2u	/* device writes guest memory */
#define PVIOMMU_PERM_RW		(PVIOMMU_PERM_READ | PVIOMMU_PERM_WRITE)

#define PVIOMMU_BDF(seg, bus, dev, fn)					\
	(((__u32)(seg) << 16) | ((__u32)(bus) << 8) | ((__u32)(dev) << 3) | (fn))

/* ---------------------------------------------------------------------
 * The shared page (channel v1): one page of guest memory per VM that the
 * guest module and the host's in-process plane both write.
 *
 * One protocol for three needs, so that they never diverge:
 *   status      the guest learns the result of every operation on every
 *               accelerator (under KVM a hypercall returns nothing: the BPF
 *               handler cannot set RAX);
 *   batching    many operations per exit: the page is a ring of entries,
 *               each one the four words of a hypercall (a0..a3 above,
 *               validated exactly like one, for the page's own domain only);
 *   completion  an entry's status is written only once the host has carried
 *               the operation out everywhere it must (the BPF records; for an
 *               assigned device, the host IOMMU), so a strict unmap is "kick,
 *               then read the status": no window.
 *
 * The guest (CPL 0: port I/O at CPL 3 faults unless the guest kernel gave
 * the task IOPL or an I/O bitmap) talks through two 32-bit x86 I/O ports,
 * which reach QEMU's I/O address space under TCG (helper_inl/outl) and
 * under KVM (a KVM_EXIT_IO to QEMU) alike:
 *   out PVIOMMU_PORT_SETUP, pfn   attach the page at guest-physical pfn << 12
 *                                 (0 detaches). The host maps it, checks
 *                                 magic, version and nents, maps the whole
 *                                 ring (PVIOMMU_CHAN_BYTES(nents) from pfn,
 *                                 guest-physically contiguous: more than one
 *                                 page above 64 entries), and answers in
 *                                 the page: host_ack = PVIOMMU_CHAN_ACK and
 *                                 host_flags. No answer (host_ack stays 0)
 *                                 means nobody listens (no in-process plane:
 *                                 'pviommuctl attach', KVM without the
 *                                 library): the guest uses the hypercall
 *                                 transport and knows it gets no status.
 *   in  PVIOMMU_PORT_KICK         the host carries out the entries
 *                                 [its cons, prod) in order, writes each
 *                                 status, then cons = prod. Reads back the
 *                                 number done, or a negative errno (as u32).
 * Rules the host keeps (the guest is hostile):
 *   - the page is attached by the guest kernel (SETUP at CPL 0), mapped
 *     once, and only ever written by the host inside a KICK or a SETUP;
 *   - nents (a power of two, so that the free-running counters index the
 *     ring across their wrap) is read at SETUP only; the host keeps its own cons and reads
 *     prod once per KICK: prod - cons > nents is -EPROTO, nothing done,
 *     counted in the page's errors and sent as a PVIOMMU_EV_HC_ERROR event
 *     (plane page, addr = prod, len = the host's cons; at most one a
 *     second, from the library);
 *   - each entry's words are copied once before they are validated;
 *   - a machine reset detaches the page (the new guest knows nothing).
 * The guest fills an entry (status = PVIOMMU_CHAN_PENDING), publishes it
 * (prod, release), kicks, and reads the status: an entry still PENDING
 * after the kick means the host went away (treated like a refusal).
 * --------------------------------------------------------------------- */
#define PVIOMMU_PORT_SETUP	0x0ef0u
#define PVIOMMU_PORT_KICK	0x0ef4u
#define PVIOMMU_PORT_COUNT	8u
#define PVIOMMU_CHAN_MAGIC	0x4e484356u	/* "VCHN" */
#define PVIOMMU_CHAN_VERSION	1
#define PVIOMMU_CHAN_ACK	0x4b4f4843u	/* "CHOK" */
#define PVIOMMU_CHAN_PENDING	1		/* status until the host is done */
#define PVIOMMU_CHAN_PAGE	4096u
#define PVIOMMU_CHAN_HDR	64u

/* host_flags: what the host does with the page */
#define PVIOMMU_CHAN_F_STATUS	(1u << 0)	/* statuses are written */
#define PVIOMMU_CHAN_F_DRAIN	(1u << 1)	/* entries are carried out before any check */

/*
 * Posting (host_flags PVIOMMU_CHAN_F_DRAIN): the host that checks every
 * transfer of this VM's emulated devices (the in-process plane) carries out
 * the published entries before it checks any transfer they could concern,
 * on whatever thread checks it. So the guest may publish a MAP or UNMAP and
 * not kick: no exit, and a strict unmap is still in force before any later
 * transfer of any emulated device of the VM (the guest publishes it before
 * it hands the memory to anyone else; a check that loads prod afterwards
 * sees it). A check may go before the entries only when none of them can
 * revoke its transfer (they are MAPs, and UNMAPs of other devices or other
 * bytes: pv_chan_spares in qemu-hooks/pv_chan.h); a transfer the index
 * denies while entries are pending is checked again after them. An entry
 * the guest rewrites after it was published counts from when it is read.
 * What the guest must still kick for:
 *   - a full ring (no free entry: the kick drains it);
 *   - operations that need their answer at once: REGISTER, DEV_ADD,
 *     DEV_DEL, UNREGISTER;
 *   - every MAP and UNMAP of a device whose DEV_ADD was answered
 *     PVIOMMU_CHAN_ST_KICK: an assigned (VFIO) device DMAs through the host
 *     IOMMU, which no check drains, so its entries are done only in a kick
 *     (the IOMMU follows before the guest reads the status: completion).
 * A posted MAP's status is read when its entry is reused (or the guest
 * flushes the ring): a refused posted MAP (quota, full table) leaves its
 * range denied (fail closed) and is counted by the guest; it cannot become
 * DMA_MAPPING_ERROR (post=0 gives that up for an exit per operation). The
 * guest sets a status it has read back to 0 (the host wrote it before cons
 * passed the entry, and writes it only once), so a nonzero status is an
 * answer the guest has not read yet: no bookkeeping beside the ring.
 */
#define PVIOMMU_CHAN_ST_KICK	1	/* DEV_ADD's answer: kick for each operation */

struct pviommu_chan_ent {
	__u64 a[4];		/* guest: the hypercall words a0..a3 */
	__s32 status;		/* host: 0 or -errno; guest: PENDING */
	__u32 tag;		/* guest: free (the host never reads it) */
};

struct pviommu_chan {
	__u32 magic;		/* guest: PVIOMMU_CHAN_MAGIC */
	__u16 version;		/* guest: PVIOMMU_CHAN_VERSION */
	__u16 nents;		/* guest: entries in ent[]: 2^k <= PVIOMMU_CHAN_NENTS_MAX */
	__u32 prod;		/* guest: entries published (free-running) */
	__u32 cons;		/* host: entries done (free-running) */
	__u32 host_ack;		/* host: PVIOMMU_CHAN_ACK once attached */
	__u32 host_flags;	/* host: PVIOMMU_CHAN_F_* */
	__u32 kicks;		/* host: kicks and drains served (informational) */
	__u32 errors;		/* host: kicks refused (-EPROTO) */
	__u32 ops;		/* host: entries carried out (informational) */
	__u32 runs;		/* host: BPF runs (syscalls) that did them (informational) */
	__u8 reserved[PVIOMMU_CHAN_HDR - 40];
	struct pviommu_chan_ent ent[];
};

/*
 * entries: a power of two (free-running u32 counters index the ring). The
 * ring is PVIOMMU_CHAN_BYTES(nents) of guest-physically contiguous memory
 * from the page SETUP names; 64 entries fill one page. More entries mean
 * fewer exits for a full ring (the guest kicks only when no entry is free:
 * the checks drain it otherwise). Hosts before 512 took at most 64: a guest
 * whose larger ring goes unacknowledged tries PVIOMMU_CHAN_NENTS_PAGE.
 */
#define PVIOMMU_CHAN_ENT_SIZE	40u
#define PVIOMMU_CHAN_BYTES(n)	(PVIOMMU_CHAN_HDR + (n) * PVIOMMU_CHAN_ENT_SIZE)
#define PVIOMMU_CHAN_NENTS_PAGE	64u	/* 64 * 40 + 64 <= 4096 */
#define PVIOMMU_CHAN_NENTS_MAX	512u	/* 20544 bytes: 6 pages */

/* ---------------------------------------------------------------------
 * Semantics of MAP / UNMAP (each is tested in tests/)
 *
 * MAP(bdf, iova, size, perm)
 *   size == 0                        -EINVAL
 *   iova + size wraps past 2^64      -EOVERFLOW
 *   perm == 0 or unknown bits        -EINVAL
 *   same iova, same size and perm    the record's refcount goes up (0)
 *   same iova, other size or perm    -EEXIST, nothing changes
 *   overlaps another record          allowed; each byte is accessible with
 *                                    the union of the permissions of the
 *                                    records covering it
 *   ranges are byte-granular: a sub-page buffer grants exactly its bytes
 *   index full (pages or records)    -ENOSPC, nothing changes (rolled back),
 *                                    the range stays denied (fail closed),
 *                                    a TABLE_FULL event is sent
 *   any number of sub-page buffers may share a page (the page's pieces
 *   chain into extension slots of the index as needed)
 * UNMAP(bdf, iova, size, perm)       revokes exactly what one MAP granted
 *   size == 0 / wraps                -EINVAL / -EOVERFLOW
 *   no record starts at iova         -ENOENT, nothing changes, event
 *   size != record size, or perm     -ERANGE, nothing changes, event (a
 *   (when not 0) != record perm      MAP refused with -EEXIST is never
 *                                    granted, so its UNMAP revokes nothing)
 *   otherwise                        one reference dropped; at zero the
 *                                    record and its access go
 * Calls before REGISTER, unknown ops and a wrong ABI version are refused
 * (-ENODEV, -EOPNOTSUPP, -EPROTO) with an event.
 * CHECK(domain, bdf, addr, len, dir)
 *   domain FAILED or device FAILED   denied (fail closed, see below)
 *   device not protected             allowed (CPU and other devices pass)
 *   len == 0                         allowed (touches nothing)
 *   every byte covered for dir       allowed
 *   otherwise                        violation
 *
 * The protection state machine (fail closed)
 *
 * Rule: a device the guest asked to protect is either protected with
 * exactly its mappings, or denied. Every error that could leave the host's
 * state short of what the guest believes lands in a FAILED state.
 *
 * Per domain: the DOMAIN slot of pviommu_index (state in cnt_r, the first
 * failure's enum pviommu_fail in cnt_w), mirrored in pviommu_domains.flags.
 *   (no slot)    pviommu never heard of this process: its devices pass.
 *   RESERVED     made at QEMU start, before any guest code runs (the
 *                in-process library's constructor, 'pviommuctl attach'
 *                for a running QEMU): capacity is taken here, and QEMU
 *                refuses to start when there is none. Devices pass (a
 *                guest without pviommu.ko).
 *   REGISTERED   the guest registered: DEVICE slots are checked, other
 *                devices pass.
 *   FAILED       (a bit on top of the above) a DEV_ADD, DEV_DEL, UNMAP,
 *                REGISTER or UNREGISTER could not be carried out (no room,
 *                writer lock lost, index inconsistent, another ABI
 *                version), or a call came before REGISTER into a reserved
 *                domain: every transfer of every device of the domain is
 *                denied with a PVIOMMU_EV_FAILED event (verdict "failed").
 *   REGISTER     -> REGISTERED, starting from nothing (FAILED cleared: the
 *                guest's new instance owns an empty, exact policy)
 *   UNREGISTER   -> RESERVED (nothing protected, guest module gone)
 *   QEMU exit    -> (no slot); a lost exit purge leaves FAILED behind for
 *                the next process of that pid, whose start purges it.
 * Per device: the DEVICE slot (lane in cnt_r, an enum pviommu_fail in
 * cnt_w when FAILED).
 *   PROTECTED    checked against its pieces
 *   FAILED       set without the writer lock when an UNMAP or DEV_DEL of
 *                the device was lost: its transfers are denied until the
 *                guest registers again.
 * A failed MAP needs no state: its range was never granted (denied).
 * --------------------------------------------------------------------- */

/* DOMAIN slot state (cnt_r) */
#define PVIOMMU_DS_RESERVED	(1u << 0)
#define PVIOMMU_DS_REGISTERED	(1u << 1)
#define PVIOMMU_DS_FAILED	(1u << 2)

/* why a domain or device failed closed (DOMAIN/DEVICE slot cnt_w, events) */
enum pviommu_fail {
	PVIOMMU_FAIL_NONE	= 0,
	PVIOMMU_FAIL_NOSPACE	= 1,	/* no room for the state it needed */
	PVIOMMU_FAIL_LOCK	= 2,	/* the writer lock was not obtained */
	PVIOMMU_FAIL_UNREG	= 3,	/* a call before REGISTER (reserved) */
	PVIOMMU_FAIL_INDEX	= 4,	/* the index disagreed with a record */
	PVIOMMU_FAIL_PROTO	= 5,	/* the call had another ABI version */
	PVIOMMU_FAIL_CHANNEL	= 6,	/* the shared page's operations could not be read */
	PVIOMMU_FAIL_MAX,
};

/* BPF maps, pinned under PVIOMMU_PIN_DIR */
#define PVIOMMU_PIN_DIR		"/sys/fs/bpf/pviommu"
#define PVIOMMU_MAP_DOMAINS	"pviommu_domains"
/* the record table earlier builds pinned (records now live in the index) */
#define PVIOMMU_MAP_OLD_RECORDS	"pviommu_mappings"
#define PVIOMMU_MAP_INDEX	"pviommu_index"
#define PVIOMMU_MAP_STATS	"pviommu_stats"
#define PVIOMMU_MAP_EVENTS	"pviommu_events"
#define PVIOMMU_MAP_CTL		"pviommu_ctl"

#define PVIOMMU_DEF_INDEX_SLOTS	(1u << 19)	/* 32 MiB */
/* --index-slots: any multiple of PVIOMMU_INDEX_ALIGN in [MIN, MAX] */
#define PVIOMMU_MIN_INDEX_SLOTS	1024u
#define PVIOMMU_MAX_INDEX_SLOTS	(1u << 24)
#define PVIOMMU_INDEX_ALIGN	64u
/*
 * pviommu_index's entries: its hash slots, the tail (chains that start in
 * the last slots run on into it: PVIOMMU_MAX_PROBE slots), then the
 * header. An index of an earlier build (power-of-two slots, no tail or
 * header, chains by the hash's low bits) has a power of two entries, which
 * this never is (slots are a multiple of 64).
 */
#define PVIOMMU_INDEX_TAIL		64u	/* = PVIOMMU_MAX_PROBE */
#define PVIOMMU_INDEX_ENTRIES(slots)	((slots) + PVIOMMU_INDEX_TAIL + 1)
#define PVIOMMU_INDEX_SLOTS(entries)	((entries) - PVIOMMU_INDEX_TAIL - 1)
/* a pinned pviommu_index of nonzero entries an earlier build made */
#define PVIOMMU_INDEX_EARLIER(entries)	(!((entries) & ((entries) - 1)))
#define PVIOMMU_MAX_DOMAINS	1024
/* quota defaults: this many VMs fit at their full quota */
#define PVIOMMU_QUOTA_VMS	64
#define PVIOMMU_DEF_QUOTA_DEVICES	32
#define PVIOMMU_DEF_QUOTA_LANES	2

enum pviommu_mode {
	PVIOMMU_MODE_AUDIT	= 0,	/* event + counter, transfer allowed */
	PVIOMMU_MODE_DENY	= 1,	/* transfer fails like an IOMMU fault */
	PVIOMMU_MODE_KILL	= 2,	/* SIGKILL QEMU before the transfer */
};

#define PVIOMMU_DOM_REGISTERED	(1u << 0)
#define PVIOMMU_DOM_TABLE_FULL	(1u << 1)	/* a MAP failed for space */
#define PVIOMMU_DOM_RESERVED	(1u << 2)	/* made at QEMU start */
#define PVIOMMU_DOM_FAILED	(1u << 3)	/* see the state machine */
#define PVIOMMU_DOM_QUOTA	(1u << 4)	/* a call hit the quota */

/*
 * Per-domain quotas (one VM can never weaken another): taken at RESERVE
 * (defaults from pviommu_ctl, set by 'pviommuctl load', or per VM with
 * 'pviommuctl run --quota'); 0 = no limit. records: live mapping records
 * (each takes its first page's index slot or one of its own); pages: index
 * pages charged (each record charges the pages it touches, a bound on the
 * index slots its pieces can use: sub-page pieces are charged a whole
 * page); together they bound the domain's index slots. devices: protected
 * devices; lanes: page-bit lanes. A MAP
 * over quota gets -ENOSPC (its range stays denied), a DEV_ADD over quota
 * fails the domain closed: only that VM is refused.
 */
struct pviommu_quota {
	__u32	records;
	__u32	pages;
	__u32	devices;
	__u32	lanes;
};

/* pviommu_domains: key __u32 domain (QEMU tgid) */
struct pviommu_domain {
	__u32	abi;		/* ABI version the guest registered with */
	__u32	flags;		/* PVIOMMU_DOM_* */
	__u32	mode;		/* enum pviommu_mode */
	__u32	nr_devices;
	__u64	nr_records;	/* live mapping records */
	__u64	mapped_bytes;	/* sum of record sizes */
	__u64	generation;	/* bumped on every change */
	__u64	registered_ns;	/* bpf_ktime_get_ns() at REGISTER */
	__u64	nr_pages;	/* index pages charged (quota.pages) */
	__u32	nr_lanes;	/* page-bit lanes held */
	__u32	refused;	/* calls refused by a quota, over the VM's life (REGISTER keeps it) */
	struct pviommu_quota quota;
};

/*
 * A live mapping's record: what one MAP granted, for the UNMAP that revokes
 * it (pv_op_unmap), the VFIO mirror and `pviommuctl mappings`. Records live
 * in pviommu_index (below), one per (domain, bdf, iova): in the PAGE slot of
 * their first page when the mapping starts on a page boundary and covers
 * that page (sub[] is free there while the page has no sub-page pieces),
 * else in a RECORD slot of their own. 32 bytes: the slot's sub[].
 */
struct pviommu_rec {
	__u64	size;
	__u64	cookie;		/* a3 of the MAP that created it */
	__u64	generation;	/* domain generation when last changed */
	__u32	refs;		/* 0: no record here */
	__u8	perm;		/* PVIOMMU_PERM_* */
	__u8	lane;		/* the device's pviommu_fast lane + 1 (0: none) */
	__u16	pad;
};

/* a record as readers see it (pv_rec_get, pv_rec_walk) */
struct pviommu_mapping {
	__u32	domain;
	__u32	bdf;
	__u64	iova;
	__u64	size;
	__u32	perm;		/* PVIOMMU_PERM_* */
	__u32	refs;
	__u64	generation;
	__u64	cookie;
	__u32	lane;
	__u32	slot;		/* its pviommu_index slot (bpftool map lookup) */
};

/* ---------------------------------------------------------------------
 * pviommu_index: the fast index for the per-transfer check.
 *
 * An open-addressing hash table in a BPF_F_MMAPABLE array of 64-byte slots
 * (one cache line each), keyed by (kind, domain, bdf, pfn). Written only by
 * BPF programs, under the writer lock in pviommu_ctl; read lock-free by
 * anyone who mmaps the map (seqcount per slot: seq is odd during a write).
 * N hash slots (any number: a key's chain starts at its 32-bit hash times
 * N over 2^32), a tail of PVIOMMU_INDEX_TAIL slots that chains starting
 * near the end run on into (chains never wrap), and after it the header
 * (slot N + PVIOMMU_INDEX_TAIL), whose seq counts the moves below.
 *
 * Linear probing in Robin Hood order: a new PAGE, SUBX or RECORD entry
 * goes before the first entry of its chain that is nearer its own home,
 * and the entries from there to the next free slot move one slot on; an
 * entry deleted leaves a hole that the entries after it whose chains run
 * through it move back into, one after the other. So no entry is further
 * than PVIOMMU_MAX_PROBE - 1 slots from its home, chains stay short in a
 * table two thirds full, and deleting leaves no tombstones (a guest that
 * maps and unmaps for days leaves the index as it found it). DOMAIN and
 * DEVICE entries never move (a writer without the lock marks them failed:
 * pv_mark_failed): they take the first free slot, and a hole their chain
 * runs through stays a tombstone. Moves happen under the header's seq:
 * odd during a series of moves, 2 more after each. An entry moves by copy
 * (its old place is overwritten after its new one is written), so a reader
 * that finds a key has a consistent copy of it; one that misses it, or
 * walked a page's extension slots by key, goes again when the header's seq
 * changed meanwhile (a moving entry can pass a walker).
 *
 * A PAGE slot describes what one device may do to one 4 KiB guest page:
 *   cnt_r / cnt_w   number of live pieces covering the whole page that grant
 *                   read / write
 *   sub[]           pieces covering part of the page: PVIOMMU_SUB(first,
 *                   last, perm), byte offsets inside the page, inclusive
 *   nsub            pieces in the page's whole chain: piece i lives in
 *                   sub[i % SUB_SLOTS] of chain slot i / SUB_SLOTS (0: this
 *                   slot; k > 0: the SUBX slot with pfn | k << 52); the
 *                   chain is dense (a delete moves the last piece into the
 *                   hole) and its seq is this slot's: a writer keeps it odd
 *                   while it changes any slot of the chain, and a reader
 *                   validates it once after walking the chain
 *   rec             while nsub is 0: the record of the mapping that starts
 *                   at this page's first byte, if any (rec.refs != 0)
 * A RECORD slot (pfn = the mapping's iova) holds a record that has no room
 * in its first page's slot (pviommu_rec above).
 * A DEVICE slot (pfn 0) marks bdf as protected in that domain; its cnt_r
 * is the device's pviommu_fast lane + 1 (0: no lane), its cnt_w an enum
 * pviommu_fail when the device FAILED (0: protected).
 * A DOMAIN slot (bdf 0, pfn 0) holds the domain's state (see above).
 * The header (after the tail) holds nothing but its seq.
 * --------------------------------------------------------------------- */
#define PVIOMMU_PAGE_SHIFT	12
#define PVIOMMU_PAGE_SIZE	(1ull << PVIOMMU_PAGE_SHIFT)
#define PVIOMMU_SUB_SLOTS	8
/*
 * how far an entry may be from its home: with first-come-first-served
 * linear probing a chain passed 32 at 2^21 slots 45% full (1M live
 * mappings, bench_scale) and a legitimate MAP got -ENOSPC; in Robin Hood
 * order 1M mappings in 1.5M slots (two thirds full) stay within 20
 */
#define PVIOMMU_MAX_PROBE	64
#if PVIOMMU_MAX_PROBE != PVIOMMU_INDEX_TAIL
#error "the index's tail holds the longest chain from its last slot"
#endif
#define PVIOMMU_SUBX_SHIFT	52	/* pfn < 2^52: chain number above */
#define PVIOMMU_MAX_PIECES	0xffffu	/* sub-page pieces per page (nsub) */

enum pviommu_slot_kind {
	PVIOMMU_SLOT_EMPTY	= 0,
	PVIOMMU_SLOT_PAGE	= 1,
	PVIOMMU_SLOT_DEVICE	= 2,
	PVIOMMU_SLOT_TOMB	= 3,	/* deleted; keeps probe chains intact
					 * (left by purges, and where a DOMAIN or
					 * DEVICE entry's chain runs through) */
	PVIOMMU_SLOT_DOMAIN	= 4,	/* a domain's protection state */
	PVIOMMU_SLOT_SUBX	= 5,	/* more sub-page pieces of a page */
	PVIOMMU_SLOT_RECORD	= 6,	/* a record (pfn: its iova) */
};

#define PVIOMMU_SUB(first, last, perm)					\
	((__u32)(first) | ((__u32)(last) << 12) | ((__u32)(perm) << 24))
#define PVIOMMU_SUB_FIRST(s)	((s) & 0xfff)
#define PVIOMMU_SUB_LAST(s)	(((s) >> 12) & 0xfff)
#define PVIOMMU_SUB_PERM(s)	(((s) >> 24) & 0x3)

struct pviommu_slot {
	__u32	seq;		/* odd while a writer changes the slot */
	__u32	domain;
	__u32	bdf;
	__u16	kind;		/* enum pviommu_slot_kind */
	__u16	nsub;		/* used entries of sub[] */
	__u64	pfn;
	__u32	cnt_r;
	__u32	cnt_w;
	union {
		__u32	sub[PVIOMMU_SUB_SLOTS];
		struct pviommu_rec rec;	/* RECORD; PAGE while nsub == 0 */
	};
};

/*
 * pviommu_fast: the page bits of the check's fast path, a BPF_F_MMAPABLE
 * array of __u64. A protected device may own one of PVIOMMU_FAST_LANES
 * lanes (its DEVICE slot's cnt_r = lane + 1; 0: none): 2 bits per 4 KiB
 * page of [0, PVIOMMU_FAST_PAGES << 12), bit 2p = page p is readable as a
 * whole (cnt_r > 0 in its PAGE slot), bit 2p + 1 = writable as a whole
 * (cnt_w > 0). The writers keep them with the index (set after a page
 * gains whole-page access, cleared before an unmap returns); a reader that
 * finds the bits it needs set skips the index. Clear bits prove nothing
 * (sub-page pieces, pages above the window, devices without a lane): the
 * index decides. Element PVIOMMU_FAST_USED is the bitmask of lanes in use;
 * a lane is zeroed when it is handed out.
 * 1 MiB per lane (16 GiB of guest-physical space), 16 MiB in all.
 */
#define PVIOMMU_MAP_FAST	"pviommu_fast"
#define PVIOMMU_FAST_LANES	16
#define PVIOMMU_FAST_PAGES	(1u << 22)
#define PVIOMMU_FAST_LANE_WORDS	(PVIOMMU_FAST_PAGES / 32)
#define PVIOMMU_FAST_USED	(PVIOMMU_FAST_LANES * PVIOMMU_FAST_LANE_WORDS)
#define PVIOMMU_FAST_ENTRIES	(PVIOMMU_FAST_USED + 1)

/*
 * pviommu_vfio_devs: key __u32 domain (QEMU tgid): the guest BDFs that the
 * domain's VFIO containers serve (the LSM gate on VFIO_IOMMU_MAP_DMA allows
 * a range mapped for any of them). Written by the manager.
 */
#define PVIOMMU_MAP_VFIO_DEVS	"pviommu_vfio_devs"
#define PVIOMMU_VFIO_MAX_DEVS	7
struct pviommu_vfio_devs {
	__u32	nr;				/* used entries of bdf[] */
	__u32	bdf[PVIOMMU_VFIO_MAX_DEVS];	/* guest BDFs */
};

/*
 * pviommu_vfio_hw: key __u32 host requester id of an assigned device
 * (bus << 8 | devfn, PCI segment 0), value the VM behind it: its domain
 * (QEMU tgid) and the device's guest BDF. Written by the in-process library
 * when it finds QEMU's vfio-pci devices; read by pviommu_iommu_fault to
 * name the VM of a host IOMMU fault.
 */
#define PVIOMMU_MAP_VFIO_HW	"pviommu_vfio_hw"
#define PVIOMMU_VFIO_HW_MAX	256
struct pviommu_vfio_hw {
	__u32	domain;
	__u32	bdf;		/* guest BDF */
};

/*
 * pviommu_as_cache (uprobe plane): key { domain, QEMU AddressSpace * }, the
 * device behind that address space (qemu-hooks/qemu_layout.h). Behind a
 * bridge the bus number is not cached: secbus is the address, in QEMU, of
 * the bridge's secondary-bus config byte, read at every check.
 */
struct pviommu_as_ident {
	__u32	bdf;	/* root bus: the bdf; behind a bridge: the devfn;
			 * 0xffffffff: not a PCI device's address space */
	__u32	pad;
	__u64	secbus;	/* 0 on a root bus */
};

/* pviommu_ctl: one element */
struct pviommu_ctl {
	__u32	lock;		/* writer lock of pviommu_index (cmpxchg) */
	__u32	default_mode;	/* mode of newly registered domains */
	__u64	generation;	/* bumped on every index change */
	__u64	lock_busy;	/* writers that gave up waiting */
	__u64	active_gen;	/* programs of this load generation act */
	/*
	 * the index hash's secret (random, set by the first load, kept by
	 * every reload: the slots are placed with it): a guest cannot aim its
	 * pages at another VM's probe chains
	 */
	__u64	hash_key;
	struct pviommu_quota quota;	/* defaults for new domains */
};

/* ---------------------------------------------------------------------
 * Events (ring buffer pviommu_events) and stats (per-CPU pviommu_stats)
 * --------------------------------------------------------------------- */
enum pviommu_event_type {
	PVIOMMU_EV_VIOLATION	= 1,	/* a transfer outside the policy */
	PVIOMMU_EV_HC_ERROR	= 2,	/* a hypercall was refused */
	PVIOMMU_EV_TABLE_FULL	= 3,	/* a MAP did not fit: range denied */
	PVIOMMU_EV_DOMAIN	= 4,	/* domain registered / gone */
	PVIOMMU_EV_FAILED	= 5,	/* domain or device failed closed:
					 * op = the call, err = its error,
					 * perm = enum pviommu_fail */
	PVIOMMU_EV_LIMITED	= 6,	/* len = events of this domain's
					 * calls not sent in its last window
					 * (over PVIOMMU_EV_BUDGET) */
};

/*
 * The events of a guest's hypercalls (refused calls, failed closed,
 * registered) are limited per domain: PVIOMMU_EV_BUDGET a window of 2^30
 * ns; the rest are counted and reported by one PVIOMMU_EV_LIMITED event,
 * sent with the domain's next event after the window. A guest looping on
 * refused calls cannot fill the ring buffer that every VM's events share.
 * (Violations of the in-process plane are limited where they are found.)
 */
#define PVIOMMU_EV_BUDGET	256

enum pviommu_action {
	PVIOMMU_ACT_NONE	= 0,
	PVIOMMU_ACT_ALLOWED	= 1,	/* audit mode */
	PVIOMMU_ACT_DENIED	= 2,
	PVIOMMU_ACT_KILLED	= 3,
};

enum pviommu_plane {
	PVIOMMU_PLANE_HC_KVM	= 1,
	PVIOMMU_PLANE_HC_TCG	= 2,
	PVIOMMU_PLANE_UPROBE	= 3,
	PVIOMMU_PLANE_INPROC	= 4,
	PVIOMMU_PLANE_LSM	= 5,
	PVIOMMU_PLANE_TEST	= 6,
	PVIOMMU_PLANE_EXIT	= 7,
	PVIOMMU_PLANE_PAGE	= 8,	/* the shared page, in batches */
	PVIOMMU_PLANE_IOMMU	= 9,	/* the host IOMMU refused an assigned device */
};

/* pviommu_inproc_event's args[4] bit: the shared page's KICK was refused
 * (args[1] = prod, args[2] = cons), not a transfer */
#define PVIOMMU_INPROC_PAGE_REFUSED	(1u << 16)

/*
 * pviommu_hc_batch (BPF_PROG_TEST_RUN only): args[0] = a pointer in the
 * caller's memory to n operations of four words each (a0..a3, a copy the
 * caller made of the shared page's entries), args[1] = n <=
 * PVIOMMU_BATCH_MAX. Each is carried out like a hypercall of the caller's
 * own domain, in order, up to the first refusal. The return value says
 * how far it got: PVIOMMU_BATCH_DONE(r) operations succeeded, and when
 * that is < n, the next one was refused with -PVIOMMU_BATCH_ERR(r) (it
 * was carried out: nothing changed, its event was sent); the caller goes
 * on after it. A negative r (as a test_run return) is an error before
 * any operation.
 */
#define PVIOMMU_BATCH_MAX	64u
#define PVIOMMU_BATCH_RET(done, err)	((__u32)(done) | ((__u32)(-(err)) & 0xfff) << 16)
#define PVIOMMU_BATCH_DONE(r)	((__u32)(r) & 0xffff)
#define PVIOMMU_BATCH_ERR(r)	((int)(((__u32)(r) >> 16) & 0xfff))

struct pviommu_event {
	__u64	ts_ns;
	__u32	type;		/* enum pviommu_event_type */
	__u32	domain;
	__u32	tid;
	__u32	bdf;
	__u64	addr;
	__u64	len;
	__u32	perm;		/* access (VIOLATION) or mapping perm */
	__u32	op;		/* hypercall op, or 0 */
	__s32	err;		/* negative errno, or 0 */
	__u16	action;		/* enum pviommu_action */
	__u16	plane;		/* enum pviommu_plane */
};

enum pviommu_stat {
	PVIOMMU_ST_HC,		/* hypercalls seen */
	PVIOMMU_ST_HC_ERR,	/* hypercalls refused */
	PVIOMMU_ST_MAP,
	PVIOMMU_ST_UNMAP,
	PVIOMMU_ST_CHECK,
	PVIOMMU_ST_ALLOWED,
	PVIOMMU_ST_VIOLATION,
	PVIOMMU_ST_DENIED,
	PVIOMMU_ST_KILLED,
	PVIOMMU_ST_TABLE_FULL,
	PVIOMMU_ST_EV_DROPPED,	/* ring buffer was full */
	PVIOMMU_ST_USER_HC,	/* hypercalls from CPL > 0, ignored */
	PVIOMMU_ST_DOM_GONE,	/* domains purged at QEMU exit */
	PVIOMMU_ST_FAILED,	/* domains / devices that failed closed */
	PVIOMMU_ST_PURGE_YIELD,	/* a purge let the writer lock go (per chunk) */
	PVIOMMU_ST_MAX,
};

struct pviommu_stats {
	__u64	v[PVIOMMU_ST_MAX];
};

#endif /* __PVIOMMU_H */
