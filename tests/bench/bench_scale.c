// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bench_scale: the policy core as the tables grow, in one run (make bench).
 *   - live mappings, 1 to 1M (one VM, one device): map, unmap and check in
 *     BPF (kernel run time from BPF stats), the in-process check, and the
 *     memory of every map of a load sized for that many mappings (index
 *     slots: 1.5 x the mappings, two thirds full, rounded up to a multiple
 *     of 64 and at least 1024, as `pviommuctl load --index-slots` takes
 *     them), per live mapping
 *   - devices per VM, 1 to 64 (16,384 mappings spread over them; the page
 *     bits have 16 lanes: devices past the 16th are answered by the index)
 *   - VMs, 1 to 16 (16,384 mappings spread over that many domains, each held
 *     by its own process, as each QEMU holds its own)
 * Each configuration is a fresh load of the real programs (only the
 * hypercall and check programs: what is timed). Every timed call must
 * succeed and every check of a live mapping must be allowed, else the run
 * fails. Writes $OUT/bench/scale.dat and, where gnuplot is, scale.png.
 * usage: bench_scale [OUTDIR]
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pviommu.skel.h"
#include "pvlib.h"
#include "pv_user.h"
#include "bench_util.h"

#define BASE	0x100000000ull	/* live mapping i: 4 KiB at BASE + i * 8 KiB */
#define SCRATCH	0x10000000ull	/* the timed maps and unmaps */
#define BATCHES	0x40000000ull	/* the timed batches' pages */
#define REPS	2000
#define CHECKS	1000000
#define SPREAD	16384		/* mappings of the device and VM series */

struct load {
	struct pviommu_bpf	*skel;
	struct pv_env		env;
	int			hc_fd, chk_fd;
	__u32			slots;
	char			dir[96];
};

struct point {		/* one configuration's figures */
	double	map_ns, unmap_ns, batch_ns, chk_ns, user_ns, mem_b, mem_mib;
};

static void unload(struct load *l)
{
	char cmd[160];

	if (l->env.tbl && l->env.tbl != MAP_FAILED)
		munmap(l->env.tbl, (size_t)PVIOMMU_INDEX_ENTRIES(l->slots) * sizeof(struct pviommu_slot));
	if (l->env.fast && l->env.fast != MAP_FAILED)
		munmap(l->env.fast, PVIOMMU_FAST_ENTRIES * sizeof(__u64));
	pviommu_bpf__destroy(l->skel);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", l->dir);
	if (system(cmd))
		fprintf(stderr, "bench_scale: could not remove %s\n", l->dir);
	memset(l, 0, sizeof(*l));
}

