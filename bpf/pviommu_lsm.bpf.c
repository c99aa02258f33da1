// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pviommu_lsm - the VFIO gate: a sleepable BPF LSM program on file_ioctl
 * that checks VFIO type1 VFIO_IOMMU_MAP_DMA against the pviommu policy.
 * Own skeleton (pviommu_lsm_bpf); it shares the policy maps with
 * pviommu.bpf.c through their pins (same names, types and sizes,
 * LIBBPF_PIN_BY_NAME, pin_root_path = PVIOMMU_PIN_DIR): load pviommu first.
 *
 * Design
 *   container  a file whose inode is the VFIO misc device /dev/vfio/vfio
 *              (char 10:196, VFIO_MINOR; also iommufd's vfio compat node),
 *              checked through file->f_inode->i_rdev, and cmd ==
 *              VFIO_IOMMU_MAP_DMA (0x3b71) / VFIO_IOMMU_UNMAP_DMA (0x3b72).
 *              Every other file and ioctl returns at once.
 *   domain     the tgid of the process issuing the ioctl (as for the
 *              hypercall handler: QEMU's pid). The container itself is not
 *              tracked: an fd passed to another process is judged by the
 *              domain of that process.
 *   protected  the domain has a pviommu_domains record with
 *              PVIOMMU_DOM_REGISTERED or PVIOMMU_DOM_RESERVED (a QEMU
 *              under pviommuctl run, whose library withholds QEMU's own
 *              maps). Other domains pass untouched (a QEMU without
 *              pviommu keeps working).
 *   devices    a container has no single BDF. The VFIO user's devices are
 *              named in pviommu_vfio_devs (key: domain, value: up to
 *              PVIOMMU_VFIO_MAX_DEVS guest BDFs), written by the privileged
 *              manager (pviommuctl vfio, or libpviommu-qemu.so at the
 *              guest's DEV_ADD of an assigned device). A MAP_DMA is allowed
 *              if ANY listed device that is protected in the domain holds,
 *              in every page of [iova, iova + size), at least one byte for
 *              each requested direction (pv_page_touched): an IOMMU maps
 *              whole pages, so this is exactly a mirror of live records
 *              (qemu-hooks/pv_vfio.h), and nothing beyond them.
 *              Limitation: one container serves all listed devices, so the
 *              union is what the host IOMMU gets; per-device precision
 *              needs one container per device. A protected domain with no
 *              pviommu_vfio_devs entry (or none of its devices protected)
 *              is denied everything: fail closed.
 *   MAP_DMA    struct vfio_iommu_type1_dma_map {argsz, flags, vaddr, iova,
 *              size}; flags READ = 1 / WRITE = 2 are the device's view and
 *              map 1:1 to PVIOMMU_PERM_READ / WRITE. Copied with
 *              bpf_copy_from_user (hence lsm.s). An unreadable argument of
 *              a protected domain is denied. argsz < 32 or no READ/WRITE
 *              bit pass (the kernel refuses them with EINVAL).
 *              VFIO_DMA_MAP_FLAG_VADDR (only re-points the process address
 *              of an existing mapping, no new iova) passes.
 *              Ranges longer than PVIOMMU_MAX_CHECK_PAGES are denied.
 *   UNMAP_DMA  always allowed (revoking is safe), not reported.
 *   verdict    the domain's mode: AUDIT allows and reports; DENY and KILL
 *              return -EPERM and report (KILL is not escalated to SIGKILL
 *              here: the ioctl fails, QEMU sees EPERM). Reports are
 *              PVIOMMU_EV_VIOLATION events, plane PVIOMMU_PLANE_LSM, on the
 *              shared ring buffer, with bdf = the first listed device
 *              (0xffffffff if none), addr/len = iova/size, perm = requested,
 *              err = -verdict; counters CHECK, ALLOWED, VIOLATION, DENIED.
 *   iommufd    IOMMU_IOAS_MAP and IOMMU_IOAS_COPY of a protected domain are
 *              refused (-EPERM, a violation event with reason host-iommu;
 *              audit mode allows and reports): nothing mirrors an IOAS.
 *   not covered  the argument is read before the kernel reads it again: a
 *              second thread of the same process can change it in between
 *              (double fetch; the gate bounds a cooperating QEMU, not a
 *              hostile one with its own threads);
 *              VFIO_IOMMU_DIRTY_PAGES and other type1 ioctls
 *              (none grants new access). The gate is independent of the
 *              load generation (ctl->active_gen): it only reads the policy.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "pviommu.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* set by the loader from the pinned index */
const volatile __u32 index_slots = PVIOMMU_DEF_INDEX_SLOTS;
const volatile __u64 hash_key = 0;

#include "pviommu_maps.bpf.h"

/* the coverage walk finds extension slots inline: six frames deep here */
#define PV_COV_FIND	pv_slot_find_inl
#include "pviommu_range.h"

PV_SLOT_READ_GLOBAL()

/* ---- VFIO ---------------------------------------------------------------- */
#define PV_VFIO_MAP_DMA		0x3b71u	/* _IO(';', VFIO_BASE + 13) */
#define PV_VFIO_UNMAP_DMA	0x3b72u	/* _IO(';', VFIO_BASE + 14) */
#define PV_VFIO_FLAG_VADDR	(1u << 2)
#define PV_VFIO_DEV		((10u << 20) | 196u)	/* MKDEV(MISC, VFIO_MINOR) */
/* iommufd (/dev/iommu, Linux 6.2+): _IO(IOMMUFD_TYPE ';', 0x80 + n), no size bits */
#define PV_IOMMUFD_IOAS_COPY	0x3b83u
#define PV_IOMMUFD_IOAS_MAP	0x3b85u

struct pv_vfio_dma_map {	/* struct vfio_iommu_type1_dma_map */
	__u32	argsz;
	__u32	flags;
	__u64	vaddr;
	__u64	iova;
	__u64	size;
};

/* one frame for everything of the program: three call levels share 512 bytes */
struct dev_scan {
	struct pv_env			e;
	struct pv_vfio_dma_map		m;
	struct pviommu_vfio_devs	*vd;
	__u32				dom;
	__u32				nr;
	__u32				need;
	__u32				bdf;		/* the device page_cb looks at */
	int				verdict;	/* enum pv_verdict */
	int				pverdict;	/* page_cb's */
};

/* page i of the MAP_DMA: a byte of bdf's in it, for each direction asked */
static long page_cb(__u32 i, void *data)
{
	struct dev_scan *s = data;
	int t = pv_page_touched(&s->e, s->dom, s->bdf,
				s->m.iova / PVIOMMU_PAGE_SIZE + i, s->need);

	if (t > 0)
		return 0;
	s->pverdict = t < 0 ? PV_DENY_BUSY : PV_DENY_UNMAPPED;
	/* tell "not for this direction" from "not mapped" */
	if (!t && s->need != PVIOMMU_PERM_READ &&
	    pv_page_touched(&s->e, s->dom, s->bdf, s->m.iova / PVIOMMU_PAGE_SIZE + i,
			    PVIOMMU_PERM_READ) > 0)
		s->pverdict = PV_DENY_PERM;
	if (!t && s->need != PVIOMMU_PERM_WRITE &&
	    pv_page_touched(&s->e, s->dom, s->bdf, s->m.iova / PVIOMMU_PAGE_SIZE + i,
			    PVIOMMU_PERM_WRITE) > 0)
		s->pverdict = PV_DENY_PERM;
	return 1;
}

static long dev_scan_cb(__u32 i, void *data)
{
	struct dev_scan *s = data;
	__u32 bdf;
	int v;

	if (i >= s->nr || i >= PVIOMMU_VFIO_MAX_DEVS || !s->vd)
		return 1;
	bdf = s->vd->bdf[i];
	if (!pv_device_protected(&s->e, s->dom, bdf))
		return 0;
	/* the IOMMU maps pages: each page must hold a byte the device may use */
	s->bdf = bdf;
	s->pverdict = PV_ALLOW;
	if (!s->m.size || s->m.iova + s->m.size - 1 < s->m.iova ||
	    pv_npages(s->m.iova, s->m.size) > PVIOMMU_MAX_CHECK_PAGES)
		s->pverdict = PV_DENY_WRAP;
	else
		bpf_loop((__u32)pv_npages(s->m.iova, s->m.size), page_cb, s, 0);
	v = s->pverdict;
	/* report the most telling denial: "wrong direction" over "unmapped" */
	if (v == PV_ALLOW || s->verdict == PV_DENY_UNMAPPED)
		s->verdict = v;
	return v == PV_ALLOW;
}

SEC("lsm.s/file_ioctl")
int BPF_PROG(pviommu_vfio_ioctl, struct file *file, unsigned int cmd,
	     unsigned long arg, int ret)
{
	struct pviommu_domain *d;
	struct dev_scan s = {};
	__u32 dom, mode, first;
	dev_t rdev;

	if (ret)
		return ret;
	/*
	 * iommufd has no mirror (QEMU 7.2 never opens /dev/iommu): a protected
	 * domain's IOAS map or copy would reach any guest page, so it is refused
	 */
	if (cmd == PV_IOMMUFD_IOAS_MAP || cmd == PV_IOMMUFD_IOAS_COPY) {
		dom = bpf_get_current_pid_tgid() >> 32;
		d = bpf_map_lookup_elem(&pviommu_domains, &dom);
		if (!d || !(d->flags & (PVIOMMU_DOM_REGISTERED | PVIOMMU_DOM_RESERVED)))
			return 0;
		mode = d->mode;
		stat_inc(PVIOMMU_ST_VIOLATION);
		stat_inc(mode == PVIOMMU_MODE_AUDIT ? PVIOMMU_ST_ALLOWED : PVIOMMU_ST_DENIED);
		emit(PVIOMMU_EV_VIOLATION, dom, 0xffffffffu, 0, 0, PVIOMMU_PERM_RW, 0,
		     -PV_DENY_IOMMU, mode == PVIOMMU_MODE_AUDIT ? PVIOMMU_ACT_ALLOWED :
		     PVIOMMU_ACT_DENIED, PVIOMMU_PLANE_LSM);
		return mode == PVIOMMU_MODE_AUDIT ? 0 : -PV_EPERM;
	}
	if (cmd != PV_VFIO_MAP_DMA && cmd != PV_VFIO_UNMAP_DMA)
		return 0;
	rdev = BPF_CORE_READ(file, f_inode, i_rdev);
	if (rdev != PV_VFIO_DEV)
		return 0;
	if (cmd == PV_VFIO_UNMAP_DMA)
		return 0;	/* revoking is always safe */

	dom = bpf_get_current_pid_tgid() >> 32;
	d = bpf_map_lookup_elem(&pviommu_domains, &dom);
	/*
	 * reserved (pviommuctl run) counts as protected: its library keeps
	 * QEMU's own maps out of the kernel, so a MAP_DMA before REGISTER
	 * comes from something that bypassed it
	 */
	if (!d || !(d->flags & (PVIOMMU_DOM_REGISTERED | PVIOMMU_DOM_RESERVED)))
		return 0;	/* not protected: untouched */
	mode = d->mode;

	s.verdict = PV_DENY_UNMAPPED;
	s.e.slots = index_slots;
	s.e.key = hash_key;
	s.dom = dom;
	if (bpf_copy_from_user(&s.m, sizeof(s.m), (void *)arg)) {
		s.m.iova = 0;
		s.m.size = 0;
		s.m.flags = 0;
		goto deny;
	}
	if (s.m.argsz < sizeof(s.m) || (s.m.flags & PV_VFIO_FLAG_VADDR) ||
	    !(s.m.flags & PVIOMMU_PERM_RW))
		return 0;	/* the kernel refuses these, or no new iova */

	stat_inc(PVIOMMU_ST_CHECK);
	s.vd = bpf_map_lookup_elem(&pviommu_vfio_devs, &dom);
	if (s.vd) {
		s.nr = s.vd->nr;
		s.need = s.m.flags & PVIOMMU_PERM_RW;
		bpf_loop(PVIOMMU_VFIO_MAX_DEVS, dev_scan_cb, &s, 0);
		if (s.verdict == PV_ALLOW) {
			stat_inc(PVIOMMU_ST_ALLOWED);
			return 0;
		}
	}
deny:
	first = s.vd && s.nr ? s.vd->bdf[0] : 0xffffffffu;
	stat_inc(PVIOMMU_ST_VIOLATION);
	if (mode == PVIOMMU_MODE_AUDIT) {
		stat_inc(PVIOMMU_ST_ALLOWED);
		emit(PVIOMMU_EV_VIOLATION, dom, first, s.m.iova, s.m.size,
		     s.m.flags & PVIOMMU_PERM_RW, 0, -s.verdict,
		     PVIOMMU_ACT_ALLOWED, PVIOMMU_PLANE_LSM);
		return 0;
	}
	stat_inc(PVIOMMU_ST_DENIED);
	emit(PVIOMMU_EV_VIOLATION, dom, first, s.m.iova, s.m.size,
	     s.m.flags & PVIOMMU_PERM_RW, 0, -s.verdict, PVIOMMU_ACT_DENIED,
	     PVIOMMU_PLANE_LSM);
	return -PV_EPERM;
}
