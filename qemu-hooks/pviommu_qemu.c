// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libpviommu-qemu.so - the in-process enforcement plane (README.md, "Two
 * enforcement planes on the QEMU side"), preloaded into qemu-system-x86_64 (Debian 7.2).
 *
 * The constructor (one thread exists then) acts only in a process that
 * exports address_space_rw: LD_PRELOAD is inherited by QEMU's children
 * (helpers, scripts), which are left alone. It maps the pinned
 * pviommu_index read-only and detours QEMU's exported DMA entry points:
 *
 *   address_space_rw / read_full / write      -> MemTxResult
 *   address_space_map                         -> host pointer or NULL
 *   address_space_write_rom                   -> MemTxResult
 *   address_space_cache_init / _destroy       -> mapped length / void
 *   address_space_{read,write}_cached_slow    -> MemTxResult
 *   address_space_{ld,st}*_cached_slow        -> value / void
 *   address_space_ld{ub,uw,l,q}[_le|_be]      -> value (the ld*_dma helpers)
 *   address_space_st{b,w,l,q}[_le|_be]        -> void  (the st*_dma helpers)
 *   cpu_x86_cpuid                             -> the TCG hypercall transport
 *   qemu_system_reset                         -> the domain's mappings purged
 *   address_space_unmap                       -> maps in flight (see h_map)
 *
 * and exports one symbol, ioctl: QEMU's VFIO container maps are withheld
 * and the host IOMMU follows the guest's mappings ("assigned devices").
 *
 * Per transfer: the AddressSpace is mapped to a PCI requester id once
 * (qemu_layout.h, cached per pointer in a lock-free table), then pv_check()
 * (bpf/pviommu_range.h) runs on the mmapped pviommu_fast page bits and,
 * when they do not answer, the mmapped index: no syscall, no trap.
 * Address spaces that are not a PCI device's (address_space_memory,
 * cpu-memory-N, ...) and MSI writes pass untouched.
 *
 * A violation (slow path) looks up the domain's mode (pviommu_domains,
 * default deny), reports through BPF_PROG_TEST_RUN of the pinned
 * pviommu_inproc_event program (rate-limited per address space and verdict)
 * and then: audit -> the transfer runs; deny -> it fails like an IOMMU fault
 * (MEMTX_ACCESS_ERROR, NULL map, empty cache, all-ones load, dropped
 * store; the device's buffer never receives guest data); kill -> SIGKILL.
 *
 * cpu_x86_cpuid: a CPUID of leaf PVIOMMU_CPUID_LEAF executed at CPL 0 is a
 * pviommu hypercall (rbx, rcx, rdx, rsi = a0..a3): it is handed to the
 * pinned pviommu_kvm_hypercall program by BPF_PROG_TEST_RUN (domain = this
 * process). The original cpu_x86_cpuid runs afterwards in every case, so
 * the guest gets the normal (all-zero, unknown leaf) CPUID answer and its
 * registers change exactly as without pviommu.
 *
 * Environment:
 *   PVIOMMU_PIN_DIR   pin directory (default /sys/fs/bpf/pviommu)
 *   PVIOMMU_REQUIRE   1 (default): exit(1) when pviommu is not loaded or a
 *                     detour cannot be installed; 0: run unprotected with a
 *                     warning
 *   PVIOMMU_DEBUG     1: log what was patched and every address space seen
 *   PVIOMMU_MODE      audit|deny|kill: this VM's mode (pviommuctl run --mode)
 *   PVIOMMU_QUOTA     records=N,pages=N,devices=N,lanes=N: this VM's quotas
 *                     (pviommuctl run --quota; pviommu.h)
 *
 * The domain: the constructor reserves it (pviommu.h, the state machine)
 * through the pinned pviommu_reserve program, which answers this
 * process's tgid in the host's PID namespace (what every BPF program
 * sees; getpid() differs inside a container). No reservation, no VM: QEMU
 * exits before any guest code runs, whatever PVIOMMU_REQUIRE says, since
 * a guest would otherwise believe in a protection nobody enforces.
 *
 * MemoryRegionCache (virtio rings): a device's cache is checked at set-up
 * and then at every access (see h_cache_init).
 *
 * Not covered (qemu-hooks/README.md): the inline constant-length
 * address_space_read() fast path, vhost.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <linux/vfio.h>
#include <bpf/bpf.h>
#include "pv_user.h"
#include "pvlib.h"
#include "qemu_layout.h"
#include "detour.h"
#include "pv_chan.h"
#include "pv_vfio.h"

#define PVQ "pviommu-qemu: "
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)

typedef uint32_t MemTxAttrs;	/* 4-byte struct, passed in a register */
typedef uint32_t MemTxResult;

static struct pv_env g_env;
static struct pv_index_view g_view;
static __u32 g_dom;
static int g_dom_fd = -1, g_hc_fd = -1, g_ev_fd = -1, g_rsv_fd = -1;
static int g_batch_fd = -1;	/* -1: pins of an older load, one test_run per operation */
static int g_mode = -1;	/* PVIOMMU_MODE, -1: the global default */
static struct pviommu_quota g_quota;	/* PVIOMMU_QUOTA, 0: the defaults */
static int g_debug;

/* ---- device identity: AddressSpace * -> bdf, cached ------------------ */

#define AS_SLOTS	512	/* power of two */
#define AS_PROBE	32
#define AS_NOT_DEV	0xffffu
#define RL_BURST	8	/* reports per second per (as, verdict) */
#define RL_VERDICTS	8

struct as_ent {
	uintptr_t	key;	/* AddressSpace *, 0 = free (CAS to claim) */
	uint64_t	val;	/* name pointer | code << 48; 0 = not ready */
	uintptr_t	secbus;	/* &parent_bridge->config[0x19], 0 = root bus */
	uint64_t	rl[RL_VERDICTS];	/* second << 16 | reports */
	uint64_t	suppressed;
};
static struct as_ent g_as[AS_SLOTS];
static int g_bridges_ok;	/* qemu_layout.h's bus offsets match this QEMU */

static int read_self(void *dst, const void *src, size_t len)
{
	struct iovec l = { dst, len }, r = { (void *)src, len };

	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)len ? 0 : -1;
}

/*
 * The validation of qemu_layout.h: 'as' is the bus_master_as of a
 * PCIDevice when the string at as->name equals the name[] before it.
 * Returns the devfn, or -1. name[] receives as->name's string.
 */
static int pcidev_devfn(const char *as, char name[QEMU_PCIDEV_NAME_LEN])
{
	char before[QEMU_PCIDEV_DEVFN_BEFORE_NAME + QEMU_PCIDEV_NAME_LEN];
	const char *pname = as - QEMU_PCIDEV_NAME_BEFORE_AS, *asname;
	int32_t devfn;

	memset(name, 0, QEMU_PCIDEV_NAME_LEN);
	/* the bytes around 'as' may not be mapped: read them with a syscall */
	if (read_self(&asname, as + QEMU_AS_NAME_OFF, sizeof(asname)) || !asname ||
	    read_self(name, asname, 1))
		return -1;
	/* as->name is QEMU's own C string: safe to read directly */
	strncpy(name, asname, QEMU_PCIDEV_NAME_LEN - 1);
	if (read_self(before, pname - QEMU_PCIDEV_DEVFN_BEFORE_NAME, sizeof(before)))
		return -1;
	if (!qemu_names_match(name, before + QEMU_PCIDEV_DEVFN_BEFORE_NAME))
		return -1;
	memcpy(&devfn, before, sizeof(devfn));
	return devfn >= 0 && devfn <= 0xff ? devfn : -1;
}

/*
 * The bus of a validated device: 0 on a root bus (*secbus = 0), else the
 * parent bridge's secondary bus number, whose address goes to *secbus.
 * -1 when the chain does not validate.
 */
static int pcidev_bus(const char *as, uintptr_t *secbus)
{
	const char *pdev = QEMU_PCIDEV_OF_AS(as), *bus, *bridge, *cfg;
	char bname[QEMU_PCIDEV_NAME_LEN];

	*secbus = 0;
	if (!g_bridges_ok)
		return 0;	/* unknown layout: said at start-up */
	if (read_self(&bus, pdev + QEMU_PCIDEV_PARENT_BUS_OFF, sizeof(bus)) || !bus ||
	    read_self(&bridge, bus + QEMU_PCIBUS_PARENT_DEV_OFF, sizeof(bridge)))
		return -1;
	if (!bridge)
		return 0;	/* a root bus */
	if (pcidev_devfn(bridge + QEMU_PCIDEV_NAME_OFF + QEMU_PCIDEV_NAME_BEFORE_AS, bname) < 0 ||
	    read_self(&cfg, bridge + QEMU_PCIDEV_NAME_OFF - QEMU_PCIDEV_CONFIG_BEFORE_NAME,
		      sizeof(cfg)) || !cfg)
		return -1;
	*secbus = (uintptr_t)(cfg + QEMU_PCI_SECONDARY_BUS);
	return *(const volatile uint8_t *)*secbus;
}

/* returns the code (bdf, or AS_NOT_DEV); *secbus as pcidev_bus() */
static uint32_t as_identify(const char *as, uintptr_t *secbus)
{
	char name[QEMU_PCIDEV_NAME_LEN];
	int devfn = pcidev_devfn(as, name), bus = -1;
	uint32_t code = AS_NOT_DEV;

	*secbus = 0;
	if (devfn >= 0)
		bus = pcidev_bus(as, secbus);
	if (bus >= 0)
		code = QEMU_BDF(bus, devfn);
	if (g_debug) {
		name[QEMU_PCIDEV_NAME_LEN - 1] = 0;
		if (code != AS_NOT_DEV)
			fprintf(stderr, PVQ "device address space %p '%s' devfn 0x%02x bdf 0000:%02x:%02x.%x%s\n",
				as, name, code & 0xff, code >> 8, (code >> 3) & 0x1f, code & 7,
				*secbus ? " (behind a bridge)" : "");
		else if (devfn >= 0)
			fprintf(stderr, PVQ "address space %p '%s': its bus does not validate, passes\n",
				as, name);
		else
			fprintf(stderr, PVQ "address space %p '%s': not a PCI device, passes\n",
				as, name);
	}
	return code;
}

static inline uint32_t as_hash(uintptr_t p)
{
	return (uint32_t)(pv_mix64(p) & (AS_SLOTS - 1));
}

static struct as_ent *as_slot(const void *as)
{
	uintptr_t k = (uintptr_t)as;
	uint32_t h = as_hash(k);

