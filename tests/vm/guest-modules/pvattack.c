// SPDX-License-Identifier: GPL-2.0
/*
 * pvattack.ko - rogue DMA scenarios for pviommu tests (guest side).
 *
 * Drives QEMU's edu device (1234:11e8, default 0000:00:06.0) directly: its DMA
 * engine copies between guest RAM and a 4 KiB buffer inside the device
 * (edu addresses 0x40000..0x40fff), 100 ms (virtual) after the command.
 * Every transfer here is 2 KiB from edu address 0x40000 (see XFER), except
 * the 64/65-byte ones of scenario d.
 * The device is not bound to a driver: the module takes it with
 * pci_get_domain_bus_and_slot(), enables it and bus mastering, and maps its
 * legitimate buffers through the DMA API of that device, so pviommu.ko (loaded
 * first with devices=...,0000:00:06.0) authorizes exactly those.
 *
 * Memory set up at load (all within edu's DMA mask; the pages below 16 MiB):
 *   legit   dma_alloc_coherent(edu, 4 KiB): the one buffer edu may use
 *   secret  a page with a known pattern, never mapped for any device
 *   victim  a page with a known pattern, never mapped
 *   other   a page mapped (during scenario c) for another device only
 *   sub     a page of which 64 bytes at offset 0x100 are mapped for edu (d)
 *   stale   a page mapped for edu and unmapped again (e)
 *
 * debugfs (mount -t debugfs none /sys/kernel/debug), directory pvattack/:
 *   info    addresses of the buffers, one "PVATTACK info ..." line
 *   run     write a scenario name: legit a b c d e f g h (one per write)
 *   result  the result line of the last scenario
 * Scenarios (result= is the verdict on the rogue transfer):
 *   legit  round trip legit -> edu -> legit          result=ok|broken
 *   a      edu reads the secret page, then writes its buffer to legit
 *                                                     result=leaked|not-leaked
 *   b      edu writes an attack pattern to the victim page
 *                                                     result=changed|unchanged
 *   c      edu writes into a page mapped only for the other device
 *                                                     result=changed|unchanged
 *   d      edu writes 64 bytes into the 64-byte sub-page buffer (allowed,
 *          control64=ok|broken), then 65 bytes: result = byte 65
 *                                                     result=changed|unchanged
 *   e      map a page for edu, unmap it, then edu writes it
 *                                                     result=changed|unchanged
 *   g      dma_alloc_pages() a page for edu (the DMA API's alloc_pages path),
 *          edu writes it (allowed, control=ok|broken), dma_free_pages(),
 *          then edu writes it again. The module holds a reference to the
 *          page across the free, so nothing else gets it meanwhile
 *                                                     result=changed|unchanged
 *   h      peer-to-peer MMIO: dma_map_resource() a page of a device's MMIO
 *          for edu (edu's own BAR 0; its liveness register at 0x04 reads
 *          back the inverse of what was written, standing for any peer's
 *          register), edu writes the register (allowed, control=ok|broken),
 *          dma_unmap_resource(), then edu writes it again. Needs
 *          dma_bits= (and QEMU's edu,dma_mask=) to cover the BAR
 *                                                     result=changed|unchanged
 *   f      not edu: virtio-net (vnet=, iommu_platform=on). The module
 *          revokes the whole split ring of its TX queue "output.0" with a
 *          raw UNMAP hypercall (TCG transport) while the device is live -
 *          QEMU's MemoryRegionCache of the ring stays set up - and sends
 *          one frame. The device reads the ring and writes used->idx to
 *          complete it: result = that index  result=changed|unchanged
 *          (addr/len = the ring, dir=rw; the device is broken afterwards:
 *          run f last)
 *   bench  not an attack: ns per dma_map_single + dma_unmap_single pair on
 *          edu and on the other device, and the time of 8 edu DMAs
 *   Any scenario may give result=timeout (the DMA did not finish in 2 s) or
 *   result=error. Before the rogue transfer a "PVATTACK start ..." line goes
 *   to the kernel log at KERN_ERR (it reaches a "quiet" console: the host
 *   sees it even if QEMU is killed at the transfer).
 * Lines: PVATTACK scenario=S result=R bdf=B addr=0xA len=N dir=read|write ...
 *   addr/len/dir describe the rogue transfer as pviommu sees it: dir=read is
 *   the device reading guest memory, dir=write the device writing it.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/dma-mapping.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/mutex.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/virtio.h>
#include <linux/netdevice.h>
#include <linux/etherdevice.h>
#include <linux/rtnetlink.h>
#include "pviommu.h"

#define EDU_VENDOR	0x1234
#define EDU_DEVICE	0x11e8
#define EDU_REG_ID	0x00
#define EDU_REG_LIVE	0x04	/* reads back the inverse of the last value written */
#define EDU_REG_SRC	0x80
#define EDU_REG_DST	0x88
#define EDU_REG_CNT	0x90
#define EDU_REG_CMD	0x98
#define EDU_CMD_RUN	0x1
#define EDU_CMD_TO_RAM	0x2	/* direction: edu buffer -> RAM */
#define EDU_BUF		0x40000ull
#define EDU_BUF_SIZE	4096
/*
 * QEMU 7.2's edu_check_range() treats the end of its buffer as outside it
 * (within(end, start, end) is false): a transfer that reaches 0x41000 is a
 * hw_error() and aborts QEMU. Fixed upstream; stay below it.
 */
