// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * vfio_driver - a small userspace VFIO driver for QEMU's edu device, run in
 * L1 by tests/l1/l1-vfio.sh against the VFIO gate (bpf/pviommu_lsm.bpf.c).
 *
 *   vfio_driver BDF        (edu already bound to vfio-pci; pviommu and the
 *                           gate loaded)
 *
 * This process is the domain (pv_hypercall through the pinned
 * kvm_hypercall program). Prints one "NAME ok|fail [detail]" line per
 * check and "value KEY VAL" lines; exit 0 when every check passed.
 *   iova A = 0x100000  authorized rw by pviommu, VFIO-mapped: works
 *   iova B = 0x200000  never authorized: MAP_DMA gets EPERM + an LSM event
 *   iova C = 0x300000  authorized read-only: rw MAP_DMA EPERM, r works
 *   iova D = 0x400000  64 bytes authorized write-only: its page w works, rw or 2 pages EPERM
 *   iova U = 0x500000  mapped before REGISTER (unprotected domain): works
 * edu (BAR0 mmap: 0x80 src, 0x88 dst, 0x90 count, 0x98 cmd; its buffer at
 * 0x40000, < 4096 bytes per transfer) copies A -> edu -> A + 2048 (round
 * trip through the emulated IOMMU), then edu -> B: B is not in the IOMMU,
 * the DMA faults and B's buffer stays unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/vfio.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pvlib.h"


#define IOVA_A	0x100000ull
#define IOVA_B	0x200000ull
#define IOVA_C	0x300000ull
#define IOVA_D	0x400000ull
#define IOVA_U	0x500000ull
#define PG	4096ull
#define EDU_BUF	0x40000ull
#define XFER	1024u

static int failed;
static int ev_lsm_denied_b, ev_lsm_denied_c, ev_seen, ev_audit_b, ev_nodev;
static __u32 self;

static void check(const char *name, int ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#include <stdarg.h>
static void check(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s %s", name, ok ? "ok" : "fail");
	if (fmt) {
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
	if (!ok)
		failed++;
}

static int dma_map(int container, void *va, __u64 iova, __u64 size, __u32 flags)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .vaddr = (__u64)(unsigned long)va,
		.iova = iova, .size = size,
	};

	return ioctl(container, VFIO_IOMMU_MAP_DMA, &m) ? -errno : 0;
}

static int dma_unmap(int container, __u64 iova, __u64 size)
{
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = sizeof(u), .iova = iova, .size = size,
	};

	return ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u) ? -errno : 0;
}

static int ev_cb(void *ctx, void *data, size_t len)
{
	const struct pviommu_event *ev = data;

	if (len < sizeof(*ev) || ev->plane != PVIOMMU_PLANE_LSM)
		return 0;
	ev_seen++;
	printf("value lsm_event dom=%u bdf=%#x addr=%#llx len=%llu perm=%u err=%d action=%u\n",
	       ev->domain, ev->bdf, (unsigned long long)ev->addr,
	       (unsigned long long)ev->len, ev->perm, ev->err, ev->action);
	if (ev->domain != self || ev->type != PVIOMMU_EV_VIOLATION)
		return 0;
	if (ev->action == PVIOMMU_ACT_ALLOWED && ev->addr == IOVA_B)
		ev_audit_b++;
	if (ev->action != PVIOMMU_ACT_DENIED)
		return 0;
	if (ev->bdf == 0xffffffffu && ev->addr == IOVA_A)
		ev_nodev++;
	else if (ev->addr == IOVA_B && ev->len == PG && ev->err == -1 /* unmapped */)
		ev_lsm_denied_b++;
	else if (ev->addr == IOVA_C && ev->perm == PVIOMMU_PERM_RW &&
		 ev->err == -2 /* PV_DENY_PERM */)
		ev_lsm_denied_c++;
	return 0;
}

