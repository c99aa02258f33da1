// SPDX-License-Identifier: GPL-2.0
/*
 * pvoldops.ko - a DMA layer of its own under the devices it is given, for
 * tests: the devices get dma_map_ops that translate nothing (the DMA
 * address is the physical one, as dma-direct without swiotlb gives) but are
 * not dma-direct, so pviommu.ko loaded after it wraps these ops instead of
 * calling dma-direct (pviommu_map_page and the other old-ops paths: the
 * layout a guest with another IOMMU driver's or swiotlb's ops has).
 *
 *   insmod pvoldops.ko devices=0000:00:04.0,0000:00:06.0
 *
 * Each device's driver is unbound, the ops set, the driver bound again. The
 * DMA masks are honoured (a buffer beyond one fails its mapping: nothing
 * bounces). /sys/module/pvoldops/parameters/calls counts every call of these
 * ops (sg_calls: of map_sg, which pvoldops_one counts once per segment too),
 * so a test can show that the DMA it watched went through them. The
 * module cannot be unloaded: pviommu.ko keeps a pointer to its ops.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/dma-map-ops.h>
#include <linux/scatterlist.h>
#include <linux/gfp.h>

#define PVOLDOPS_MAX	8

static char *devices = "";
module_param(devices, charp, 0444);
MODULE_PARM_DESC(devices, "PCI devices (DDDD:BB:DD.F, comma-separated) to put under these ops");

static atomic64_t pvoldops_calls = ATOMIC64_INIT(0);
static atomic64_t pvoldops_sg = ATOMIC64_INIT(0);

static int count_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(kp->arg));
}

static const struct kernel_param_ops count_ops = { .get = count_get };
module_param_cb(calls, &count_ops, &pvoldops_calls, 0444);
MODULE_PARM_DESC(calls, "calls of these DMA ops so far (read only)");
module_param_cb(sg_calls, &count_ops, &pvoldops_sg, 0444);
MODULE_PARM_DESC(sg_calls, "of which map_sg (read only)");

static dma_addr_t pvoldops_one(struct device *dev, phys_addr_t phys, size_t size)
{
	dma_addr_t dma = (dma_addr_t)phys;

	atomic64_inc(&pvoldops_calls);
	if (size && dma + size - 1 > min_not_zero(*dev->dma_mask, dev->bus_dma_limit))
		return DMA_MAPPING_ERROR;
	return dma;
}

static dma_addr_t pvoldops_map_page(struct device *dev, struct page *page, unsigned long offset,
				    size_t size, enum dma_data_direction dir, unsigned long attrs)
{
	return pvoldops_one(dev, page_to_phys(page) + offset, size);
}

static void pvoldops_unmap_page(struct device *dev, dma_addr_t dma, size_t size,
				enum dma_data_direction dir, unsigned long attrs)
{
	atomic64_inc(&pvoldops_calls);
}

static int pvoldops_map_sg(struct device *dev, struct scatterlist *sgl, int nents,
			   enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *s;
	int i;

	atomic64_inc(&pvoldops_sg);
	for_each_sg(sgl, s, nents, i) {
		s->dma_address = pvoldops_one(dev, sg_phys(s), s->length);
		if (s->dma_address == DMA_MAPPING_ERROR)
			return -EIO;
		sg_dma_len(s) = s->length;
	}
	return nents;
}

static void pvoldops_unmap_sg(struct device *dev, struct scatterlist *sgl, int nents,
			      enum dma_data_direction dir, unsigned long attrs)
{
	atomic64_inc(&pvoldops_calls);
}

static void *pvoldops_alloc(struct device *dev, size_t size, dma_addr_t *dma, gfp_t gfp,
			    unsigned long attrs)
{
	u64 mask = dev->coherent_dma_mask;
	struct page *page;

	atomic64_inc(&pvoldops_calls);
	if (mask < DMA_BIT_MASK(32))
		gfp |= GFP_DMA;
	else if (mask < DMA_BIT_MASK(64))
		gfp |= GFP_DMA32;
	page = alloc_pages(gfp | __GFP_ZERO, get_order(size));
	if (!page)
		return NULL;
	*dma = page_to_phys(page);
	if (*dma + size - 1 > mask) {
		__free_pages(page, get_order(size));
		return NULL;
	}
	return page_address(page);
}

static void pvoldops_free(struct device *dev, size_t size, void *vaddr, dma_addr_t dma,
			  unsigned long attrs)
{
	atomic64_inc(&pvoldops_calls);
	free_pages((unsigned long)vaddr, get_order(size));
}

static struct page *pvoldops_alloc_pages(struct device *dev, size_t size, dma_addr_t *dma,
					 enum dma_data_direction dir, gfp_t gfp)
{
	void *vaddr = pvoldops_alloc(dev, size, dma, gfp, 0);

	return vaddr ? virt_to_page(vaddr) : NULL;
}

static void pvoldops_free_pages(struct device *dev, size_t size, struct page *page,
				dma_addr_t dma, enum dma_data_direction dir)
{
	pvoldops_free(dev, size, page_address(page), dma, 0);
}

/* peer-to-peer MMIO: the same identity, a resource is no page of RAM */
static dma_addr_t pvoldops_map_resource(struct device *dev, phys_addr_t phys, size_t size,
					enum dma_data_direction dir, unsigned long attrs)
{
	return pvoldops_one(dev, phys, size);
}