#define XFER		2048
#define EDU_DMA_BITS	28
#define EDU_TIMEOUT_MS	2000

#define SUB_OFF		0x100
#define SUB_LEN		64

#define PAT_LEGIT	0x11
#define PAT_FILLER	0x2b
#define PAT_SECRET	0x5e
#define PAT_VICTIM	0x76
#define PAT_ATTACK	0xa7
#define PAT_OTHER	0x3c
#define PAT_SUB		0x48
#define PAT_STALE	0xc3
#define PAT_FREED	0xd5
#define PAT_MMIO	0x6d
#define LIVE_IDLE	0x5a5a5a5au

static char *edu = "0000:00:06.0";
module_param(edu, charp, 0444);
MODULE_PARM_DESC(edu, "BDF of the edu device (default 0000:00:06.0)");
static char *other = "0000:00:04.0";
module_param(other, charp, 0444);
MODULE_PARM_DESC(other, "BDF of another device for scenario c (default 0000:00:04.0, e1000)");

static unsigned int dma_bits = EDU_DMA_BITS;
module_param(dma_bits, uint, 0444);
MODULE_PARM_DESC(dma_bits, "edu's DMA mask in bits, 28 (QEMU's edu default) to 64; QEMU's "
		 "edu,dma_mask= must match. Scenario h needs edu's BAR within it");

static char *vnet = "0000:00:05.0";
module_param(vnet, charp, 0444);
MODULE_PARM_DESC(vnet, "BDF of a virtio-net device for scenario f (default 0000:00:05.0)");

static struct pci_dev *edu_pdev, *other_pdev;
static void __iomem *regs;
static bool enabled;
static void *legit;
static dma_addr_t legit_dma;
static struct page *secret_pg, *victim_pg, *other_pg, *sub_pg, *stale_pg;
static struct dentry *dir;
static DEFINE_MUTEX(lock);
static char result[512];
static char info[512];

static struct pci_dev *get_bdf(const char *s)
{
	unsigned int dom, bus, dev, fn;

	if (sscanf(s, "%x:%x:%x.%x", &dom, &bus, &dev, &fn) != 4 || dev > 31 || fn > 7)
		return NULL;
	return pci_get_domain_bus_and_slot(dom, bus, PCI_DEVFN(dev, fn));
}

/* byte i of a pattern: recognizable, position dependent */
static u8 pat(u8 seed, size_t i)
{
	return seed + (u8)(i * 7);
}

static void fill(void *p, size_t len, u8 seed)
{
	u8 *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = pat(seed, i);
}

/* 1 if p holds the pattern seed (as at offset base of it) */
static bool is_pat(const void *p, size_t len, u8 seed, size_t base)
{
	const u8 *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != pat(seed, base + i))
			return false;
	return true;
}

