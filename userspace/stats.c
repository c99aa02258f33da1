// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* stats.c - counters, every VM's and each VM's: for people, JSON and Prometheus */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "pviommuctl.h"

/* ---- stats: counters, for people, JSON and Prometheus ------------------------------ */
static const struct prom_stat {
	const char *name;	/* pviommu_<name>_total */
	const char *help;
} prom_stats[PVIOMMU_ST_MAX] = {
	[PVIOMMU_ST_HC]		= { "hypercalls", "Hypercalls of guest kernels handled (every VM)." },
	[PVIOMMU_ST_HC_ERR]	= { "hypercall_errors", "Hypercalls refused (every VM)." },
	[PVIOMMU_ST_MAP]	= { "maps", "MAP calls carried out." },
	[PVIOMMU_ST_UNMAP]	= { "unmaps", "UNMAP calls carried out." },
	[PVIOMMU_ST_CHECK]	= { "checks", "Transfers checked in the kernel (uprobe plane, tests); the in-process plane counts only what it refuses." },
	[PVIOMMU_ST_ALLOWED]	= { "allowed", "Checked transfers allowed, audit-mode violations included." },
	[PVIOMMU_ST_VIOLATION]	= { "violations", "Transfers outside the guest's mappings (every plane)." },
	[PVIOMMU_ST_DENIED]	= { "denied", "Violations denied (the transfer failed like an IOMMU fault)." },
	[PVIOMMU_ST_KILLED]	= { "killed", "Violations that stopped their QEMU (kill mode, uprobe fail-stop)." },
	[PVIOMMU_ST_TABLE_FULL]	= { "table_full", "MAP calls refused for want of room (the range stays denied)." },
	[PVIOMMU_ST_EV_DROPPED]	= { "events_dropped", "Events lost: the ring buffer was full." },
	[PVIOMMU_ST_USER_HC]	= { "user_hypercalls", "Hypercalls from guest user space, ignored." },
	[PVIOMMU_ST_DOM_GONE]	= { "domains_gone", "Domains purged when their QEMU exited." },
	[PVIOMMU_ST_FAILED]	= { "failed_closed", "Domains or devices that failed closed (all their transfers denied)." },
	[PVIOMMU_ST_PURGE_YIELD] = { "purge_yields", "Purge chunks after which the writer lock was let go." },
};

