/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pv_vfio.h - the host IOMMU of an assigned device as a mirror of its
 * guest's mappings (qemu-hooks/vfio.md). No QEMU, no VFIO in here: the
 * caller says how a container is really mapped and unmapped, so the rules
 * are tested on their own (tests/unit/test_vfio.c).
 *
 * Two inputs:
 *   sections  what QEMU asks its VFIO containers to map (guest RAM and
 *             ROM: iova -> QEMU's address, at start, reset and every
 *             memory topology change). Withheld: only remembered, as the
 *             translation from guest-physical to QEMU's address.
 *   mappings  the guest's MAP/UNMAP of an assigned device, after the BPF
 *             records accepted them (the records are the authority).
 * One output: each container maps exactly the pages that hold a byte of a
 * live mapping, with the union of the live mappings' directions in the
 * page (the IOMMU is page-granular: a sub-page buffer exposes its page).
 *
 * Each page is one type1 entry of 4 KiB (type1 refuses overlapping maps and
 * unmaps that split an entry: one page per entry never needs either), with
 * per-direction reference counts. A change of a page's directions is an
 * unmap then a map. A page no section covers cannot be mapped: the guest's
 * MAP is refused (rolled back), never half done.
 *
 * Not thread-safe: the caller serializes.
 */
#ifndef PV_VFIO_H
#define PV_VFIO_H

#include <stdint.h>

#define PV_VFIO_PAGE		4096ull
#define PV_VFIO_CONTAINERS	4	/* type1 containers of one QEMU */
#define PV_VFIO_SECTIONS	128	/* QEMU's RAM/ROM sections at once */

#define PV_VFIO_READ		1u	/* VFIO_DMA_MAP_FLAG_READ: the device reads */
#define PV_VFIO_WRITE		2u	/* VFIO_DMA_MAP_FLAG_WRITE: the device writes */

struct pv_vfio_ops {
	/* 0 or -errno: VFIO_IOMMU_MAP_DMA / UNMAP_DMA of one container */
	int (*map)(void *ctx, int fd, uint64_t iova, uint64_t size, uint64_t vaddr,
		   uint32_t flags);
	int (*unmap)(void *ctx, int fd, uint64_t iova, uint64_t size);
	void *ctx;
};

struct pv_vfio_section {
	int		fd;	/* container, -1 = free */
	uint32_t	flags;	/* PV_VFIO_READ | PV_VFIO_WRITE QEMU asked for */
	uint64_t	iova;
	uint64_t	size;
	uint64_t	vaddr;
};

struct pv_vfio_page {
	uint64_t	pfn;	/* key + 1 (0 = free, ~0 = tombstone) */
	uint32_t	refs_r;	/* live mappings that let the device read it */
	uint32_t	refs_w;	/* ... write it */
	uint8_t		mapped[PV_VFIO_CONTAINERS];	/* flags in each container */
};

struct pv_vfio {
	struct pv_vfio_ops	ops;
	int			fds[PV_VFIO_CONTAINERS];	/* -1 = free */
	struct pv_vfio_section	sec[PV_VFIO_SECTIONS];
	struct pv_vfio_page	*pages;
	uint32_t		cap;		/* power of two */
	uint32_t		used;		/* live + tombstones */
	uint32_t		live;		/* pages with a reference */
	/* counters */
	unsigned long		maps, unmaps;	/* real ioctls issued */
	unsigned long		withheld;	/* QEMU's maps kept out */
	unsigned long		errors;		/* ioctls that failed */
	unsigned long		refused;	/* guest maps refused (no section, no room, error) */
};

/* cap: most pages mirrored at once (rounded up to a power of two); 0 or -ENOMEM */
int pv_vfio_init(struct pv_vfio *v, const struct pv_vfio_ops *ops, uint32_t cap);
void pv_vfio_fini(struct pv_vfio *v);

/* a container QEMU set up (VFIO_SET_IOMMU); 0, or -ENOSPC */
int pv_vfio_container(struct pv_vfio *v, int fd);
int pv_vfio_is_container(const struct pv_vfio *v, int fd);

/*
 * QEMU's VFIO_IOMMU_MAP_DMA / UNMAP_DMA on a container: remembered, not
 * done; live pages inside come back into (go out of) the container. 0,
 * -ENOSPC (too many sections: the caller refuses QEMU's map), -EINVAL.
 */
int pv_vfio_section_add(struct pv_vfio *v, int fd, uint64_t iova, uint64_t size,
			uint64_t vaddr, uint32_t flags);
int pv_vfio_section_del(struct pv_vfio *v, int fd, uint64_t iova, uint64_t size);

/*
 * The guest mapped (unmapped) [iova, iova + size) for an assigned device
 * with perm (PV_VFIO_READ | PV_VFIO_WRITE). map: 0, or -errno with nothing
 * changed (-EFAULT: a page outside every section, -ENOSPC: no room, or the
 * ioctl's error). unmap: 0 or the first ioctl error (the page is counted
 * out either way; an entry that could not be removed is counted in errors).
 */
int pv_vfio_map(struct pv_vfio *v, uint64_t iova, uint64_t size, uint32_t perm);
int pv_vfio_unmap(struct pv_vfio *v, uint64_t iova, uint64_t size, uint32_t perm);

/* unmap every page, forget every reference (machine reset) */
void pv_vfio_reset(struct pv_vfio *v);

/* the flags page pfn has in container fd (0: not mapped), for tests */
uint32_t pv_vfio_mapped(const struct pv_vfio *v, int fd, uint64_t pfn);

#endif