/* one edu DMA; to_ram: edu buffer -> RAM at addr, else RAM at addr -> edu buffer */
static int edu_dma(u64 addr, u64 len, bool to_ram)
{
	unsigned long end;

	if (readq(regs + EDU_REG_CMD) & EDU_CMD_RUN)
		return -EBUSY;
	writeq(to_ram ? EDU_BUF : addr, regs + EDU_REG_SRC);
	writeq(to_ram ? addr : EDU_BUF, regs + EDU_REG_DST);
	writeq(len, regs + EDU_REG_CNT);
	writeq(EDU_CMD_RUN | (to_ram ? EDU_CMD_TO_RAM : 0), regs + EDU_REG_CMD);
	end = jiffies + msecs_to_jiffies(EDU_TIMEOUT_MS);
	while (readq(regs + EDU_REG_CMD) & EDU_CMD_RUN) {
		if (time_after(jiffies, end))
			return -ETIMEDOUT;
		usleep_range(2000, 5000);
	}
	return 0;
}

/* put pattern seed into edu's buffer through the legit buffer (an allowed read) */
static int edu_load(u8 seed)
{
	fill(legit, EDU_BUF_SIZE, seed);
	return edu_dma(legit_dma, XFER, false);
}

static const char *errstr(int err)
{
	return err == -ETIMEDOUT ? "timeout" : "error";
}

static void announce(const char *sc, u64 addr, u64 len, const char *d)
{
	pr_err("PVATTACK start scenario=%s bdf=%s addr=0x%llx len=%llu dir=%s\n",
	       sc, pci_name(edu_pdev), addr, len, d);
}

static void report(const char *sc, const char *res, u64 addr, u64 len, const char *d,
		   const char *extra)
{
	snprintf(result, sizeof(result),
		 "PVATTACK scenario=%s result=%s bdf=%s addr=0x%llx len=%llu dir=%s%s%s\n",
		 sc, res, pci_name(edu_pdev), addr, len, d, *extra ? " " : "", extra);
	pr_info("%s", result);
}

static void sc_legit(void)
{
	int err;

	err = edu_load(PAT_LEGIT);
	if (!err) {
		memset(legit, 0, EDU_BUF_SIZE);
		err = edu_dma(legit_dma, XFER, true);
	}
	report("legit", err ? errstr(err) :
	       is_pat(legit, XFER, PAT_LEGIT, 0) ? "ok" : "broken",
	       legit_dma, XFER, "rw", "");
}

/* how many bytes of p hold seed's pattern at their place */
static unsigned int count_pat(const void *p, size_t len, u8 seed)
{
	const u8 *b = p;
	unsigned int n = 0;
	size_t i;

	for (i = 0; i < len; i++)
		n += b[i] == pat(seed, i);
	return n;
}

static void sc_a(void)
{
	char extra[64];
	void *s = page_address(secret_pg);
	u64 a = page_to_phys(secret_pg);
	const char *res;
	int err;

	fill(s, PAGE_SIZE, PAT_SECRET);
	err = edu_load(PAT_FILLER);
	if (!err) {
		announce("a", a, XFER, "read");
		err = edu_dma(a, XFER, false);	/* the rogue read */
	}
	if (!err) {
		memset(legit, 0, EDU_BUF_SIZE);
		err = edu_dma(legit_dma, XFER, true);	/* allowed write-back */
	}
	if (err)
		res = errstr(err);
	else if (is_pat(legit, XFER, PAT_SECRET, 0))
		res = "leaked";
	else if (is_pat(legit, XFER, PAT_FILLER, 0))
		res = "not-leaked";
	else if (memchr_inv(legit, *(u8 *)legit, XFER) == NULL)
		res = "not-leaked";	/* one byte value: a faulted read (an IOMMU), no secret */
	else
		res = "partly-leaked";
	snprintf(extra, sizeof(extra), "secret_bytes=%u filler_bytes=%u",
		 count_pat(legit, XFER, PAT_SECRET), count_pat(legit, XFER, PAT_FILLER));
	report("a", res, a, XFER, "read", extra);
}

/* edu writes PAT_ATTACK to addr; the page p (kernel address) holds seed around it */
static const char *rogue_write(const char *sc, u64 addr, u64 len, void *p, size_t off,
			       u8 seed)
{
	int err;

	err = edu_load(PAT_ATTACK);
	if (!err) {
		announce(sc, addr, len, "write");
		err = edu_dma(addr, len, true);
	}
	if (err)
		return errstr(err);
	return is_pat((u8 *)p + off, len, seed, off) ? "unchanged" : "changed";
}

