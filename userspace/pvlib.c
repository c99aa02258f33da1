// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pvlib.h"
#include "pv_user.h"

int pv_parse_bdf(const char *s, __u32 *bdf)
{
	unsigned int seg = 0, bus, dev, fn;
	char tail;

	if (!s)
		return -EINVAL;
	if (sscanf(s, "%x:%x:%x.%x%c", &seg, &bus, &dev, &fn, &tail) != 4) {
		seg = 0;
		if (sscanf(s, "%x:%x.%x%c", &bus, &dev, &fn, &tail) != 3)
			return -EINVAL;
	}
	if (seg > 0xffff || bus > 0xff || dev > 0x1f || fn > 7)
		return -EINVAL;
	*bdf = PVIOMMU_BDF(seg, bus, dev, fn);
	return 0;
}

char *pv_fmt_bdf(__u32 bdf, char *buf)
{
	snprintf(buf, 16, "%04x:%02x:%02x.%x", bdf >> 16, (bdf >> 8) & 0xff,
		 (bdf >> 3) & 0x1f, bdf & 7);
	return buf;
}

const char *pv_perm_str(__u32 perm)
{
	switch (perm & PVIOMMU_PERM_RW) {
	case PVIOMMU_PERM_READ: return "r";
	case PVIOMMU_PERM_WRITE: return "w";
	case PVIOMMU_PERM_RW: return "rw";
	default: return "-";
	}
}

int pv_parse_u64(const char *s, __u64 *v)
{
	unsigned long long x;
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': x <<= 10; end++; break;
	case 'M': case 'm': x <<= 20; end++; break;
	case 'G': case 'g': x <<= 30; end++; break;
	}
	if (*end)
		return -EINVAL;
	*v = x;
	return 0;
}

static const char *const modes[] = { "audit", "deny", "kill" };

const char *pv_mode_str(__u32 mode)
{
	return mode < 3 ? modes[mode] : "?";
}

int pv_parse_mode(const char *s, __u32 *mode)
{
	for (__u32 i = 0; i < 3; i++)
		if (s && !strcmp(s, modes[i])) {
			*mode = i;
			return 0;
		}
	return -EINVAL;
}

const char *pv_verdict_str(int v)
{
	switch (v) {
	case PV_ALLOW: return "allowed";
	case PV_DENY_UNMAPPED: return "not-mapped";
	case PV_DENY_PERM: return "wrong-direction";
	case PV_DENY_WRAP: return "bad-range";
	case PV_DENY_BUSY: return "index-busy";
	case PV_DENY_FAILED: return "failed-closed";
	case PV_DENY_INFLIGHT: return "unmapped-while-in-flight";
	case PV_DENY_IOMMU: return "host-iommu";
	default: return "?";
	}
}

const char *pv_event_type_str(__u32 t)
{
	switch (t) {
	case PVIOMMU_EV_VIOLATION: return "violation";
	case PVIOMMU_EV_HC_ERROR: return "hypercall-error";
	case PVIOMMU_EV_TABLE_FULL: return "table-full";
	case PVIOMMU_EV_DOMAIN: return "domain";
	case PVIOMMU_EV_FAILED: return "failed-closed";
	case PVIOMMU_EV_LIMITED: return "events-limited";
	default: return "?";
	}
}

const char *pv_action_str(__u32 a)
{
	switch (a) {
	case PVIOMMU_ACT_ALLOWED: return "allowed";
	case PVIOMMU_ACT_DENIED: return "denied";
	case PVIOMMU_ACT_KILLED: return "killed";
	default: return "-";
	}
}

const char *pv_plane_str(__u32 p)
{
	switch (p) {
	case PVIOMMU_PLANE_HC_KVM: return "kvm";
	case PVIOMMU_PLANE_HC_TCG: return "tcg";
	case PVIOMMU_PLANE_UPROBE: return "uprobe";
	case PVIOMMU_PLANE_INPROC: return "inproc";
	case PVIOMMU_PLANE_LSM: return "lsm";
	case PVIOMMU_PLANE_TEST: return "test";
	case PVIOMMU_PLANE_EXIT: return "exit";
	case PVIOMMU_PLANE_PAGE: return "page";
	case PVIOMMU_PLANE_IOMMU: return "iommu";
	default: return "?";
	}
}

