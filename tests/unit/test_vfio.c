// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * test_vfio - the IOMMU mirror of assigned devices (qemu-hooks/pv_vfio.c)
 * against a fake type1 container with type1's rules: a map over a live
 * entry is refused (EEXIST), an unmap must name an entry exactly. After
 * every step of a random run, each page's flags in the container must be
 * the union of the directions of the live guest buffers in that page.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "testlib.h"
#include "../../qemu-hooks/pv_vfio.c"

#define NPAGES	512	/* the fake's iova space: pages 0..511 */
#define FD	7
#define FD2	9

struct fake {
	uint8_t	flags[2][NPAGES];	/* per container (FD, FD2) */
	uint64_t vaddr[2][NPAGES];
	int	fail_at;		/* map number that fails (-EIO), 0: none */
	int	nmap, nunmap, bad;	/* bad: a call type1 would refuse */
};

static int fidx(int fd) { return fd == FD2; }

static int f_map(void *ctx, int fd, uint64_t iova, uint64_t size, uint64_t vaddr, uint32_t flags)
{
	struct fake *f = ctx;
	uint64_t p = iova / 4096;

	if (size != 4096 || iova % 4096 || p >= NPAGES || !flags) {
		f->bad++;
		return -EINVAL;
	}
	if (++f->nmap == f->fail_at)
		return -EIO;
	if (f->flags[fidx(fd)][p]) {
		f->bad++;
		return -EEXIST;
	}
	f->flags[fidx(fd)][p] = (uint8_t)flags;
	f->vaddr[fidx(fd)][p] = vaddr;
	return 0;
}

static int f_unmap(void *ctx, int fd, uint64_t iova, uint64_t size)
{
	struct fake *f = ctx;
	uint64_t p = iova / 4096;

	f->nunmap++;
	if (size != 4096 || p >= NPAGES || !f->flags[fidx(fd)][p]) {
		f->bad++;
		return -ENOENT;
	}
	f->flags[fidx(fd)][p] = 0;
	return 0;
}

static struct fake F;
static struct pv_vfio V;

static void setup(uint32_t cap)
{
	struct pv_vfio_ops ops = { f_map, f_unmap, &F };

	pv_vfio_fini(&V);
	memset(&F, 0, sizeof(F));
	ASSERT_OK(pv_vfio_init(&V, &ops, cap), "init");
	ASSERT_OK(pv_vfio_container(&V, FD), "container");
}

static int nmapped(int fd)
{
	int n = 0;

	for (int p = 0; p < NPAGES; p++)
		n += !!F.flags[fidx(fd)][p];
	return n;
}

static void t_withheld(void)
{
	setup(1024);
	/* QEMU's bulk map: RAM at 0..1 MiB (host 0x7f0000000000), a ROM page above */
	ASSERT_OK(pv_vfio_section_add(&V, FD, 0, 256 * 4096, 0x7f0000000000ull, 3), "bulk map");
	ASSERT_OK(pv_vfio_section_add(&V, FD, 300 * 4096, 4096, 0x7f1000000000ull, 1), "rom");
	ASSERT_EQ(F.nmap, 0, "nothing reached the container");
	ASSERT_EQ(V.withheld, 2, "two withheld");
	ASSERT_EQ(pv_vfio_section_add(&V, 3, 0, 4096, 0, 3), -EINVAL, "not a container");
	ASSERT_EQ(pv_vfio_section_add(&V, FD, 100, 4096, 0, 3), -EINVAL, "unaligned");
	ASSERT_EQ(pv_vfio_map(&V, 400 * 4096, 64, 3), -EFAULT, "outside every section: refused");
	ASSERT_EQ(pv_vfio_map(&V, 255 * 4096, 8192, 3), -EFAULT, "half outside: refused");
	ASSERT_EQ(nmapped(FD), 0, "... and nothing mapped");
	ASSERT_EQ(pv_vfio_map(&V, 300 * 4096, 64, 2), -EFAULT, "a write into ROM: refused");
	ASSERT_OK(pv_vfio_map(&V, 300 * 4096, 64, 1), "a read of ROM");
	ASSERT_EQ(F.flags[0][300], 1, "ROM page read-only");
	ASSERT_EQ(F.vaddr[0][300], 0x7f1000000000ull, "ROM page's address");
	ASSERT_EQ(pv_vfio_map(&V, 0, 64, 4), -EINVAL, "bad perm");
	ASSERT_EQ(pv_vfio_map(&V, ~0ull - 10, 64, 1), -EINVAL, "wrap");
	ASSERT_EQ(F.bad, 0, "no call type1 would refuse");
}

