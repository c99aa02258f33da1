// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bench_inproc - a fake "QEMU" for libpviommu-qemu.so: functional test of
 * the in-process plane's decisions and a microbenchmark of its fast path.
 *
 *   bench_inproc LIB [--test] [--bench] [N]
 *
 * The program exports the functions the library detours (g_detours in
 * qemu-hooks/pviommu_qemu.c: address_space_*, their *_cached_slow variants,
 * cpu_x86_cpuid, qemu_system_reset) as small asm stubs (push rbp; mov rsp,rbp; pop rbp; jmp
 * impl) in front of C implementations that count calls. It measures bare
 * calls, then dlopen()s the library (its constructor patches the stubs, as
 * in QEMU), builds AddressSpace objects laid out as qemu_layout.h describes,
 * issues guest hypercalls through the detoured cpu_x86_cpuid (the TCG
 * transport: REGISTER, DEV_ADD, MAP) and checks each entry point's
 * allow / deny / audit / kill behaviour against the pinned maps
 * ($PVIOMMU_PIN_DIR; pviommu must be loaded there). Needs root.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include "pvlib.h"
#include "qemu_layout.h"
#include "testlib.h"

typedef uint32_t MemTxResult;
#define HID __attribute__((visibility("hidden"), noipa, used))

/* exported stubs with a relocatable 5-byte prologue */
#define STUB(name)							\
	__asm__(".text\n.globl " #name "\n.type " #name ",@function\n"	\
		".p2align 4\n" #name ":\n"				\
		"\tpush %rbp\n\tmov %rsp,%rbp\n\tpop %rbp\n"		\
		"\tjmp " #name "_impl\n.size " #name ",.-" #name "\n");

static unsigned long calls;	/* calls that reached an implementation */
static uint8_t guest[4 << 20];	/* "guest RAM" at guest-physical 0 */

HID MemTxResult address_space_rw_impl(void *as, uint64_t addr, uint32_t attrs,
				      void *buf, uint64_t len, bool is_write)
{
	calls++;
	if (addr + len > sizeof(guest))
		return QEMU_MEMTX_ACCESS_ERROR;
	if (is_write)
		memcpy(guest + addr, buf, len);
	else
		memcpy(buf, guest + addr, len);
	return QEMU_MEMTX_OK;
}
HID MemTxResult address_space_read_full_impl(void *as, uint64_t addr, uint32_t attrs,
					     void *buf, uint64_t len)
{
	return address_space_rw_impl(as, addr, attrs, buf, len, false);
}
HID MemTxResult address_space_write_impl(void *as, uint64_t addr, uint32_t attrs,
					 const void *buf, uint64_t len)
{
	return address_space_rw_impl(as, addr, attrs, (void *)buf, len, true);
}
HID void *address_space_map_impl(void *as, uint64_t addr, uint64_t *plen,
				 bool is_write, uint32_t attrs)
{
	calls++;
	return guest + addr;
}
HID MemTxResult address_space_write_rom_impl(void *as, uint64_t addr, uint32_t attrs,
					     const void *buf, uint64_t len)
{
	return address_space_rw_impl(as, addr, attrs, (void *)buf, len, true);
}
/* a fake MemoryRegionCache: ptr @0 (the fast path), the guest address @8 */
HID int64_t address_space_cache_init_impl(void *cache, void *as, uint64_t addr,
					  uint64_t len, bool is_write)
{
	calls++;
	memset(cache, 0x5a, 112);
	*(void **)cache = guest + addr;
	*(uint64_t *)((char *)cache + 8) = addr;
	return (int64_t)len;
}
static unsigned long destroys;
HID void address_space_cache_destroy_impl(void *cache)
{
	destroys++;
}
HID MemTxResult address_space_read_cached_slow_impl(void *cache, uint64_t addr, void *buf,
						    uint64_t len)
{
	calls++;
	memcpy(buf, guest + *(uint64_t *)((char *)cache + 8) + addr, len);
	return QEMU_MEMTX_OK;
}
HID MemTxResult address_space_write_cached_slow_impl(void *cache, uint64_t addr,
						     const void *buf, uint64_t len)
{
	calls++;
	memcpy(guest + *(uint64_t *)((char *)cache + 8) + addr, buf, len);
	return QEMU_MEMTX_OK;
}
#define LDI(n) HID uint64_t n##_impl(void *as, uint64_t addr, uint32_t attrs, \
				     MemTxResult *r)			\
{ calls++; if (r) *r = 0; return 0x1122334455667788ull; }
#define STI(n) HID void n##_impl(void *as, uint64_t addr, uint64_t val,	\
				 uint32_t attrs, MemTxResult *r)	\
{ calls++; if (r) *r = 0; }
LDI(address_space_ldub) LDI(address_space_lduw) LDI(address_space_lduw_le)
LDI(address_space_lduw_be) LDI(address_space_ldl) LDI(address_space_ldl_le)
LDI(address_space_ldl_be) LDI(address_space_ldq) LDI(address_space_ldq_le)
LDI(address_space_ldq_be)
STI(address_space_stb) STI(address_space_stw) STI(address_space_stw_le)
STI(address_space_stw_be) STI(address_space_stl) STI(address_space_stl_le)
STI(address_space_stl_be) STI(address_space_stq) STI(address_space_stq_le)
STI(address_space_stq_be)
#define CI(n)	LDI(n##_cached_slow)
#define CS(n)	STI(n##_cached_slow)
CI(address_space_ldub) CI(address_space_lduw) CI(address_space_lduw_le)
CI(address_space_lduw_be) CI(address_space_ldl) CI(address_space_ldl_le)
CI(address_space_ldl_be) CI(address_space_ldq) CI(address_space_ldq_le)
CI(address_space_ldq_be)
CS(address_space_stb) CS(address_space_stw) CS(address_space_stw_le)
CS(address_space_stw_be) CS(address_space_stl) CS(address_space_stl_le)
CS(address_space_stl_be) CS(address_space_stl_notdirty) CS(address_space_stq)
CS(address_space_stq_le) CS(address_space_stq_be)
HID void cpu_x86_cpuid_impl(void *env, uint32_t index, uint32_t count,
			    uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx)
{
	calls++;
	*eax = *ebx = *ecx = *edx = 0;
}