	for (int i = 0; i < AS_PROBE; i++) {
		struct as_ent *e = &g_as[(h + i) & (AS_SLOTS - 1)];
		uintptr_t cur = __atomic_load_n(&e->key, __ATOMIC_ACQUIRE);

		if (cur == k)
			return e;
		if (!cur) {
			uintptr_t zero = 0;

			if (__atomic_compare_exchange_n(&e->key, &zero, k, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
			    zero == k)
				return e;
		}
	}
	return NULL;	/* table full: identify on every call (slow, correct) */
}

/*
 * bdf of a device address space, AS_NOT_DEV otherwise. A cached answer is
 * valid while as->name is the pointer it was computed for (an address
 * space freed and re-created at the same address has a new name string).
 * Behind a bridge the bus number is read from the bridge at every call.
 */
static inline uint32_t as_bdf(const void *as, struct as_ent **ent)
{
	const char *asname = *(const char *const *)((const char *)as + QEMU_AS_NAME_OFF);
	struct as_ent *e = as_slot(as);
	uintptr_t sb;
	uint64_t v;
	uint32_t code;

	*ent = e;
	if (likely(e)) {
		v = __atomic_load_n(&e->val, __ATOMIC_ACQUIRE);
		if (likely(v && (v & ((1ull << 48) - 1)) == (uintptr_t)asname)) {
			code = (uint32_t)(v >> 48);
			sb = __atomic_load_n(&e->secbus, __ATOMIC_RELAXED);
			if (unlikely(sb) && code != AS_NOT_DEV)
				code = QEMU_BDF(*(const volatile uint8_t *)sb, code);
			return code;
		}
	}
	code = as_identify(as, &sb);
	if (e) {
		__atomic_store_n(&e->secbus, sb, __ATOMIC_RELAXED);
		__atomic_store_n(&e->val, (uintptr_t)asname | (uint64_t)code << 48,
				 __ATOMIC_RELEASE);
	}
	return code;
}

/*
 * qemu_layout.h's bus offsets, checked against the accessors this QEMU
 * exports. 1 = they match (bridged devices are identified).
 */
static int layout_check(char *why, size_t len)
{
	static const struct qemu_layout_fn fns[] = QEMU_LAYOUT_FNS;

	for (int i = 0; i < QEMU_LAYOUT_NR_FNS; i++) {
		const unsigned char *p = dlsym(RTLD_DEFAULT, fns[i].sym);
		long got;

		if (!p) {
			snprintf(why, len, "%s is not exported", fns[i].sym);
			return 0;
		}
		got = qemu_layout_decode(p, fns[i].ret_next);
		if (got != fns[i].want) {
			snprintf(why, len, "%s loads offset %ld, qemu_layout.h says %ld",
				 fns[i].sym, got, fns[i].want);
			return 0;
		}
	}
	return 1;
}

/* ---- violations (slow path) ------------------------------------------- */

static int rate_ok(struct as_ent *e, int verdict)
{
	struct timespec ts;
	uint64_t now, old, nv;

	if (!e)
		return 1;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);	/* vDSO */
	now = (uint64_t)ts.tv_sec;
	verdict &= RL_VERDICTS - 1;
	old = __atomic_load_n(&e->rl[verdict], __ATOMIC_RELAXED);
	for (;;) {
		if ((old >> 16) != now)
			nv = now << 16 | 1;
		else if ((old & 0xffff) >= RL_BURST)
			return 0;
		else
			nv = old + 1;
		if (__atomic_compare_exchange_n(&e->rl[verdict], &old, nv, false,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED))
			return 1;
	}
}

static void report(__u32 bdf, __u64 addr, __u64 len, __u32 need, int verdict,
		   __u32 action)
{
	__u64 args[5] = { bdf, addr, len, need,
			  (__u64)(verdict & 0xff) << 8 | (action & 0xff) };
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = args,
		    .ctx_size_in = sizeof(args));

	static int warned;

	if (g_ev_fd >= 0 && bpf_prog_test_run_opts(g_ev_fd, &o) && !warned) {
		warned = 1;
		fprintf(stderr, PVQ "cannot report violations (test_run of pviommu_inproc_event: %s)\n",
			strerror(errno));
	}
}

/* returns 1 when the transfer may run (audit), 0 when it is denied */
static __attribute__((noinline, cold)) int
violation(struct as_ent *e, __u32 bdf, __u64 addr, __u64 len, __u32 need,
	  int verdict)
{
	struct pviommu_domain d;
	__u32 mode = PVIOMMU_MODE_DENY, action;
	__u32 dom = __atomic_load_n(&g_dom, __ATOMIC_RELAXED);
	char b[16];

	if (g_dom_fd >= 0 && bpf_map_lookup_elem(g_dom_fd, &dom, &d) == 0)
		mode = d.mode;
	action = mode == PVIOMMU_MODE_AUDIT ? PVIOMMU_ACT_ALLOWED :
		 mode == PVIOMMU_MODE_KILL ? PVIOMMU_ACT_KILLED :
					      PVIOMMU_ACT_DENIED;
	if (action == PVIOMMU_ACT_KILLED || rate_ok(e, verdict)) {
		report(bdf, addr, len, need, verdict, action);
		if (g_debug || action == PVIOMMU_ACT_KILLED)
			fprintf(stderr, PVQ "DMA violation: device %s %s [0x%llx, +0x%llx): %s, %s\n",
				pv_fmt_bdf(bdf, b), pv_perm_str(need),
				(unsigned long long)addr, (unsigned long long)len,
				pv_verdict_str(verdict), pv_action_str(action));
	} else if (e) {
		__atomic_fetch_add(&e->suppressed, 1, __ATOMIC_RELAXED);
	}
	if (action == PVIOMMU_ACT_KILLED) {
		raise(SIGKILL);
		_exit(137);
	}
	return action == PVIOMMU_ACT_ALLOWED;
}

/* the shared page (below): entries the guest posted are carried out first */
static int chan_pending(void);
static void chan_drain(void);
static int chan_spares(uint32_t bdf, uint64_t addr, uint64_t len);

/*
 * The per-transfer gate: 1 = let the transfer run, 0 = fail it. The
 * allowed path is loads from the mmapped index only. Operations the guest
 * posted in the shared page (pviommu.h, "Posting") are in force before the
 * check: a strict unmap is in force before any later transfer. They are
 * carried out first unless none of them can revoke this transfer (MAPs,
 * UNMAPs of other ranges: pv_chan_spares); a transfer the index denies
 * while entries are pending is checked again once they are carried out (a
 * pending MAP may be what allows it).
 */
static inline __attribute__((always_inline)) int
gate(const void *as, __u64 addr, __u64 len, __u32 need)
{
	struct as_ent *e;
	__u32 bdf = as_bdf(as, &e);
	int v;

	if (bdf == AS_NOT_DEV)
		return 1;
	if (unlikely(chan_pending()) && !chan_spares(bdf, addr, len))
		chan_drain();
	if (need == PVIOMMU_PERM_WRITE && qemu_is_msi(addr, len, 1))
		return 1;
	v = pv_check(&g_env, __atomic_load_n(&g_dom, __ATOMIC_RELAXED), bdf,
		     addr, len, need);
	if (likely(v == PV_ALLOW))
		return 1;
	if (chan_pending()) {
		chan_drain();
		v = pv_check(&g_env, __atomic_load_n(&g_dom, __ATOMIC_RELAXED), bdf,
			     addr, len, need);
		if (v == PV_ALLOW)
			return 1;
	}
	return violation(e, bdf, addr, len, need, v);
}

/* ---- the detours ------------------------------------------------------- */

/* the shared page's ports (below): served here, never dispatched by QEMU */
static void *g_as_io;
static inline int chan_port(const void *as, uint64_t port);
static uint32_t chan_pio(uint64_t port, unsigned int size, bool is_write, uint32_t val);

static MemTxResult (*o_rw)(void *, uint64_t, MemTxAttrs, void *, uint64_t, bool);
static MemTxResult h_rw(void *as, uint64_t addr, MemTxAttrs attrs, void *buf,
			uint64_t len, bool is_write)
{
	if (chan_port(as, addr)) {	/* KVM: kvm_handle_io */
		uint32_t v = 0;

		if (is_write && len == 4)
			memcpy(&v, buf, 4);
		v = chan_pio(addr, len, is_write, v);
		if (!is_write) {	/* little-endian, all-ones past 4 bytes */
			memset(buf, 0xff, len);
			memcpy(buf, &v, len < 4 ? len : 4);
		}
		return 0;
	}
	if (!gate(as, addr, len, is_write ? PVIOMMU_PERM_WRITE : PVIOMMU_PERM_READ))
		return QEMU_MEMTX_ACCESS_ERROR;
	return o_rw(as, addr, attrs, buf, len, is_write);
}

static MemTxResult (*o_read_full)(void *, uint64_t, MemTxAttrs, void *, uint64_t);
static MemTxResult h_read_full(void *as, uint64_t addr, MemTxAttrs attrs,
			       void *buf, uint64_t len)
{
	if (!gate(as, addr, len, PVIOMMU_PERM_READ))
		return QEMU_MEMTX_ACCESS_ERROR;
	return o_read_full(as, addr, attrs, buf, len);
}

/* address_space_write, and address_space_write_rom (firmware, option ROMs) */
#define WR(n)								\
static MemTxResult (*o_##n)(void *, uint64_t, MemTxAttrs, const void *, uint64_t); \
static MemTxResult h_##n(void *as, uint64_t addr, MemTxAttrs attrs,	\
			 const void *buf, uint64_t len)			\
{									\
	if (!gate(as, addr, len, PVIOMMU_PERM_WRITE))			\
		return QEMU_MEMTX_ACCESS_ERROR;				\
	return o_##n(as, addr, attrs, buf, len);			\
}
WR(write)
WR(write_rom)

/* the requested length is checked: a map asks for the whole range */
static void *(*o_map)(void *, uint64_t, uint64_t *, bool, MemTxAttrs);
/*
 * Maps in flight: address_space_map() hands a device model a host pointer
 * into guest RAM (zero-copy I/O: virtio-blk, nvme), and everything done
 * through it until address_space_unmap() is invisible. An UNMAP hypercall
 * that revokes a range a device still holds that way (a strict unmap racing
 * in-flight I/O, or a hostile guest) cannot stop those accesses: it is
 * reported (a violation with reason "in-flight"), and in kill mode QEMU is
 * stopped as for any violation; deny and audit let the transfer finish.
 * One fixed table, claimed and freed with CAS; a map that finds it full is
 * simply not tracked (counted).
 */