/* a load sized for n live mappings (plus the timed ones) */
static int load(struct load *l, __u64 n)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	static int seq;
	struct bpf_program *p;
	void *ctl;
	int err;

	memset(l, 0, sizeof(*l));
	l->slots = (__u32)(((n + REPS) * 3 / 2 + PVIOMMU_INDEX_ALIGN - 1) &
			   ~(__u64)(PVIOMMU_INDEX_ALIGN - 1));
	if (l->slots < PVIOMMU_MIN_INDEX_SLOTS)
		l->slots = PVIOMMU_MIN_INDEX_SLOTS;
	snprintf(l->dir, sizeof(l->dir), "/sys/fs/bpf/pviommu-scale-%d-%d", getpid(), seq++);
	mkdir(l->dir, 0700);
	oo.pin_root_path = l->dir;
	l->skel = pviommu_bpf__open_opts(&oo);
	if (!l->skel) {
		fprintf(stderr, "bench_scale: cannot open the BPF object: %s\n", strerror(errno));
		return -1;
	}
	bpf_object__for_each_program(p, l->skel->obj)
		bpf_program__set_autoload(p, p == l->skel->progs.pviommu_kvm_hypercall ||
					     p == l->skel->progs.pviommu_hc_batch ||
					     p == l->skel->progs.pviommu_test_check);
	bpf_map__set_max_entries(l->skel->maps.pviommu_index, PVIOMMU_INDEX_ENTRIES(l->slots));
	l->skel->rodata->index_slots = l->slots;
	l->skel->rodata->load_gen = 1;
	err = pviommu_bpf__load(l->skel);
	if (err) {
		fprintf(stderr, "bench_scale: load failed: %s\n", strerror(-err));
		return -1;
	}
	ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
		   bpf_map__fd(l->skel->maps.pviommu_ctl), 0);
	if (ctl == MAP_FAILED)
		return -1;
	((struct pviommu_ctl *)ctl)->active_gen = 1;
	munmap(ctl, 4096);
	l->env.tbl = mmap(NULL, (size_t)PVIOMMU_INDEX_ENTRIES(l->slots) * sizeof(struct pviommu_slot), PROT_READ,
			  MAP_SHARED, bpf_map__fd(l->skel->maps.pviommu_index), 0);
	l->env.fast = mmap(NULL, PVIOMMU_FAST_ENTRIES * sizeof(__u64), PROT_READ, MAP_SHARED,
			   bpf_map__fd(l->skel->maps.pviommu_fast), 0);
	if (l->env.tbl == MAP_FAILED || l->env.fast == MAP_FAILED) {
		fprintf(stderr, "bench_scale: cannot mmap the index: %s\n", strerror(errno));
		return -1;
	}
	l->env.slots = l->slots;
	l->hc_fd = bpf_program__fd(l->skel->progs.pviommu_kvm_hypercall);
	l->chk_fd = bpf_program__fd(l->skel->progs.pviommu_test_check);
	return 0;
}

/* every map of the load: what it preallocates */
static __u64 load_memory(struct load *l)
{
	struct bpf_map *m;
	__u64 sum = 0;

	bpf_object__for_each_map(m, l->skel->obj)
		if (bpf_map__fd(m) >= 0)
			sum += memlock(bpf_map__fd(m));
	return sum;
}

static __u32 dev_of(__u32 d)
{
	return PVIOMMU_BDF(0, 0, 1 + d % 31, d / 31);
}

/* register the caller's domain with ndev devices */
static int setup_domain(struct load *l, __u32 ndev)
{
	if (pv_hypercall(l->hc_fd, PVIOMMU_OP_REGISTER, 0, 0, 0, 0, 0))
		return -1;
	for (__u32 d = 0; d < ndev; d++)
		if (pv_hypercall(l->hc_fd, PVIOMMU_OP_DEV_ADD, 0, dev_of(d), 0, 0, 0))
			return -1;
	return 0;
}

/* mappings [from, to) of the caller's domain, mapping i on device i % ndev */
static int populate(struct load *l, __u64 from, __u64 to, __u32 ndev)
{
	for (__u64 i = from; i < to; i++) {
		int r = pv_hypercall(l->hc_fd, PVIOMMU_OP_MAP, PVIOMMU_PERM_RW, dev_of(i % ndev),
				     BASE + i * 0x2000, 0x1000, 0);

		if (r) {
			fprintf(stderr, "bench_scale: map %llu of %llu: %d\n",
				(unsigned long long)i, (unsigned long long)to, r);
			return -1;
		}
	}
	return 0;
}

/* REPS calls of op on the scratch pages of dev: BPF run time per call; refusals into *failed */
static double timed_ops(struct load *l, __u32 op, __u32 dev, unsigned long *failed)
{
	__u64 ns0, c0, ns1, c1;

	prog_stats(l->hc_fd, &ns0, &c0);
	for (int i = 0; i < REPS; i++)
		*failed += pv_hypercall(l->hc_fd, op, PVIOMMU_PERM_RW, dev,
					SCRATCH + i * 0x2000ull, 0x1000, 0) != 0;
	prog_stats(l->hc_fd, &ns1, &c1);
	return (double)(ns1 - ns0) / (c1 - c0 ? c1 - c0 : 1);
}