static void t_subpage(void)
{
	setup(1024);
	pv_vfio_section_add(&V, FD, 0, 256 * 4096, 0x7f0000000000ull, 3);
	ASSERT_OK(pv_vfio_map(&V, 5 * 4096 + 0x10, 64, 3), "64 bytes rw");
	ASSERT_EQ(F.flags[0][5], 3, "its page rw");
	ASSERT_EQ(F.vaddr[0][5], 0x7f0000000000ull + 5 * 4096, "at its address");
	ASSERT_EQ(nmapped(FD), 1, "only that page");
	ASSERT_OK(pv_vfio_map(&V, 5 * 4096 + 0x800, 64, 1), "a read-only buffer in the same page");
	ASSERT_EQ(F.nmap, 1, "no change needed");
	ASSERT_OK(pv_vfio_unmap(&V, 5 * 4096 + 0x10, 64, 3), "the rw one goes");
	ASSERT_EQ(F.flags[0][5], 1, "the page narrowed to read");
	ASSERT_OK(pv_vfio_unmap(&V, 5 * 4096 + 0x800, 64, 1), "the read one goes");
	ASSERT_EQ(nmapped(FD), 0, "nothing left");
	ASSERT_EQ(V.live, 0, "no live page");
	ASSERT_EQ(pv_vfio_unmap(&V, 5 * 4096, 64, 1), -ENOENT, "an unmap of nothing");
	ASSERT_OK(pv_vfio_map(&V, 10 * 4096 - 1, 2, 2), "2 bytes across a page boundary");
	ASSERT_EQ(F.flags[0][9] + F.flags[0][10], 4, "both pages write-only");
	ASSERT_OK(pv_vfio_unmap(&V, 10 * 4096 - 1, 2, 2), "unmapped");
	ASSERT_EQ(nmapped(FD), 0, "nothing left");
	ASSERT_EQ(F.bad, 0, "no call type1 would refuse");
}

static void t_sections_move(void)
{
	setup(1024);
	pv_vfio_section_add(&V, FD, 0, 256 * 4096, 0x7f0000000000ull, 3);
	ASSERT_OK(pv_vfio_map(&V, 20 * 4096, 3 * 4096, 3), "3 pages");
	/* a topology change: QEMU unmaps RAM and maps it again in two pieces */
	ASSERT_OK(pv_vfio_section_del(&V, FD, 0, 256 * 4096), "QEMU's unmap");
	ASSERT_EQ(nmapped(FD), 0, "the live pages left the container with it");
	ASSERT_EQ(pv_vfio_map(&V, 30 * 4096, 64, 3), -EFAULT, "no RAM now: refused");
	ASSERT_OK(pv_vfio_section_add(&V, FD, 0, 21 * 4096, 0x7f0000000000ull, 3), "head back");
	ASSERT_EQ(nmapped(FD), 1, "page 20 back");
	ASSERT_OK(pv_vfio_section_add(&V, FD, 21 * 4096, 235 * 4096, 0x7f0000000000ull + 21 * 4096, 3),
		  "tail back");
	ASSERT_EQ(nmapped(FD), 3, "all three back");
	ASSERT_EQ(F.vaddr[0][22], 0x7f0000000000ull + 22 * 4096, "same address");
	/* a hole punched in a section (e.g. a BAR over RAM) */
	ASSERT_OK(pv_vfio_section_del(&V, FD, 21 * 4096, 4096), "a hole at page 21");
	ASSERT_EQ(F.flags[0][21], 0, "page 21 out");
	ASSERT_EQ(F.flags[0][22], 3, "page 22 stays");
	ASSERT_OK(pv_vfio_unmap(&V, 20 * 4096, 3 * 4096, 3), "guest unmap");
	ASSERT_EQ(nmapped(FD), 0, "nothing left");
	ASSERT_EQ(F.bad, 0, "no call type1 would refuse");
	/* a second container gets the same pages */
	ASSERT_OK(pv_vfio_container(&V, FD2), "second container");
	ASSERT_OK(pv_vfio_section_add(&V, FD2, 0, 64 * 4096, 0x7f0000000000ull, 3), "its RAM");
	ASSERT_OK(pv_vfio_map(&V, 40 * 4096, 64, 1), "a map");
	ASSERT_EQ(F.flags[0][40] * 10 + F.flags[1][40], 11, "in both");
	pv_vfio_reset(&V);
	ASSERT_EQ(nmapped(FD) + nmapped(FD2), 0, "reset: nothing left");
	ASSERT_EQ(V.live, 0, "reset: no live page");
}

