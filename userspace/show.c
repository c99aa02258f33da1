// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* show.c - status (programs, kernel features, index, domains, counters), mappings */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "probe.h"
#include "pviommuctl.h"
#include "pv_user.h"

/* the uprobe targets of a kind as a JSON array: pids as numbers, binaries as paths */
static void json_targets(struct jw *w, const char *key, const char *prefix)
{
	struct tag_list l;
	struct target t;

	jw_arr(w, key);
	if (link_tags(prefix, &l) > 0)
		for (int i = 0; i < l.n; i++)
			if (!target_of_tag(&t, l.tag[i])) {
				if (t.pid > 0)
					jw_int(w, NULL, t.pid);
				else
					jw_str(w, NULL, t.path);
			}
	tags_free(&l);
	jw_end(w);
}

static void status_usage(void)
{
	printf("Usage: pviommuctl [-j] status\n"
	       "  Programs and where they are attached, what this kernel allows\n"
	       "  (probed), index use, domains (QEMU processes) and counters.\n");
}

/* not loaded: what this kernel allows, then the error (one JSON object with -j) */
static int status_not_loaded(const struct pv_features *f)
{
	struct jw w;

	if (json) {
		jw_begin(&w, stdout);
		jw_bool(&w, "loaded", 0);
		jw_str(&w, "error", "pviommu is not loaded (run 'pviommuctl load')");
		pv_features_json(f, &w, "features");
		jw_end(&w);
		return 1;
	}
	printf("pviommu: not loaded\nkernel features:\n");
	pv_features_print(f, stdout);
	fflush(stdout);
	return not_loaded();
}

/* what status reads from the pins of the loaded pviommu */
struct status_view {
	struct pviommu_ctl	*ctl;
	int			ctl_fd;
	int			dfd;		/* pviommu_domains */
	struct pv_index_view	iv;
	struct pv_census	cs;		/* what the index holds */
	int			lanes;		/* fast lanes in use; -1: pviommu_fast not pinned */
	struct pviommu_stats	st;
};

/* 0, or 1 with the error said */
static int status_open(struct status_view *s)
{
	int sfd;

	s->ctl = ctl_map(&s->ctl_fd);
	s->dfd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 1);
	sfd = pv_obj_get(NULL, PVIOMMU_MAP_STATS, 1);
	if (!s->ctl || s->dfd < 0 || sfd < 0 || pv_index_map(NULL, &s->iv, 1)) {
		p_err("pinned maps under %s are incomplete: run 'pviommuctl unload; pviommuctl load'",
		      PIN_DIR);
		return 1;
	}
	pv_index_census(&s->iv, &s->cs);
	pv_stats_read(sfd, &s->st);
	close(sfd);
	s->lanes = s->iv.fast ? __builtin_popcountll(s->iv.fast[PVIOMMU_FAST_USED]) : -1;
	return 0;
}

static void status_close(struct status_view *s)
{
	pv_index_unmap(&s->iv);
	ctl_unmap(s->ctl, s->ctl_fd);
	close(s->dfd);
}

/* everything before the domains, into the JSON object w opens */
static void status_json_head(struct jw *w, const struct status_view *s,
			     const struct pv_features *f)
{
	jw_begin(w, stdout);
	jw_bool(w, "loaded", 1);
	jw_u64(w, "generation", s->ctl->active_gen);
	jw_obj(w, "programs");
	jw_bool(w, "kvm_hypercall", count_links("kvm_hypercall"));
	jw_bool(w, "proc_exit", count_links("proc_exit"));
	jw_bool(w, "vfio_lsm", count_links("vfio_lsm"));
	jw_bool(w, "iommu_fault", count_links("iommu_fault"));
	/* the TCG transport and the uprobe plane: QEMU pids, or binaries (attach --qemu) */
	json_targets(w, "tcg_cpuid", "tcg-");
	json_targets(w, "uprobe_plane", "enf-");
	jw_end(w);
	pv_features_json(f, w, "features");
	jw_obj(w, "index");
	jw_u64(w, "slots", s->iv.slots);
	jw_u64(w, "used", s->cs.used);
	jw_u64(w, "tombstones", s->cs.tomb);
	jw_u64(w, "records", s->cs.records);
	jw_u64(w, "bytes", s->iv.len);
	jw_end(w);
	jw_obj(w, "fast_lanes");
	jw_int(w, "used", s->lanes);
	jw_int(w, "max", PVIOMMU_FAST_LANES);
	jw_end(w);
	jw_str(w, "default_mode", pv_mode_str(s->ctl->default_mode));
	jw_u64(w, "lock_busy", s->ctl->lock_busy);
}