/*
 * time REPS maps and unmaps of fresh pages of device dev (BPF run time per
 * call), REPS BPF checks and CHECKS in-process checks of random live
 * mappings: the k-th of all is dom[k % ndom]'s j-th (j = k / ndom, at
 * BASE + j * 8 KiB) on device j % ndev. The in-process checks are of
 * dom[0]'s mappings only: a QEMU checks its own VM's transfers (the BPF
 * checks, one program for every VM, take any VM's).
 */
static int measure(struct load *l, struct point *pt, __u32 dev, const __u32 *dom, __u32 ndom,
		   __u64 live, __u32 ndev)
{
	unsigned long long x = 88172645463325252ull, ok = 0;
	__u64 ns0, c0, ns1, c1;
	unsigned long failed = 0;
	double t0;

	__u64 next = BATCHES;

	pt->map_ns = timed_ops(l, PVIOMMU_OP_MAP, dev, &failed);
	pt->unmap_ns = timed_ops(l, PVIOMMU_OP_UNMAP, dev, &failed);
	/* a MAP and its UNMAP through the shared page's drain (the default transport) */
	pt->batch_ns = 2 * batch_op_ns_median(bpf_program__fd(l->skel->progs.pviommu_hc_batch), dev,
				       &next, 4 * REPS / PVIOMMU_BATCH_MAX, NULL, &failed);
	if (failed) {
		fprintf(stderr, "bench_scale: %lu timed map/unmap calls or batches failed\n", failed);
		return -1;
	}
	prog_stats(l->chk_fd, &ns0, &c0);
	for (int i = 0; i < REPS; i++) {
		__u64 k = (__u64)i * 7919 % live, j = k / ndom;

		ok += pv_check_prog(l->chk_fd, dom[k % ndom], dev_of(j % ndev),
				    BASE + j * 0x2000 + 64, 1500, PVIOMMU_PERM_READ) == PV_ALLOW;
	}
	prog_stats(l->chk_fd, &ns1, &c1);
	pt->chk_ns = (double)(ns1 - ns0) / (c1 - c0 ? c1 - c0 : 1);
	t0 = now_ns();
	for (int i = 0; i < CHECKS; i++) {
		__u64 k, j;

		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		k = x % (live / ndom) * ndom;	/* dom[0]'s */
		j = k / ndom;
		ok += pv_check(&l->env, dom[k % ndom], dev_of(j % ndev), BASE + j * 0x2000 + 64,
			       1500, PVIOMMU_PERM_READ) == PV_ALLOW;
	}
	pt->user_ns = (now_ns() - t0) / CHECKS;
	if (ok != REPS + CHECKS) {
		fprintf(stderr, "bench_scale: %llu of %d checks of live mappings denied\n",
			REPS + CHECKS - ok, REPS + CHECKS);
		return -1;
	}
	return 0;
}

/*
 * One VM per process: children register their domain, map their share and
 * wait until released (the parent measures meanwhile). k-th mapping of the
 * whole spread belongs to VM k % nvm, which numbers it k / nvm.
 */