static void sc_b(void)
{
	void *v = page_address(victim_pg);
	u64 a = page_to_phys(victim_pg);

	fill(v, PAGE_SIZE, PAT_VICTIM);
	report("b", rogue_write("b", a, XFER, v, 0, PAT_VICTIM), a, XFER, "write", "");
}

static void sc_c(void)
{
	void *o = page_address(other_pg);
	dma_addr_t d;
	char extra[96];
	const char *res;

	fill(o, PAGE_SIZE, PAT_OTHER);
	d = dma_map_single(&other_pdev->dev, o, PAGE_SIZE, DMA_FROM_DEVICE);
	if (dma_mapping_error(&other_pdev->dev, d)) {
		report("c", "error", page_to_phys(other_pg), PAGE_SIZE, "write",
		       "(dma_map_single on the other device failed)");
		return;
	}
	/* identity IOVA in this guest: what the other device got is the address */
	res = rogue_write("c", d, XFER, o, 0, PAT_OTHER);
	dma_unmap_single(&other_pdev->dev, d, PAGE_SIZE, DMA_FROM_DEVICE);
	snprintf(extra, sizeof(extra), "mapped-for=%s", pci_name(other_pdev));
	report("c", res, d, XFER, "write", extra);
}

static void sc_d(void)
{
	u8 *p = page_address(sub_pg);
	const char *ctl, *res, *first;
	char extra[96];
	dma_addr_t d;
	int err;

	fill(p, PAGE_SIZE, PAT_SUB);
	d = dma_map_single(&edu_pdev->dev, p + SUB_OFF, SUB_LEN, DMA_FROM_DEVICE);
	if (dma_mapping_error(&edu_pdev->dev, d)) {
		report("d", "error", page_to_phys(sub_pg) + SUB_OFF, SUB_LEN + 1, "write",
		       "(dma_map_single failed)");
		return;
	}
	/* control: the 64 mapped bytes may be written */
	err = edu_load(PAT_LEGIT);
	if (!err)
		err = edu_dma(d, SUB_LEN, true);
	ctl = err ? errstr(err) : is_pat(p + SUB_OFF, SUB_LEN, PAT_LEGIT, 0) ? "ok" : "broken";
	/* rogue: 65 bytes, one past the buffer */
	fill(p, PAGE_SIZE, PAT_SUB);
	res = rogue_write("d", d, SUB_LEN + 1, p, SUB_OFF, PAT_SUB);
	if (!strcmp(res, "changed") || !strcmp(res, "unchanged")) {
		/* rogue_write checked the whole range: narrow it to byte 65 */
		res = p[SUB_OFF + SUB_LEN] == pat(PAT_SUB, SUB_OFF + SUB_LEN) ?
		      "unchanged" : "changed";
		first = is_pat(p + SUB_OFF, SUB_LEN, PAT_SUB, SUB_OFF) ? "unchanged" : "changed";
	} else {
		first = "-";
	}
	dma_unmap_single(&edu_pdev->dev, d, SUB_LEN, DMA_FROM_DEVICE);
	snprintf(extra, sizeof(extra), "control64=%s first64=%s mapped=%u", ctl, first, SUB_LEN);
	report("d", res, d, SUB_LEN + 1, "write", extra);
}

static void sc_e(void)
{
	void *p = page_address(stale_pg);
	dma_addr_t d;

	fill(p, PAGE_SIZE, PAT_STALE);
	d = dma_map_single(&edu_pdev->dev, p, PAGE_SIZE, DMA_FROM_DEVICE);
	if (dma_mapping_error(&edu_pdev->dev, d)) {
		report("e", "error", page_to_phys(stale_pg), PAGE_SIZE, "write",
		       "(dma_map_single failed)");
		return;
	}
	dma_unmap_single(&edu_pdev->dev, d, PAGE_SIZE, DMA_FROM_DEVICE);
	report("e", rogue_write("e", d, XFER, p, 0, PAT_STALE), d, XFER, "write",
	       "unmapped=1");
}