STUB(address_space_rw) STUB(address_space_read_full) STUB(address_space_write)
STUB(address_space_map) STUB(address_space_cache_init)
STUB(address_space_ldub) STUB(address_space_lduw) STUB(address_space_lduw_le)
STUB(address_space_lduw_be) STUB(address_space_ldl) STUB(address_space_ldl_le)
STUB(address_space_ldl_be) STUB(address_space_ldq) STUB(address_space_ldq_le)
STUB(address_space_ldq_be)
STUB(address_space_stb) STUB(address_space_stw) STUB(address_space_stw_le)
STUB(address_space_stw_be) STUB(address_space_stl) STUB(address_space_stl_le)
STUB(address_space_stl_be) STUB(address_space_stq) STUB(address_space_stq_le)
STUB(address_space_stq_be) STUB(cpu_x86_cpuid)
STUB(address_space_write_rom) STUB(address_space_cache_destroy)
STUB(address_space_read_cached_slow) STUB(address_space_write_cached_slow)
STUB(address_space_ldub_cached_slow) STUB(address_space_lduw_cached_slow)
STUB(address_space_lduw_le_cached_slow) STUB(address_space_lduw_be_cached_slow)
STUB(address_space_ldl_cached_slow) STUB(address_space_ldl_le_cached_slow)
STUB(address_space_ldl_be_cached_slow) STUB(address_space_ldq_cached_slow)
STUB(address_space_ldq_le_cached_slow) STUB(address_space_ldq_be_cached_slow)
STUB(address_space_stb_cached_slow) STUB(address_space_stw_cached_slow)
STUB(address_space_stw_le_cached_slow) STUB(address_space_stw_be_cached_slow)
STUB(address_space_stl_cached_slow) STUB(address_space_stl_le_cached_slow)
STUB(address_space_stl_be_cached_slow) STUB(address_space_stl_notdirty_cached_slow)
STUB(address_space_stq_cached_slow) STUB(address_space_stq_le_cached_slow)
STUB(address_space_stq_be_cached_slow)
STUB(qemu_system_reset) STUB(address_space_unmap)
HID void address_space_unmap_impl(void *as, void *buf, uint64_t len, bool is_write,
				  uint64_t access_len)
{
	calls++;
}
void address_space_unmap(void *, void *, uint64_t, bool, uint64_t);
static unsigned long resets;
HID void qemu_system_reset_impl(int reason)
{
	resets++;
}
void qemu_system_reset(int reason);

MemTxResult address_space_rw(void *, uint64_t, uint32_t, void *, uint64_t, bool);
MemTxResult address_space_read_full(void *, uint64_t, uint32_t, void *, uint64_t);
MemTxResult address_space_write(void *, uint64_t, uint32_t, const void *, uint64_t);
void *address_space_map(void *, uint64_t, uint64_t *, bool, uint32_t);
int64_t address_space_cache_init(void *, void *, uint64_t, uint64_t, bool);
uint32_t address_space_ldl_le(void *, uint64_t, uint32_t, MemTxResult *);
uint16_t address_space_lduw_be(void *, uint64_t, uint32_t, MemTxResult *);
uint64_t address_space_ldq(void *, uint64_t, uint32_t, MemTxResult *);
void address_space_stl_le(void *, uint64_t, uint32_t, uint32_t, MemTxResult *);
void address_space_stq(void *, uint64_t, uint64_t, uint32_t, MemTxResult *);
void address_space_stb(void *, uint64_t, uint32_t, uint32_t, MemTxResult *);
void cpu_x86_cpuid(void *, uint32_t, uint32_t, uint32_t *, uint32_t *, uint32_t *,
		   uint32_t *);