/*
 * The TCG transport's targets, as status -j lists them: "attached to QEMU
 * pids P,P", "attached to every process of PATH" (attach --qemu), or both.
 */
static void print_tcg_targets(void)
{
	struct tag_list l;
	struct target t;
	int pids = 0, paths = 0;

	printf("  tcg_cpuid      ");
	link_tags("tcg-", &l);
	for (int i = 0; i < l.n; i++)
		if (!target_of_tag(&t, l.tag[i]) && t.pid > 0)
			printf("%s%d", pids++ ? "," : "attached to QEMU pids ", t.pid);
	for (int i = 0; i < l.n; i++)
		if (!target_of_tag(&t, l.tag[i]) && t.pid <= 0)
			printf("%s%s", paths++ ? "," : pids ? " and every process of " :
			       "attached to every process of ", t.path);
	printf("%s\n", pids || paths ? "" : "not attached (pviommuctl attach --pid P)");
	tags_free(&l);
}

/* the uprobe plane's targets: QEMU pids, or binaries (attach --qemu) */
static void print_enforce_targets(void)
{
	struct tag_list l;
	struct target t;

	printf("  uprobe plane   ");
	link_tags("enf-", &l);
	for (int i = 0; i < l.n; i++) {
		target_of_tag(&t, l.tag[i]);
		printf("%s%s", i ? "," : "enforcing in QEMU ", t.pid > 0 ? l.tag[i] : t.path);
	}
	printf("%s\n", l.n > 0 ? "" : "not attached (pviommuctl attach --pid P --enforce)");
	tags_free(&l);
}

static void print_programs(void)
{
	printf("programs:\n");
	printf("  kvm_hypercall  %s\n", !count_links("kvm_hypercall") ?
	       "not attached (kvm not loaded; reload after 'modprobe kvm')" :
	       !access(pv_pin_path("progs/pviommu_kvm_hypercall_svm"), F_OK) ?
	       "attached (raw_tp kvm:kvm_hypercall, guest CPL checked: SVM)" :
	       !access(pv_pin_path("progs/pviommu_kvm_hypercall_held"), F_OK) ?
	       "attached (raw_tp kvm:kvm_hypercall, held until KVM's answer at kvm:kvm_entry: guest CPL checked)" :
	       "attached (raw_tp kvm:kvm_hypercall; guest CPL not checked on this host)");
	printf("  vfio_lsm       %s\n", count_links("vfio_lsm") ?
	       "attached (lsm.s/file_ioctl: VFIO_IOMMU_MAP_DMA gate)" :
	       "not attached (BPF LSM unavailable)");
	printf("  proc_exit      %s\n", count_links("proc_exit") ?
	       "attached (raw_tp sched_process_exit)" : "not attached");
	print_tcg_targets();
	print_enforce_targets();
}

/* everything before the domains, as text */
static void status_text_head(const struct status_view *s, const struct pv_features *f)
{
	printf("pviommu: loaded (generation %llu), pins under %s\n",
	       (unsigned long long)s->ctl->active_gen, PIN_DIR);
	print_programs();
	printf("kernel features:\n");
	pv_features_print(f, stdout);
	printf("index: %u slots x %zu B (%zu KiB), %llu used (%.1f%%), %llu tombstones\n",
	       s->iv.slots, sizeof(struct pviommu_slot), s->iv.len >> 10,
	       (unsigned long long)s->cs.used, 100.0 * s->cs.used / s->iv.slots,
	       (unsigned long long)s->cs.tomb);
	if (s->lanes < 0)
		printf("page bits: pviommu_fast not pinned (every check asks the index)\n");
	else
		printf("page bits: %d of %d device lanes in use%s\n", s->lanes,
		       PVIOMMU_FAST_LANES, s->lanes == PVIOMMU_FAST_LANES ?
		       " (full: devices protected from now on are checked by the index alone)" : "");
	printf("records: %llu live (in the index); default mode %s\n",
	       (unsigned long long)s->cs.records, pv_mode_str(s->ctl->default_mode));
	printf("domains:\n  %-8s %-7s %-8s %-12s %-6s %s\n", "PID", "DEVICES",
	       "RECORDS", "BYTES", "MODE", "FLAGS");
}