const char *pv_op_str(__u32 op)
{
	static const char *const ops[] = { "-", "register", "unregister",
		"dev-add", "dev-del", "map", "unmap" };

	return op < PVIOMMU_OP_MAX ? ops[op] : "?";
}

const char *pv_stat_name(int i)
{
	static const char *const names[PVIOMMU_ST_MAX] = {
		"hypercalls", "hypercall_errors", "maps", "unmaps", "checks",
		"allowed", "violations", "denied", "killed", "table_full",
		"events_dropped", "user_hypercalls", "domains_gone",
		"failed_closed", "purge_yields",
	};

	return i >= 0 && i < PVIOMMU_ST_MAX ? names[i] : "?";
}

const char *pv_pin_dir(void)
{
	const char *d = getenv("PVIOMMU_PIN_DIR");

	return d && *d ? d : PVIOMMU_PIN_DIR;
}

const char *pv_pin_path(const char *name)
{
	static char buf[4][300];
	static int i;

	i = (i + 1) & 3;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", pv_pin_dir(), name);
	return buf[i];
}

int pv_obj_get(const char *dir, const char *name, int rdonly)
{
	LIBBPF_OPTS(bpf_obj_get_opts, o, .file_flags = rdonly ? BPF_F_RDONLY : 0);
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : pv_pin_dir(),
		 name);
	fd = bpf_obj_get_opts(path, &o);
	return fd < 0 ? -errno : fd;
}

int pv_index_map(const char *dir, struct pv_index_view *v, int rdonly)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int err;

	memset(v, 0, sizeof(*v));
	/* a read-only fd cannot be mmapped shared: map PROT_READ instead */
	v->fd = pv_obj_get(dir, PVIOMMU_MAP_INDEX, 0);
	if (v->fd < 0)
		return v->fd;
	err = bpf_obj_get_info_by_fd(v->fd, &info, &len);
	/* an earlier build's index (a power of two entries, no header): not ours */
	if (err || info.value_size != sizeof(struct pviommu_slot) ||
	    info.max_entries <= PVIOMMU_INDEX_ENTRIES(0) ||
	    PVIOMMU_INDEX_EARLIER(info.max_entries)) {
		close(v->fd);
		return -EPROTO;
	}
	v->slots = PVIOMMU_INDEX_SLOTS(info.max_entries);
	v->len = (size_t)info.max_entries * sizeof(struct pviommu_slot);
	v->base = mmap(NULL, v->len, PROT_READ | (rdonly ? 0 : PROT_WRITE),
		       MAP_SHARED, v->fd, 0);
	if (v->base == MAP_FAILED) {
		err = -errno;
		close(v->fd);
		return err;
	}
	/* the fast path's page bits: optional (the index alone is complete) */
	v->fast_fd = pv_obj_get(dir, PVIOMMU_MAP_FAST, 0);
	memset(&info, 0, sizeof(info));
	len = sizeof(info);
	if (v->fast_fd >= 0 &&
	    (bpf_obj_get_info_by_fd(v->fast_fd, &info, &len) ||
	     info.value_size != sizeof(__u64) ||
	     info.max_entries != PVIOMMU_FAST_ENTRIES ||
	     (v->fast = mmap(NULL, PVIOMMU_FAST_ENTRIES * sizeof(__u64),
			     PROT_READ | (rdonly ? 0 : PROT_WRITE), MAP_SHARED,
			     v->fast_fd, 0)) == MAP_FAILED)) {
		v->fast = NULL;
		close(v->fast_fd);
		v->fast_fd = -1;
	}
	return 0;
}

void pv_index_census(const struct pv_index_view *v, struct pv_census *c)
{
	memset(c, 0, sizeof(*c));
	for (__u32 i = 0; i < v->slots + PVIOMMU_INDEX_TAIL; i++) {
		const struct pviommu_slot *s = &v->base[i];
		__u16 k = PV_READ_ONCE(s->kind);

		c->used += k != PVIOMMU_SLOT_EMPTY && k != PVIOMMU_SLOT_TOMB;
		c->tomb += k == PVIOMMU_SLOT_TOMB;
		c->records += pv_slot_has_rec(s);
	}
}