MemTxResult address_space_write_rom(void *, uint64_t, uint32_t, const void *, uint64_t);
void address_space_cache_destroy(void *);
MemTxResult address_space_read_cached_slow(void *, uint64_t, void *, uint64_t);
MemTxResult address_space_write_cached_slow(void *, uint64_t, const void *, uint64_t);
uint32_t address_space_ldl_le_cached_slow(void *, uint64_t, uint32_t, MemTxResult *);
uint64_t address_space_ldq_cached_slow(void *, uint64_t, uint32_t, MemTxResult *);
void address_space_stw_le_cached_slow(void *, uint64_t, uint32_t, uint32_t, MemTxResult *);
void address_space_stq_le_cached_slow(void *, uint64_t, uint64_t, uint32_t, MemTxResult *);

/* ---- fake QEMU objects --------------------------------------------------- */

/*
 * The accessors that pin qemu_layout.h's bus offsets down, with the code
 * QEMU 7.2 has: the library decodes them before it follows a device's bus.
 */
__asm__(".text\n.globl qdev_get_parent_bus\n.type qdev_get_parent_bus,@function\n"
	"qdev_get_parent_bus:\n\tmov 0x58(%rdi),%rax\n\tret\n"
	".globl pci_bridge_get_device\n.type pci_bridge_get_device,@function\n"
	"pci_bridge_get_device:\n\tmov 0x8b8(%rdi),%rax\n\tret\n"
	".globl pci_bridge_get_base\n.type pci_bridge_get_base,@function\n"
	"pci_bridge_get_base:\n\tmov 0xa8(%rdi),%rdx\n\tmov %rdx,%rax\n\tret\n");

/* a PCIBus: parent_dev at QEMU_PCIBUS_PARENT_DEV_OFF */
struct fake_bus {
	char	mem[QEMU_PCIBUS_PARENT_DEV_OFF + 8];
};
static struct fake_bus root_bus, bus1;

/* a PCIDevice with its bus_master_as, as qemu_layout.h describes */
struct fake_dev {
	char	mem[1024];
	char	*as;
	uint8_t	config[256];
};

static void fake_dev_init_on(struct fake_dev *f, const char *name, int devfn,
			     struct fake_bus *bus)
{
	char *pname;

	memset(f->mem, 0, sizeof(f->mem));
	f->as = f->mem + QEMU_PCIDEV_NAME_OFF + QEMU_PCIDEV_NAME_BEFORE_AS;
	pname = f->as - QEMU_PCIDEV_NAME_BEFORE_AS;
	memcpy(pname - QEMU_PCIDEV_DEVFN_BEFORE_NAME, &devfn, 4);
	snprintf(pname, QEMU_PCIDEV_NAME_LEN, "%s", name);
	*(char **)(f->as + QEMU_AS_NAME_OFF) = strdup(name);
	*(struct fake_bus **)(f->mem + QEMU_PCIDEV_PARENT_BUS_OFF) = bus;
	*(uint8_t **)(pname - QEMU_PCIDEV_CONFIG_BEFORE_NAME) = f->config;
}

static void fake_dev_init(struct fake_dev *f, const char *name, int devfn)
{
	fake_dev_init_on(f, name, devfn, &root_bus);
}

/* address_space_memory: a name that does not match what lies before it */
static void fake_sys_init(struct fake_dev *f)
{
	memset(f->mem, 0, sizeof(f->mem));
	f->as = f->mem + QEMU_PCIDEV_NAME_OFF + QEMU_PCIDEV_NAME_BEFORE_AS;
	*(char **)(f->as + QEMU_AS_NAME_OFF) = strdup("memory");
}

/* a CPUX86State: regs[16] then hflags at QEMU_ENV_HFLAGS_OFF */
static uint64_t env[64];

static void guest_hc(int cpl, __u32 op, __u32 perm, __u32 bdf, __u64 iova, __u64 size)
{
	uint32_t a, b, c, d;

	env[QEMU_R_EAX] = PVIOMMU_CPUID_LEAF;
	env[QEMU_R_EBX] = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, op, perm, bdf);
	env[QEMU_R_ECX] = iova;
	env[QEMU_R_EDX] = size;
	env[QEMU_R_ESI] = 0xc0ffee;
	*(uint32_t *)((char *)env + QEMU_ENV_HFLAGS_OFF) = (uint32_t)cpl;
	cpu_x86_cpuid(env, PVIOMMU_CPUID_LEAF, 0, &a, &b, &c, &d);
}

static int dom_fd, stats_fd;

static int set_mode(__u32 pid, __u32 mode)
{
	struct pviommu_domain d;

	if (bpf_map_lookup_elem(dom_fd, &pid, &d))
		return -errno;
	d.mode = mode;
	return bpf_map_update_elem(dom_fd, &pid, &d, BPF_EXIST) ? -errno : 0;
}