static void sc_g(void)
{
	char extra[64];
	struct page *pg;
	const char *ctl;
	dma_addr_t d;
	void *p;
	int err;

	pg = dma_alloc_pages(&edu_pdev->dev, PAGE_SIZE, &d, DMA_BIDIRECTIONAL, GFP_KERNEL);
	if (!pg) {
		report("g", "error", 0, PAGE_SIZE, "write", "(dma_alloc_pages failed)");
		return;
	}
	p = page_address(pg);
	/* while allocated, edu may write it */
	fill(p, PAGE_SIZE, PAT_FREED);
	err = edu_load(PAT_ATTACK);
	if (!err)
		err = edu_dma(d, XFER, true);
	ctl = err ? errstr(err) : is_pat(p, XFER, PAT_ATTACK, 0) ? "ok" : "broken";
	/* freed: the reference taken here keeps the page ours until the end */
	get_page(pg);
	dma_free_pages(&edu_pdev->dev, PAGE_SIZE, pg, d, DMA_BIDIRECTIONAL);
	fill(p, PAGE_SIZE, PAT_FREED);
	snprintf(extra, sizeof(extra), "control=%s freed=1", ctl);
	report("g", rogue_write("g", d, XFER, p, 0, PAT_FREED), d, XFER, "write", extra);
	put_page(pg);
}

/* whether [addr, addr + len) is within the DMA mask edu was given */
static bool edu_reaches(u64 addr, u64 len)
{
	return addr + len - 1 <= dma_get_mask(&edu_pdev->dev);
}

/*
 * edu writes the first 4 bytes of pattern seed (through its buffer) to
 * addr; *want: what its liveness register reads if addr reached it. sc:
 * the scenario whose rogue transfer this is (announced), or NULL
 */
static int edu_store_word(u64 addr, u8 seed, u32 *want, const char *sc)
{
	int err = edu_load(seed);

	*want = ~le32_to_cpu(*(__le32 *)legit);
	if (err)
		return err;
	if (sc)
		announce(sc, addr, 4, "write");
	return edu_dma(addr, 4, true);
}

static void sc_h(void)
{
	u64 bar = pci_resource_start(edu_pdev, 0);
	struct device *dev = &edu_pdev->dev;
	u32 want, got, idle = ~LIVE_IDLE;
	char extra[96];
	const char *ctl;
	dma_addr_t d;
	int err;

	if (!edu_reaches(bar, PAGE_SIZE)) {
		report("h", "error", bar + EDU_REG_LIVE, 4, "write",
		       "(edu's BAR is beyond its DMA mask: dma_bits=32 and edu,dma_mask=0xffffffff)");
		return;
	}
	d = dma_map_resource(dev, bar, PAGE_SIZE, DMA_FROM_DEVICE, 0);
	if (dma_mapping_error(dev, d)) {
		report("h", "error", bar + EDU_REG_LIVE, 4, "write", "(dma_map_resource failed)");
		return;
	}
	/* while mapped, edu may write the register */
	writel(LIVE_IDLE, regs + EDU_REG_LIVE);
	err = edu_store_word(d + EDU_REG_LIVE, PAT_MMIO, &want, NULL);
	ctl = err ? errstr(err) : readl(regs + EDU_REG_LIVE) == want ? "ok" : "broken";
	dma_unmap_resource(dev, d, PAGE_SIZE, DMA_FROM_DEVICE, 0);
	writel(LIVE_IDLE, regs + EDU_REG_LIVE);
	err = edu_store_word(d + EDU_REG_LIVE, PAT_ATTACK, &want, "h");
	snprintf(extra, sizeof(extra), "control=%s bar=0x%llx unmapped=1", ctl, bar);
	if (err) {
		report("h", errstr(err), d + EDU_REG_LIVE, 4, "write", extra);
		return;
	}
	got = readl(regs + EDU_REG_LIVE);
	report("h", got == want ? "changed" : got == idle ? "unchanged" : "broken",
	       d + EDU_REG_LIVE, 4, "write", extra);
}

/* the virtio device under a virtio-pci function */
static int virtio_child(struct device *d, void *data)
{
	if (!d->bus || strcmp(d->bus->name, "virtio"))
		return 0;
	*(struct virtio_device **)data = dev_to_virtio(d);
	return 1;
}

/* a raw UNMAP through the TCG transport (bpf/pviommu.h), bypassing pviommu.ko */
static void raw_unmap(u32 bdf, u64 iova, u64 size)
{
	u64 ax = PVIOMMU_CPUID_LEAF, cx = iova, dx = size;
	u64 bx = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, PVIOMMU_OP_UNMAP, 0, bdf);

	asm volatile("cpuid"
		     : "+a" (ax), "+b" (bx), "+c" (cx), "+d" (dx)
		     : "S" (0xf00dull)
		     : "memory");
}