/* the VM's name: QEMU's '-name [guest=]NAME[,...]', or "" */
static void qemu_name(__u32 pid, char *buf, size_t len)
{
	char path[64], cmd[4096], *a, *end;
	ssize_t n;
	int fd;

	buf[0] = 0;
	snprintf(path, sizeof(path), "/proc/%u/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return;
	cmd[n] = 0;
	end = cmd + n;
	for (a = cmd; a < end; a += strlen(a) + 1) {
		if (strcmp(a, "-name") && strcmp(a, "--name"))
			continue;
		a += strlen(a) + 1;
		if (a >= end)
			return;
		if (!strncmp(a, "guest=", 6))
			a += 6;
		snprintf(buf, len, "%.*s", (int)strcspn(a, ","), a);
		return;
	}
}

/* a Prometheus label value: \ " and newline escaped, other controls dropped (JSON: json_writer.c) */
static void put_escaped(FILE *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(o, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", o);
		else if ((unsigned char)*s >= 0x20)
			fputc(*s, o);
	}
}

static void prom_head(FILE *o, const char *name, const char *type, const char *help)
{
	fprintf(o, "# HELP pviommu_%s %s\n# TYPE pviommu_%s %s\n", name, help, name, type);
}

struct vm_stat {
	__u32			pid;
	struct pviommu_domain	d;
	char			name[64];
};

static const char *dom_state(const struct pviommu_domain *d)
{
	return d->flags & PVIOMMU_DOM_REGISTERED ? "registered" :
	       d->flags & PVIOMMU_DOM_RESERVED ? "reserved" : "none";
}

/* the per-VM families: one value each, from the domain record */
static const struct vm_metric {
	const char *name;
	const char *type;
	const char *help;
} vm_metrics[] = {
	{ "vm_devices", "gauge", "Devices the VM's guest protects." },
	{ "vm_mappings", "gauge", "Live mapping records of the VM (one per guest MAP)." },
	{ "vm_mapped_bytes", "gauge", "Bytes the VM's devices may access (sum of its records)." },
	{ "vm_index_pages", "gauge", "Index pages charged to the VM." },
	{ "vm_page_lanes", "gauge", "Page-bit lanes (fast path) the VM holds." },
	{ "vm_quota_refused_total", "counter", "Hypercalls of the VM refused by its quota." },
	{ "vm_failed_closed", "gauge", "1 when the VM failed closed: every transfer of every device denied." },
	{ "vm_table_full", "gauge", "1 when a MAP of the VM found no room (the range stays denied)." },
};

static __u64 vm_value(const struct pviommu_domain *d, int i)
{
	switch (i) {
	case 0: return d->nr_devices;
	case 1: return d->nr_records;
	case 2: return d->mapped_bytes;
	case 3: return d->nr_pages;
	case 4: return d->nr_lanes;
	case 5: return d->refused;
	case 6: return !!(d->flags & PVIOMMU_DOM_FAILED);
	default: return !!(d->flags & PVIOMMU_DOM_TABLE_FULL);
	}
}

static void stats_prometheus(FILE *o, const struct pviommu_stats *st, const struct pviommu_ctl *ctl,
			     const struct vm_stat *vm, int nvm, __u32 slots,
			     const struct pv_census *cs, int lanes)
{
	struct timespec rt, mono;
	size_t nm = sizeof(vm_metrics) / sizeof(vm_metrics[0]);

	prom_head(o, "up", "gauge", "1 when pviommu is loaded.");
	fprintf(o, "pviommu_up 1\n");
	prom_head(o, "generation", "gauge", "Load generation of the active programs (a reload adds 1).");
	fprintf(o, "pviommu_generation %llu\n", (unsigned long long)ctl->active_gen);
	for (int i = 0; i < PVIOMMU_ST_MAX; i++) {
		fprintf(o, "# HELP pviommu_%s_total %s\n# TYPE pviommu_%s_total counter\n"
			"pviommu_%s_total %llu\n", prom_stats[i].name, prom_stats[i].help,
			prom_stats[i].name, prom_stats[i].name, (unsigned long long)st->v[i]);
	}
	prom_head(o, "lock_busy_total", "counter", "Writers that gave up waiting for the index lock.");
	fprintf(o, "pviommu_lock_busy_total %llu\n", (unsigned long long)ctl->lock_busy);
	prom_head(o, "index_slots", "gauge", "Slots of the per-page index.");
	fprintf(o, "pviommu_index_slots %u\n", slots);
	prom_head(o, "index_slots_used", "gauge", "Index slots in use (every kind).");
	fprintf(o, "pviommu_index_slots_used %llu\n", (unsigned long long)cs->used);
	prom_head(o, "index_tombstones", "gauge", "Index slots freed but not reusable yet.");
	fprintf(o, "pviommu_index_tombstones %llu\n", (unsigned long long)cs->tomb);
	prom_head(o, "records", "gauge", "Live mapping records in the index (every VM).");
	fprintf(o, "pviommu_records %llu\n", (unsigned long long)cs->records);
	if (lanes >= 0) {
		prom_head(o, "page_lanes_used", "gauge", "Page-bit lanes in use (fast path).");
		fprintf(o, "pviommu_page_lanes_used %d\n", lanes);
	}
	prom_head(o, "vms", "gauge", "Domains (VMs) pviommu holds.");
	fprintf(o, "pviommu_vms %d\n", nvm);
	if (!nvm)
		return;
	prom_head(o, "vm_info", "gauge", "One per VM (QEMU pid): its name (QEMU -name), state and mode.");
	for (int v = 0; v < nvm; v++) {
		fprintf(o, "pviommu_vm_info{pid=\"%u\",name=\"", vm[v].pid);
		put_escaped(o, vm[v].name);
		fprintf(o, "\",state=\"%s\",mode=\"%s\"} 1\n", dom_state(&vm[v].d),
			pv_mode_str(vm[v].d.mode));
	}
	for (size_t i = 0; i < nm; i++) {
		prom_head(o, vm_metrics[i].name, vm_metrics[i].type, vm_metrics[i].help);
		for (int v = 0; v < nvm; v++)
			fprintf(o, "pviommu_%s{pid=\"%u\"} %llu\n", vm_metrics[i].name, vm[v].pid,
				(unsigned long long)vm_value(&vm[v].d, (int)i));
	}
	prom_head(o, "vm_quota", "gauge", "The VM's share of each table (taken when its QEMU started).");
	for (int v = 0; v < nvm; v++) {
		const struct pviommu_quota *q = &vm[v].d.quota;

		fprintf(o, "pviommu_vm_quota{pid=\"%u\",resource=\"records\"} %u\n"
			"pviommu_vm_quota{pid=\"%u\",resource=\"pages\"} %u\n"
			"pviommu_vm_quota{pid=\"%u\",resource=\"devices\"} %u\n"
			"pviommu_vm_quota{pid=\"%u\",resource=\"lanes\"} %u\n",
			vm[v].pid, q->records, vm[v].pid, q->pages, vm[v].pid, q->devices,
			vm[v].pid, q->lanes);
	}
	/* registered_ns is bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	prom_head(o, "vm_registered_timestamp_seconds", "gauge",
		  "When the VM's guest last registered (Unix time).");
	for (int v = 0; v < nvm; v++) {
		double ago;

		if (!vm[v].d.registered_ns)
			continue;
		ago = (mono.tv_sec + mono.tv_nsec / 1e9) - vm[v].d.registered_ns / 1e9;
		fprintf(o, "pviommu_vm_registered_timestamp_seconds{pid=\"%u\"} %.3f\n",
			vm[v].pid, rt.tv_sec + rt.tv_nsec / 1e9 - ago);
	}
}

static void stats_json(FILE *o, const struct pviommu_stats *st, const struct vm_stat *vm, int nvm)
{
	struct jw w;

	jw_begin(&w, o);
	jw_bool(&w, "loaded", 1);
	jw_obj(&w, "stats");
	for (int i = 0; i < PVIOMMU_ST_MAX; i++)
		jw_u64(&w, pv_stat_name(i), st->v[i]);
	jw_end(&w);
	jw_arr(&w, "vms");
	for (int v = 0; v < nvm; v++) {
		const struct pviommu_domain *d = &vm[v].d;

		jw_obj(&w, NULL);
		jw_u64(&w, "pid", vm[v].pid);
		jw_str(&w, "name", vm[v].name);
		jw_str(&w, "state", dom_state(d));
		jw_str(&w, "mode", pv_mode_str(d->mode));
		jw_u64(&w, "devices", d->nr_devices);
		jw_u64(&w, "mappings", d->nr_records);
		jw_u64(&w, "mapped_bytes", d->mapped_bytes);
		jw_u64(&w, "index_pages", d->nr_pages);
		jw_u64(&w, "page_lanes", d->nr_lanes);
		jw_u64(&w, "quota_refused", d->refused);
		jw_bool(&w, "failed_closed", d->flags & PVIOMMU_DOM_FAILED);
		jw_bool(&w, "table_full", d->flags & PVIOMMU_DOM_TABLE_FULL);
		jw_end(&w);
	}
	jw_end(&w);
	jw_end(&w);
}

static void stats_text(FILE *o, const struct pviommu_stats *st, const struct vm_stat *vm, int nvm)
{
	fprintf(o, "counters (every VM):\n");
	for (int i = 0; i < PVIOMMU_ST_MAX; i++)
		fprintf(o, "  %-18s %llu\n", pv_stat_name(i), (unsigned long long)st->v[i]);
	fprintf(o, "VMs:\n  %-8s %-16s %-10s %-6s %-7s %-8s %-12s %-6s %-5s %s\n", "PID", "NAME",
		"STATE", "MODE", "DEVICES", "MAPPINGS", "BYTES", "PAGES", "LANES", "QUOTA-REFUSED");
	for (int v = 0; v < nvm; v++) {
		const struct pviommu_domain *d = &vm[v].d;

		fprintf(o, "  %-8u %-16.16s %-10s %-6s %-7u %-8llu %-12llu %-6llu %-5u %u%s\n",
			vm[v].pid, vm[v].name[0] ? vm[v].name : "-", dom_state(d),
			pv_mode_str(d->mode), d->nr_devices, (unsigned long long)d->nr_records,
			(unsigned long long)d->mapped_bytes, (unsigned long long)d->nr_pages,
			d->nr_lanes, d->refused, d->flags & PVIOMMU_DOM_FAILED ? " FAILED-CLOSED" : "");
	}
	if (!nvm)
		fprintf(o, "  (none)\n");
}

#define MAX_VM_STATS	PVIOMMU_MAX_DOMAINS

static void stats_usage(void)
{
	printf("Usage: pviommuctl [-j] stats [--prometheus] [--output FILE]\n"
	       "  Counters: every VM's (hypercalls, refused hypercalls, maps, checks,\n"
	       "  violations, denied, killed, ...) and each VM's (QEMU pid, name, state,\n"
	       "  mode, devices, mappings, bytes, index pages, lanes, quota refusals).\n"
	       "  --prometheus   the Prometheus text format, for node_exporter's\n"
	       "                 textfile collector (pviommu_up 0 when not loaded);\n"
	       "                 -j does not apply\n"
	       "  --output FILE  write FILE.tmp, then rename it to FILE (what the\n"
	       "                 collector wants: it never reads half a file)\n");
}

int cmd_stats(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "prometheus", no_argument, 0, 'P' },
		{ "output", required_argument, 0, 'o' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	static struct vm_stat vm[MAX_VM_STATS];
	const char *output = NULL;
	char tmp[PATH_MAX] = "";
	struct pv_index_view iv;
	struct pviommu_ctl *ctl = NULL;
	struct pviommu_stats st;
	__u32 key, next, *prev = NULL;
	struct pv_census cs;
	int c, err = 1, prom = 0, nvm = 0, more = 0, lanes, dfd = -1, sfd = -1, ctl_fd = -1;
	int have_iv = 0;
	FILE *o = stdout;
	struct cmd_opts op = { .cmd = "stats", .spec = "Po:", .lo = lo, .usage = stats_usage };

	while ((c = cmd_getopt(&op, argc, argv)) > 0) {
		switch (c) {
		case 'P':
			prom = 1;
			json = 0;	/* the format is Prometheus', errors a line on stderr */
			break;
		case 'o':
			output = optarg;
			break;
		}
	}
	if (c < 0)
		return op.rc;
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl stats --help')", argv[optind]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	err = 1;
	if (output) {
		int fd;

		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", output) >= sizeof(tmp)) {
			p_err("what is '%s'? --output wants a shorter path", output);
			return 1;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || !(o = fdopen(fd, "w"))) {
			p_err("cannot write %s: %s", tmp, strerror(errno));
			if (fd >= 0)
				close(fd);
			return 1;
		}
	}
	if (!loaded()) {
		if (prom) {
			prom_head(o, "up", "gauge", "1 when pviommu is loaded.");
			fprintf(o, "pviommu_up 0\n");
		} else if (json) {
			struct jw w;

			jw_begin(&w, o);
			jw_bool(&w, "loaded", 0);
			jw_str(&w, "error", "pviommu is not loaded (run 'pviommuctl load')");
			jw_end(&w);
		}
		/* the file says so: a stale one would not */
		if (output && !fflush(o) && !fsync(fileno(o)) && !rename(tmp, output))
			tmp[0] = 0;
		if (!json || output)
			not_loaded();
		goto out;
	}
	ctl = ctl_map(&ctl_fd);
	dfd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 1);
	sfd = pv_obj_get(NULL, PVIOMMU_MAP_STATS, 1);
	if (ctl && dfd >= 0 && sfd >= 0)
		have_iv = !pv_index_map(NULL, &iv, 1);
	if (!have_iv) {
		p_err("pinned maps under %s are incomplete: run 'pviommuctl unload; pviommuctl load'",
		      PIN_DIR);
		goto out;
	}
	if ((c = pv_stats_read(sfd, &st))) {
		p_err("reading %s: %s", PVIOMMU_MAP_STATS, strerror(-c));
		goto out;
	}
	pv_index_census(&iv, &cs);
	lanes = iv.fast ? __builtin_popcountll(iv.fast[PVIOMMU_FAST_USED]) : -1;
	while (!bpf_map_get_next_key(dfd, prev, &next)) {
		key = next;
		prev = &key;
		if (nvm == MAX_VM_STATS) {
			more++;
			continue;
		}
		if (bpf_map_lookup_elem(dfd, &key, &vm[nvm].d))
			continue;
		vm[nvm].pid = key;
		qemu_name(key, vm[nvm].name, sizeof(vm[nvm].name));
		nvm++;
	}
	if (more)
		p_note("%d more domains not shown (at most %d)", more, MAX_VM_STATS);
	if (prom)
		stats_prometheus(o, &st, ctl, vm, nvm, iv.slots, &cs, lanes);
	else if (json)
		stats_json(o, &st, vm, nvm);
	else
		stats_text(o, &st, vm, nvm);
	err = 0;
	if (output) {
		if (fflush(o) || fsync(fileno(o)) || rename(tmp, output)) {
			p_err("cannot write %s: %s", output, strerror(errno));
			err = 1;
		} else {
			tmp[0] = 0;
		}
	}
out:
	if (output) {
		fclose(o);
		if (tmp[0])
			unlink(tmp);
	}
	if (have_iv)
		pv_index_unmap(&iv);
	if (ctl)
		ctl_unmap(ctl, ctl_fd);
	if (dfd >= 0)
		close(dfd);
	if (sfd >= 0)
		close(sfd);
	return err;
}