static __u64 stat(int i)
{
	struct pviommu_stats s;

	return pv_stats_read(stats_fd, &s) ? 0 : s.v[i];
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define BDF_DEV	PVIOMMU_BDF(0, 0, 4, 0)
#define BDF_OTHER PVIOMMU_BDF(0, 0, 5, 0)
static struct fake_dev dev, other, sys, bridge, bdev;

/* ---- the functional tests ---------------------------------------------- */

static void t_passthrough(void)
{
	uint8_t buf[64] = { 0 };
	unsigned long c0 = calls;

	/* before REGISTER nothing is protected: everything passes */
	ASSERT_EQ(address_space_rw(sys.as, 0x1000, 0, buf, 64, false), 0, "sys rw");
	ASSERT_EQ(address_space_rw(dev.as, 0x300000, 0, buf, 64, false), 0, "unprotected dev rw");
	ASSERT_EQ(calls - c0, 2, "both reached QEMU");
}

static void t_register(void)
{
	struct pviommu_domain d;
	__u32 me = getpid();

	/* the library reserved the domain when it started */
	ASSERT_OK(bpf_map_lookup_elem(dom_fd, &me, &d), "domain reserved at start");
	ASSERT_EQ(d.flags, PVIOMMU_DOM_RESERVED, "reserved, not registered");
	guest_hc(3, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);	/* CPL 3: ignored */
	bpf_map_lookup_elem(dom_fd, &me, &d);
	ASSERT_EQ(d.flags, PVIOMMU_DOM_RESERVED, "CPL 3 hypercall ignored");
	guest_hc(0, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	guest_hc(0, PVIOMMU_OP_DEV_ADD, 0, BDF_DEV, 0, 0);
	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, BDF_DEV, 0x100000, 0x3000);
	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_WRITE, BDF_DEV, 0x200010, 100);
	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_READ, BDF_DEV, 0x210000, 0x1000);
	ASSERT_OK(bpf_map_lookup_elem(dom_fd, &me, &d), "domain registered via cpuid");
	ASSERT_EQ(d.nr_records, 3, "3 records");
	ASSERT_EQ(d.nr_devices, 1, "1 device");
	ASSERT_EQ(d.mode, PVIOMMU_MODE_DENY, "default mode deny");
}

static void t_deny(void)
{
	static uint8_t buf[0x2000], pat[64];
	unsigned long c0;
	MemTxResult r;
	uint64_t len;
	char cache[112];

	memset(guest + 0x300000, 0xab, 64);
	memset(buf, 0x11, sizeof(buf));
	memcpy(pat, buf, sizeof(pat));	/* the first 64 bytes are compared */
	c0 = calls;
	ASSERT_EQ(address_space_rw(dev.as, 0x100000, 0, buf, 64, false), 0, "rw read inside");
	ASSERT_EQ(address_space_rw(dev.as, 0x101ff0, 0, buf, 0x1010, true), 0, "rw write across pages");
	ASSERT_EQ(address_space_write(dev.as, 0x200010, 0, buf, 64), 0, "sub-page write inside");
	ASSERT_EQ(address_space_read_full(dev.as, 0x210000, 0, buf, 64), 0, "read of r range");
	ASSERT_EQ(calls - c0, 4, "allowed transfers reached QEMU");

	memcpy(buf, pat, sizeof(pat));
	c0 = calls;
	ASSERT_EQ(address_space_rw(dev.as, 0x300000, 0, buf, 64, false),
		  QEMU_MEMTX_ACCESS_ERROR, "rw read outside denied");
	ASSERT_TRUE(!memcmp(buf, pat, sizeof(pat)), "buffer untouched by denied read");
	ASSERT_EQ(address_space_read_full(dev.as, 0x200010, 0, buf, 16),
		  QEMU_MEMTX_ACCESS_ERROR, "read of w-only range denied");
	ASSERT_EQ(address_space_write(dev.as, 0x200000, 0, buf, 32),
		  QEMU_MEMTX_ACCESS_ERROR, "write starting before sub-page range denied");
	ASSERT_EQ(address_space_write(dev.as, 0x210000, 0, buf, 4),
		  QEMU_MEMTX_ACCESS_ERROR, "write to r-only range denied");
	ASSERT_EQ(address_space_rw(dev.as, 0x102ff0, 0, buf, 0x20, true),
		  QEMU_MEMTX_ACCESS_ERROR, "write crossing the end denied");
	len = 0x1000;
	ASSERT_TRUE(address_space_map(dev.as, 0x300000, &len, false, 0) == NULL, "map outside NULL");
	ASSERT_EQ(len, 0, "map outside *plen = 0");
	memset(cache, 0x77, sizeof(cache));
	ASSERT_EQ(address_space_cache_init(cache, dev.as, 0x300000, 0x100, false), 0,
		  "cache_init outside returns 0");
	ASSERT_EQ(*(uint64_t *)cache, 0, "cache ptr cleared");
	ASSERT_EQ(*(uint64_t *)(cache + 48), 0, "cache mrs.mr cleared");
	ASSERT_EQ(address_space_cache_init(cache, dev.as, 0x210000, 0x100, true), 0,
		  "is_write cache on r-only range denied (needs rw)");
	r = 0;
	ASSERT_EQ(address_space_ldl_le(dev.as, 0x300000, 0, &r), 0xffffffffu, "ldl outside all-ones");
	ASSERT_EQ(r, QEMU_MEMTX_ACCESS_ERROR, "ldl result");
	ASSERT_EQ(address_space_lduw_be(dev.as, 0x300000, 0, NULL), 0xffff, "lduw NULL result");
	address_space_stl_le(dev.as, 0x300000, 1, 0, &r);
	address_space_stq(dev.as, 0x300000, 1, 0, NULL);	/* the tail-jmp stub */
	address_space_stb(dev.as, 0x210000, 1, 0, NULL);
	ASSERT_EQ(calls - c0, 0, "no denied transfer reached QEMU");

	c0 = calls;
	len = 0x1000;
	ASSERT_TRUE(address_space_map(dev.as, 0x101000, &len, true, 0) == guest + 0x101000,
		    "map inside");
	ASSERT_EQ(address_space_cache_init(cache, dev.as, 0x100000, 0x100, true), 0x100,
		  "cache_init rw inside");
	ASSERT_EQ(address_space_ldq(dev.as, 0x210000, 0, NULL), 0x1122334455667788ull, "ldq inside");
	address_space_stl_le(dev.as, 0xfee00000, 0x4021, 0, &r);	/* MSI */
	address_space_stq(dev.as, 0x100008, 1, 0, NULL);
	ASSERT_EQ(address_space_rw(other.as, 0x300000, 0, buf, 64, false), 0,
		  "unprotected device passes");
	ASSERT_EQ(address_space_rw(sys.as, 0x300000, 0, buf, 64, true), 0,
		  "system address space passes");
	ASSERT_EQ(calls - c0, 7, "allowed ones (map, cache, ldq, MSI, stq, other, sys) reached QEMU");
}

