// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pv_vfio.c - the host IOMMU as a mirror of an assigned device's guest
 * mappings (pv_vfio.h).
 *
 * Pages live in an open-addressing table of fixed capacity (memory bounded
 * whatever the guest does); a full table refuses the guest's MAP.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "pv_vfio.h"

#define FREE		0ull
#define GONE		(~0ull)
#define PFN(a)		((a) / PV_VFIO_PAGE)
#define RW		(PV_VFIO_READ | PV_VFIO_WRITE)

static uint32_t hash_pfn(uint64_t pfn)
{
	pfn ^= pfn >> 33;
	pfn *= 0xff51afd7ed558ccdull;
	pfn ^= pfn >> 33;
	return (uint32_t)pfn;
}

int pv_vfio_init(struct pv_vfio *v, const struct pv_vfio_ops *ops, uint32_t cap)
{
	uint32_t c = 64;

	memset(v, 0, sizeof(*v));
	v->ops = *ops;
	for (int i = 0; i < PV_VFIO_CONTAINERS; i++)
		v->fds[i] = -1;
	for (int i = 0; i < PV_VFIO_SECTIONS; i++)
		v->sec[i].fd = -1;
	while (c < cap && c < (1u << 30))
		c <<= 1;
	v->pages = calloc(c, sizeof(*v->pages));
	if (!v->pages)
		return -ENOMEM;
	v->cap = c;
	return 0;
}

void pv_vfio_fini(struct pv_vfio *v)
{
	free(v->pages);
	v->pages = NULL;
	v->cap = 0;
}

static int cont_idx(const struct pv_vfio *v, int fd)
{
	for (int i = 0; i < PV_VFIO_CONTAINERS; i++)
		if (fd >= 0 && v->fds[i] == fd)
			return i;
	return -1;
}

int pv_vfio_is_container(const struct pv_vfio *v, int fd)
{
	return cont_idx(v, fd) >= 0;
}

int pv_vfio_container(struct pv_vfio *v, int fd)
{
	if (fd < 0)
		return -EINVAL;
	if (cont_idx(v, fd) >= 0)
		return 0;
	for (int i = 0; i < PV_VFIO_CONTAINERS; i++)
		if (v->fds[i] < 0) {
			v->fds[i] = fd;
			return 0;
		}
	return -ENOSPC;
}

/* the section of container fd that holds page pfn, or NULL */
static const struct pv_vfio_section *sec_of(const struct pv_vfio *v, int fd, uint64_t pfn)
{
	for (int i = 0; i < PV_VFIO_SECTIONS; i++) {
		const struct pv_vfio_section *s = &v->sec[i];

		if (s->fd == fd && pfn >= PFN(s->iova) && pfn - PFN(s->iova) < s->size / PV_VFIO_PAGE)
			return s;
	}
	return NULL;
}

/* ---- the page table ------------------------------------------------------ */

static struct pv_vfio_page *pg_find(const struct pv_vfio *v, uint64_t pfn)
{
	uint32_t m = v->cap - 1, h = hash_pfn(pfn) & m;

	for (uint32_t i = 0; i < v->cap; i++) {
		struct pv_vfio_page *p = &v->pages[(h + i) & m];

		if (p->pfn == pfn + 1)
			return p;
		if (p->pfn == FREE)
			return NULL;
	}
	return NULL;
}

/* drop the tombstones: every live page into a fresh table (skipped without memory) */
static void pg_rebuild(struct pv_vfio *v)
{
	struct pv_vfio_page *old = v->pages, *n = calloc(v->cap, sizeof(*n));
	uint32_t m = v->cap - 1;

	if (!n)
		return;	/* tombstones are reused anyway: only slower */
	for (uint32_t i = 0; i < v->cap; i++) {
		uint32_t h;

		if (old[i].pfn == FREE || old[i].pfn == GONE)
			continue;
		h = hash_pfn(old[i].pfn - 1) & m;
		while (n[h].pfn != FREE)
			h = (h + 1) & m;
		n[h] = old[i];
	}
	free(old);
	v->pages = n;
	v->used = v->live;
}

static struct pv_vfio_page *pg_get(struct pv_vfio *v, uint64_t pfn)
{
	struct pv_vfio_page *p = pg_find(v, pfn), *slot = NULL;
	uint32_t m = v->cap - 1, h;

	if (p)
		return p;
	if (v->live >= v->cap / 4 * 3)
		return NULL;	/* full: the guest's MAP is refused */
	if (v->used >= v->cap / 4 * 3)
		pg_rebuild(v);
	h = hash_pfn(pfn) & m;
	for (uint32_t i = 0; i < v->cap && !slot; i++) {
		p = &v->pages[(h + i) & m];
		if (p->pfn == FREE || p->pfn == GONE)
			slot = p;
	}
	if (!slot)
		return NULL;
	if (slot->pfn == FREE)
		v->used++;
	memset(slot, 0, sizeof(*slot));
	slot->pfn = pfn + 1;
	v->live++;
	return slot;
}

