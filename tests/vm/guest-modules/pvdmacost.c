// SPDX-License-Identifier: GPL-2.0
/*
 * pvdmacost.ko - what the guest pays per DMA API call (make bench: tests/bench/bench_guest_ops.sh).
 *
 * At load, on the PCI device dev= (a device with its driver bound, whose
 * DMA ops are pviommu.ko's when pviommu.ko protects it, else the kernel's
 * direct mapping), in the guest's own time (ktime_get_ns):
 *   page   'pairs' times: dma_map_page of one page, dma_unmap_page of it
 *          (a NIC's buffer)
 *   sg16   'pairs' / 16 times: 16 pages mapped one by one, then unmapped
 *          (a 64 KiB block request, as virtio maps it: a call per page)
 * and prints one line:
 *   PVDMACOST dev=B pairs=N page_ns=X sg16_ns=Y
 * X and Y are ns per map + unmap pair. With conflict=1 it times nothing and
 * maps one page over and over the way lazy mode must get right: the same
 * range again (a queued unmap cancelled), then at the same address another
 * size, another direction, and the first again (a queued unmap that differs
 * must reach the host before the MAP, which the host refuses otherwise):
 *   PVDMACOST dev=B conflict maps=N failed=M
 * M is the maps dma_mapping_error() refused. Nothing is held afterwards: rmmod it
 * to run it again (a failing init would be run twice: busybox insmod tries
 * init_module again when finit_module fails).
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/ktime.h>

static char *dev = "0000:00:04.0";
module_param(dev, charp, 0444);
MODULE_PARM_DESC(dev, "PCI device whose DMA API is timed (default 0000:00:04.0)");

static unsigned int pairs = 20000;
module_param(pairs, uint, 0444);
MODULE_PARM_DESC(pairs, "map + unmap pairs per figure (default 20000)");

static bool conflict;
module_param(conflict, bool, 0444);
MODULE_PARM_DESC(conflict, "map one page at one address with changing sizes and directions");

#define SEGS	16

/* conflict=1: maps that failed, of the *n made */
static unsigned int run_conflict(struct device *d, struct page *pg, unsigned int *n)
{
	static const struct { size_t size; enum dma_data_direction dir; } seq[] = {
		{ PAGE_SIZE, DMA_TO_DEVICE }, { PAGE_SIZE, DMA_TO_DEVICE },
		{ PAGE_SIZE / 2, DMA_TO_DEVICE }, { PAGE_SIZE / 2, DMA_TO_DEVICE },
		{ PAGE_SIZE, DMA_FROM_DEVICE }, { PAGE_SIZE, DMA_BIDIRECTIONAL },
		{ PAGE_SIZE, DMA_TO_DEVICE }, { 64, DMA_FROM_DEVICE }, { PAGE_SIZE, DMA_TO_DEVICE },
	};
	unsigned int i, r, failed = 0;

	*n = 0;
	for (r = 0; r < 8; r++) {
		for (i = 0; i < ARRAY_SIZE(seq); i++) {
			dma_addr_t a = dma_map_page(d, pg, 0, seq[i].size, seq[i].dir);

			(*n)++;
			if (dma_mapping_error(d, a)) {
				failed++;
				continue;
			}
			dma_unmap_page(d, a, seq[i].size, seq[i].dir);
		}
	}
	return failed;
}

/* ns per pair of n single-page map + unmap pairs, or -errno */
static s64 cost_page(struct device *d, struct page *pg, unsigned int n)
{
	u64 t0 = ktime_get_ns();
	unsigned int i;

	for (i = 0; i < n; i++) {
		dma_addr_t a = dma_map_page(d, pg, 0, PAGE_SIZE, DMA_TO_DEVICE);

		if (dma_mapping_error(d, a))
			return -EIO;
		dma_unmap_page(d, a, PAGE_SIZE, DMA_TO_DEVICE);
	}
	return (s64)((ktime_get_ns() - t0) / n);
}

/* ns per pair of n / SEGS rounds of SEGS maps then SEGS unmaps, or -errno */
static s64 cost_sg16(struct device *d, struct page **pg, unsigned int n)
{
	dma_addr_t a[SEGS];
	unsigned int r, i, rounds = n / SEGS ? n / SEGS : 1;
	u64 t0 = ktime_get_ns();

	for (r = 0; r < rounds; r++) {
		for (i = 0; i < SEGS; i++) {
			a[i] = dma_map_page(d, pg[i], 0, PAGE_SIZE, DMA_FROM_DEVICE);
			if (dma_mapping_error(d, a[i])) {
				while (i--)
					dma_unmap_page(d, a[i], PAGE_SIZE, DMA_FROM_DEVICE);
				return -EIO;
			}
		}
		for (i = 0; i < SEGS; i++)
			dma_unmap_page(d, a[i], PAGE_SIZE, DMA_FROM_DEVICE);
	}
	return (s64)((ktime_get_ns() - t0) / (rounds * SEGS));
}

static int __init pvdmacost_init(void)
{
	unsigned int dom, bus, slot, fn, i;
	struct page *pg[SEGS] = { NULL };
	struct pci_dev *pdev;
	s64 page_ns = -ENOMEM, sg_ns = -ENOMEM;

	if (sscanf(dev, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4) {
		pr_err("PVDMACOST dev=%s: not a PCI address\n", dev);
		return -EINVAL;
	}
	pdev = pci_get_domain_bus_and_slot(dom, bus, PCI_DEVFN(slot, fn));
	if (!pdev) {
		pr_err("PVDMACOST dev=%s: no such device\n", dev);
		return -ENODEV;
	}
	for (i = 0; i < SEGS; i++) {
		pg[i] = alloc_page(GFP_KERNEL);
		if (!pg[i])
			goto out;
	}
	if (conflict) {
		unsigned int n, failed = run_conflict(&pdev->dev, pg[0], &n);

		pr_info("PVDMACOST dev=%s conflict maps=%u failed=%u\n", dev, n, failed);
		page_ns = sg_ns = 0;
		goto out;
	}
	if (!pairs)
		pairs = 1;
	page_ns = cost_page(&pdev->dev, pg[0], pairs);
	sg_ns = cost_sg16(&pdev->dev, pg, pairs);
	pr_info("PVDMACOST dev=%s pairs=%u page_ns=%lld sg16_ns=%lld\n", dev, pairs, page_ns,
		sg_ns);
out:
	for (i = 0; i < SEGS; i++)
		if (pg[i])
			__free_page(pg[i]);
	pci_dev_put(pdev);
	return page_ns < 0 || sg_ns < 0 ? -EIO : 0;
}

static void __exit pvdmacost_exit(void)
{
}

module_init(pvdmacost_init);
module_exit(pvdmacost_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pviommu bench: guest time per DMA map + unmap pair");