/* one broadcast frame (local experimental ethertype) out of nd */
static int send_frame(struct net_device *nd)
{
	struct sk_buff *skb = alloc_skb(LL_RESERVED_SPACE(nd) + ETH_ZLEN, GFP_KERNEL);
	struct ethhdr *eth;

	if (!skb)
		return -ENOMEM;
	skb_reserve(skb, LL_RESERVED_SPACE(nd));
	eth = skb_put_zero(skb, ETH_ZLEN);
	eth_broadcast_addr(eth->h_dest);
	ether_addr_copy(eth->h_source, nd->dev_addr);
	eth->h_proto = htons(ETH_P_802_EX1);
	skb_reset_mac_header(skb);
	skb->dev = nd;
	skb->protocol = eth->h_proto;
	return dev_queue_xmit(skb) == NET_XMIT_SUCCESS ? 0 : -EIO;
}

static void report_f(const char *res, const char *bdf, u64 addr, u64 len, const char *extra)
{
	snprintf(result, sizeof(result),
		 "PVATTACK scenario=f result=%s bdf=%s addr=0x%llx len=%llu dir=rw %s\n",
		 res, bdf, addr, len, extra);
	pr_info("%s", result);
}

static void sc_f(void)
{
	struct pci_dev *pdev = get_bdf(vnet);
	struct virtio_device *vdev = NULL;
	struct virtqueue *vq, *tx = NULL;
	struct net_device *nd, *ndev = NULL;
	u64 desc = 0, used, size = 0;
	const __le16 *uidx;
	char extra[96];
	u16 u0, u1 = 0;
	int i, err;

	if (!pdev || device_for_each_child(&pdev->dev, &vdev, virtio_child) != 1) {
		report_f("error", vnet, 0, 0, "(no virtio device at vnet=)");
		goto out;
	}
	list_for_each_entry(vq, &vdev->vqs, list)
		if (!strcmp(vq->name, "output.0"))
			tx = vq;
	rtnl_lock();
	for_each_netdev(&init_net, nd)
		if (nd->dev.parent == &vdev->dev) {
			ndev = nd;
			dev_hold(ndev);
			break;
		}
	rtnl_unlock();
	if (!tx || !ndev || !netif_running(ndev)) {
		report_f("error", vnet, 0, 0, "(no TX queue output.0 or its interface is down)");
		goto out;
	}
	/*
	 * A split ring is one coherent allocation: desc | avail | pad | used,
	 * mapped by pviommu.ko for exactly vring_size() bytes, which ends with
	 * the used ring (flags, idx, num elements, avail_event).
	 */
	desc = virtqueue_get_desc_addr(tx);
	used = virtqueue_get_used_addr(tx);
	size = used - desc + 6 + 8ull * virtqueue_get_vring_size(tx);
	uidx = phys_to_virt(used + 2);
	u0 = le16_to_cpu(READ_ONCE(*uidx));
	pr_err("PVATTACK start scenario=f bdf=%s addr=0x%llx len=%llu dir=rw\n",
	       pci_name(pdev), desc, size);
	raw_unmap(PVIOMMU_BDF(pci_domain_nr(pdev->bus), pdev->bus->number,
			      PCI_SLOT(pdev->devfn), PCI_FUNC(pdev->devfn)), desc, size);
	err = send_frame(ndev);
	for (i = 0; i < 20; i++) {	/* up to 2 s for the device to complete it */
		msleep(100);
		u1 = le16_to_cpu(READ_ONCE(*uidx));
		if (u1 != u0)
			break;
	}
	snprintf(extra, sizeof(extra), "used_idx=%u->%u xmit=%d", u0, u1, err);
	report_f(u1 != u0 ? "changed" : "unchanged", pci_name(pdev), desc, size, extra);
out:
	if (ndev)
		dev_put(ndev);
	pci_dev_put(pdev);
}

