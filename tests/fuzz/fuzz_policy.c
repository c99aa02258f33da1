// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * fuzz_policy - a coverage-guided fuzzer (libFuzzer, clang -fsanitize=fuzzer)
 * for the userspace side of the policy:
 *
 *   - the range logic (bpf/pviommu_range.h through pv_user.h): the input is a
 *     program of MAP / UNMAP / DEV_DEL / CHECK steps on two devices of one
 *     domain in a small index (so that chains, extension slots, tombstones and
 *     full tables happen); after every step the index must agree with a
 *     byte-level model: a CHECK never allows a byte the model denies, never
 *     denies one it allows, and MAP / UNMAP return what the model says (a
 *     MAP may be refused for space: then the model does not get it);
 *   - the CLI's parsers (pv_parse_bdf, pv_parse_u64, pv_parse_mode,
 *     pv_parse_quota) on the input as a string: no crash, no overread
 *     (ASan), and a parsed BDF prints back to one that parses the same.
 *
 * A disagreement aborts (libFuzzer keeps the input as a crash file).
 * make check runs a bounded number of inputs; make fuzz runs long.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pv_user.h"
#include "pvlib.h"

#define DOM	7
#define SPACE	0x3000	/* three pages: pieces pile up in few slots */
#define NREC	64

struct mrec { __u64 iova, size; __u32 perm, refs, dev; };

static const __u32 bdfs[2] = { PVIOMMU_BDF(0, 0, 4, 0), PVIOMMU_BDF(0, 0, 5, 0) };

static void fail(const char *what, long step, long got, long want)
{
	fprintf(stderr, "fuzz_policy: step %ld: %s: got %ld, model %ld\n", step, what, got, want);
	abort();
}

static void parsers(const uint8_t *d, size_t n)
{
	char s[96], b[16], b2[16];
	struct pviommu_quota q = {};
	__u32 bdf, bdf2, mode;
	__u64 v;

	if (n >= sizeof(s))
		n = sizeof(s) - 1;
	memcpy(s, d, n);
	s[n] = 0;
	if (!pv_parse_bdf(s, &bdf)) {
		pv_fmt_bdf(bdf, b);
		if (pv_parse_bdf(b, &bdf2) || bdf2 != bdf)
			fail("bdf round trip", 0, bdf2, bdf);
		pv_fmt_bdf(bdf2, b2);
		if (strcmp(b, b2))
			fail("bdf prints the same", 0, 0, 0);
	}
	pv_parse_u64(s, &v);
	pv_parse_mode(s, &mode);
	pv_parse_quota(s, &q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pviommu_slot tbl[PVIOMMU_INDEX_ENTRIES(64)];
	struct pv_env e = { .tbl = tbl, .slots = 64 };
	struct pviommu_domain d = {};
	struct mrec m[NREC];
	int n = 0, prot[2] = { 1, 1 };
	size_t pos = 0;

	parsers(data, size);
	memset(tbl, 0, sizeof(tbl));
	if (pv_op_dev_add(&e, &d, DOM, bdfs[0]) || pv_op_dev_add(&e, &d, DOM, bdfs[1]))
		return 0;	/* 64 slots always hold two devices */

	for (long step = 0; pos + 6 <= size; step++, pos += 6) {
		const uint8_t *x = data + pos;
		int dev = x[0] >> 7 & 1, r, want = 0, j = -1;
		__u64 a = ((__u64)x[1] << 8 | x[2]) % SPACE;
		__u64 len = 1 + (((__u64)x[3] << 8 | x[4]) % 0x1800);
		__u32 perm = 1 + x[5] % 3;

		if (a + len > SPACE)
			len = SPACE - a;
		switch (x[0] & 3) {
		case 0:		/* MAP */
			for (int i = 0; i < n; i++)
				if (m[i].dev == (__u32)dev && m[i].iova == a)
					j = i;
			if (j < 0 && n == NREC)
				continue;
			r = pv_op_map(&e, &d, DOM, bdfs[dev], a, len, perm, step);
			if (!prot[dev])
				want = -ENODEV;
			else if (j >= 0)
				want = m[j].size == len && m[j].perm == perm ? 0 : -EEXIST;
			if (r == -ENOSPC && !want && j < 0)
				break;	/* refused for space: never granted */
			if (r != want)
				fail("map", step, r, want);
			if (!r && j >= 0)
				m[j].refs++;
			else if (!r)
				m[n++] = (struct mrec){ a, len, perm, 1, (__u32)dev };
			break;
		case 1:		/* UNMAP: of a record (its size, or a wrong one) */
			if (!n)
				continue;
			j = x[1] % n;
			len = x[3] & 1 ? m[j].size : len;
			r = pv_op_unmap(&e, &d, DOM, bdfs[m[j].dev], m[j].iova, len,
					x[4] & 1 ? m[j].perm : 0);
			want = len == m[j].size ? 0 : -ERANGE;
			if (r != want)
				fail("unmap", step, r, want);
			if (!r && !--m[j].refs)
				m[j] = m[--n];
			break;
		case 2:		/* DEV_DEL now and then, DEV_ADD again */
			if (x[1] & 0x0f)
				continue;
		{
			struct pv_purged sum = {};

			pv_purge_index(&e, DOM, bdfs[dev], 0, 0, &sum);
			for (int i = 0; i < n; i++)
				if (m[i].dev == (__u32)dev)
					m[i--] = m[--n];
			d.nr_records -= sum.records;	/* as the BPF side does */
			d.nr_devices--;
		}
			prot[dev] = !pv_op_dev_add(&e, &d, DOM, bdfs[dev]);
			break;
		default: {	/* CHECK, byte by byte against the model */
			int v = pv_check(&e, DOM, bdfs[dev], a, len, perm), ok = 1;

			if (!prot[dev])
				ok = 1;
			else
				for (__u64 b = a; b < a + len && ok; b++) {
					__u32 have = 0;

					for (int i = 0; i < n; i++)
						if (m[i].dev == (__u32)dev && b >= m[i].iova &&
						    b < m[i].iova + m[i].size)
							have |= m[i].perm;
					ok = (have & perm) == perm;
				}
			if ((v == PV_ALLOW) != ok)
				fail("check", step, v, ok ? PV_ALLOW : PV_DENY_UNMAPPED);
		}
		}
		/* the records in the index are the model's, and the domain counts them */
		if (pv_rec_walk(&e, DOM, NULL, NULL) != n)
			fail("records in the index", step, (int)pv_rec_walk(&e, DOM, NULL, NULL), n);
		if (d.nr_records != (__u64)n)
			fail("the domain's record count", step, (int)d.nr_records, n);
	}
	return 0;
}