static void t_failures(void)
{
	setup(64);
	pv_vfio_section_add(&V, FD, 0, 256 * 4096, 0x7f0000000000ull, 3);
	ASSERT_OK(pv_vfio_map(&V, 0, 4096, 1), "page 0 read");
	F.fail_at = F.nmap + 3;	/* the third map of the next call fails */
	ASSERT_EQ(pv_vfio_map(&V, 0, 5 * 4096, 3), -EIO, "an ioctl error refuses the map");
	ASSERT_EQ(F.flags[0][0], 1, "page 0 back to read-only");
	ASSERT_EQ(nmapped(FD), 1, "pages 1..4: nothing left behind");
	ASSERT_EQ(V.live, 1, "one live page");
	F.fail_at = 0;
	ASSERT_EQ(pv_vfio_map(&V, 100 * 4096, 64 * 4096, 3), -ENOSPC, "more pages than room");
	ASSERT_EQ(nmapped(FD), 1, "... nothing mapped");
	for (int i = 0; i < 47; i++)
		ASSERT_OK(pv_vfio_map(&V, (100 + i) * 4096, 8, 3), "fill");
	ASSERT_EQ(pv_vfio_map(&V, 200 * 4096, 8, 3), -ENOSPC, "full: refused");
	ASSERT_EQ(F.bad, 0, "no call type1 would refuse");
	ASSERT_TRUE(V.refused >= 2, "refusals counted");
}

/* random buffers against the model: union of live directions per page */
#define NBUF 64
static void t_random(void)
{
	struct { uint64_t iova, size; uint32_t perm; int live; } b[NBUF] = {};
	unsigned int seed = 12345;
	int steps = 20000, mism = 0;

	setup(4096);
	pv_vfio_section_add(&V, FD, 0, 128 * 4096, 0x7f0000000000ull, 3);
	pv_vfio_section_add(&V, FD, 128 * 4096, 128 * 4096, 0x7f8000000000ull, 3);
	for (int s = 0; s < steps; s++) {
		int i = rand_r(&seed) % NBUF;

		if (b[i].live) {
			ASSERT_OK(pv_vfio_unmap(&V, b[i].iova, b[i].size, b[i].perm), "unmap");
			b[i].live = 0;
		} else {
			b[i].iova = (uint64_t)(rand_r(&seed) % (250 * 4096));
			b[i].size = 1 + (uint64_t)(rand_r(&seed) % (rand_r(&seed) % 4 ? 512 : 5 * 4096));
			b[i].perm = 1 + rand_r(&seed) % 3;
			ASSERT_OK(pv_vfio_map(&V, b[i].iova, b[i].size, b[i].perm), "map");
			b[i].live = 1;
		}
		if (s % 97 == 0 || s == steps - 1) {
			uint8_t want[NPAGES] = {};

			for (int k = 0; k < NBUF; k++)
				if (b[k].live)
					for (uint64_t p = b[k].iova / 4096;
					     p <= (b[k].iova + b[k].size - 1) / 4096; p++)
						want[p] |= (uint8_t)b[k].perm;
			for (int p = 0; p < NPAGES; p++)
				mism += F.flags[0][p] != want[p];
		}
	}
	ASSERT_EQ(mism, 0, "container == union of live buffers, every check");
	ASSERT_EQ(F.bad, 0, "no call type1 would refuse");
	for (int k = 0; k < NBUF; k++)
		if (b[k].live)
			pv_vfio_unmap(&V, b[k].iova, b[k].size, b[k].perm);
	ASSERT_EQ(nmapped(FD), 0, "all unmapped: container empty");
	ASSERT_EQ(V.live, 0, "no live page");
	printf("  %d steps: %lu maps, %lu unmaps issued\n", steps, V.maps, V.unmaps);
}

int main(void)
{
	SUBTEST("withheld", t_withheld());
	SUBTEST("subpage", t_subpage());
	SUBTEST("sections_move", t_sections_move());
	SUBTEST("failures", t_failures());
	SUBTEST("random", t_random());
	pv_vfio_fini(&V);
	return tl_done("vfio");
}
