/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* bench_util.h - what the C benchmarks share: a clock, a program's BPF stats, a map's memory */
#ifndef __BENCH_UTIL_H
#define __BENCH_UTIL_H

#include <stdio.h>
#include <time.h>
#include <bpf/bpf.h>

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

#endif