static void domain_json(struct jw *w, __u32 pid, const struct pviommu_domain *dv)
{
	jw_obj(w, NULL);
	jw_u64(w, "pid", pid);
	jw_u64(w, "abi", dv->abi);
	jw_u64(w, "devices", dv->nr_devices);
	jw_u64(w, "records", dv->nr_records);
	jw_u64(w, "mapped_bytes", dv->mapped_bytes);
	jw_u64(w, "generation", dv->generation);
	jw_str(w, "mode", pv_mode_str(dv->mode));
	jw_str(w, "state", dv->flags & PVIOMMU_DOM_REGISTERED ? "registered" :
			   dv->flags & PVIOMMU_DOM_RESERVED ? "reserved" : "none");
	jw_bool(w, "failed_closed", dv->flags & PVIOMMU_DOM_FAILED);
	jw_u64(w, "pages", dv->nr_pages);
	jw_u64(w, "lanes", dv->nr_lanes);
	jw_u64(w, "quota_refused", dv->refused);
	jw_obj(w, "quota");
	jw_u64(w, "records", dv->quota.records);
	jw_u64(w, "pages", dv->quota.pages);
	jw_u64(w, "devices", dv->quota.devices);
	jw_u64(w, "lanes", dv->quota.lanes);
	jw_end(w);
	jw_bool(w, "table_full", dv->flags & PVIOMMU_DOM_TABLE_FULL);
	jw_end(w);
}

static void domain_text(__u32 pid, const struct pviommu_domain *dv)
{
	char fl[64];

	snprintf(fl, sizeof(fl), "%s%s%s%s",
		 dv->flags & PVIOMMU_DOM_REGISTERED ? "registered" :
		 dv->flags & PVIOMMU_DOM_RESERVED ? "reserved" : "-",
		 dv->flags & PVIOMMU_DOM_FAILED ? ",FAILED-CLOSED" : "",
		 dv->flags & PVIOMMU_DOM_TABLE_FULL ? ",table-full" : "",
		 dv->flags & PVIOMMU_DOM_QUOTA ? ",quota-hit" : "");
	printf("  %-8u %-7u %-8llu %-12llu %-6s %s\n", pid,
	       dv->nr_devices, (unsigned long long)dv->nr_records,
	       (unsigned long long)dv->mapped_bytes, pv_mode_str(dv->mode), fl);
}

/* every domain, as JSON objects into w or as text lines; how many */
static int status_domains(int dfd, struct jw *w)
{
	__u32 key, next, *prev = NULL;
	struct pviommu_domain dv;
	int n = 0;

	while (!bpf_map_get_next_key(dfd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(dfd, &key, &dv))
			continue;
		if (json)
			domain_json(w, key, &dv);
		else
			domain_text(key, &dv);
		n++;
	}
	return n;
}

static void status_stats_json(struct jw *w, const struct pviommu_stats *st)
{
	jw_obj(w, "stats");
	for (int i = 0; i < PVIOMMU_ST_MAX; i++)
		jw_u64(w, pv_stat_name(i), st->v[i]);
	jw_end(w);
}

static void status_stats_text(const struct pviommu_stats *st)
{
	printf("stats:\n");
	for (int i = 0; i < PVIOMMU_ST_MAX; i++)
		printf("  %-18s %llu\n", pv_stat_name(i), (unsigned long long)st->v[i]);
}

int cmd_status(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct cmd_opts o = { .cmd = "status", .spec = "", .lo = lo, .usage = status_usage };
	struct status_view s;
	struct pv_features f;
	struct jw w;
	int c, err;

	while ((c = cmd_getopt(&o, argc, argv)) > 0)
		;
	if (c < 0)
		return o.rc;
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl status --help')", argv[optind]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	pv_probe_features(&f);
	if (!loaded())
		return status_not_loaded(&f);
	if (status_open(&s))
		return 1;
	if (json) {
		status_json_head(&w, &s, &f);
		jw_arr(&w, "domains");
		status_domains(s.dfd, &w);
		jw_end(&w);
		status_stats_json(&w, &s.st);
		jw_end(&w);
	} else {
		status_text_head(&s, &f);
		if (!status_domains(s.dfd, NULL))
			printf("  (none)\n");
		status_stats_text(&s.st);
	}
	status_close(&s);
	return 0;
}

/* ---- mappings --------------------------------------------------------------------- */
static void mappings_usage(void)
{
	printf("Usage: pviommuctl [-j] mappings [--pid P] [--bdf B]\n"
	       "  Live DMA mappings the guests authorized: domain (QEMU pid), device,\n"
	       "  iova, size, permission (r: device reads memory, w: device writes it).\n"
	       "  Records live in the index: -j gives each one's slot, which\n"
	       "  'bpftool map lookup pinned %s/%s key N' shows (N as 4 bytes).\n",
	       PIN_DIR, PVIOMMU_MAP_INDEX);
}