/*
 * MemoryRegionCache: a device's cache keeps no fast path (ptr cleared at
 * set-up); its accesses come through the *_cached_slow detours and are
 * checked against the policy of the moment: after the guest unmaps the
 * range, the very next access is denied.
 */
static void t_cache(void)
{
	char cache[112], scache[112];
	uint8_t buf[16];
	unsigned long c0, d0;
	MemTxResult r;

	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, BDF_DEV, 0x120000, 0x1000);
	memset(guest + 0x120000, 0x42, 0x1000);
	ASSERT_EQ(address_space_cache_init(cache, dev.as, 0x120000, 0x1000, true), 0x1000,
		  "device cache set up");
	ASSERT_TRUE(*(void **)cache == NULL, "device cache: no inline fast path (ptr NULL)");
	ASSERT_EQ(address_space_cache_init(scache, sys.as, 0x120000, 0x1000, true), 0x1000,
		  "system cache set up");
	ASSERT_TRUE(*(void **)scache == guest + 0x120000, "system cache keeps its fast path");

	c0 = calls;
	r = 1;
	ASSERT_EQ(address_space_ldl_le_cached_slow(cache, 0x10, 0, &r), 0x55667788u,
		  "cached ldl inside");
	address_space_stw_le_cached_slow(cache, 0xffe, 7, 0, NULL);
	ASSERT_EQ(address_space_read_cached_slow(cache, 0xff0, buf, 16), 0, "cached read inside");
	ASSERT_EQ(buf[0], 0x42, "cached read got guest data");
	ASSERT_EQ(address_space_write_cached_slow(cache, 0, buf, 16), 0, "cached write inside");
	ASSERT_EQ(address_space_ldq_cached_slow(scache, 0x2000, 0, NULL), 0x1122334455667788ull,
		  "system cache passes anywhere");
	ASSERT_EQ(calls - c0, 5, "allowed cached accesses reached QEMU");

	/* the guest revokes the range while the cache lives on */
	guest_hc(0, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_RW, BDF_DEV, 0x120000, 0x1000);
	c0 = calls;
	r = 0;
	ASSERT_EQ(address_space_ldl_le_cached_slow(cache, 0x10, 0, &r), 0xffffffffu,
		  "cached ldl after unmap: all-ones");
	ASSERT_EQ(r, QEMU_MEMTX_ACCESS_ERROR, "cached ldl after unmap: access error");
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(address_space_read_cached_slow(cache, 0, buf, 16), QEMU_MEMTX_ACCESS_ERROR,
		  "cached read after unmap denied");
	ASSERT_EQ(buf[0], 0xff, "denied cached read leaves all-ones, no guest data");
	ASSERT_EQ(address_space_write_cached_slow(cache, 0, buf, 16), QEMU_MEMTX_ACCESS_ERROR,
		  "cached write after unmap denied");
	address_space_stw_le_cached_slow(cache, 0x10, 7, 0, NULL);
	address_space_stq_le_cached_slow(cache, 0x10, 7, 0, NULL);	/* tail-jmp stub */
	ASSERT_EQ(calls - c0, 0, "no cached access after unmap reached QEMU");

	/* firmware path: address_space_write_rom of a device is checked too */
	ASSERT_EQ(address_space_write_rom(dev.as, 0x120000, 0, buf, 16), QEMU_MEMTX_ACCESS_ERROR,
		  "write_rom outside denied");
	c0 = calls;
	ASSERT_EQ(address_space_write_rom(dev.as, 0x100000, 0, buf, 16), 0, "write_rom inside");
	ASSERT_EQ(calls - c0, 1, "allowed write_rom reached QEMU");

	/* destroy forgets the cache (QEMU may reuse the memory for a non-device cache) */
	d0 = destroys;
	address_space_cache_destroy(cache);
	address_space_cache_destroy(scache);
	ASSERT_EQ(destroys - d0, 2, "destroy reached QEMU");
	c0 = calls;
	ASSERT_EQ(address_space_ldq_cached_slow(cache, 0x10, 0, NULL), 0x1122334455667788ull,
		  "a destroyed cache is no longer a device's");
	ASSERT_EQ(calls - c0, 1, "... and reaches QEMU");
}