void pv_index_unmap(struct pv_index_view *v)
{
	if (v->fast)
		munmap(v->fast, PVIOMMU_FAST_ENTRIES * sizeof(__u64));
	if (v->fast_fd > 0)
		close(v->fast_fd);
	if (v->base && v->base != MAP_FAILED)
		munmap(v->base, v->len);
	if (v->fd > 0)
		close(v->fd);
	memset(v, 0, sizeof(*v));
}

/* BPF_PROG_TEST_RUN of a raw_tp program with five u64 args */
static int run_raw_tp(int prog_fd, __u64 a0, __u64 a1, __u64 a2, __u64 a3,
		      __u64 a4)
{
	__u64 args[5] = { a0, a1, a2, a3, a4 };
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = args,
		    .ctx_size_in = sizeof(args));
	int err = bpf_prog_test_run_opts(prog_fd, &o);

	return err ? -errno : (int)o.retval;
}

int pv_hypercall_raw(int prog_fd, __u64 nr, __u64 a0, __u64 a1, __u64 a2,
		     __u64 a3)
{
	return run_raw_tp(prog_fd, nr, a0, a1, a2, a3);
}

int pv_hypercall(int prog_fd, __u32 op, __u32 perm, __u32 bdf, __u64 iova,
		 __u64 size, __u64 cookie)
{
	return pv_hypercall_raw(prog_fd, PVIOMMU_KVM_HC_NR,
				PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, op, perm,
					       bdf),
				iova, size, cookie);
}

int pv_reserve(int prog_fd, __u32 dom, int mode, const struct pviommu_quota *q)
{
	struct pviommu_quota z = {};
	int r;

	if (!q)
		q = &z;
	r = run_raw_tp(prog_fd, dom, mode < 0 ? 0 : (__u64)mode + 1,
		       (__u64)q->records << 32 | q->pages,
		       (__u64)q->devices << 32 | q->lanes, 0);

	/* the program returns the domain (a tgid < 2^22) or -errno */
	return r;
}

int pv_parse_quota(const char *s, struct pviommu_quota *q)
{
	char buf[256], *save = NULL, *tok;
	__u64 v;

	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq || pv_parse_u64(eq + 1, &v) || !v || v > 0xffffffffu)
			return -EINVAL;
		*eq = 0;
		if (!strcmp(tok, "records"))
			q->records = (__u32)v;
		else if (!strcmp(tok, "pages"))
			q->pages = (__u32)v;
		else if (!strcmp(tok, "devices"))
			q->devices = (__u32)v;
		else if (!strcmp(tok, "lanes"))
			q->lanes = (__u32)v;
		else
			return -EINVAL;
	}
	return 0;
}

int pv_set_mode(int prog_fd, __u32 dom, __u32 mode)
{
	return run_raw_tp(prog_fd, dom, mode, 0, 0, 0);
}

const char *pv_fail_str(__u32 why)
{
	switch (why) {
	case PVIOMMU_FAIL_NOSPACE: return "no-space";
	case PVIOMMU_FAIL_LOCK: return "writer-lock-lost";
	case PVIOMMU_FAIL_UNREG: return "call-before-register";
	case PVIOMMU_FAIL_INDEX: return "index-inconsistent";
	case PVIOMMU_FAIL_PROTO: return "abi-mismatch";
	case PVIOMMU_FAIL_CHANNEL: return "page-unreadable";
	default: return "?";
	}
}

int pv_check_prog(int prog_fd, __u32 dom, __u32 bdf, __u64 addr, __u64 len,
		  __u32 need)
{
	return run_raw_tp(prog_fd, dom, bdf, addr, len, need);
}

int pv_stats_read(int map_fd, struct pviommu_stats *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct pviommu_stats *per;
	__u32 zero = 0;
	int err = 0;

	if (ncpu <= 0)
		return -EINVAL;
	per = calloc(ncpu, sizeof(*per));
	if (!per)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	if (bpf_map_lookup_elem(map_fd, &zero, per)) {
		err = -errno;
		goto out;
	}
	for (int c = 0; c < ncpu; c++)
		for (int i = 0; i < PVIOMMU_ST_MAX; i++)
			out->v[i] += per[c].v[i];
out:
	free(per);
	return err;
}