/* ns of n dma_map_single + dma_unmap_single pairs of a fresh 2 KiB buffer on dev, or -errno */
static s64 bench_map_unmap(struct pci_dev *pdev, int n)
{
	void *buf = kmalloc(XFER, GFP_KERNEL);
	u64 t0;
	int i;

	if (!buf)
		return -ENOMEM;
	t0 = ktime_get_ns();
	for (i = 0; i < n; i++) {
		dma_addr_t d = dma_map_single(&pdev->dev, buf, XFER, DMA_BIDIRECTIONAL);

		if (dma_mapping_error(&pdev->dev, d)) {
			kfree(buf);
			return -EIO;
		}
		dma_unmap_single(&pdev->dev, d, XFER, DMA_BIDIRECTIONAL);
	}
	t0 = ktime_get_ns() - t0;
	kfree(buf);
	return (s64)t0;
}

/*
 * bench (not an attack): BENCH_PAIRS map+unmap pairs on edu and on the
 * other device, then BENCH_DMAS edu transfers of XFER bytes (QEMU's edu
 * paces each DMA with a timer: the figure is for a ratio, not a speed)
 */
#define BENCH_PAIRS	200
#define BENCH_DMAS	8
static void sc_bench(void)
{
	char extra[200];
	s64 te = bench_map_unmap(edu_pdev, BENCH_PAIRS), to = bench_map_unmap(other_pdev, BENCH_PAIRS);
	u64 t0 = ktime_get_ns();
	int i, err = 0;

	for (i = 0; i < BENCH_DMAS && !err; i++)
		err = edu_dma(legit_dma, XFER, i & 1);
	t0 = ktime_get_ns() - t0;
	snprintf(extra, sizeof(extra),
		 "pairs=%d edu_pair_ns=%lld other_pair_ns=%lld dmas=%d dma_bytes=%d dma_ns=%llu",
		 BENCH_PAIRS, te < 0 ? te : te / BENCH_PAIRS, to < 0 ? to : to / BENCH_PAIRS,
		 BENCH_DMAS, BENCH_DMAS * XFER, t0);
	report("bench", err ? errstr(err) : te < 0 || to < 0 ? "error" : "ok", legit_dma, XFER,
	       "rw", extra);
}

static const struct {
	const char *name;
	void (*fn)(void);
} scenarios[] = {
	{ "legit", sc_legit }, { "a", sc_a }, { "b", sc_b }, { "c", sc_c },
	{ "d", sc_d }, { "e", sc_e }, { "f", sc_f }, { "g", sc_g }, { "h", sc_h },
	{ "bench", sc_bench },
};

static ssize_t run_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	char name[16];
	size_t n = min(len, sizeof(name) - 1);
	size_t i;

	if (copy_from_user(name, ubuf, n))
		return -EFAULT;
	name[n] = 0;
	strim(name);
	for (i = 0; i < ARRAY_SIZE(scenarios); i++) {
		if (strcmp(name, scenarios[i].name))
			continue;
		mutex_lock(&lock);
		result[0] = 0;
		scenarios[i].fn();
		mutex_unlock(&lock);
		return len;
	}
	pr_err("pvattack: unknown scenario '%s' (legit a b c d e f g h bench)\n", name);
	return -EINVAL;
}

static ssize_t result_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	ssize_t r;

	mutex_lock(&lock);
	r = simple_read_from_buffer(ubuf, len, pos, result, strlen(result));
	mutex_unlock(&lock);
	return r;
}

static ssize_t info_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	return simple_read_from_buffer(ubuf, len, pos, info, strlen(info));
}

static const struct file_operations run_fops = {
	.owner = THIS_MODULE,
	.write = run_write,
	.llseek = no_llseek,
};

static const struct file_operations result_fops = {
	.owner = THIS_MODULE,
	.read = result_read,
	.llseek = default_llseek,
};

static const struct file_operations info_fops = {
	.owner = THIS_MODULE,
	.read = info_read,
	.llseek = default_llseek,
};

static void cleanup(void)
{
	debugfs_remove_recursive(dir);
	if (legit)
		dma_free_coherent(&edu_pdev->dev, EDU_BUF_SIZE, legit, legit_dma);
	if (secret_pg)
		__free_page(secret_pg);
	if (victim_pg)
		__free_page(victim_pg);
	if (other_pg)
		__free_page(other_pg);
	if (sub_pg)
		__free_page(sub_pg);
	if (stale_pg)
		__free_page(stale_pg);
	if (regs)
		pci_iounmap(edu_pdev, regs);
	if (enabled) {
		pci_clear_master(edu_pdev);
		pci_disable_device(edu_pdev);
	}
	pci_dev_put(other_pdev);
	pci_dev_put(edu_pdev);
}

