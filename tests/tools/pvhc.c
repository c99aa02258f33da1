// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pvhc - issue pviommu hypercalls from this process through the pinned
 * kvm_hypercall program (BPF_PROG_TEST_RUN): this process is the domain.
 * Used by the lifecycle tests and the benchmarks.
 *
 *   pvhc [--hold] OP [ARGS] [-- OP [ARGS]]...
 *     register | unregister | dev-add BDF | dev-del BDF |
 *     map BDF IOVA SIZE r|w|rw | unmap BDF IOVA SIZE |
 *     check BDF ADDR LEN r|w                  a transfer of this domain's
 *                                             device, through pviommu_test_check
 *                                             (prints the verdict; a deny is no error)
 *     report BDF ADDR LEN r|w allowed|denied|killed
 *                                             a violation as the in-process plane
 *                                             reports it (pviommu_inproc_event)
 *     drop-record PID BDF IOVA                forget the live record of another
 *                                             domain's mapping, under the writer
 *                                             lock, as a lost host update would:
 *                                             its UNMAP is then refused (tests)
 *   --hold   after the calls, print "ready" and wait for stdin to close
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <bpf/bpf.h>
#include "pvlib.h"
#include "pv_user.h"

static int perm_of(const char *s, __u32 *p)
{
	*p = !strcmp(s, "r") ? PVIOMMU_PERM_READ : !strcmp(s, "w") ?
	     PVIOMMU_PERM_WRITE : !strcmp(s, "rw") ? PVIOMMU_PERM_RW : 0;
	return *p ? 0 : -EINVAL;
}

static int action_of(const char *s, __u32 *a)
{
	*a = !strcmp(s, "allowed") ? PVIOMMU_ACT_ALLOWED : !strcmp(s, "denied") ?
	     PVIOMMU_ACT_DENIED : !strcmp(s, "killed") ? PVIOMMU_ACT_KILLED : 0;
	return *a ? 0 : -EINVAL;
}

/* check BDF ADDR LEN r|w, report ... ACTION: the two programs of the check side */
static int check_op(int argc, char **argv, int *i, int report)
{
	__u32 bdf, need, action = 0;
	__u64 addr, len, args[5];
	const char *prog = report ? "progs/pviommu_inproc_event" : "progs/pviommu_test_check";
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = args, .ctx_size_in = sizeof(args));
	int fd, err;

	if (*i + 4 + report > argc || pv_parse_bdf(argv[*i], &bdf) ||
	    pv_parse_u64(argv[*i + 1], &addr) || pv_parse_u64(argv[*i + 2], &len) ||
	    perm_of(argv[*i + 3], &need) || need == PVIOMMU_PERM_RW ||
	    (report && action_of(argv[*i + 4], &action))) {
		fprintf(stderr, "pvhc: bad call '%s' (see the header of tests/tools/pvhc.c)\n",
			report ? "report" : "check");
		return -EINVAL;
	}
	*i += 4 + report;
	fd = pv_obj_get(NULL, prog, 0);
	if (fd < 0) {
		fprintf(stderr, "pvhc: %s: %s\n", prog, strerror(-fd));
		return fd;
	}
	if (report) {
		/* bdf, addr, len, need, verdict << 8 | action (verdict 1: unmapped);
		 * the domain is this tgid */
		args[0] = bdf;
		args[1] = addr;
		args[2] = len;
		args[3] = need;
		args[4] = 1 << 8 | action;
	} else {
		/* domain, bdf, addr, len, need */
		args[0] = (__u64)getpid();
		args[1] = bdf;
		args[2] = addr;
		args[3] = len;
		args[4] = need;
	}
	err = bpf_prog_test_run_opts(fd, &o) ? -errno : 0;
	close(fd);
	if (err) {
		fprintf(stderr, "pvhc: %s: %s\n", prog, strerror(-err));
		return err;
	}
	if (!report)
		printf("check %s 0x%llx %llu %s: %s\n", argv[*i - 4], (unsigned long long)addr,
		       (unsigned long long)len, argv[*i - 1], o.retval ? "deny" : "allow");
	return 0;
}