static void pg_put(struct pv_vfio *v, struct pv_vfio_page *p)
{
	memset(p, 0, sizeof(*p));
	p->pfn = GONE;
	v->live--;
}

/* ---- one page into line with its references ------------------------------- */

static uint32_t pg_want(const struct pv_vfio_page *p)
{
	return (p->refs_r ? PV_VFIO_READ : 0) | (p->refs_w ? PV_VFIO_WRITE : 0);
}

/* container c: page p gets flags f (0: out); 0 or the ioctl's error */
static int pg_set(struct pv_vfio *v, struct pv_vfio_page *p, int c, uint32_t f,
		  const struct pv_vfio_section *s)
{
	uint64_t pfn = p->pfn - 1, iova = pfn * PV_VFIO_PAGE;
	int r;

	if (p->mapped[c] == f)
		return 0;
	if (p->mapped[c]) {
		v->unmaps++;
		r = v->ops.unmap(v->ops.ctx, v->fds[c], iova, PV_VFIO_PAGE);
		if (r) {
			v->errors++;
			return r;
		}
		p->mapped[c] = 0;
	}
	if (!f)
		return 0;
	v->maps++;
	r = v->ops.map(v->ops.ctx, v->fds[c], iova, PV_VFIO_PAGE,
		       s->vaddr + (iova - s->iova), f);
	if (r) {
		v->errors++;
		return r;
	}
	p->mapped[c] = (uint8_t)f;
	return 0;
}

/* every container: 0 or the first error */
static int pg_sync(struct pv_vfio *v, struct pv_vfio_page *p)
{
	uint32_t want = pg_want(p);
	int err = 0;

	for (int c = 0; c < PV_VFIO_CONTAINERS; c++) {
		const struct pv_vfio_section *s;
		int r;

		if (v->fds[c] < 0)
			continue;
		s = sec_of(v, v->fds[c], p->pfn - 1);
		r = pg_set(v, p, c, s ? want & s->flags : 0, s);
		if (r && !err)
			err = r;
	}
	return err;
}

/* the page can be mapped with perm somewhere */
static int pg_reachable(const struct pv_vfio *v, uint64_t pfn, uint32_t perm)
{
	for (int c = 0; c < PV_VFIO_CONTAINERS; c++) {
		const struct pv_vfio_section *s;

		if (v->fds[c] < 0)
			continue;
		s = sec_of(v, v->fds[c], pfn);
		if (s && (s->flags & perm))
			return 1;
	}
	return 0;
}

/* one reference of perm in or out of page pfn; 0 or -errno (unchanged on error) */
static int pg_ref(struct pv_vfio *v, uint64_t pfn, uint32_t perm, int add)
{
	struct pv_vfio_page *p = add ? pg_get(v, pfn) : pg_find(v, pfn);
	int r;

	if (!p)
		return add ? -ENOSPC : -ENOENT;
	if (!add && (((perm & PV_VFIO_READ) && !p->refs_r) ||
		     ((perm & PV_VFIO_WRITE) && !p->refs_w)))
		return -ENOENT;
	if (perm & PV_VFIO_READ)
		p->refs_r += add ? 1 : -1;
	if (perm & PV_VFIO_WRITE)
		p->refs_w += add ? 1 : -1;
	r = pg_sync(v, p);
	if (r && add) {	/* back as it was */
		if (perm & PV_VFIO_READ)
			p->refs_r--;
		if (perm & PV_VFIO_WRITE)
			p->refs_w--;
		pg_sync(v, p);
	}
	if (!p->refs_r && !p->refs_w) {
		int stuck = 0;

		for (int c = 0; c < PV_VFIO_CONTAINERS; c++)
			stuck |= p->mapped[c];
		if (!stuck)	/* an entry the kernel kept stays known */
			pg_put(v, p);
	}
	return r;
}

static int range_ok(uint64_t iova, uint64_t size, uint32_t perm)
{
	return size && iova + size - 1 >= iova && perm && !(perm & ~RW);
}