#define INF_SLOTS	1024
struct inflight {
	void		*buf;	/* host pointer, NULL = free */
	uint32_t	bdf;
	uint32_t	write;
	uint64_t	addr;
	uint64_t	len;
};
static struct inflight g_inf[INF_SLOTS];
static unsigned long g_inf_untracked, g_inf_hits;
static unsigned long g_inf_live;	/* >= the slots holding a buffer: 0 = none to look at */

static void inf_add(uint32_t bdf, uint64_t addr, uint64_t len, bool is_write, void *buf)
{
	uint32_t h = (uint32_t)(((uintptr_t)buf >> 4) * 0x9e3779b1u) & (INF_SLOTS - 1);

	__atomic_fetch_add(&g_inf_live, 1, __ATOMIC_SEQ_CST);	/* before the slot shows */
	for (int i = 0; i < 64; i++) {
		struct inflight *f = &g_inf[(h + i) & (INF_SLOTS - 1)];
		void *none = NULL;

		if (__atomic_load_n(&f->buf, __ATOMIC_RELAXED) ||
		    !__atomic_compare_exchange_n(&f->buf, &none, (void *)1, false,
						 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			continue;
		f->bdf = bdf;
		f->write = is_write;
		f->addr = addr;
		f->len = len;
		__atomic_store_n(&f->buf, buf, __ATOMIC_RELEASE);
		return;
	}
	__atomic_fetch_sub(&g_inf_live, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&g_inf_untracked, 1, __ATOMIC_RELAXED);
}

static void inf_del(void *buf)
{
	uint32_t h = (uint32_t)(((uintptr_t)buf >> 4) * 0x9e3779b1u) & (INF_SLOTS - 1);

	for (int i = 0; i < 64; i++) {
		struct inflight *f = &g_inf[(h + i) & (INF_SLOTS - 1)];

		if (__atomic_load_n(&f->buf, __ATOMIC_ACQUIRE) == buf) {
			__atomic_store_n(&f->buf, NULL, __ATOMIC_RELEASE);
			__atomic_fetch_sub(&g_inf_live, 1, __ATOMIC_SEQ_CST);
			return;
		}
	}
}

/* the transfer cannot be stopped any more: reported as allowed, or QEMU killed */
static __attribute__((noinline, cold)) void inf_report(uint32_t bdf, const struct inflight *f)
{
	struct pviommu_domain d;
	__u32 dom = __atomic_load_n(&g_dom, __ATOMIC_RELAXED);
	__u32 need = f->write ? PVIOMMU_PERM_WRITE : PVIOMMU_PERM_READ;
	char b[16];

	if (g_dom_fd >= 0 && !bpf_map_lookup_elem(g_dom_fd, &dom, &d) &&
	    d.mode == PVIOMMU_MODE_KILL) {
		violation(NULL, bdf, f->addr, f->len, need, PV_DENY_INFLIGHT);
		return;	/* not reached: killed */
	}
	static unsigned long said;

	report(bdf, f->addr, f->len, need, PV_DENY_INFLIGHT, PVIOMMU_ACT_ALLOWED);
	if (__atomic_fetch_add(&said, 1, __ATOMIC_RELAXED) < 8)
		fprintf(stderr, PVQ "device %s: [0x%llx, +0x%llx) unmapped by the guest while QEMU holds it "
		"mapped (I/O in flight): reported, not stoppable in this mode\n",
		pv_fmt_bdf(bdf, b), (unsigned long long)f->addr, (unsigned long long)f->len);
}

/*
 * The maps in flight of bdf that overlap [first, last]: how many; each is
 * reported when report is set, else the scan stops at the first.
 */
static int inf_scan(uint32_t bdf, uint64_t first, uint64_t last, int report)
{
	int hits = 0;

	if (!__atomic_load_n(&g_inf_live, __ATOMIC_SEQ_CST))
		return 0;
	for (int i = 0; i < INF_SLOTS; i++) {
		struct inflight *f = &g_inf[i];
		void *b = __atomic_load_n(&f->buf, __ATOMIC_ACQUIRE);

		if (!b || b == (void *)1 || f->bdf != bdf || f->addr > last ||
		    first >= f->addr + f->len)
			continue;
		hits++;
		if (!report)
			break;
		__atomic_fetch_add(&g_inf_hits, 1, __ATOMIC_RELAXED);
		inf_report(bdf, f);
	}
	return hits;
}

/* pv_chan_spares' question: is any of bdf's [first, last] mapped in QEMU now? */
static int inf_holds(uint32_t bdf, uint64_t first, uint64_t last, void *ctx)
{
	(void)ctx;
	return inf_scan(bdf, first, last, 0);
}

/* after an UNMAP of [iova, iova + size) of bdf: is any of it still mapped in QEMU? */
static void inf_check_unmap(uint32_t bdf, uint64_t iova, uint64_t size)
{
	if (size)
		inf_scan(bdf, iova, iova + size - 1, 1);
}

static void *h_map(void *as, uint64_t addr, uint64_t *plen, bool is_write,
		   MemTxAttrs attrs)
{
	struct as_ent *e;
	uint32_t bdf;
	void *p;

	if (!gate(as, addr, *plen, is_write ? PVIOMMU_PERM_WRITE : PVIOMMU_PERM_READ)) {
		*plen = 0;
		return NULL;
	}
	p = o_map(as, addr, plen, is_write, attrs);
	bdf = p ? as_bdf(as, &e) : AS_NOT_DEV;
	if (bdf != AS_NOT_DEV)
		inf_add(bdf, addr, *plen, is_write, p);
	return p;
}

static void (*o_address_space_unmap)(void *, void *, uint64_t, bool, uint64_t);
static void h_address_space_unmap(void *as, void *buf, uint64_t len, bool is_write,
				  uint64_t access_len)
{
	if (buf)
		inf_del(buf);
	o_address_space_unmap(as, buf, len, is_write, access_len);
}

/*
 * MemoryRegionCache (include/exec/memory.h, 7.2): ptr @0, xlat @8, len @16,
 * fv @24, mrs (MemoryRegionSection, Int128 first) @32 with mrs.mr @48
 * (address_space_cache_destroy reads 0x30 and 0x18).
 *
 * QEMU's cached accessors (memory_ldst_cached.h.inc, address_space_read_cached,
 * address_space_write_cached) are inline: while cache->ptr is set they load
 * and store through that host pointer and nothing outside can see them; when
 * ptr is NULL (the MMIO case) they call the exported
 * address_space_*_cached_slow functions, which translate through cache->mrs
 * and handle RAM just as well. So the cache of a device is set up by QEMU,
 * recorded here (cache -> address space, base iova) and its ptr cleared:
 * every later ring access comes through a detour below and is checked
 * against the policy of that moment. A range the guest unmaps after the
 * set-up is denied at the device's next access, like any other transfer.
 *
 * At set-up the whole range is checked too: a cache allows the device both
 * to read and, when is_write, to write it (is_write needs READ|WRITE). A
 * refused cache is left empty (ptr, len, fv, mr = 0: the cached accessors
 * see nothing mapped, address_space_cache_destroy is a no-op) and 0 is
 * returned. Not a negative value: virtio compares "int64_t len < hwaddr
 * size" unsigned, so -EFAULT would pass as mapped; 0 < size makes virtio
 * report "Cannot map ..." (virtio_error, device broken) exactly as for an
 * unmappable ring.
 */
#define MRC_PTR		0
#define MRC_LEN		16
#define MRC_FV		24
#define MRC_MR		48

#define MRC_SLOTS	4096	/* power of two; virtio uses 3 per queue */
#define MRC_PROBE	64
#define MRC_FREE	0
#define MRC_GONE	1	/* tombstone */

/*
 * Lookups (every cached access, any thread) are lock-free; set-up and
 * destroy (BQL, the RCU thread) take g_mrc_lock. An entry's fields are
 * written before its key is published, and QEMU frees a cache only after
 * an RCU grace period, so no access can race with its entry's removal.
 */
struct mrc_ent {
	uintptr_t	key;	/* MemoryRegionCache * */
	const void	*as;	/* the device's address space */
	uint64_t	base;	/* iova of the cache's offset 0 */
};
static struct mrc_ent g_mrc[MRC_SLOTS];
static pthread_mutex_t g_mrc_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_mrc_live;	/* for PVIOMMU_DEBUG */

static inline struct mrc_ent *mrc_at(uintptr_t k, int i)
{
	return &g_mrc[(pv_mix64(k) + (uint64_t)i) & (MRC_SLOTS - 1)];
}

static const struct mrc_ent *mrc_find(const void *cache)
{
	uintptr_t k = (uintptr_t)cache, cur;

	for (int i = 0; i < MRC_PROBE; i++) {
		const struct mrc_ent *m = mrc_at(k, i);

		cur = __atomic_load_n(&m->key, __ATOMIC_ACQUIRE);
		if (cur == k)
			return m;
		if (cur == MRC_FREE)
			return NULL;
	}
	return NULL;
}

/* 0, or -ENOSPC when the probe window is full */
static int mrc_add(const void *cache, const void *as, uint64_t base)
{
	uintptr_t k = (uintptr_t)cache;
	struct mrc_ent *slot = NULL;
	int err = -ENOSPC;

	pthread_mutex_lock(&g_mrc_lock);
	for (int i = 0; i < MRC_PROBE; i++) {
		struct mrc_ent *m = mrc_at(k, i);

		if (m->key == k) {	/* set up again without a destroy */
			slot = m;
			break;
		}
		if (m->key == MRC_GONE && !slot)
			slot = m;
		if (m->key == MRC_FREE) {
			if (!slot)
				slot = m;
			break;
		}
	}
	if (slot) {
		if (slot->key != k)
			g_mrc_live++;
		__atomic_store_n(&slot->key, MRC_GONE, __ATOMIC_RELEASE);
		slot->as = as;
		slot->base = base;
		__atomic_store_n(&slot->key, k, __ATOMIC_RELEASE);
		err = 0;
	}
	pthread_mutex_unlock(&g_mrc_lock);
	return err;
}

static void mrc_del(const void *cache)
{
	uintptr_t k = (uintptr_t)cache;

	pthread_mutex_lock(&g_mrc_lock);
	for (int i = 0; i < MRC_PROBE; i++) {
		struct mrc_ent *m = mrc_at(k, i);

		if (m->key == MRC_FREE)
			break;
		if (m->key == k) {
			__atomic_store_n(&m->key, MRC_GONE, __ATOMIC_RELEASE);
			g_mrc_live--;
			break;
		}
	}
	pthread_mutex_unlock(&g_mrc_lock);
}

static void mrc_empty(void *cache)
{
	char *c = cache;

	memset(c + MRC_PTR, 0, 8);
	memset(c + MRC_LEN, 0, 8);
	memset(c + MRC_FV, 0, 8);
	memset(c + MRC_MR, 0, 8);
}

static void (*o_cache_destroy)(void *);
static int64_t (*o_cache_init)(void *, void *, uint64_t, uint64_t, bool);
static int64_t h_cache_init(void *cache, void *as, uint64_t addr, uint64_t len,
			    bool is_write)
{
	struct as_ent *e;
	int64_t l;

	if (!gate(as, addr, len, is_write ? PVIOMMU_PERM_RW : PVIOMMU_PERM_READ)) {
		mrc_empty(cache);
		return 0;
	}
	l = o_cache_init(cache, as, addr, len, is_write);
	if (as_bdf(as, &e) == AS_NOT_DEV)
		return l;	/* not a device: QEMU's fast path stays */
	if (mrc_add(cache, as, addr)) {
		/* cannot follow it: fail closed, as for a refused ring */
		static int warned;

		if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
			fprintf(stderr, PVQ "more than %d live device caches in one probe window: refusing new ones\n",
				MRC_PROBE);
		o_cache_destroy(cache);
		mrc_empty(cache);
		return 0;
	}
	memset((char *)cache + MRC_PTR, 0, 8);	/* accesses go to *_cached_slow */
	if (g_debug)
		fprintf(stderr, PVQ "cache %p of address space %p: [0x%llx, +0x%llx) %s, checked per access (%lu live)\n",
			cache, as, (unsigned long long)addr, (unsigned long long)l,
			is_write ? "rw" : "r", g_mrc_live);
	return l;
}

static void h_cache_destroy(void *cache)
{
	mrc_del(cache);
	o_cache_destroy(cache);
}

/* the gate of a cached access; caches of no device pass */
static inline __attribute__((always_inline)) int
cgate(const void *cache, __u64 addr, __u64 len, __u32 need)
{
	const struct mrc_ent *m = mrc_find(cache);

	return !m || gate(m->as, m->base + addr, len, need);
}

/* a refused cached read leaves all-ones, like a load from nowhere */
static MemTxResult (*o_read_cached_slow)(void *, uint64_t, void *, uint64_t);
static MemTxResult h_read_cached_slow(void *cache, uint64_t addr, void *buf, uint64_t len)
{
	if (!cgate(cache, addr, len, PVIOMMU_PERM_READ)) {
		memset(buf, 0xff, len);
		return QEMU_MEMTX_ACCESS_ERROR;
	}
	return o_read_cached_slow(cache, addr, buf, len);
}

static MemTxResult (*o_write_cached_slow)(void *, uint64_t, const void *, uint64_t);
static MemTxResult h_write_cached_slow(void *cache, uint64_t addr, const void *buf,
				       uint64_t len)
{
	if (!cgate(cache, addr, len, PVIOMMU_PERM_WRITE))
		return QEMU_MEMTX_ACCESS_ERROR;
	return o_write_cached_slow(cache, addr, buf, len);
}

/*
 * ld: uintN_t f(AddressSpace *, hwaddr, MemTxAttrs, MemTxResult *)
 * st: void f(AddressSpace *, hwaddr, uintN_t val, MemTxAttrs, MemTxResult *)
 * The *_cached_slow variants take a MemoryRegionCache * instead (G = cgate).
 * The value travels in a 64-bit register either way: the hooks pass it
 * through untouched, and a refused load returns all-ones (the caller
 * truncates to its width), like a read from nowhere.
 */
#define LDG(n, w, G)							\
static uint64_t (*o_##n)(void *, uint64_t, MemTxAttrs, MemTxResult *);	\
static uint64_t h_##n(void *as, uint64_t addr, MemTxAttrs attrs,	\
		      MemTxResult *res)					\
{									\
	if ((w) == 4 && chan_port(as, addr)) {				\
		if (res)						\
			*res = 0;					\
		return chan_pio(addr, 4, false, 0);			\
	}								\
	if (!G(as, addr, w, PVIOMMU_PERM_READ)) {			\
		if (res)						\
			*res = QEMU_MEMTX_ACCESS_ERROR;			\
		return ~0ull;						\
	}								\
	return o_##n(as, addr, attrs, res);				\
}
#define STG(n, w, G)							\
static void (*o_##n)(void *, uint64_t, uint64_t, MemTxAttrs, MemTxResult *); \
static void h_##n(void *as, uint64_t addr, uint64_t val, MemTxAttrs attrs, \
		  MemTxResult *res)					\
{									\
	if ((w) == 4 && chan_port(as, addr)) {				\
		if (res)						\
			*res = 0;					\
		chan_pio(addr, 4, true, (uint32_t)val);			\
		return;							\
	}								\
	if (!G(as, addr, w, PVIOMMU_PERM_WRITE)) {			\
		if (res)						\
			*res = QEMU_MEMTX_ACCESS_ERROR;			\
		return;							\
	}								\
	o_##n(as, addr, val, attrs, res);				\
}
#define LD(n, w)	LDG(n, w, gate)
#define ST(n, w)	STG(n, w, gate)
#define LDC(n, w)	LDG(n##_cached_slow, w, cgate)
#define STC(n, w)	STG(n##_cached_slow, w, cgate)
LD(address_space_ldub, 1)
LD(address_space_lduw, 2) LD(address_space_lduw_le, 2) LD(address_space_lduw_be, 2)
LD(address_space_ldl, 4) LD(address_space_ldl_le, 4) LD(address_space_ldl_be, 4)
LD(address_space_ldq, 8) LD(address_space_ldq_le, 8) LD(address_space_ldq_be, 8)
ST(address_space_stb, 1)
ST(address_space_stw, 2) ST(address_space_stw_le, 2) ST(address_space_stw_be, 2)
ST(address_space_stl, 4) ST(address_space_stl_le, 4) ST(address_space_stl_be, 4)
ST(address_space_stq, 8) ST(address_space_stq_le, 8) ST(address_space_stq_be, 8)
LDC(address_space_ldub, 1)
LDC(address_space_lduw, 2) LDC(address_space_lduw_le, 2) LDC(address_space_lduw_be, 2)
LDC(address_space_ldl, 4) LDC(address_space_ldl_le, 4) LDC(address_space_ldl_be, 4)
LDC(address_space_ldq, 8) LDC(address_space_ldq_le, 8) LDC(address_space_ldq_be, 8)
STC(address_space_stb, 1)
STC(address_space_stw, 2) STC(address_space_stw_le, 2) STC(address_space_stw_be, 2)
STC(address_space_stl, 4) STC(address_space_stl_le, 4) STC(address_space_stl_be, 4)
STC(address_space_stl_notdirty, 4)
STC(address_space_stq, 8) STC(address_space_stq_le, 8) STC(address_space_stq_be, 8)

/*
 * pviommuctl load (a reload, a package upgrade) makes the program this
 * process holds stale: it answers -ESTALE and changes nothing. Open the
 * pinned programs again and retry, so that no MAP or UNMAP is lost.
 */
static pthread_mutex_t g_reopen_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_reopens;

static void reopen_progs(int stale_fd)
{
	int hc, ev, batch;

	pthread_mutex_lock(&g_reopen_lock);
	if (__atomic_load_n(&g_hc_fd, __ATOMIC_ACQUIRE) == stale_fd ||
	    __atomic_load_n(&g_batch_fd, __ATOMIC_ACQUIRE) == stale_fd) {
		hc = pv_obj_get(NULL, "progs/pviommu_kvm_hypercall", 0);
		ev = pv_obj_get(NULL, "progs/pviommu_inproc_event", 0);
		batch = pv_obj_get(NULL, "progs/pviommu_hc_batch", 0);
		if (hc >= 0) {
			/* the old fds stay open: another vCPU may be in test_run */
			__atomic_store_n(&g_hc_fd, hc, __ATOMIC_RELEASE);
			g_reopens++;
		}
		if (ev >= 0)
			__atomic_store_n(&g_ev_fd, ev, __ATOMIC_RELEASE);
		/* a load without it (older pins): one test_run per operation */
		__atomic_store_n(&g_batch_fd, batch, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&g_reopen_lock);
}

static int hypercall(uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
	int fd, r = -ESTALE;

	for (int try = 0; try < 100 && r == -ESTALE; try++) {
		fd = __atomic_load_n(&g_hc_fd, __ATOMIC_ACQUIRE);
		r = pv_hypercall_raw(fd, PVIOMMU_KVM_HC_NR, a0, a1, a2, a3);
		if (r == -ESTALE) {
			reopen_progs(fd);
			if (try)
				usleep(1000);	/* a reload between flip and pins */
		}
	}
	return r;
}

/* ---- assigned devices (VFIO): the host IOMMU follows the guest --------- */

/*
 * qemu-hooks/vfio.md has what QEMU 7.2 puts into a VFIO container: all of
 * guest RAM, at start, before the guest runs, and again at every memory
 * topology change. Denying those maps stops QEMU, and letting them through
 * opens every guest page to the assigned device. So the library sits on
 * QEMU's ioctl (the one exported symbol, below): QEMU's VFIO_IOMMU_MAP_DMA
 * and UNMAP_DMA on a type1 container are answered here and only remembered
 * (guest-physical -> QEMU address), and the container really maps what the
 * guest's live mappings of its assigned devices touch (pv_vfio.h), from
 * serve_op, before the guest gets its answer: a strict UNMAP returns after
 * the IOMMU no longer maps the page. The BPF records stay the authority: a
 * MAP the IOMMU cannot mirror (no RAM there, no room, an ioctl error,
 * RLIMIT_MEMLOCK) is undone in the records and refused to the guest.
 * The LSM gate (bpf/pviommu_lsm.bpf.c) is the second line: the kernel
 * refuses any MAP_DMA of this domain that does not mirror a live record.
 *
 * Which guest devices are assigned: QEMU's vfio-pci objects, found in the
 * QOM tree at each machine reset (under the BQL, after every device is
 * realized); their bus-master address space gives the guest BDF
 * (qemu_layout.h, validated). A vfio-pci device hot-plugged later is not
 * known: its DMA reaches nothing (fails closed). Only the first
 * PVIOMMU_VFIO_MAX_DEVS assigned devices are named to the gate.
 */
#define VFIO_MINOR_DEV		makedev(10, 196)
#define VFIO_ASSIGNED_MAX	PVIOMMU_VFIO_MAX_DEVS
#define VFIO_MIRROR_PAGES	65536	/* type1's default dma_entry_limit */

static struct pv_vfio g_vfio;
static int g_vfio_ready;	/* 1: containers are mirrored */
static pthread_mutex_t g_vfio_lock = PTHREAD_MUTEX_INITIALIZER;
static const void *g_vfio_as[VFIO_ASSIGNED_MAX];	/* bus-master AddressSpace * */
static void *g_vfio_obj[VFIO_ASSIGNED_MAX];		/* the vfio-pci QOM objects */
static int g_vfio_nas;
static int g_vfio_devs_fd = -1, g_vfio_hw_fd = -1;
static unsigned long g_vfio_refused, g_vfio_unmap_errors;

static long sys_ioctl(int fd, unsigned long req, void *arg)
{
	return syscall(SYS_ioctl, fd, req, arg);
}

static int vfio_real_map(void *ctx, int fd, uint64_t iova, uint64_t size, uint64_t vaddr,
			 uint32_t flags)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .vaddr = vaddr, .iova = iova, .size = size,
	};

	(void)ctx;
	return sys_ioctl(fd, VFIO_IOMMU_MAP_DMA, &m) ? -errno : 0;
}

static int vfio_real_unmap(void *ctx, int fd, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };

	(void)ctx;
	return sys_ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u) ? -errno : 0;
}

