/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* bench_util.h - what the C benchmarks share: a clock, a program's BPF stats, a map's memory, a batch */
#ifndef __BENCH_UTIL_H
#define __BENCH_UTIL_H

#include <stdio.h>
#include <time.h>
#include <stdint.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pviommu.h"

static inline double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

/* kernel-side run time of a program and its runs, from BPF stats */
static inline void prog_stats(int fd, __u64 *ns, __u64 *cnt)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	bpf_obj_get_info_by_fd(fd, &info, &len);
	*ns = info.run_time_ns;
	*cnt = info.run_cnt;
}

/* the bytes a map charges (its fdinfo's memlock) */
static inline __u64 memlock(int fd)
{
	char path[64], line[256];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "memlock: %llu", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/*
 * The shared page's drain as the in-process plane sends it: rounds batches
 * of PVIOMMU_BATCH_MAX operations through pviommu_hc_batch (program bfd),
 * each half MAPs of one page of dev at new addresses from *next on, then
 * their UNMAPs. BPF run time per operation; *sys_ns: wall time per
 * operation; batches not carried out in full are counted in *failed.
 */
static inline double batch_op_ns(int bfd, __u32 dev, __u64 *next, int rounds, double *sys_ns,
				 unsigned long *failed)
{
	static __u64 ops[PVIOMMU_BATCH_MAX][4];
	__u32 h = PVIOMMU_BATCH_MAX / 2;
	__u64 args[2] = { (__u64)(uintptr_t)ops, PVIOMMU_BATCH_MAX }, ns0, c0, ns1, c1;
	LIBBPF_OPTS(bpf_test_run_opts, bo, .ctx_in = args, .ctx_size_in = sizeof(args));
	double t0;

	prog_stats(bfd, &ns0, &c0);
	t0 = now_ns();
	for (int r = 0; r < rounds; r++) {
		for (__u32 k = 0; k < h; k++) {
			ops[k][0] = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, PVIOMMU_OP_MAP,
						   PVIOMMU_PERM_RW, dev);
			ops[h + k][0] = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, PVIOMMU_OP_UNMAP,
						       PVIOMMU_PERM_RW, dev);
			ops[k][1] = ops[h + k][1] = *next + (__u64)k * 0x2000;
			ops[k][2] = ops[h + k][2] = 0x1000;
			ops[k][3] = ops[h + k][3] = 0;
		}
		*next += (__u64)h * 0x2000;
		*failed += bpf_prog_test_run_opts(bfd, &bo) ||
			   PVIOMMU_BATCH_DONE(bo.retval) != PVIOMMU_BATCH_MAX ||
			   PVIOMMU_BATCH_ERR(bo.retval);
	}
	if (sys_ns)
		*sys_ns = (now_ns() - t0) / (rounds * PVIOMMU_BATCH_MAX);
	prog_stats(bfd, &ns1, &c1);
	return (double)(ns1 - ns0) / (rounds * PVIOMMU_BATCH_MAX);
}

/*
 * batch_op_ns() run in 5 series: the median series' figures (one series on
 * this shared host moves by 2x from one run to the next)
 */
#define BATCH_SERIES	5
static inline double batch_op_ns_median(int bfd, __u32 dev, __u64 *next, int rounds,
					double *sys_ns, unsigned long *failed)
{
	double v[BATCH_SERIES], sys[BATCH_SERIES], t;
	int i, j;

	for (i = 0; i < BATCH_SERIES; i++)
		v[i] = batch_op_ns(bfd, dev, next, rounds, &sys[i], failed);
	for (i = 1; i < BATCH_SERIES; i++)	/* insertion sort, both by BPF time */
		for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t;
			t = sys[j]; sys[j] = sys[j - 1]; sys[j - 1] = t;
		}
	if (sys_ns)
		*sys_ns = sys[BATCH_SERIES / 2];
	return v[BATCH_SERIES / 2];
}

#endif