int pv_vfio_map(struct pv_vfio *v, uint64_t iova, uint64_t size, uint32_t perm)
{
	uint64_t first, last, pfn;
	int r;

	if (!range_ok(iova, size, perm))
		return -EINVAL;
	first = PFN(iova);
	last = PFN(iova + size - 1);
	if (last - first >= v->cap) {
		v->refused++;
		return -ENOSPC;
	}
	for (pfn = first; pfn <= last; pfn++)
		if (!pg_reachable(v, pfn, perm)) {
			v->refused++;
			return -EFAULT;
		}
	for (pfn = first; pfn <= last; pfn++) {
		r = pg_ref(v, pfn, perm, 1);
		if (r) {
			while (pfn-- > first)
				pg_ref(v, pfn, perm, 0);
			v->refused++;
			return r;
		}
	}
	return 0;
}

int pv_vfio_unmap(struct pv_vfio *v, uint64_t iova, uint64_t size, uint32_t perm)
{
	uint64_t pfn;
	int err = 0, r;

	if (!range_ok(iova, size, perm))
		return -EINVAL;
	for (pfn = PFN(iova); pfn <= PFN(iova + size - 1); pfn++) {
		r = pg_ref(v, pfn, perm, 0);
		if (r && !err)
			err = r;
	}
	return err;
}

int pv_vfio_section_add(struct pv_vfio *v, int fd, uint64_t iova, uint64_t size,
			uint64_t vaddr, uint32_t flags)
{
	struct pv_vfio_section *s = NULL;

	if (cont_idx(v, fd) < 0 || !size || (iova | size | vaddr) % PV_VFIO_PAGE ||
	    iova + size - 1 < iova || !(flags & RW))
		return -EINVAL;
	for (int i = 0; i < PV_VFIO_SECTIONS && !s; i++)
		if (v->sec[i].fd < 0)
			s = &v->sec[i];
	if (!s)
		return -ENOSPC;
	s->fd = fd;
	s->iova = iova;
	s->size = size;
	s->vaddr = vaddr;
	s->flags = flags & RW;
	v->withheld++;
	/* live pages inside come back (a section returns after a topology change) */
	for (uint32_t i = 0; i < v->cap; i++) {
		struct pv_vfio_page *p = &v->pages[i];

		if (p->pfn != FREE && p->pfn != GONE && p->pfn - 1 >= PFN(iova) &&
		    p->pfn - 1 <= PFN(iova + size - 1))
			pg_sync(v, p);
	}
	return 0;
}

int pv_vfio_section_del(struct pv_vfio *v, int fd, uint64_t iova, uint64_t size)
{
	int c = cont_idx(v, fd);
	uint64_t end = iova + size;

	if (c < 0 || !size || end < iova)
		return -EINVAL;
	/* the live pages inside go out of this container first */
	for (uint32_t i = 0; i < v->cap; i++) {
		struct pv_vfio_page *p = &v->pages[i];
		uint64_t a;

		if (p->pfn == FREE || p->pfn == GONE || !p->mapped[c])
			continue;
		a = (p->pfn - 1) * PV_VFIO_PAGE;
		if (a >= iova && a < end)
			pg_set(v, p, c, 0, NULL);
	}
	for (int i = 0; i < PV_VFIO_SECTIONS; i++) {
		struct pv_vfio_section *s = &v->sec[i];
		uint64_t se = s->iova + s->size;

		if (s->fd != fd || se <= iova || s->iova >= end)
			continue;
		if (s->iova >= iova && se <= end) {	/* all of it */
			s->fd = -1;
		} else if (s->iova < iova && se > end) {	/* a hole: two pieces */
			struct pv_vfio_section *t = NULL;

			for (int j = 0; j < PV_VFIO_SECTIONS && !t; j++)
				if (v->sec[j].fd < 0)
					t = &v->sec[j];
			if (t) {
				*t = *s;
				t->iova = end;
				t->size = se - end;
				t->vaddr = s->vaddr + (end - s->iova);
			}
			s->size = iova - s->iova;
		} else if (s->iova < iova) {	/* its tail */
			s->size = iova - s->iova;
		} else {	/* its head */
			s->vaddr += end - s->iova;
			s->size = se - end;
			s->iova = end;
		}
	}
	return 0;
}

void pv_vfio_reset(struct pv_vfio *v)
{
	for (uint32_t i = 0; i < v->cap; i++) {
		struct pv_vfio_page *p = &v->pages[i];

		if (p->pfn == FREE || p->pfn == GONE)
			continue;
		for (int c = 0; c < PV_VFIO_CONTAINERS; c++)
			if (p->mapped[c])
				pg_set(v, p, c, 0, NULL);
	}
	memset(v->pages, 0, (size_t)v->cap * sizeof(*v->pages));
	v->used = v->live = 0;
}

uint32_t pv_vfio_mapped(const struct pv_vfio *v, int fd, uint64_t pfn)
{
	const struct pv_vfio_page *p = pg_find(v, pfn);
	int c = cont_idx(v, fd);

	return p && c >= 0 ? p->mapped[c] : 0;
}