/* drop-record PID BDF IOVA */
static int drop_record(int argc, char **argv, int *i)
{
	struct pv_index_view iv;
	struct pviommu_ctl *ctl;
	struct pv_env e = { 0 };
	__u64 dom, iova;
	int cfd, n, err = -ENOENT;
	__u32 bdf;
	long idx;

	if (*i + 3 > argc || pv_parse_u64(argv[*i], &dom) || pv_parse_bdf(argv[*i + 1], &bdf) ||
	    pv_parse_u64(argv[*i + 2], &iova)) {
		fprintf(stderr, "pvhc: bad call 'drop-record' (see the header of tests/tools/pvhc.c)\n");
		return -EINVAL;
	}
	*i += 3;
	cfd = pv_obj_get(NULL, PVIOMMU_MAP_CTL, 0);
	ctl = cfd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	if (ctl == MAP_FAILED || pv_index_map(NULL, &iv, 0)) {
		fprintf(stderr, "pvhc: cannot map the control page and the index\n");
		return -ENODEV;
	}
	e.tbl = iv.base;
	e.slots = iv.slots;
	e.key = ctl->hash_key;
	for (n = 0; n < 100000 && __sync_val_compare_and_swap(&ctl->lock, 0, 1); n++)
		usleep(10);
	if (n == 100000) {
		fprintf(stderr, "pvhc: drop-record: the writer lock stayed busy\n");
		err = -EBUSY;
		goto out;
	}
	idx = pv_rec_idx(&e, (__u32)dom, bdf, iova, 0);
	if (idx >= 0) {
		struct pviommu_slot *s = pv_slot_at(&e, (__u32)idx);

		pv_rec_write(s, NULL);
		if (s->kind == PVIOMMU_SLOT_RECORD)
			pv_slot_free(&e, (__u32)idx);
		err = 0;
	}
	__sync_lock_release(&ctl->lock);
	if (err)
		fprintf(stderr, "pvhc: drop-record: no record of %llu %s 0x%llx\n",
			(unsigned long long)dom, argv[*i - 2], (unsigned long long)iova);
out:
	pv_index_unmap(&iv);
	munmap(ctl, 4096);
	close(cfd);
	return err;
}

int main(int argc, char **argv)
{
	int i = 1, hold = 0, fd, err = 0;
	char buf[64];

	if (i < argc && !strcmp(argv[i], "--hold")) {
		hold = 1;
		i++;
	}
	fd = pv_obj_get(NULL, "progs/pviommu_kvm_hypercall", 0);
	if (fd < 0) {
		fprintf(stderr, "pvhc: pviommu is not loaded: %s\n", strerror(-fd));
		return 1;
	}
	while (i < argc) {
		const char *op = argv[i++];
		__u32 bdf = 0, perm = 0, code;
		__u64 iova = 0, size = 0;
		int need = 0;

		if (!strcmp(op, "--"))
			continue;
		if (!strcmp(op, "drop-record")) {
			if (drop_record(argc, argv, &i))
				return 1;
			continue;
		}
		if (!strcmp(op, "check") || !strcmp(op, "report")) {
			if (check_op(argc, argv, &i, op[0] == 'r'))
				return 1;
			continue;
		}
		code = !strcmp(op, "register") ? PVIOMMU_OP_REGISTER :
		       !strcmp(op, "unregister") ? PVIOMMU_OP_UNREGISTER :
		       !strcmp(op, "dev-add") ? PVIOMMU_OP_DEV_ADD :
		       !strcmp(op, "dev-del") ? PVIOMMU_OP_DEV_DEL :
		       !strcmp(op, "map") ? PVIOMMU_OP_MAP :
		       !strcmp(op, "unmap") ? PVIOMMU_OP_UNMAP : 0;
		need = code == PVIOMMU_OP_MAP ? 4 : code == PVIOMMU_OP_UNMAP ? 3 :
		       code >= PVIOMMU_OP_DEV_ADD ? 1 : 0;
		if (!code || i + need > argc ||
		    (need >= 1 && pv_parse_bdf(argv[i], &bdf)) ||
		    (need >= 3 && (pv_parse_u64(argv[i + 1], &iova) ||
				   pv_parse_u64(argv[i + 2], &size))) ||
		    (need == 4 && perm_of(argv[i + 3], &perm))) {
			fprintf(stderr, "pvhc: bad call '%s' (see the header of tests/tools/pvhc.c)\n", op);
			return 1;
		}
		i += need;
		err = pv_hypercall(fd, code, perm, bdf, iova, size, 0);
		if (err) {
			fprintf(stderr, "pvhc: %s: %s\n", op, strerror(-err));
			return 1;
		}
	}
	if (hold) {
		printf("ready %d\n", getpid());
		fflush(stdout);
		while (read(0, buf, sizeof(buf)) > 0)
			;
	}
	return 0;
}