static void pvoldops_unmap_resource(struct device *dev, dma_addr_t dma, size_t size,
				    enum dma_data_direction dir, unsigned long attrs)
{
	atomic64_inc(&pvoldops_calls);
}

static const struct dma_map_ops pvoldops_ops = {
	.map_page	= pvoldops_map_page,
	.unmap_page	= pvoldops_unmap_page,
	.map_sg		= pvoldops_map_sg,
	.unmap_sg	= pvoldops_unmap_sg,
	.alloc		= pvoldops_alloc,
	.free		= pvoldops_free,
	.alloc_pages	= pvoldops_alloc_pages,
	.free_pages	= pvoldops_free_pages,
	.map_resource	= pvoldops_map_resource,
	.unmap_resource	= pvoldops_unmap_resource,
};

static struct pci_dev *pvoldops_devs[PVOLDOPS_MAX];

/* the device's driver unbound, ops set (or taken back: NULL), driver bound again */
static int pvoldops_set(struct pci_dev *pdev, const struct dma_map_ops *ops)
{
	int r;

	device_release_driver(&pdev->dev);
	set_dma_ops(&pdev->dev, ops);
	r = device_attach(&pdev->dev);
	pci_info(pdev, "pvoldops: DMA ops %s, driver %s\n", ops ? "set" : "taken back",
		 r > 0 ? "bound again" : "not bound");
	return r < 0 ? r : 0;
}

static int pvoldops_take(const char *name, struct pci_dev **out)
{
	unsigned int dom, bus, slot, fn;
	struct pci_dev *pdev;
	int r;

	if (sscanf(name, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
		return -EINVAL;
	pdev = pci_get_domain_bus_and_slot(dom, bus, PCI_DEVFN(slot, fn));
	if (!pdev)
		return -ENODEV;
	if (get_dma_ops(&pdev->dev)) {	/* something else's already */
		pci_dev_put(pdev);
		return -EBUSY;
	}
	r = pvoldops_set(pdev, &pvoldops_ops);
	if (r) {
		pvoldops_set(pdev, NULL);
		pci_dev_put(pdev);
		return r;
	}
	*out = pdev;	/* the reference is kept: the device keeps the ops */
	return 0;
}

static int __init pvoldops_init(void)
{
	char *list, *p, *name;
	int n = 0, r = 0;

	list = kstrdup(devices, GFP_KERNEL);
	if (!list)
		return -ENOMEM;
	p = list;
	while (!r && (name = strsep(&p, ",")) != NULL) {
		if (!*name)
			continue;
		if (n == PVOLDOPS_MAX) {
			r = -E2BIG;
			break;
		}
		r = pvoldops_take(name, &pvoldops_devs[n]);
		if (r)
			pr_err("pvoldops: %s: %d\n", name, r);
		else
			n++;
	}
	kfree(list);
	if (!r && !n) {
		pr_err("pvoldops: no devices= given\n");
		r = -EINVAL;
	}
	if (r) {	/* the module goes: no device may keep its ops */
		while (n--) {
			pvoldops_set(pvoldops_devs[n], NULL);
			pci_dev_put(pvoldops_devs[n]);
		}
	}
	return r;
}
module_init(pvoldops_init);
/* no module_exit: pviommu.ko may hold a pointer to pvoldops_ops */

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pviommu tests: DMA ops of another layer (identity) under given devices");