/* QEMU's own container ioctls: 1 when answered here (*ret, errno set) */
static int vfio_container_ioctl(int fd, unsigned long req, void *arg, int *ret)
{
	struct stat st;
	int r;

	if (req == VFIO_SET_IOMMU) {
		unsigned long type = (unsigned long)arg;

		if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != VFIO_MINOR_DEV)
			return 0;
		if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU) {
			fprintf(stderr, PVQ "VFIO IOMMU type %lu cannot follow the guest's mappings: "
				"refused (an assigned device would reach all guest memory)\n", type);
			errno = EPERM;
			*ret = -1;
			return 1;
		}
		*ret = (int)sys_ioctl(fd, req, arg);
		if (*ret)
			return 1;
		pthread_mutex_lock(&g_vfio_lock);
		r = pv_vfio_container(&g_vfio, fd);
		pthread_mutex_unlock(&g_vfio_lock);
		if (r) {
			fprintf(stderr, PVQ "more than %d VFIO containers: refused\n",
				PV_VFIO_CONTAINERS);
			errno = -r;
			*ret = -1;
		} else if (g_debug) {
			fprintf(stderr, PVQ "VFIO container fd %d (type %lu): its maps follow the guest\n",
				fd, type);
		}
		return 1;
	}
	pthread_mutex_lock(&g_vfio_lock);
	if (!pv_vfio_is_container(&g_vfio, fd)) {
		pthread_mutex_unlock(&g_vfio_lock);
		return 0;
	}
	if (req == VFIO_IOMMU_MAP_DMA) {
		struct vfio_iommu_type1_dma_map *m = arg;

		if (m->argsz < sizeof(*m) || (m->flags & VFIO_DMA_MAP_FLAG_VADDR)) {
			pthread_mutex_unlock(&g_vfio_lock);
			return 0;	/* the kernel answers (nothing of QEMU's is mapped) */
		}
		r = pv_vfio_section_add(&g_vfio, fd, m->iova, m->size, m->vaddr,
					m->flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE));
		if (g_debug)
			fprintf(stderr, PVQ "QEMU's MAP_DMA [0x%llx, +0x%llx) -> %p withheld (%d)\n",
				(unsigned long long)m->iova, (unsigned long long)m->size,
				(void *)(uintptr_t)m->vaddr, r);
	} else {
		struct vfio_iommu_type1_dma_unmap *u = arg;
		uint64_t iova = u->iova, size = u->size;

		if (u->argsz < sizeof(*u) || (u->flags & ~VFIO_DMA_UNMAP_FLAG_ALL)) {
			r = -EOPNOTSUPP;	/* dirty bitmaps: migration is not covered */
		} else {
			if (u->flags & VFIO_DMA_UNMAP_FLAG_ALL) {
				iova = 0;
				size = ~0ull;
			}
			r = pv_vfio_section_del(&g_vfio, fd, iova, size);
		}
		if (g_debug)
			fprintf(stderr, PVQ "QEMU's UNMAP_DMA [0x%llx, +0x%llx) (%d)\n",
				(unsigned long long)iova, (unsigned long long)size, r);
	}
	pthread_mutex_unlock(&g_vfio_lock);
	errno = r < 0 ? -r : 0;
	*ret = r ? -1 : 0;
	return 1;
}