/*
 * A device behind a bridge is 01:04.0, not 00:04.0 (same devfn as 'dev'):
 * it gets its own mappings only, and its bus number follows the bridge's
 * config space when the guest renumbers.
 */
static void t_bridge(void)
{
	uint8_t buf[64];
	unsigned long c0;

	guest_hc(0, PVIOMMU_OP_DEV_ADD, 0, PVIOMMU_BDF(0, 1, 4, 0), 0, 0);
	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, PVIOMMU_BDF(0, 1, 4, 0), 0x140000, 0x1000);
	c0 = calls;
	ASSERT_EQ(address_space_rw(bdev.as, 0x140000, 0, buf, 64, false), 0,
		  "01:04.0 reads its own mapping");
	ASSERT_EQ(calls - c0, 1, "... which reached QEMU");
	ASSERT_EQ(address_space_rw(bdev.as, 0x100000, 0, buf, 64, false), QEMU_MEMTX_ACCESS_ERROR,
		  "01:04.0 is denied 00:04.0's mapping (same devfn, other bus)");
	ASSERT_EQ(address_space_rw(dev.as, 0x140000, 0, buf, 64, false), QEMU_MEMTX_ACCESS_ERROR,
		  "00:04.0 is denied 01:04.0's mapping");
	/* the guest renumbers the bridge's secondary bus to 2: an unprotected 02:04.0 */
	bridge.config[QEMU_PCI_SECONDARY_BUS] = 2;
	c0 = calls;
	ASSERT_EQ(address_space_rw(bdev.as, 0x300000, 0, buf, 64, false), 0,
		  "renumbered to 02:04.0 (not protected): passes");
	ASSERT_EQ(calls - c0, 1, "... reached QEMU");
	bridge.config[QEMU_PCI_SECONDARY_BUS] = 1;
	ASSERT_EQ(address_space_rw(bdev.as, 0x300000, 0, buf, 64, false), QEMU_MEMTX_ACCESS_ERROR,
		  "back on bus 1: protected again");
}

static void t_audit_and_events(void)
{
	uint8_t buf[64];
	unsigned long c0;
	__u64 v0, v1;

	/* the denials above used this second's report budget of dev.as */
	usleep(1100000);
	v0 = stat(PVIOMMU_ST_VIOLATION);
	ASSERT_OK(set_mode(getpid(), PVIOMMU_MODE_AUDIT), "set audit");
	c0 = calls;
	ASSERT_EQ(address_space_rw(dev.as, 0x380000, 0, buf, 64, false), 0, "audit: runs");
	ASSERT_EQ(calls - c0, 1, "audit: reached QEMU");
	v1 = stat(PVIOMMU_ST_VIOLATION);
	ASSERT_EQ(v1 - v0, 1, "violation reported through pviommu_inproc_event");
	/* a looping device: reports are rate-limited per (as, verdict) */
	for (int i = 0; i < 1000; i++)
		address_space_rw(dev.as, 0x390000, 0, buf, 64, false);
	v0 = stat(PVIOMMU_ST_VIOLATION);
	ASSERT_TRUE(v0 - v1 <= 16, "1000 violations: at most 2 x 8 reports");
	ASSERT_TRUE(v0 - v1 >= 1, "... and at least one");
	ASSERT_OK(set_mode(getpid(), PVIOMMU_MODE_DENY), "back to deny");
}

