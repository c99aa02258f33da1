// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bench_core: the policy core, measured side by side in one run.
 *   - map, unmap and check in BPF (kernel run time from BPF stats, per op)
 *     at 1, 1k and 100k live mappings
 *   - the same check done lock-free in userspace on the mmapped index (the
 *     in-process plane's path), next to a bare function call and a uprobe hit
 *     (the trap alone: the probed function takes no AddressSpace)
 *   - memory per 100k mappings
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pviommu.skel.h"
#include "bench.skel.h"
#include "pvlib.h"
#include "pv_user.h"
#include "bench_util.h"

#define DEV	PVIOMMU_BDF(0, 0, 4, 0)

static struct pviommu_bpf *skel;
static int hc_fd, chk_fd;
static struct pv_env env, env_idx;
static char dir[128];

static int hc(__u32 op, __u64 iova, __u64 size)
{
	return pv_hypercall(hc_fd, op, PVIOMMU_PERM_RW, DEV, iova, size, 0);
}

/* live mappings: 4 KiB at page i * 2 (every other page), from 0x100000000 */
#define BASE	0x100000000ull
static __u64 live;

static int grow_to(__u64 n)
{
	for (; live < n; live++)
		if (hc(PVIOMMU_OP_MAP, BASE + live * 0x2000, 0x1000))
			return -1;
	return 0;
}

/* BPF run time per run of program fd, run reps times with a1 = i * step; -1 when a run failed */
static double run_ns(int fd, __u64 step, int reps)
{
	__u64 ns0, c0, ns1, c1;
	int bad = 0;

	prog_stats(fd, &ns0, &c0);
	for (int i = 0; i < reps; i++)
		bad += pv_hypercall_raw(fd, step * i, 0, 0, 0, 0) != 0;
	prog_stats(fd, &ns1, &c1);
	return bad ? -1 : (double)(ns1 - ns0) / (c1 - c0 ? c1 - c0 : 1);
}

/*
 * the baseline beside map+unmap: BPF run time of one hash insert + delete
 * (bench_htab_pair) with n other entries live in that hash, as the index
 * has n live mappings in the same column; -1 when a run failed
 */
static __u64 bare_live;

static double bare_pair_at(struct bench_bpf *b, __u64 n, int reps)
{
	int mf = bpf_map__fd(b->maps.bench_records);
	struct pviommu_mapping v = { .size = 4096 };
	struct { __u32 domain, bdf; __u64 iova; } k = { 1, 2, 0 };	/* bench.bpf.c's key */

	for (; bare_live < n; bare_live++) {	/* iovas the timed pairs never use */
		k.iova = (1ull << 40) + bare_live * 0x1000;
		if (bpf_map_update_elem(mf, &k, &v, BPF_NOEXIST))
			return -1;
	}
	return run_ns(bpf_program__fd(b->progs.bench_htab_pair), 0x1000, reps);
}

__attribute__((noipa, used)) int bench_probe_target(int x)
{
	__asm__ __volatile__("" ::: "memory");
	return x + 1;
}

static double per_call(int (*fn)(int), int n)
{
	double t0 = now_ns();
	int acc = 0;

	for (int i = 0; i < n; i++)
		acc += fn(i);
	if (acc == 42)
		printf(" ");
	return (now_ns() - t0) / n;
}

/*
 * ns per in-process check of random live mappings; allowed ones added to
 * *ok. lane < 0: the whole check (pv_check: the domain's and the device's
 * state, then the pages); else only the pages, with that lane (what the
 * state reads cost is the difference)
 */
static double user_checks(struct pv_env *e, __u32 self, int n, unsigned long long *ok,
			  int lane)
{
	unsigned long long x = 12345;
	double t0 = now_ns();

	for (int i = 0; i < n; i++) {
		__u64 a;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		a = BASE + ((x >> 33) % live) * 0x2000 + 64;
		*ok += (lane < 0 ? pv_check(e, self, DEV, a, 1500, PVIOMMU_PERM_READ) :
			pv_check_lane(e, self, DEV, (__u32)lane, a, 1500,
				      PVIOMMU_PERM_READ)) == PV_ALLOW;
	}
	return (now_ns() - t0) / n;
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	__u64 sizes[] = { 1, 1000, 100000 };
	int stats_fd, err, reps = 2000;
	double batch_ns[3] = {0}, batch_sys_ns[3] = {0};
	__u64 batch_next = 0x20000000;
	double user_chk[3] = {0}, bpf_map_ns[3] = {0}, bpf_unmap_ns[3] = {0},
	       bpf_chk_ns[3] = {0}, syscall_ns[3] = {0},
	       user_idx[3] = {0}, user_pages[3] = {0}, bare_pair[3] = {0};
	double empty_ns = 0;
	struct bench_bpf *bb;
	__u32 slots = 1u << 18;

	if (geteuid()) {
		fprintf(stderr, "bench: needs root\n");
		return 2;
	}
	snprintf(dir, sizeof(dir), "/sys/fs/bpf/pviommu-bench-%d", getpid());
	mkdir(dir, 0700);
	oo.pin_root_path = dir;
	skel = pviommu_bpf__open_opts(&oo);
	if (!skel) {
		fprintf(stderr, "bench: cannot open the BPF object: %s\n", strerror(errno));
		return 1;
	}
	bpf_map__set_max_entries(skel->maps.pviommu_index, PVIOMMU_INDEX_ENTRIES(slots));
	skel->rodata->index_slots = slots;
	skel->rodata->load_gen = 1;
	err = pviommu_bpf__load(skel);
	if (err) {
		fprintf(stderr, "bench: load failed: %s\n", strerror(-err));
		return 1;
	}
	((struct pviommu_ctl *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
				    bpf_map__fd(skel->maps.pviommu_ctl), 0))->active_gen = 1;
	env.tbl = mmap(NULL, (size_t)PVIOMMU_INDEX_ENTRIES(slots) * 64, PROT_READ, MAP_SHARED,
		       bpf_map__fd(skel->maps.pviommu_index), 0);
	env.slots = slots;
	env.fast = mmap(NULL, PVIOMMU_FAST_ENTRIES * sizeof(__u64), PROT_READ, MAP_SHARED,
			bpf_map__fd(skel->maps.pviommu_fast), 0);
	if (env.fast == MAP_FAILED) {
		fprintf(stderr, "bench: cannot mmap pviommu_fast: %s\n", strerror(errno));
		return 1;
	}
	env_idx = env;
	env_idx.fast = NULL;	/* the same index, without the page bits */
	hc_fd = bpf_program__fd(skel->progs.pviommu_kvm_hypercall);
	chk_fd = bpf_program__fd(skel->progs.pviommu_test_check);
	/* every BPF figure below is run time from BPF stats: without them, no figures */
	stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (stats_fd < 0) {
		fprintf(stderr, "bench: BPF stats unavailable: %s\n", strerror(errno));
		return 1;
	}
	/* the baselines are half the figure: no silent zeros */
	bb = bench_bpf__open_and_load();
	if (!bb) {
		fprintf(stderr, "bench: cannot load the baseline programs (bench.bpf.o): %s\n",
			strerror(errno));
		return 1;
	}
	empty_ns = run_ns(bpf_program__fd(bb->progs.bench_empty), 0, reps);
	if (empty_ns < 0) {
		fprintf(stderr, "bench: the empty program's runs failed\n");
		return 1;
	}
	hc(PVIOMMU_OP_REGISTER, 0, 0);
	hc(PVIOMMU_OP_DEV_ADD, 0, 0);
	pv_hypercall(hc_fd, PVIOMMU_OP_DEV_ADD, 0, DEV, 0, 0, 0);
	/* one untimed round first: the first column times the calls, not a cold start */
	if (bare_pair_at(bb, 0, reps) < 0) {
		fprintf(stderr, "bench: the bare hash baseline failed\n");
		return 1;
	}
	for (int i = 0; i < reps; i++)
		hc(PVIOMMU_OP_MAP, 0x10000000 + i * 0x2000ull, 0x1000);
	for (int i = 0; i < reps; i++)
		hc(PVIOMMU_OP_UNMAP, 0x10000000 + i * 0x2000ull, 0x1000);

	for (int s = 0; s < 3; s++) {
		__u64 ns0, c0, ns1, c1, self = getpid();
		unsigned long failed = 0;
		double t0;
		unsigned long long ok = 0;
		int n_chk = 2000000;

		if (grow_to(sizes[s])) {
			fprintf(stderr, "bench: populating %llu mappings failed\n",
				(unsigned long long)sizes[s]);
			return 1;
		}
		/* map then unmap a fresh range, reps times: BPF time per op */
		prog_stats(hc_fd, &ns0, &c0);
		t0 = now_ns();
		for (int i = 0; i < reps; i++)
			failed += hc(PVIOMMU_OP_MAP, 0x10000000 + i * 0x2000ull, 0x1000) != 0;
		syscall_ns[s] = (now_ns() - t0) / reps;
		prog_stats(hc_fd, &ns1, &c1);
		bpf_map_ns[s] = (double)(ns1 - ns0) / (c1 - c0 ? c1 - c0 : 1);
		prog_stats(hc_fd, &ns0, &c0);
		for (int i = 0; i < reps; i++)
			failed += hc(PVIOMMU_OP_UNMAP, 0x10000000 + i * 0x2000ull, 0x1000) != 0;
		prog_stats(hc_fd, &ns1, &c1);
		bpf_unmap_ns[s] = (double)(ns1 - ns0) / (c1 - c0 ? c1 - c0 : 1);
		if (failed) {	/* a refused call times nothing: the figure would lie */
			fprintf(stderr, "bench: %lu timed map/unmap calls failed\n", failed);
			return 1;
		}

		/* the shared page's drain: BPF time and syscall time per operation */
		batch_ns[s] = batch_op_ns_median(bpf_program__fd(skel->progs.pviommu_hc_batch), DEV,
					  &batch_next, 8 * reps / PVIOMMU_BATCH_MAX,
					  &batch_sys_ns[s], &failed);
		if (failed) {
			fprintf(stderr, "bench: %lu batches of the shared page failed\n", failed);
			return 1;
		}

		/* check in BPF (test wrapper): BPF time per check; every range is mapped */
		prog_stats(chk_fd, &ns0, &c0);
		for (int i = 0; i < reps; i++)
			failed += pv_check_prog(chk_fd, self, DEV,
						BASE + (i % live) * 0x2000 + 64, 1500,
						PVIOMMU_PERM_READ) != PV_ALLOW;
		prog_stats(chk_fd, &ns1, &c1);
		bpf_chk_ns[s] = (double)(ns1 - ns0) / (c1 - c0 ? c1 - c0 : 1);
		if (failed) {	/* a denied or failed run checks something else */
			fprintf(stderr, "bench: %lu of %d BPF checks of mapped ranges not allowed\n",
				failed, reps);
			return 1;
		}

		/* the same check in userspace: page bits + index, then index alone */
		user_chk[s] = user_checks(&env, self, n_chk, &ok, -1);
		user_idx[s] = user_checks(&env_idx, self, n_chk, &ok, -1);
		user_pages[s] = user_checks(&env, self, n_chk, &ok,
					    pv_device_lane(&env, self, DEV));
		n_chk *= 3;	/* the three runs' checks are counted in ok */
		if (ok != (unsigned long long)n_chk) {	/* every mapped range allowed */
			fprintf(stderr, "bench: %llu of %d checks denied: the index is wrong\n",
				n_chk - ok, n_chk);
			return 1;
		}
		/* last in the column: filling the hash evicts what the rows above use */
		bare_pair[s] = bare_pair_at(bb, sizes[s], reps);
		if (bare_pair[s] < 0) {	/* a run that failed times nothing */
			fprintf(stderr, "bench: the bare hash baseline failed at %llu live\n",
				(unsigned long long)sizes[s]);
			return 1;
		}
	}

	printf("\npviommu policy core (index %u slots, 1500-byte transfers, one device)\n", slots);
	printf("%-34s %12s %12s %12s\n", "live mappings", "1", "1k", "100k");
	printf("%-34s %12.0f %12.0f %12.0f\n", "map, BPF run time (ns)", bpf_map_ns[0], bpf_map_ns[1], bpf_map_ns[2]);
	printf("%-34s %12.0f %12.0f %12.0f\n", "unmap, BPF run time (ns)", bpf_unmap_ns[0], bpf_unmap_ns[1], bpf_unmap_ns[2]);
	printf("%-34s %12.0f %12.0f %12.0f\n", "map+unmap, a hypercall each [300]",
	       bpf_map_ns[0] + bpf_unmap_ns[0], bpf_map_ns[1] + bpf_unmap_ns[1],
	       bpf_map_ns[2] + bpf_unmap_ns[2]);
	printf("%-34s %12.0f %12.0f %12.0f   (baseline: one BPF hash insert + delete\n"
	       "%-34s %12s %12s %12s    with as many entries live in that hash)\n",
	       "  bare hash insert+delete (ns)", bare_pair[0], bare_pair[1], bare_pair[2],
	       "", "", "", "");
	printf("%-34s %12.0f   (baseline: an empty program, stats on)\n",
	       "  empty BPF program (ns)", empty_ns);
	printf("%-34s %12.1f %12.1f %12.1f\n", "  map+unmap / bare hash pair",
	       (bpf_map_ns[0] + bpf_unmap_ns[0]) / bare_pair[0],
	       (bpf_map_ns[1] + bpf_unmap_ns[1]) / bare_pair[1],
	       (bpf_map_ns[2] + bpf_unmap_ns[2]) / bare_pair[2]);
	printf("%-34s %12.0f %12.0f %12.0f\n", "map via test_run syscall (ns)", syscall_ns[0], syscall_ns[1], syscall_ns[2]);
	printf("%-34s %12.0f %12.0f %12.0f   (the shared page's drain, the default\n"
	       "%-34s %12s %12s %12s    transport: %d operations per test_run,\n"
	       "%-34s %12.0f %12.0f %12.0f    half maps of new pages, then their unmaps)\n"
	       "%-34s %12.0f %12.0f %12.0f\n",
	       "map+unmap in a batch, BPF [300]", 2 * batch_ns[0], 2 * batch_ns[1], 2 * batch_ns[2],
	       "", "", "", "", PVIOMMU_BATCH_MAX,
	       "  op in a batch, BPF (ns)", batch_ns[0], batch_ns[1], batch_ns[2],
	       "  op in a batch, syscall (ns)", batch_sys_ns[0], batch_sys_ns[1], batch_sys_ns[2]);
	printf("%-34s %12.0f %12.0f %12.0f\n", "check, BPF run time (ns)", bpf_chk_ns[0], bpf_chk_ns[1], bpf_chk_ns[2]);
	printf("%-34s %12.1f %12.1f %12.1f\n", "check, in-process mmap (ns) [20]", user_chk[0], user_chk[1], user_chk[2]);
	printf("%-34s %12.1f %12.1f %12.1f   (baseline: the same check from the index\n"
	       "%-34s %12s %12s %12s    alone, without pviommu_fast's page bits)\n",
	       "  index only (ns)", user_idx[0], user_idx[1], user_idx[2], "", "", "", "");
	printf("%-34s %12.2f %12.2f %12.2f\n", "  index only / check",
	       user_idx[0] / user_chk[0], user_idx[1] / user_chk[1], user_idx[2] / user_chk[2]);
	printf("%-34s %12.1f %12.1f %12.1f   (the pages alone, lane known: the check minus\n"
	       "%-34s %12s %12s %12s    the domain and device state reads of the fail-closed\n"
	       "%-34s %12s %12s %12s    state machine)\n",
	       "  pages only (ns)", user_pages[0], user_pages[1], user_pages[2], "", "", "", "",
	       "", "", "", "");
	printf("%-34s %12.1f %12.1f %12.1f\n", "  state reads (ns)",
	       user_chk[0] - user_pages[0], user_chk[1] - user_pages[1],
	       user_chk[2] - user_pages[2]);

	{
		LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = "bench_probe_target");
		double bare, hit;
		struct bpf_link *l;

		bare = per_call(bench_probe_target, 2000000);
		/*
		 * The trap alone: bench_probe_target's argument is no QEMU
		 * AddressSpace, so the program returns before it checks
		 * anything (the check itself is the BPF run time above).
		 */
		l = bpf_program__attach_uprobe_opts(skel->progs.pviommu_up_ld1, getpid(),
						    "/proc/self/exe", 0, &uo);
		if (!l) {
			fprintf(stderr, "bench: cannot attach the uprobe: %s\n", strerror(errno));
			return 1;
		}
		hit = per_call(bench_probe_target, 20000);
		bpf_link__destroy(l);
		printf("\nper-transfer cost, side by side (ns/call)\n");
		printf("  bare call            %10.1f\n", bare);
		printf("  in-process check     %10.1f   (%.1fx a bare call, 100k live)\n",
		       user_chk[2], user_chk[2] / bare);
		printf("  uprobe hit (no check)%10.1f   (%.0fx the in-process check; the uprobe plane\n"
		       "                                  pays this plus the BPF check above per transfer)\n",
		       hit, hit / user_chk[2]);
	}
	{
		__u64 i = memlock(bpf_map__fd(skel->maps.pviommu_index));
		__u64 fb = memlock(bpf_map__fd(skel->maps.pviommu_fast));
		__u32 used = 0, recs = 0;

		for (__u32 k = 0; k < slots; k++) {
			used += ((struct pviommu_slot *)env.tbl)[k].kind != PVIOMMU_SLOT_EMPTY;
			recs += pv_slot_has_rec(&((struct pviommu_slot *)env.tbl)[k]);
		}
		printf("\nmemory: index %.1f MiB (%u slots, %u used, holding %u records: no record table)\n",
		       i / 1048576.0, slots, used, recs);
		printf("page bits (pviommu_fast): %.1f MiB (%d lanes of %d GiB)\n", fb / 1048576.0,
		       PVIOMMU_FAST_LANES, (int)((__u64)PVIOMMU_FAST_PAGES * 4096 >> 30));
		printf("memory for 100k mappings: %.1f MiB = %.0f B per mapping (fixed: the maps are preallocated)\n",
		       (i + fb) / 1048576.0, (double)(i + fb) / 100000);
	}
	pviommu_bpf__destroy(skel);
	bench_bpf__destroy(bb);
	{
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			return 1;
	}
	return 0;
}