/*
 * The library's one exported symbol: QEMU calls ioctl through its PLT, and
 * this definition, preloaded, comes first. Everything but three VFIO
 * requests goes straight to the system call (no libc wrapper adds anything
 * to it); in a process that is not QEMU nothing is looked at.
 */
__attribute__((visibility("default"))) int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	int ret;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (unlikely(__atomic_load_n(&g_vfio_ready, __ATOMIC_ACQUIRE)) &&
	    (req == VFIO_SET_IOMMU || req == VFIO_IOMMU_MAP_DMA || req == VFIO_IOMMU_UNMAP_DMA) &&
	    vfio_container_ioctl(fd, req, arg, &ret))
		return ret;
	return (int)sys_ioctl(fd, req, arg);
}

/* QOM, exported by QEMU: find the vfio-pci devices */
static void *(*q_object_get_root)(void);
static void *(*q_object_dynamic_cast)(void *, const char *);
static int (*q_object_child_foreach_recursive)(void *, int (*)(void *, void *), void *);
static char *(*q_object_property_get_str)(void *, const char *, void **);

static int vfio_find_cb(void *obj, void *opaque)
{
	(void)opaque;
	if (q_object_dynamic_cast(obj, "vfio-pci") && g_vfio_nas < VFIO_ASSIGNED_MAX) {
		g_vfio_obj[g_vfio_nas] = obj;
		g_vfio_as[g_vfio_nas++] = (const char *)obj + QEMU_PCIDEV_NAME_OFF +
					  QEMU_PCIDEV_NAME_BEFORE_AS;
	}
	return 0;
}

/*
 * The host's name of an assigned device ("host" = DDDD:BB:DD.F, or the
 * basename of "sysfsdev"), as a requester id in pviommu_vfio_hw: the host
 * IOMMU's faults of that requester are this VM's (pviommu_iommu_fault).
 * Returns the requester id, or -1.
 */
static int vfio_hw_name(void *obj, uint32_t guest_bdf)
{
	const char *props[] = { "host", "sysfsdev" };
	struct pviommu_vfio_hw v = { .domain = __atomic_load_n(&g_dom, __ATOMIC_RELAXED),
				     .bdf = guest_bdf };
	unsigned int seg, bus, dev, fn;
	int rid = -1;

	for (int i = 0; i < 2 && rid < 0 && q_object_property_get_str; i++) {
		char *str = q_object_property_get_str(obj, props[i], NULL);
		const char *b = str ? strrchr(str, '/') : NULL;

		b = b ? b + 1 : str;
		if (b && sscanf(b, "%x:%x:%x.%u", &seg, &bus, &dev, &fn) == 4 && !seg &&
		    bus < 256 && dev < 32 && fn < 8 && (bus || dev || fn))
			rid = (int)(bus << 8 | dev << 3 | fn);
		free(str);	/* g_free: glib allocates with malloc */
	}
	if (rid >= 0 && g_vfio_hw_fd >= 0 && bpf_map_update_elem(g_vfio_hw_fd, &rid, &v, BPF_ANY))
		rid = -1;
	return rid;
}

/* under the BQL (machine reset): which devices are assigned */
static void vfio_discover(void)
{
	struct as_ent *e;

	if (!g_vfio_ready || !q_object_get_root || !q_object_dynamic_cast ||
	    !q_object_child_foreach_recursive)
		return;
	pthread_mutex_lock(&g_vfio_lock);
	g_vfio_nas = 0;
	q_object_child_foreach_recursive(q_object_get_root(), vfio_find_cb, NULL);
	for (int i = 0; i < g_vfio_nas; i++) {
		uint32_t bdf = as_bdf(g_vfio_as[i], &e);
		int rid = bdf == AS_NOT_DEV ? -1 : vfio_hw_name(g_vfio_obj[i], bdf);

		if (g_debug || bdf == AS_NOT_DEV)
			fprintf(stderr, PVQ "assigned device (vfio-pci) %d: %s%s\n", i,
				bdf == AS_NOT_DEV ? "its PCI identity does not validate: its DMA reaches nothing" :
				"its IOMMU follows the guest's mappings",
				bdf != AS_NOT_DEV && rid < 0 ? " (its host IOMMU faults are not named: "
				"no host address or no pviommu_vfio_hw)" : "");
		if (g_debug && rid >= 0)
			fprintf(stderr, PVQ "assigned device 0x%x is host requester 0x%x\n", bdf, rid);
	}
	pthread_mutex_unlock(&g_vfio_lock);
}

static int vfio_assigned(uint32_t bdf)
{
	struct as_ent *e;

	for (int i = 0; i < __atomic_load_n(&g_vfio_nas, __ATOMIC_RELAXED); i++)
		if (as_bdf(g_vfio_as[i], &e) == bdf)
			return 1;
	return 0;
}

/* the gate's list of this domain's assigned devices (pviommu_vfio_devs) */
static void vfio_gate_add(uint32_t bdf)
{
	struct pviommu_vfio_devs v = {};
	__u32 dom = __atomic_load_n(&g_dom, __ATOMIC_RELAXED);

	if (g_vfio_devs_fd < 0)
		return;
	if (bpf_map_lookup_elem(g_vfio_devs_fd, &dom, &v))
		memset(&v, 0, sizeof(v));
	for (__u32 i = 0; i < v.nr && i < PVIOMMU_VFIO_MAX_DEVS; i++)
		if (v.bdf[i] == bdf)
			return;
	if (v.nr >= PVIOMMU_VFIO_MAX_DEVS)
		return;
	v.bdf[v.nr++] = bdf;
	if (bpf_map_update_elem(g_vfio_devs_fd, &dom, &v, BPF_ANY))
		fprintf(stderr, PVQ "cannot name device 0x%x to the VFIO gate: %s (its IOMMU maps "
			"will be refused where the gate runs)\n", bdf, strerror(errno));
}

/* the live record (domain, bdf, iova), read before an UNMAP removes it */
static int vfio_record(uint32_t bdf, uint64_t iova, struct pviommu_mapping *rec)
{
	struct pviommu_slot tmp;

	if (!g_env.tbl)
		return -ENOENT;
	return pv_rec_get(&g_env, __atomic_load_n(&g_dom, __ATOMIC_RELAXED), bdf, iova,
			  &tmp, rec) > 0 ? 0 : -ENOENT;
}