static int vm_series(struct load *l, __u32 nvm, struct point *pt)
{
	int ready[2], release[2], err = 0;
	pid_t pids[16];
	__u32 dom[16];
	char c;

	if (nvm > 16 || pipe(ready) || pipe(release))
		return -1;
	dom[0] = getpid();
	for (__u32 v = 1; v < nvm; v++) {
		pid_t p = fork();

		if (p < 0)
			return -1;
		if (!p) {
			__u64 share = SPREAD / nvm + (v < SPREAD % nvm);

			close(ready[0]);
			close(release[1]);
			c = setup_domain(l, 1) || populate(l, 0, share, 1) ? 'F' : 'R';
			if (write(ready[1], &c, 1) != 1)
				_exit(1);
			if (read(release[0], &c, 1) < 0)	/* EOF: released */
				_exit(1);
			_exit(0);
		}
		pids[v] = p;
		dom[v] = (__u32)p;
	}
	close(ready[1]);
	close(release[0]);
	for (__u32 v = 1; v < nvm; v++)
		if (read(ready[0], &c, 1) != 1 || c != 'R')
			err = -1;
	if (!err && (setup_domain(l, 1) || populate(l, 0, SPREAD / nvm + (0 < SPREAD % nvm), 1)))
		err = -1;
	if (!err)
		err = measure(l, pt, dev_of(0), dom, nvm, SPREAD, 1);
	close(release[1]);
	close(ready[0]);
	for (__u32 v = 1; v < nvm; v++) {
		int st;

		if (waitpid(pids[v], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			err = -1;
	}
	return err;
}

static void row(const char *name, struct point *p, int n, size_t off, const char *fmt)
{
	printf("  %-30s", name);
	for (int i = 0; i < n; i++)
		printf(fmt, *(double *)((char *)&p[i] + off));
	printf("\n");
}

#define ROWS(p, n)								\
	do {									\
		row("map, BPF (ns)", p, n, offsetof(struct point, map_ns), " %8.0f"); \
		row("unmap, BPF (ns)", p, n, offsetof(struct point, unmap_ns), " %8.0f"); \
		row("map+unmap in a batch (ns)", p, n, offsetof(struct point, batch_ns), " %8.0f"); \
		row("check, BPF (ns)", p, n, offsetof(struct point, chk_ns), " %8.0f"); \
		row("check, in-process (ns) [20]", p, n, offsetof(struct point, user_ns), " %8.1f"); \
	} while (0)

int main(int argc, char **argv)
{
	static const __u64 nmap[] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
	static const __u32 ndev[] = { 1, 2, 4, 8, 16, 17, 32, 64 };
	static const __u32 nvm[] = { 1, 2, 4, 8, 16 };
	enum { NM = sizeof(nmap) / sizeof(nmap[0]), ND = sizeof(ndev) / sizeof(ndev[0]),
	       NV = sizeof(nvm) / sizeof(nvm[0]) };
	struct point pm[NM] = {}, pd[ND] = {}, pv[NV] = {};
	const char *outdir = argc > 1 ? argv[1] : "build/bench";
	char path[256];
	struct load l;
	__u32 self = getpid();
	__u64 mem;
	int stats_fd;
	FILE *f;

	if (geteuid()) {
		fprintf(stderr, "bench_scale: needs root\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (stats_fd < 0) {
		fprintf(stderr, "bench_scale: BPF stats unavailable: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 0; i < NM; i++) {
		if (load(&l, nmap[i]) || setup_domain(&l, 1) || populate(&l, 0, nmap[i], 1) ||
		    measure(&l, &pm[i], dev_of(0), &self, 1, nmap[i], 1)) {
			fprintf(stderr, "bench_scale: %llu mappings failed\n",
				(unsigned long long)nmap[i]);
			return 1;
		}
		mem = load_memory(&l);
		pm[i].mem_mib = mem / 1048576.0;
		pm[i].mem_b = mem / (double)nmap[i];
		unload(&l);
	}
	for (int i = 0; i < ND; i++) {
		/* the timed device is the last one: past the 16th it has no lane */
		if (load(&l, SPREAD) || setup_domain(&l, ndev[i]) ||
		    populate(&l, 0, SPREAD, ndev[i]) ||
		    measure(&l, &pd[i], dev_of(ndev[i] - 1), &self, 1, SPREAD, ndev[i])) {
			fprintf(stderr, "bench_scale: %u devices failed\n", ndev[i]);
			return 1;
		}
		unload(&l);
	}
	for (int i = 0; i < NV; i++) {
		if (load(&l, SPREAD) || vm_series(&l, nvm[i], &pv[i])) {
			fprintf(stderr, "bench_scale: %u VMs failed\n", nvm[i]);
			return 1;
		}
		unload(&l);
	}

	printf("\npviommu at scale (BPF run time per call from BPF stats, %d calls; in-process: %d\n"
	       "checks of random live mappings, 1500 bytes; each column a fresh load)\n", REPS, CHECKS);
	printf("  %-30s", "live mappings (1 VM, 1 device)");
	for (int i = 0; i < NM; i++)
		printf(" %8llu", (unsigned long long)nmap[i]);
	printf("\n");
	ROWS(pm, NM);
	row("memory, all maps (MiB)", pm, NM, offsetof(struct point, mem_mib), " %8.1f");
	row("memory per live mapping (B)", pm, NM, offsetof(struct point, mem_b), " %8.0f");
	printf("  memory per mapping at 1M: %.0f B [target 128 B: %s]; map+unmap at 1M: %.0f ns "
	       "a hypercall each [target 300 ns: %s], %.0f ns in a batch [%s]\n",
	       pm[NM - 1].mem_b, pm[NM - 1].mem_b <= 128 ? "met" : "missed",
	       pm[NM - 1].map_ns + pm[NM - 1].unmap_ns,
	       pm[NM - 1].map_ns + pm[NM - 1].unmap_ns <= 300 ? "met" : "missed",
	       pm[NM - 1].batch_ns, pm[NM - 1].batch_ns <= 300 ? "met" : "missed");
	printf("  %-30s", "devices per VM (16k mappings)");
	for (int i = 0; i < ND; i++)
		printf(" %8u", ndev[i]);
	printf("\n");
	ROWS(pd, ND);
	printf("  (the timed device is the last added; the page bits have %d lanes)\n",
	       PVIOMMU_FAST_LANES);
	printf("  %-30s", "VMs (16k mappings in all)");
	for (int i = 0; i < NV; i++)
		printf(" %8u", nvm[i]);
	printf("\n");
	ROWS(pv, NV);

	snprintf(path, sizeof(path), "mkdir -p '%s'", outdir);
	if (system(path))
		return 1;
	snprintf(path, sizeof(path), "%s/scale.dat", outdir);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "bench_scale: %s: %s\n", path, strerror(errno));
		return 1;
	}
	fprintf(f, "# mappings map_ns unmap_ns check_bpf_ns check_inproc_ns mem_per_mapping_b batch_pair_ns\n");
	for (int i = 0; i < NM; i++)
		fprintf(f, "%llu %.0f %.0f %.0f %.1f %.0f %.0f\n", (unsigned long long)nmap[i],
			pm[i].map_ns, pm[i].unmap_ns, pm[i].chk_ns, pm[i].user_ns, pm[i].mem_b,
			pm[i].batch_ns);
	fprintf(f, "\n\n# devices map_ns unmap_ns check_bpf_ns check_inproc_ns\n");
	for (int i = 0; i < ND; i++)
		fprintf(f, "%u %.0f %.0f %.0f %.1f\n", ndev[i], pd[i].map_ns, pd[i].unmap_ns,
			pd[i].chk_ns, pd[i].user_ns);
	fprintf(f, "\n\n# vms map_ns unmap_ns check_bpf_ns check_inproc_ns\n");
	for (int i = 0; i < NV; i++)
		fprintf(f, "%u %.0f %.0f %.0f %.1f\n", nvm[i], pv[i].map_ns, pv[i].unmap_ns,
			pv[i].chk_ns, pv[i].user_ns);
	fclose(f);
	printf("  data: %s\n", path);
	if (!system("command -v gnuplot >/dev/null 2>&1")) {
		char cmd[1024];

		snprintf(cmd, sizeof(cmd),
			 "gnuplot -e \"d='%s/scale.dat'; o='%s/scale.png'\" '%s' 2>&1",
			 outdir, outdir, getenv("SCALE_GP") ? getenv("SCALE_GP") : "tests/bench/scale.gp");
		printf("  plot: %s/scale.png%s\n", outdir, system(cmd) ? " (gnuplot failed)" : "");
	} else {
		printf("  plot: gnuplot not installed (scripts/install-deps.sh --bench)\n");
	}
	close(stats_fd);
	return 0;
}