static int __init pvattack_init(void)
{
	int err = -ENODEV;

	edu_pdev = get_bdf(edu);
	if (!edu_pdev || edu_pdev->vendor != EDU_VENDOR || edu_pdev->device != EDU_DEVICE) {
		pr_err("pvattack: no edu device (1234:11e8) at %s\n", edu);
		goto fail;
	}
	other_pdev = get_bdf(other);
	if (!other_pdev) {
		pr_err("pvattack: no device at %s (other=)\n", other);
		goto fail;
	}
	if (edu_pdev->dev.driver) {
		pr_err("pvattack: %s is bound to driver %s: unbind it first\n", edu,
		       edu_pdev->dev.driver->name);
		err = -EBUSY;
		goto fail;
	}
	err = pci_enable_device(edu_pdev);
	if (err)
		goto fail;
	enabled = true;
	pci_set_master(edu_pdev);
	if (dma_bits < EDU_DMA_BITS || dma_bits > 64) {
		pr_err("pvattack: dma_bits=%u: %d to 64\n", dma_bits, EDU_DMA_BITS);
		err = -EINVAL;
		goto fail;
	}
	err = dma_set_mask_and_coherent(&edu_pdev->dev, DMA_BIT_MASK(dma_bits));
	if (err)
		goto fail;
	err = -ENOMEM;
	regs = pci_iomap(edu_pdev, 0, 0);
	if (!regs)
		goto fail;
	if ((readl(regs + EDU_REG_ID) & 0xffff) != 0x00ed) {
		pr_err("pvattack: %s does not identify as edu (id 0x%x)\n", edu,
		       readl(regs + EDU_REG_ID));
		err = -ENODEV;
		goto fail;
	}
	legit = dma_alloc_coherent(&edu_pdev->dev, EDU_BUF_SIZE, &legit_dma, GFP_KERNEL);
	/* GFP_DMA (< 16 MiB): below edu's 28-bit limit */
	secret_pg = alloc_page(GFP_KERNEL | GFP_DMA);
	victim_pg = alloc_page(GFP_KERNEL | GFP_DMA);
	other_pg = alloc_page(GFP_KERNEL | GFP_DMA);
	sub_pg = alloc_page(GFP_KERNEL | GFP_DMA);
	stale_pg = alloc_page(GFP_KERNEL | GFP_DMA);
	if (!legit || !secret_pg || !victim_pg || !other_pg || !sub_pg || !stale_pg)
		goto fail;
	if (!edu_reaches(legit_dma, EDU_BUF_SIZE)) {
		pr_err("pvattack: legit buffer at %pad is beyond edu's reach\n", &legit_dma);
		err = -ERANGE;
		goto fail;
	}
	fill(page_address(secret_pg), PAGE_SIZE, PAT_SECRET);
	fill(page_address(victim_pg), PAGE_SIZE, PAT_VICTIM);
	snprintf(info, sizeof(info),
		 "PVATTACK info bdf=%s other=%s legit=0x%llx secret=0x%llx victim=0x%llx "
		 "other_buf=0x%llx sub=0x%llx sub_len=%u stale=0x%llx\n",
		 pci_name(edu_pdev), pci_name(other_pdev), (u64)legit_dma,
		 (u64)page_to_phys(secret_pg), (u64)page_to_phys(victim_pg),
		 (u64)page_to_phys(other_pg), (u64)page_to_phys(sub_pg) + SUB_OFF, SUB_LEN,
		 (u64)page_to_phys(stale_pg));
	dir = debugfs_create_dir("pvattack", NULL);
	debugfs_create_file("run", 0200, dir, NULL, &run_fops);
	debugfs_create_file("result", 0444, dir, NULL, &result_fops);
	debugfs_create_file("info", 0444, dir, NULL, &info_fops);
	pr_info("%s", info);
	return 0;
fail:
	cleanup();
	return err;
}

static void __exit pvattack_exit(void)
{
	cleanup();
}

module_init(pvattack_init);
module_exit(pvattack_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pviommu rogue-DMA test scenarios on QEMU's edu device");