static void t_kill(void)
{
	pid_t p = fork();
	int st = 0;

	if (p == 0) {
		uint8_t buf[64];

		/* the child is its own domain (the library follows fork) */
		guest_hc(0, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
		guest_hc(0, PVIOMMU_OP_DEV_ADD, 0, BDF_DEV, 0, 0);
		if (set_mode(getpid(), PVIOMMU_MODE_KILL))
			_exit(3);
		if (address_space_rw(dev.as, 0x100000, 0, buf, 64, false) != QEMU_MEMTX_ACCESS_ERROR)
			_exit(4);	/* child maps nothing: must not be allowed */
		_exit(5);
	}
	ASSERT_TRUE(p > 0, "fork");
	waitpid(p, &st, 0);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "kill mode: SIGKILL");
	if (!WIFSIGNALED(st))
		printf("  child exit %d\n", WEXITSTATUS(st));
}

/*
 * 'pviommuctl load' on a loaded system, three times, between guest MAPs
 * and UNMAPs: the program this QEMU holds goes stale at each reload, and
 * no hypercall may be lost (the library opens the new one and retries).
 */
static void t_reload(const char *ctl)
{
	uint8_t buf[64];
	char cmd[512];
	int lost = 0, rc = 0;

	snprintf(cmd, sizeof(cmd), "%s load >/dev/null", ctl);
	for (int r = 0; r < 3; r++) {
		__u64 iova = 0x3c0000 + (__u64)r * 0x8000;	/* in the 4 MiB of RAM */

		rc |= system(cmd);
		guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_READ, BDF_DEV, iova, 0x1000);
		if (address_space_rw(dev.as, iova, 0, buf, 64, false) != 0) {
			lost++;
			printf("  reload %d: MAP lost\n", r);
		}
		rc |= system(cmd);
		guest_hc(0, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_READ, BDF_DEV, iova, 0x1000);
		if (address_space_rw(dev.as, iova, 0, buf, 64, false) != QEMU_MEMTX_ACCESS_ERROR) {
			lost++;
			printf("  reload %d: UNMAP lost\n", r);
		}
	}
	ASSERT_OK(rc, "pviommuctl load, six times");
	ASSERT_EQ(lost, 0, "no MAP or UNMAP lost across reloads");
}

/*
 * A strict UNMAP while QEMU holds the range through address_space_map()
 * (zero-copy I/O in flight): reported (violation, reason in-flight,
 * allowed: it cannot be stopped); after address_space_unmap() nothing is.
 */
static void t_inflight(void)
{
	uint64_t len = 0x800;
	__u64 v0, v1;
	void *p;

	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_WRITE, BDF_DEV, 0x3f0000, 0x1000);
	p = address_space_map(dev.as, 0x3f0000, &len, true, 0);
	ASSERT_TRUE(p != NULL, "the device maps its buffer");
	v0 = stat(PVIOMMU_ST_VIOLATION);
	guest_hc(0, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_WRITE, BDF_DEV, 0x3f0000, 0x1000);
	v1 = stat(PVIOMMU_ST_VIOLATION);
	ASSERT_EQ(v1 - v0, 1, "unmap while mapped in QEMU: reported");
	address_space_unmap(dev.as, p, len, true, len);
	/* the ordinary order: the device is done before the guest unmaps */
	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_WRITE, BDF_DEV, 0x3f0000, 0x1000);
	len = 0x800;
	p = address_space_map(dev.as, 0x3f0000, &len, true, 0);
	address_space_unmap(dev.as, p, len, true, len);
	guest_hc(0, PVIOMMU_OP_UNMAP, PVIOMMU_PERM_WRITE, BDF_DEV, 0x3f0000, 0x1000);
	ASSERT_EQ(stat(PVIOMMU_ST_VIOLATION) - v1, 0, "after address_space_unmap: nothing");
}