static int vfio_resync_one(const struct pviommu_mapping *rec, void *n)
{
	if (!vfio_assigned(rec->bdf))
		return 0;
	if (pv_vfio_map(&g_vfio, rec->iova, rec->size, rec->perm)) {
		/* fails closed: the device cannot reach it; said like a refused MAP */
		g_vfio_refused++;
		report(rec->bdf, rec->iova, rec->size, rec->perm, PV_DENY_IOMMU,
		       PVIOMMU_ACT_DENIED);
	}
	(*(unsigned long *)n)++;
	return 0;
}

/* a resync's walk starts over: everything out of the IOMMU, nothing counted */
static void vfio_resync_restart(void *arg)
{
	pv_vfio_reset(&g_vfio);
	*(unsigned long *)arg = 0;
}

#define PV_RESYNC_WALKS	8

/*
 * After a purge (REGISTER, UNREGISTER, DEV_DEL): the IOMMU again from the
 * records, which are the authority: everything out, then each live record
 * of an assigned device of this domain back in.
 */
static void vfio_resync(void)
{
	__u32 dom = __atomic_load_n(&g_dom, __ATOMIC_RELAXED);
	unsigned long n = 0;
	long r = 0;

	pthread_mutex_lock(&g_vfio_lock);
	/*
	 * entries that other VMs' writers move during the walk may pass it
	 * (-EBUSY): everything out and the walk again, a few times
	 */
	if (g_env.tbl)
		r = pv_rec_walk_whole(&g_env, dom, vfio_resync_one, vfio_resync_restart, &n,
				      PV_RESYNC_WALKS);
	pthread_mutex_unlock(&g_vfio_lock);
	if (r < 0) {
		/* what it missed stays out of the IOMMU: denied, and said (the whole domain: ~0) */
		report(~0u, 0, 0, 0, PV_DENY_IOMMU, PVIOMMU_ACT_DENIED);
		fprintf(stderr, PVQ "VFIO mirror rebuilt from part of the records: the index kept "
			"changing over %d walks\n", PV_RESYNC_WALKS);
	}
	if (g_debug)
		fprintf(stderr, PVQ "VFIO mirror rebuilt from %lu records (%u pages)\n", n,
			g_vfio.live);
}

/*
 * serve_op's part for an assigned device, after the records answered r:
 * returns the guest's answer.
 */
static int vfio_follow(const uint64_t a[4], int r, const struct pviommu_mapping *rec)
{
	uint32_t op = PVIOMMU_HC_OP(a[0]), bdf = PVIOMMU_HC_BDF(a[0]);
	int v;

	if (r)
		return r;
	if (op == PVIOMMU_OP_MAP) {
		pthread_mutex_lock(&g_vfio_lock);
		v = pv_vfio_map(&g_vfio, a[1], a[2], PVIOMMU_HC_PERM(a[0]));
		pthread_mutex_unlock(&g_vfio_lock);
		if (!v)
			return 0;
		/* undone in the records too: the device reaches nothing of it */
		hypercall(PVIOMMU_HC_HDR(PVIOMMU_HC_ABI(a[0]), PVIOMMU_OP_UNMAP,
					 PVIOMMU_HC_PERM(a[0]), bdf), a[1], a[2], a[3]);
		report(bdf, a[1], a[2], PVIOMMU_HC_PERM(a[0]), PV_DENY_IOMMU, PVIOMMU_ACT_DENIED);
		if (__atomic_fetch_add(&g_vfio_refused, 1, __ATOMIC_RELAXED) < 8)
			fprintf(stderr, PVQ "assigned device 0x%x: MAP [0x%llx, +0x%llx) refused: the "
				"host IOMMU cannot map it (%s)\n", bdf, (unsigned long long)a[1],
				(unsigned long long)a[2], strerror(-v));
		return v;
	}
	/* UNMAP: the IOMMU lets go of the pages before the guest hears back */
	pthread_mutex_lock(&g_vfio_lock);
	v = pv_vfio_unmap(&g_vfio, rec->iova, rec->size, rec->perm);
	pthread_mutex_unlock(&g_vfio_lock);
	if (v)	/* the device may still reach it: said as allowed */
		report(bdf, rec->iova, rec->size, rec->perm, PV_DENY_IOMMU, PVIOMMU_ACT_ALLOWED);
	if (v && __atomic_fetch_add(&g_vfio_unmap_errors, 1, __ATOMIC_RELAXED) < 8)
		fprintf(stderr, PVQ "assigned device 0x%x: the host IOMMU kept [0x%llx, +0x%llx) "
			"after the guest's UNMAP (%s)\n", bdf, (unsigned long long)rec->iova,
			(unsigned long long)rec->size, strerror(-v));
	return 0;
}

static void vfio_init(void)
{
	const struct pv_vfio_ops ops = { vfio_real_map, vfio_real_unmap, NULL };

	q_object_get_root = dlsym(RTLD_DEFAULT, "object_get_root");
	q_object_dynamic_cast = dlsym(RTLD_DEFAULT, "object_dynamic_cast");
	q_object_child_foreach_recursive = dlsym(RTLD_DEFAULT, "object_child_foreach_recursive");
	q_object_property_get_str = dlsym(RTLD_DEFAULT, "object_property_get_str");
	if (pv_vfio_init(&g_vfio, &ops, VFIO_MIRROR_PAGES)) {
		fprintf(stderr, PVQ "no memory for the VFIO mirror\n");
		exit(1);
	}
	g_vfio_devs_fd = pv_obj_get(NULL, PVIOMMU_MAP_VFIO_DEVS, 0);
	g_vfio_hw_fd = pv_obj_get(NULL, PVIOMMU_MAP_VFIO_HW, 0);
	__atomic_store_n(&g_vfio_ready, 1, __ATOMIC_RELEASE);
}

static void debug_op(const char *how, const uint64_t a[4], int r)
{
	if (g_debug)
		fprintf(stderr, PVQ "%s %s bdf 0x%x iova 0x%llx size 0x%llx -> %d\n",
			how, pv_op_str(PVIOMMU_HC_OP(a[0])), PVIOMMU_HC_BDF(a[0]),
			(unsigned long long)a[1], (unsigned long long)a[2], r);
}

/* one operation from the guest kernel (a hypercall, or an entry of the shared page) */
static unsigned long g_hc_seen, g_hc_user;
static int serve_op(const uint64_t a[4], void *ctx)
{
	uint32_t op = PVIOMMU_HC_OP(a[0]), bdf = PVIOMMU_HC_BDF(a[0]);
	int assigned = g_vfio_nas && vfio_assigned(bdf), r;
	struct pviommu_mapping rec = { 0 };

	/* an UNMAP's record is read first: the IOMMU lets go of what it granted */
	if (assigned && op == PVIOMMU_OP_UNMAP && vfio_record(bdf, a[1], &rec))
		assigned = 0;	/* no such record: the records refuse it anyway */
	r = hypercall(a[0], a[1], a[2], a[3]);
	(void)ctx;
	__atomic_fetch_add(&g_hc_seen, 1, __ATOMIC_RELAXED);
	if (assigned && (op == PVIOMMU_OP_MAP || op == PVIOMMU_OP_UNMAP))
		r = vfio_follow(a, r, &rec);
	else if (!r && assigned && op == PVIOMMU_OP_DEV_ADD) {
		vfio_gate_add(bdf);
		/* an entry of the page: its guest kicks for this device's operations */
		if (ctx)
			r = PVIOMMU_CHAN_ST_KICK;
	}
	else if (!r && g_vfio_nas && (op == PVIOMMU_OP_DEV_DEL || op == PVIOMMU_OP_REGISTER ||
				      op == PVIOMMU_OP_UNREGISTER))
		vfio_resync();
	if (!r && op == PVIOMMU_OP_UNMAP)
		inf_check_unmap(bdf, a[1], a[2]);
	debug_op(ctx ? "page" : "hypercall", a, r);
	return r;
}

/*
 * The shared page's entries, carried out in a kick or a drain. Runs of
 * MAP and UNMAP that need nothing of the library after the records (not
 * of an assigned device) go to pviommu_hc_batch, one test_run for the
 * run (pviommu.h); the rest one by one through serve_op.
 */
static unsigned long g_batches, g_batch_ops;

static int op_plain(const uint64_t a[4])
{
	uint32_t op = PVIOMMU_HC_OP(a[0]);

	if (op != PVIOMMU_OP_MAP && op != PVIOMMU_OP_UNMAP)
		return 0;
	return !(g_vfio_nas && vfio_assigned(PVIOMMU_HC_BDF(a[0])));
}

/* n plain operations; returns how many got a status (the rest: one by one); *runs
 * counts the BPF runs (test_run syscalls) that did them */
static uint32_t batch_run(const uint64_t (*a)[4], int *status, uint32_t n, uint32_t *runs)
{
	uint32_t i = 0, done;
	int stale = 0;

	while (i < n) {
		int fd = __atomic_load_n(&g_batch_fd, __ATOMIC_ACQUIRE), err;
		/* at most PVIOMMU_BATCH_MAX a run: a ring holds more */
		uint32_t chunk = n - i < PVIOMMU_BATCH_MAX ? n - i : PVIOMMU_BATCH_MAX;
		__u64 args[2] = { (uintptr_t)a[i], chunk };
		LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = args, .ctx_size_in = sizeof(args));

		if (fd < 0 || bpf_prog_test_run_opts(fd, &o) || (int)o.retval < 0)
			return i;
		g_batches++;
		(*runs)++;
		done = PVIOMMU_BATCH_DONE(o.retval);
		if (done > chunk)
			return i;	/* cannot be: trust nothing of it */
		for (uint32_t k = i; k < i + done; k++) {
			status[k] = 0;
			if (PVIOMMU_HC_OP(a[k][0]) == PVIOMMU_OP_UNMAP)
				inf_check_unmap(PVIOMMU_HC_BDF(a[k][0]), a[k][1], a[k][2]);
		}
		g_batch_ops += done;
		__atomic_fetch_add(&g_hc_seen, done, __ATOMIC_RELAXED);
		i += done;
		if (done == chunk)	/* all of it (the loop ends at n) */
			continue;
		err = PVIOMMU_BATCH_ERR(o.retval);
		if (!err)
			return i;	/* cannot be: the rest one by one */
		if (err == ESTALE) {	/* a reload: the new program carries it out */
			if (++stale > 100)
				return i;
			reopen_progs(fd);
			if (stale > 1)
				usleep(1000);
			continue;
		}
		status[i++] = -err;	/* refused (its event was sent): go on after it */
		__atomic_fetch_add(&g_hc_seen, 1, __ATOMIC_RELAXED);
	}
	if (g_debug)
		for (i = 0; i < n; i++)
			debug_op("page (batch)", a[i], status[i]);
	return n;
}