/*
 * cmd_mappings' records: a walk collects them (filtered), the list is
 * printed once a walk was whole (other VMs' writers move entries: a walk
 * during moves may miss one or see it twice)
 */
struct mappings_ctx {
	__u64		pid, n, bytes;
	__u32		bdf;
	int		has_bdf, nomem;
	struct jw	*w;
	struct pviommu_mapping *v;
	size_t		nv, cap;
};

static int mappings_keep(const struct pviommu_mapping *v, void *arg)
{
	struct mappings_ctx *m = arg;

	if ((m->pid && v->domain != m->pid) || (m->has_bdf && v->bdf != m->bdf))
		return 0;
	if (m->nv == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 1024;
		struct pviommu_mapping *nv = realloc(m->v, cap * sizeof(*nv));

		if (!nv) {
			m->nomem = 1;
			return 1;	/* stops the walk */
		}
		m->v = nv;
		m->cap = cap;
	}
	m->v[m->nv++] = *v;
	return 0;
}

/* a walk starts over: nothing collected */
static void mappings_restart(void *arg)
{
	((struct mappings_ctx *)arg)->nv = 0;
}

/* one collected record: printed, counted */
static void mappings_one(struct mappings_ctx *m, const struct pviommu_mapping *v)
{
	char b[16];

	if (m->w) {
		jw_obj(m->w, NULL);
		jw_u64(m->w, "pid", v->domain);
		jw_str(m->w, "bdf", pv_fmt_bdf(v->bdf, b));
		jw_u64(m->w, "iova", v->iova);
		jw_u64(m->w, "size", v->size);
		jw_str(m->w, "perm", pv_perm_str(v->perm));
		jw_u64(m->w, "refs", v->refs);
		jw_u64(m->w, "generation", v->generation);
		jw_u64(m->w, "cookie", v->cookie);
		jw_u64(m->w, "slot", v->slot);
		jw_end(m->w);
	} else {
		printf("%-8u %-13s 0x%016llx %-10llu %-4s %-4u %llu\n", v->domain,
		       pv_fmt_bdf(v->bdf, b), (unsigned long long)v->iova,
		       (unsigned long long)v->size, pv_perm_str(v->perm), v->refs,
		       (unsigned long long)v->generation);
	}
	m->n++;
	m->bytes += v->size;
}

#define MAPPINGS_WALKS	8

int cmd_mappings(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "bdf", required_argument, 0, 'b' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct mappings_ctx m = { 0 };
	struct pv_index_view iv;
	struct pv_env e = { 0 };
	int c, err;
	long r;
	struct jw w;
	struct cmd_opts o = { .cmd = "mappings", .spec = "p:b:", .lo = lo, .usage = mappings_usage };

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &m.pid))
				return 1;
			break;
		case 'b':
			if (pv_parse_bdf(optarg, &m.bdf)) {
				p_err("what is '%s'? --bdf wants a PCI address like 0000:00:04.0", optarg);
				return 1;
			}
			m.has_bdf = 1;
			break;
		}
	}
	if (c < 0)
		return o.rc;
	if ((err = ready(argc, argv, "mappings")))
		return err;
	err = pv_index_map(NULL, &iv, 1);
	if (err) {
		p_err("cannot map %s: %s", pv_pin_path(PVIOMMU_MAP_INDEX), strerror(-err));
		return 1;
	}
	e.tbl = iv.base;
	e.slots = iv.slots;
	/* records are in the index (pviommu.h): passes over its slots until one is whole */
	r = pv_rec_walk_whole(&e, (__u32)m.pid, mappings_keep, mappings_restart, &m,
			      MAPPINGS_WALKS);
	pv_index_unmap(&iv);
	if (m.nomem) {
		p_err("out of memory listing %zu mappings", m.nv);
		free(m.v);
		return 1;
	}
	if (json) {
		jw_init(&w, stdout);
		jw_arr(&w, NULL);
		m.w = &w;
	} else {
		printf("%-8s %-13s %-18s %-10s %-4s %-4s %s\n", "PID", "BDF", "IOVA",
		       "SIZE", "PERM", "REFS", "GEN");
	}
	for (size_t i = 0; i < m.nv; i++)
		mappings_one(&m, &m.v[i]);
	free(m.v);
	if (json)
		jw_end(&w);
	else
		printf("%llu mappings, %llu bytes\n", (unsigned long long)m.n,
		       (unsigned long long)m.bytes);
	if (r < 0) {
		p_err("the index kept changing over %d walks: the list may miss mappings or "
		      "show one twice", MAPPINGS_WALKS);
		return 1;
	}
	return 0;
}