/* a machine reset purges the guest's mappings: back to RESERVED */
static void t_reset(void)
{
	uint8_t buf[64];
	struct pviommu_domain d;
	__u32 me = getpid();

	guest_hc(0, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	guest_hc(0, PVIOMMU_OP_DEV_ADD, 0, BDF_DEV, 0, 0);
	guest_hc(0, PVIOMMU_OP_MAP, PVIOMMU_PERM_READ, BDF_DEV, 0x3e0000, 0x1000);
	ASSERT_EQ(address_space_rw(dev.as, 0x3e0000, 0, buf, 64, false), 0, "mapped before");
	qemu_system_reset(0);
	ASSERT_EQ(resets, 1, "the reset itself ran");
	ASSERT_OK(bpf_map_lookup_elem(dom_fd, &me, &d), "domain kept");
	ASSERT_EQ(d.flags, PVIOMMU_DOM_RESERVED, "back to reserved");
	ASSERT_EQ(d.nr_records, 0, "no record left");
	/* the new guest has not registered: its devices are not protected */
	ASSERT_EQ(address_space_rw(dev.as, 0x3e0000, 0, buf, 64, false), 0,
		  "unprotected after reset");
	guest_hc(0, PVIOMMU_OP_REGISTER, 0, 0, 0, 0);
	guest_hc(0, PVIOMMU_OP_DEV_ADD, 0, BDF_DEV, 0, 0);
	ASSERT_EQ(address_space_rw(dev.as, 0x3e0000, 0, buf, 64, false),
		  QEMU_MEMTX_ACCESS_ERROR, "the old mapping is gone for the new guest");
}

/* ---- the microbenchmark ------------------------------------------------ */

typedef MemTxResult (*rw_fn)(void *, uint64_t, uint32_t, void *, uint64_t, bool);

/*
 * ns per call of f, n reads of len bytes at addr. Every call must succeed: a
 * refused one would time the deny path, so any is a failure (not ok).
 */
static double bench(rw_fn f, void *as, uint64_t addr, uint64_t len, long n)
{
	static uint8_t buf[0x2000];
	double t0 = now_ns(), ns;
	long bad = 0;

	for (long i = 0; i < n; i++)
		bad += f(as, addr, 0, buf, len, false) != QEMU_MEMTX_OK;
	ns = (now_ns() - t0) / n;
	if (bad) {
		printf("not ok bench: %ld of %ld reads of %llu bytes at 0x%llx failed\n", bad, n,
		       (unsigned long long)len, (unsigned long long)addr);
		tl_fail++;
	}
	return ns;
}

/* the detoured calls, on the ranges t_register mapped; bare: the call before any detour */
static void bench_detoured(double bare, long n)
{
	double sys_ns = bench(address_space_rw, sys.as, 0x100000, 64, n);
	double unprot = bench(address_space_rw, other.as, 0x100000, 64, n);
	double prot = bench(address_space_rw, dev.as, 0x100000, 64, n);
	double prot2 = bench(address_space_rw, dev.as, 0x100ff0, 0x1020, n / 4);
	/* the same 3-page memcpy without the detour, for the ratio */
	double bare2 = bench(address_space_rw_impl, dev.as, 0x100ff0, 0x1020, n / 4);

	printf("bench: bare call (64 B copy, no detour):          %6.1f ns/call\n", bare);
	printf("bench: detoured, not a device address space:      %6.1f ns/call (+%.1f)\n",
	       sys_ns, sys_ns - bare);
	printf("bench: detoured, device not protected:            %6.1f ns/call (+%.1f)\n",
	       unprot, unprot - bare);
	printf("bench: detoured, protected, allowed (1 page):     %6.1f ns/call (+%.1f)\n",
	       prot, prot - bare);
	printf("bench: detoured, protected, allowed (3 pages, 4 KiB copy): %6.1f ns/call "
	       "(bare %.1f, +%.1f)\n", prot2, bare2, prot2 - bare2);
}

int main(int argc, char **argv)
{
	int do_test = 1, do_bench = 1;
	long n = 5000000;
	double bare = 0;
	void *h;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_inproc LIB [--test|--bench] [N]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--test"))
			do_bench = 0;
		else if (!strcmp(argv[i], "--bench"))
			do_test = 0;
		else
			n = atol(argv[i]);
	}
	fake_dev_init(&dev, "e1000", 0x20);
	fake_dev_init(&other, "virtio-net-pci", 0x28);
	fake_sys_init(&sys);
	/* a pci-bridge at 00:10.0 whose secondary bus (1) holds a device at devfn 0x20 */
	fake_dev_init(&bridge, "pci-bridge", 0x80);
	bridge.config[QEMU_PCI_SECONDARY_BUS] = 1;
	*(char **)(bus1.mem + QEMU_PCIBUS_PARENT_DEV_OFF) = bridge.mem;
	fake_dev_init_on(&bdev, "edu", 0x20, &bus1);
	if (do_bench) {
		bare = bench(address_space_rw, dev.as, 0x100000, 64, n);
	}

	h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		printf("not ok dlopen: %s\n", dlerror());
		return tl_done("inproc-lib") | 1;
	}
	dom_fd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 0);
	stats_fd = pv_obj_get(NULL, PVIOMMU_MAP_STATS, 1);
	if (dom_fd < 0 || stats_fd < 0) {
		printf("not ok pins: pviommu not loaded under %s\n", pv_pin_dir());
		return 1;
	}
	SUBTEST("passthrough before register", t_passthrough());
	SUBTEST("TCG transport: register, dev-add, map via cpuid", t_register());
	/* before the tests: they unmap, reset and reload what t_register mapped */
	if (do_bench)
		bench_detoured(bare, n);
	if (do_test) {
		SUBTEST("allow and deny per entry point", t_deny());
		SUBTEST("MemoryRegionCache: checked per access, unmap revokes", t_cache());
		SUBTEST("device behind a bridge: its own bus number, followed live", t_bridge());
		SUBTEST("audit mode and rate-limited events", t_audit_and_events());
		SUBTEST("kill mode (forked child domain)", t_kill());
		SUBTEST("unmap while QEMU holds a map (I/O in flight)", t_inflight());
		SUBTEST("machine reset purges the mappings", t_reset());
		if (getenv("PVIOMMUCTL"))
			SUBTEST("reload: the held program goes stale, nothing is lost",
				t_reload(getenv("PVIOMMUCTL")));
	}
	return tl_done("inproc-lib");
}