static void chan_ops(const uint64_t (*a)[4], int *status, uint32_t n, void *ctx)
{
	struct pv_chan *c = ctx;	/* the page's (serve_op: ctx = an entry of it) */
	uint32_t i = 0, j, runs = 0;	/* BPF runs: one per batch, one per other entry */

	while (i < n) {
		for (j = i; j < n && op_plain(a[j]); j++)
			;
		if (j == i) {
			status[i] = serve_op(a[i], ctx);
			runs++;
			i++;
			continue;
		}
		i += batch_run(a + i, status + i, j - i, &runs);
		for (; i < j; i++) {	/* what the batch could not do */
			status[i] = serve_op(a[i], ctx);
			runs++;
		}
	}
	/* the page's informational count */
	if (c->page)
		__atomic_store_n(&c->page->runs, c->page->runs + runs, __ATOMIC_RELEASE);
}

/* TCG hypercall transport */
static void (*o_cpuid)(void *, uint32_t, uint32_t, uint32_t *, uint32_t *,
		       uint32_t *, uint32_t *);
static void h_cpuid(void *env, uint32_t index, uint32_t count, uint32_t *eax,
		    uint32_t *ebx, uint32_t *ecx, uint32_t *edx)
{
	int acked = 0, result = 0;

	if (unlikely(index == PVIOMMU_CPUID_LEAF)) {
		const uint64_t *regs = env;
		uint32_t hflags;

		memcpy(&hflags, (const char *)env + QEMU_ENV_HFLAGS_OFF, sizeof(hflags));
		if (hflags & 3) {
			__atomic_fetch_add(&g_hc_user, 1, __ATOMIC_RELAXED);
		} else {
			const uint64_t a[4] = { regs[QEMU_R_EBX], regs[QEMU_R_ECX],
						regs[QEMU_R_EDX], regs[QEMU_R_ESI] };

			result = serve_op(a, NULL);
			acked = 1;
		}
	}
	/* always: the guest gets the ordinary answer for an unknown leaf */
	o_cpuid(env, index, count, eax, ebx, ecx, edx);
	/* ... and, from its kernel, the host's answer (pviommu.h) */
	if (unlikely(index == PVIOMMU_CPUID_LEAF) && acked) {
		*eax = PVIOMMU_HC_ACK;
		*ebx = (uint32_t)result;
	}
}

/*
 * The shared page (pviommu.h): two ports of QEMU's I/O address space,
 * caught before QEMU dispatches them (under TCG through address_space_ldl
 * and _stl from helper_inl/outl, under KVM through address_space_rw from
 * kvm_handle_io; both outside the BQL, hence the lock). The page is mapped
 * with the original address_space_map (RAM: a direct pointer, held until
 * detach or reset). A bounce buffer (not RAM) is never filled for a write
 * mapping, so its magic check fails and it is given back at once.
 */
static void *g_as_mem;
static struct pv_chan g_chan;
static struct pv_chan_pend g_pend;	/* what the pending entries may revoke (pv_chan.h) */
static pthread_mutex_t g_chan_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_chan_attached, g_chan_rejected;

static void chan_unmap_locked(void)
{
	uint64_t len = g_chan.len;
	void *p = pv_chan_detach(&g_chan);

	if (p)
		o_address_space_unmap(g_as_mem, p, len, true, len);
}

static void chan_setup(uint32_t pfn)
{
	uint64_t gpa = (uint64_t)pfn << 12, len = PVIOMMU_CHAN_PAGE, need = 0;
	void *p = NULL;
	int r = -EINVAL;

	pthread_mutex_lock(&g_chan_lock);
	chan_unmap_locked();
	if (pfn) {
		p = o_map(g_as_mem, gpa, &len, true, 0);
		r = p && len == PVIOMMU_CHAN_PAGE ? 0 : -EFAULT;
		if (!r && !(need = pv_chan_bytes(p)))
			r = -EPROTO;
		if (!r && need > len) {	/* a ring of several pages: all of it, contiguous */
			o_address_space_unmap(g_as_mem, p, len, false, 0);
			len = need;
			p = o_map(g_as_mem, gpa, &len, true, 0);
			r = p && len == need ? 0 : -EFAULT;
		}
		if (!r)	/* reads the header again: the ring must fit what is mapped */
			r = pv_chan_attach(&g_chan, p, len, gpa, PVIOMMU_CHAN_F_DRAIN);
		pv_chan_pend_reset(&g_chan, &g_pend);
		if (r && p)
			o_address_space_unmap(g_as_mem, p, len, false, 0);
		if (r)
			g_chan_rejected++;
		else
			g_chan_attached++;
	}
	pthread_mutex_unlock(&g_chan_lock);
	if (g_debug || (pfn && r))
		fprintf(stderr, PVQ "shared page %s at 0x%llx (%u entries)%s\n",
			!pfn ? "detached" : r ? "refused" : "attached",
			(unsigned long long)gpa, r ? 0 : g_chan.nents,
			r == -EPROTO ? " (bad magic, version or size)" :
			r == -EFAULT ? " (not RAM)" : "");
}

/*
 * A refused kick or drain (a hostile producer index, pviommu.h): nothing of
 * it was carried out; the host says so with an event, at most one a second
 * (a guest that keeps prod out of range makes every check find work).
 */
static void chan_refused_locked(void)
{
	static uint64_t last;	/* the second of the last report, + 1 */
	struct timespec ts;
	uint64_t prod = g_chan.page ? __atomic_load_n(&g_chan.page->prod, __ATOMIC_RELAXED) : 0;
	__u64 args[5] = { 0, prod, g_chan.cons, 0, PVIOMMU_INPROC_PAGE_REFUSED };
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = args, .ctx_size_in = sizeof(args));

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	if ((uint64_t)ts.tv_sec + 1 == last)
		return;
	last = (uint64_t)ts.tv_sec + 1;
	if (g_ev_fd >= 0)
		bpf_prog_test_run_opts(g_ev_fd, &o);
	fprintf(stderr, PVQ "shared page: kick refused (producer index %llu, %u entries past the "
		"host's %u: more than the ring holds); nothing of it carried out\n",
		(unsigned long long)prod, (unsigned)(prod - g_chan.cons), g_chan.cons);
}

static int chan_kick_locked(void)
{
	int r = pv_chan_kick_batch(&g_chan, chan_ops, &g_chan);

	pv_chan_pend_reset(&g_chan, &g_pend);	/* what was summarized is carried out */
	if (r == -EPROTO)
		chan_refused_locked();
	return r;
}

static uint32_t chan_kick(void)
{
	int r;

	pthread_mutex_lock(&g_chan_lock);
	r = chan_kick_locked();
	pthread_mutex_unlock(&g_chan_lock);
	return (uint32_t)r;
}

/*
 * gate()'s side of posting: one load when nothing is pending. A check
 * that finds entries takes the lock and carries them out; one that finds
 * the lock taken waits for the holder, who carries out at least what was
 * published when the check looked (prod is read under the lock).
 */
static unsigned long g_chan_drains;
static int chan_pending(void)
{
	return pv_chan_pending(&g_chan);
}

/*
 * 1 when none of the pending entries can revoke bdf's [addr, addr + len):
 * the check may go first, the entries wait for a check they concern, a
 * denial, a kick or a full ring. An UNMAP of a range QEMU holds mapped
 * (inf_holds) is carried out at once, so inf_check_unmap reports it while
 * the I/O is in flight.
 */
static unsigned long g_chan_spared;
static __attribute__((noinline)) int chan_spares(uint32_t bdf, uint64_t addr, uint64_t len)
{
	int r;

	pthread_mutex_lock(&g_chan_lock);
	r = pv_chan_spares(&g_chan, &g_pend, bdf, addr, len, inf_holds, NULL);
	if (r)
		g_chan_spared++;
	pthread_mutex_unlock(&g_chan_lock);
	return r;
}

static __attribute__((noinline, cold)) void chan_drain(void)
{
	pthread_mutex_lock(&g_chan_lock);
	if (chan_kick_locked() > 0)
		g_chan_drains++;
	pthread_mutex_unlock(&g_chan_lock);
}

/* 1 when port is one of ours (the access is then served here, not by QEMU) */
static inline int chan_port(const void *as, uint64_t port)
{
	return unlikely(as == g_as_io) && port - PVIOMMU_PORT_SETUP < PVIOMMU_PORT_COUNT;
}

/* a 32-bit access to our ports; other widths and offsets read all-ones, writes vanish */
static uint32_t chan_pio(uint64_t port, unsigned int size, bool is_write, uint32_t val)
{
	if (size != 4)
		return ~0u;
	if (is_write && port == PVIOMMU_PORT_SETUP)
		chan_setup(val);
	else if (!is_write && port == PVIOMMU_PORT_KICK)
		return chan_kick();
	else if (!is_write && port == PVIOMMU_PORT_SETUP)
		return g_chan.page ? PVIOMMU_CHAN_ACK : 0;
	return ~0u;
}

/*
 * A machine reset (QMP system_reset, the guest's reboot through the
 * chipset) starts a guest that knows nothing of the old mappings: purge
 * them, back to RESERVED, before any device model runs again. A guest that
 * loads pviommu.ko after the reset registers afresh.
 */
static unsigned long g_resets;
static void (*o_qemu_system_reset)(int);
static void reserve_domain(void);
static void h_qemu_system_reset(int reason)
{
	/* no purge, no VM: what is left must not stay allowed (exits) */
	reserve_domain();
	if (g_vfio_ready) {	/* the records are gone: so are the IOMMU's pages */
		__u32 dom = __atomic_load_n(&g_dom, __ATOMIC_RELAXED);

		pthread_mutex_lock(&g_vfio_lock);
		pv_vfio_reset(&g_vfio);
		pthread_mutex_unlock(&g_vfio_lock);
		if (g_vfio_devs_fd >= 0)
			bpf_map_delete_elem(g_vfio_devs_fd, &dom);
		vfio_discover();
	}
	pthread_mutex_lock(&g_chan_lock);	/* the new guest attaches its own */
	chan_unmap_locked();
	pthread_mutex_unlock(&g_chan_lock);
	__atomic_fetch_add(&g_resets, 1, __ATOMIC_RELAXED);
	if (g_debug)
		fprintf(stderr, PVQ "machine reset (cause %d): domain %u back to reserved\n",
			reason, __atomic_load_n(&g_dom, __ATOMIC_RELAXED));
	o_qemu_system_reset(reason);
}