/* edu: one DMA, waits for the engine; 0 or -ETIMEDOUT */
static int edu_dma(volatile __u8 *bar, __u64 src, __u64 dst, __u32 cnt, int to_ram)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	*(volatile __u64 *)(bar + 0x80) = src;
	*(volatile __u64 *)(bar + 0x88) = dst;
	*(volatile __u64 *)(bar + 0x90) = cnt;
	*(volatile __u64 *)(bar + 0x98) = 1 | (to_ram ? 2 : 0);
	for (int i = 0; i < 500; i++) {
		if (!(*(volatile __u64 *)(bar + 0x98) & 1))
			return 0;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

int main(int argc, char **argv)
{
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	struct vfio_region_info ri = { .argsz = sizeof(ri) };
	struct pviommu_vfio_devs vd = {};
	char path[PATH_MAX], link[PATH_MAX], *g;
	int container, group, dev, hc, devs_fd, evfd, err;
	struct ring_buffer *rb;
	volatile __u8 *bar;
	__u8 *buf, *a, *b, *c, *u;
	__u32 bdf;
	__u16 cmdw;
	ssize_t n;
	int i;

	if (argc != 2 || pv_parse_bdf(argv[1], &bdf)) {
		fprintf(stderr, "usage: vfio_driver SSSS:BB:DD.F\n");
		return 2;
	}
	self = getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* ---- VFIO: container, group, device, BAR0 ---- */
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", argv[1]);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		check("vfio-group", 0, "%s: %s", path, strerror(errno));
		return 1;
	}
	link[n] = 0;
	g = strrchr(link, '/');
	snprintf(path, sizeof(path), "/dev/vfio/%.64s", g ? g + 1 : link);
	container = open("/dev/vfio/vfio", O_RDWR);
	group = open(path, O_RDWR);
	if (container < 0 || group < 0) {
		check("vfio-open", 0, "container %d group %s %d: %s", container, path,
		      group, strerror(errno));
		return 1;
	}
	printf("value vfio_group %s\n", path);
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
	    !ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) ||
	    ioctl(group, VFIO_GROUP_GET_STATUS, &gs) ||
	    !(gs.flags & VFIO_GROUP_FLAGS_VIABLE) ||
	    ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) ||
	    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU)) {
		check("vfio-setup", 0, "%s (group flags %#x)", strerror(errno), gs.flags);
		return 1;
	}
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, argv[1]);
	ri.index = VFIO_PCI_BAR0_REGION_INDEX;
	if (dev < 0 || ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &ri) ||
	    !(ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		check("vfio-device", 0, "%s", strerror(errno));
		return 1;
	}
	bar = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, ri.offset);
	if (bar == MAP_FAILED) {
		check("vfio-bar0-mmap", 0, "%s", strerror(errno));
		return 1;
	}
	/* bus master on (config space region) */
	ri.index = VFIO_PCI_CONFIG_REGION_INDEX;
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &ri) ||
	    pread(dev, &cmdw, 2, ri.offset + 4) != 2) {
		check("vfio-config", 0, "%s", strerror(errno));
		return 1;
	}
	cmdw |= 0x6;	/* memory + bus master */
	if (pwrite(dev, &cmdw, 2, ri.offset + 4) != 2) {
		check("vfio-config", 0, "write: %s", strerror(errno));
		return 1;
	}
	printf("value edu_id %#x\n", *(volatile __u32 *)bar);
	check("vfio-setup", (*(volatile __u32 *)bar & 0xff) == 0xed, "edu id %#x",
	      *(volatile __u32 *)bar);

	buf = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	memset(buf, 0, 4 * PG);
	a = buf;
	b = buf + PG;
	c = buf + 2 * PG;
	u = buf + 3 * PG;

	/* ---- before REGISTER: this domain is not protected, VFIO untouched ---- */
	err = dma_map(container, u, IOVA_U, PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-unprotected-map-allowed", !err, "MAP_DMA %s", strerror(-err));
	if (!err) {
		err = dma_unmap(container, IOVA_U, PG);
		check("lsm-unprotected-unmap", !err, "%s", strerror(-err));
	}

	/* ---- the domain: REGISTER, DEV_ADD edu, MAP A rw, MAP C r ---- */
	hc = pv_obj_get(NULL, "progs/pviommu_kvm_hypercall", 0);
	devs_fd = pv_obj_get(NULL, "pviommu_vfio_devs", 0);
	evfd = pv_obj_get(NULL, PVIOMMU_MAP_EVENTS, 0);
	if (hc < 0 || devs_fd < 0 || evfd < 0) {
		check("pviommu-pins", 0, "hc %d devs %d events %d", hc, devs_fd, evfd);
		return 1;
	}
	rb = ring_buffer__new(evfd, ev_cb, NULL, NULL);
	if (!rb) {
		check("pviommu-events", 0, "%s", strerror(errno));
		return 1;
	}
	ring_buffer__consume(rb);	/* older events */
	err = pv_hypercall(hc, PVIOMMU_OP_REGISTER, 0, 0, 0, 0, 0);
	if (!err)
		err = pv_hypercall(hc, PVIOMMU_OP_DEV_ADD, 0, bdf, 0, 0, 0);
	if (!err)
		err = pv_hypercall(hc, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, bdf, IOVA_A, PG, 1);
	if (!err)
		err = pv_hypercall(hc, PVIOMMU_OP_MAP, PVIOMMU_PERM_READ, bdf, IOVA_C, PG, 2);
	vd.nr = 1;
	vd.bdf[0] = bdf;
	if (!err && bpf_map_update_elem(devs_fd, &self, &vd, BPF_ANY))
		err = -errno;
	check("pviommu-authorize", !err, "register/dev_add/map: %d", err);
	if (err)
		return 1;

	/* ---- the gate ---- */
	err = dma_map(container, b, IOVA_B, PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-unauthorized-map-eperm", err == -EPERM, "MAP_DMA B: %s", strerror(-err));
	err = dma_map(container, a, IOVA_A, 2 * PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-partly-authorized-map-eperm", err == -EPERM, "MAP_DMA A+2 pages: %s",
	      strerror(-err));
	err = dma_map(container, c, IOVA_C, PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-perm-exceeded-map-eperm", err == -EPERM, "MAP_DMA C rw (authorized r): %s",
	      strerror(-err));
	err = dma_map(container, c, IOVA_C, PG, VFIO_DMA_MAP_FLAG_READ);
	check("lsm-perm-subset-map-allowed", !err, "MAP_DMA C r: %s", strerror(-err));
	err = dma_map(container, a, IOVA_A, PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-authorized-map-allowed", !err, "MAP_DMA A rw: %s", strerror(-err));

	ring_buffer__consume(rb);
	check("lsm-event-unauthorized", ev_lsm_denied_b == 1, "%d events for B (%d LSM events)",
	      ev_lsm_denied_b, ev_seen);
	check("lsm-event-perm", ev_lsm_denied_c == 1, "%d events for C rw", ev_lsm_denied_c);
	check("lsm-event-count", ev_seen == 3, "%d LSM events (3 denials)", ev_seen);

	/* ---- edu DMA through the emulated IOMMU ---- */
	for (i = 0; i < (int)XFER; i++)
		a[i] = (__u8)(i * 7 + 3);
	memset(a + 2048, 0, XFER);
	err = edu_dma(bar, IOVA_A, EDU_BUF, XFER, 0);
	if (!err)
		err = edu_dma(bar, EDU_BUF, IOVA_A + 2048, XFER, 1);
	check("edu-dma-round-trip", !err && !memcmp(a, a + 2048, XFER),
	      "rc %d, first bytes %02x %02x %02x", err, a[2048], a[2049], a[2050]);

	/* edu -> B: never VFIO-mapped (the gate refused it): the IOMMU faults */
	memset(b, 0xee, PG);
	err = edu_dma(bar, EDU_BUF, IOVA_B, XFER, 1);
	for (i = 0; i < (int)PG && b[i] == 0xee; i++)
		;
	check("edu-dma-unmapped-iova-blocked", !err && i == (int)PG,
	      "rc %d, B unchanged up to byte %d", err, i);
	/* and to the read-only C: a device write must fault too */
	memset(c, 0xcc, PG);
	err = edu_dma(bar, EDU_BUF, IOVA_C, XFER, 1);
	for (i = 0; i < (int)PG && c[i] == 0xcc; i++)
		;
	check("edu-dma-readonly-iova-blocked", !err && i == (int)PG,
	      "rc %d, C unchanged up to byte %d", err, i);

	/* ---- UNMAP always passes; then the domain goes ---- */
	err = dma_unmap(container, IOVA_A, PG);
	check("lsm-unmap-allowed", !err, "UNMAP_DMA A: %s", strerror(-err));
	err = dma_unmap(container, IOVA_C, PG);
	check("lsm-unmap-allowed-c", !err, "UNMAP_DMA C: %s", strerror(-err));

	/* a sub-page record: its page may be mapped write-only (an IOMMU maps pages), no more */
	err = pv_hypercall(hc, PVIOMMU_OP_MAP, PVIOMMU_PERM_WRITE, bdf, IOVA_D + 0x100, 64, 4);
	err = err ? err : dma_map(container, a, IOVA_D, PG, VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-subpage-record-page-allowed", !err, "MAP_DMA D w (64 bytes w mapped): %s",
	      strerror(-err));
	if (!err)
		dma_unmap(container, IOVA_D, PG);
	err = dma_map(container, a, IOVA_D, PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-subpage-record-direction-eperm", err == -EPERM, "MAP_DMA D rw: %s",
	      strerror(-err));
	err = dma_map(container, a, IOVA_D, 2 * PG, VFIO_DMA_MAP_FLAG_WRITE);
	check("lsm-subpage-record-next-page-eperm", err == -EPERM, "MAP_DMA D w 2 pages: %s",
	      strerror(-err));

	/* audit mode (the domain's own): allowed and reported */
	{
		int dfd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 0);
		struct pviommu_domain dv;

		err = dfd < 0 ? dfd : bpf_map_lookup_elem(dfd, &self, &dv) ? -errno : 0;
		if (!err) {
			dv.mode = PVIOMMU_MODE_AUDIT;
			err = bpf_map_update_elem(dfd, &self, &dv, BPF_EXIST) ? -errno : 0;
		}
		err = err ? err : dma_map(container, b, IOVA_B, PG,
					  VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
		ring_buffer__consume(rb);
		check("lsm-audit-mode-map-allowed", !err && ev_audit_b == 1,
		      "MAP_DMA B in audit mode: %s, %d ALLOWED events", strerror(-err), ev_audit_b);
		dma_unmap(container, IOVA_B, PG);
		if (dfd >= 0 && !bpf_map_lookup_elem(dfd, &self, &dv)) {
			dv.mode = PVIOMMU_MODE_DENY;
			bpf_map_update_elem(dfd, &self, &dv, BPF_EXIST);
		}
	}
	/* a protected domain with no VFIO devices named: fail closed */
	bpf_map_delete_elem(devs_fd, &self);
	err = dma_map(container, a, IOVA_A, PG, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	ring_buffer__consume(rb);
	check("lsm-no-devices-fail-closed", err == -EPERM && ev_nodev == 1,
	      "MAP_DMA A without pviommu_vfio_devs: %s, %d events", strerror(-err), ev_nodev);
	if (!err)
		dma_unmap(container, IOVA_A, PG);

	err = pv_hypercall(hc, PVIOMMU_OP_UNREGISTER, 0, 0, 0, 0, 0);
	/* unprotected again: B maps */
	err = err ? err : dma_map(container, b, IOVA_B, PG, VFIO_DMA_MAP_FLAG_READ);
	check("lsm-after-unregister-map-allowed", !err, "%s", strerror(-err));
	ring_buffer__free(rb);
	return failed ? 1 : 0;
}