#define D(n) { .name = #n, .hook = (void *)h_##n, .orig = (void **)&o_##n }
static struct detour g_detours[] = {
	{ .name = "address_space_rw", .hook = (void *)h_rw, .orig = (void **)&o_rw },
	{ .name = "address_space_read_full", .hook = (void *)h_read_full,
	  .orig = (void **)&o_read_full },
	{ .name = "address_space_write", .hook = (void *)h_write, .orig = (void **)&o_write },
	{ .name = "address_space_map", .hook = (void *)h_map, .orig = (void **)&o_map },
	{ .name = "address_space_cache_init", .hook = (void *)h_cache_init,
	  .orig = (void **)&o_cache_init },
	D(address_space_ldub),
	D(address_space_lduw), D(address_space_lduw_le), D(address_space_lduw_be),
	D(address_space_ldl), D(address_space_ldl_le), D(address_space_ldl_be),
	D(address_space_ldq), D(address_space_ldq_le), D(address_space_ldq_be),
	D(address_space_stb),
	D(address_space_stw), D(address_space_stw_le), D(address_space_stw_be),
	D(address_space_stl), D(address_space_stl_le), D(address_space_stl_be),
	D(address_space_stq), D(address_space_stq_le), D(address_space_stq_be),
	{ .name = "address_space_write_rom", .hook = (void *)h_write_rom,
	  .orig = (void **)&o_write_rom },
	{ .name = "address_space_cache_destroy", .hook = (void *)h_cache_destroy,
	  .orig = (void **)&o_cache_destroy },
	{ .name = "address_space_read_cached_slow", .hook = (void *)h_read_cached_slow,
	  .orig = (void **)&o_read_cached_slow },
	{ .name = "address_space_write_cached_slow", .hook = (void *)h_write_cached_slow,
	  .orig = (void **)&o_write_cached_slow },
	D(address_space_ldub_cached_slow),
	D(address_space_lduw_cached_slow), D(address_space_lduw_le_cached_slow),
	D(address_space_lduw_be_cached_slow),
	D(address_space_ldl_cached_slow), D(address_space_ldl_le_cached_slow),
	D(address_space_ldl_be_cached_slow),
	D(address_space_ldq_cached_slow), D(address_space_ldq_le_cached_slow),
	D(address_space_ldq_be_cached_slow),
	D(address_space_stb_cached_slow),
	D(address_space_stw_cached_slow), D(address_space_stw_le_cached_slow),
	D(address_space_stw_be_cached_slow),
	D(address_space_stl_cached_slow), D(address_space_stl_le_cached_slow),
	D(address_space_stl_be_cached_slow), D(address_space_stl_notdirty_cached_slow),
	D(address_space_stq_cached_slow), D(address_space_stq_le_cached_slow),
	D(address_space_stq_be_cached_slow),
	{ .name = "cpu_x86_cpuid", .hook = (void *)h_cpuid, .orig = (void **)&o_cpuid },
	D(qemu_system_reset),
	D(address_space_unmap),
};
#define NR_DETOURS ((int)(sizeof(g_detours) / sizeof(g_detours[0])))

/* ---- set-up ------------------------------------------------------------- */

/* take this process's domain (its host tgid); exits when there is none */
static void reserve_domain(void)
{
	int r = pv_reserve(g_rsv_fd, 0, g_mode, &g_quota);

	if (r <= 0) {
		fprintf(stderr, PVQ "cannot reserve this VM's domain (%s): pviommu is out of "
			"capacity or not loaded; refusing to start a VM whose guest would "
			"believe in a protection nobody enforces\n",
			strerror(r < 0 ? -r : EINVAL));
		_exit(1);
	}
	__atomic_store_n(&g_dom, (__u32)r, __ATOMIC_RELAXED);
}

static void after_fork_child(void)
{
	/* -daemonize: the VM lives on in the child, whose tgid is the domain */
	reserve_domain();
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v && *v ? atoi(v) : def;
}

static void fatal_or_warn(int require, const char *what)
{
	if (require) {
		fprintf(stderr, PVQ "%s: refusing to run this VM without DMA protection "
			"(set PVIOMMU_REQUIRE=0 to run it unprotected)\n", what);
		exit(1);
	}
	fprintf(stderr, PVQ "WARNING: %s: this VM runs WITHOUT pviommu DMA protection "
		"(PVIOMMU_REQUIRE=0)\n", what);
}

__attribute__((constructor)) static void pvq_init(void)
{
	int require, err, installed, wx;
	char msg[512];

	if (!dlsym(RTLD_DEFAULT, "address_space_rw"))
		return;	/* not QEMU (an inherited LD_PRELOAD): do nothing */
	require = env_int("PVIOMMU_REQUIRE", 1);
	g_debug = env_int("PVIOMMU_DEBUG", 0);
	if (getenv("PVIOMMU_MODE") && *getenv("PVIOMMU_MODE")) {
		__u32 m;

		if (pv_parse_mode(getenv("PVIOMMU_MODE"), &m)) {
			fprintf(stderr, PVQ "PVIOMMU_MODE=%s: what is that? audit, deny or kill\n",
				getenv("PVIOMMU_MODE"));
			exit(1);
		}
		g_mode = (int)m;
	}
	if (getenv("PVIOMMU_QUOTA") && pv_parse_quota(getenv("PVIOMMU_QUOTA"), &g_quota)) {
		fprintf(stderr, PVQ "PVIOMMU_QUOTA=%s: what is that? records=N,pages=N,devices=N,lanes=N\n",
			getenv("PVIOMMU_QUOTA"));
		exit(1);
	}

	if (getenv("PVIOMMU_RING_MAX") && *getenv("PVIOMMU_RING_MAX")) {
		char *end;
		unsigned long n = strtoul(getenv("PVIOMMU_RING_MAX"), &end, 10);

		if (*end || n > UINT32_MAX || pv_chan_set_max_nents((uint32_t)n)) {
			fprintf(stderr, PVQ "PVIOMMU_RING_MAX=%s: the longest ring served, in entries: "
				"a power of two from %u to %u\n", getenv("PVIOMMU_RING_MAX"),
				PVIOMMU_CHAN_NENTS_PAGE, PVIOMMU_CHAN_NENTS_MAX);
			exit(1);
		}
	}

	err = pv_index_map(NULL, &g_view, 1);
	if (err) {
		snprintf(msg, sizeof(msg),
			 "pviommu is not loaded (%s: %s; run 'pviommuctl load')",
			 pv_pin_path(PVIOMMU_MAP_INDEX), strerror(-err));
		fatal_or_warn(require, msg);
		return;
	}
	g_env.tbl = g_view.base;
	g_env.slots = g_view.slots;
	g_env.fast = g_view.fast;	/* NULL: every check asks the index */
	{
		/* the index hash's secret (pviommu.h, pviommu_ctl) */
		int cfd = pv_obj_get(NULL, PVIOMMU_MAP_CTL, 1);
		struct pviommu_ctl ctl;
		__u32 zero = 0;

		if (cfd < 0 || bpf_map_lookup_elem(cfd, &zero, &ctl)) {
			snprintf(msg, sizeof(msg), "cannot read %s: %s", pv_pin_path(PVIOMMU_MAP_CTL),
				 strerror(cfd < 0 ? -cfd : errno));
			fatal_or_warn(require, msg);
			pv_index_unmap(&g_view);
			return;
		}
		g_env.key = ctl.hash_key;
		close(cfd);
	}
	g_dom_fd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 1);
	g_hc_fd = pv_obj_get(NULL, "progs/pviommu_kvm_hypercall", 0);
	g_ev_fd = pv_obj_get(NULL, "progs/pviommu_inproc_event", 0);
	g_batch_fd = pv_obj_get(NULL, "progs/pviommu_hc_batch", 0);
	g_rsv_fd = pv_obj_get(NULL, "progs/pviommu_reserve", 0);
	if (g_dom_fd < 0 || g_hc_fd < 0 || g_ev_fd < 0 || g_rsv_fd < 0) {
		snprintf(msg, sizeof(msg),
			 "pviommu pins under %s are incomplete (domains %d, progs/pviommu_kvm_hypercall %d, progs/pviommu_inproc_event %d, progs/pviommu_reserve %d; run 'pviommuctl load')",
			 pv_pin_dir(), g_dom_fd, g_hc_fd, g_ev_fd, g_rsv_fd);
		fatal_or_warn(require, msg);
		/* unprotected: nothing below would work without the pins */
		pv_index_unmap(&g_view);
		return;
	}

	g_bridges_ok = layout_check(msg, sizeof(msg));
	if (!g_bridges_ok)
		fprintf(stderr, PVQ "WARNING: this QEMU's PCI bus layout is not the one pviommu knows (%s): "
			"devices behind PCI bridges or root ports are taken as bus 0\n", msg);
	installed = detour_install(g_detours, NR_DETOURS, &wx);
	for (int i = 0; i < NR_DETOURS; i++) {
		struct detour *d = &g_detours[i];

		if (d->err)
			fprintf(stderr, PVQ "NOT patched %s: %s\n", d->name, d->why);
		else if (g_debug)
			fprintf(stderr, PVQ "patched %s at %p (%u bytes relocated%s%s)\n",
				d->name, (void *)d->target, d->nreloc,
				d->via_relay ? ", via relay page" : ", direct",
				d->tail_jmp ? ", tail jmp" : "");
	}
	if (installed != NR_DETOURS) {
		snprintf(msg, sizeof(msg), "%d of %d QEMU entry points could not be detoured%s",
			 NR_DETOURS - installed, NR_DETOURS,
			 wx ? " (a W^X policy refused text patching)" : "");
		fatal_or_warn(require, msg);
	}
	reserve_domain();
	pthread_atfork(NULL, NULL, after_fork_child);
	vfio_init();
	/* the shared page needs both address spaces (exported by Debian's 7.2) */
	g_as_mem = dlsym(RTLD_DEFAULT, "address_space_memory");
	if (g_as_mem)
		g_as_io = dlsym(RTLD_DEFAULT, "address_space_io");
	if (!g_as_io)
		fprintf(stderr, PVQ "no address_space_io/address_space_memory symbol: no shared page "
			"(guests get no status under KVM)\n");
	if (g_debug)
		fprintf(stderr, PVQ "active in pid %u: %d detours, index %u slots at %p%s\n",
			g_dom, installed, g_view.slots, (void *)g_view.base,
			g_as_io ? ", shared page ports served" : "");
}
