// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* uprobe.c - uprobes on QEMU: the TCG hypercall transport and the uprobe plane; attach, detach */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/libbpf.h>
#include "pviommu.skel.h"
#include "probe.h"
#include "qemu_elf.h"
#include "pviommuctl.h"

/* "pid,pid,...": the QEMU processes an error message names */
#define PID_LIST_LEN	256
/* why a QEMU binary's PCI layout is not the known one (qemu_layout_check_file) */
#define LAYOUT_WHY_LEN	256

/*
 * Uprobes are per QEMU process. links/tcg-<pid>: the TCG hypercall
 * transport (cpu_x86_cpuid); links/enf-<pid>-<n>: the uprobe enforcement
 * plane on QEMU's address-space functions, link n on the n-th function here.
 */
static const struct up_target {
	const char	*prog;
	const char	*func;
} up_targets[] = {
	{ "pviommu_up_rw", "address_space_rw" },
	{ "pviommu_up_read", "address_space_read_full" },
	{ "pviommu_up_write", "address_space_write" },
	{ "pviommu_up_write", "address_space_write_rom" },
	{ "pviommu_up_map", "address_space_map" },
	{ "pviommu_up_cache_init", "address_space_cache_init" },
	{ "pviommu_up_ld1", "address_space_ldub" },
	{ "pviommu_up_ld2", "address_space_lduw" },
	{ "pviommu_up_ld2", "address_space_lduw_le" },
	{ "pviommu_up_ld2", "address_space_lduw_be" },
	{ "pviommu_up_ld4", "address_space_ldl" },
	{ "pviommu_up_ld4", "address_space_ldl_le" },
	{ "pviommu_up_ld4", "address_space_ldl_be" },
	{ "pviommu_up_ld8", "address_space_ldq" },
	{ "pviommu_up_ld8", "address_space_ldq_le" },
	{ "pviommu_up_ld8", "address_space_ldq_be" },
	{ "pviommu_up_st1", "address_space_stb" },
	{ "pviommu_up_st2", "address_space_stw" },
	{ "pviommu_up_st2", "address_space_stw_le" },
	{ "pviommu_up_st2", "address_space_stw_be" },
	{ "pviommu_up_st4", "address_space_stl" },
	{ "pviommu_up_st4", "address_space_stl_le" },
	{ "pviommu_up_st4", "address_space_stl_be" },
	{ "pviommu_up_st8", "address_space_stq" },
	{ "pviommu_up_st8", "address_space_stq_le" },
	{ "pviommu_up_st8", "address_space_stq_be" },
};

/*
 * A target is one QEMU process (tag "<pid>") or every process of one QEMU
 * binary (tag "x<path>", '/' written '+' and '.' written '=': bpffs names
 * take no dot). Pins: links/tcg-<tag>, links/enf-<tag>-<n>.
 */
int target_pid(struct target *t, int pid)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	snprintf(t->tag, sizeof(t->tag), "%d", pid);
	return 0;
}

int target_path(struct target *t, const char *path)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	t->pid = -1;
	if (!path || path[0] != '/' || strlen(path) >= sizeof(t->path) ||
	    strpbrk(path, "+="))
		return -EINVAL;
	snprintf(t->path, sizeof(t->path), "%s", path);
	t->tag[0] = 'x';
	for (i = 0; path[i]; i++)
		t->tag[i + 1] = path[i] == '/' ? '+' : path[i] == '.' ? '=' : path[i];
	t->tag[i + 1] = 0;
	return 0;
}

int target_of_tag(struct target *t, const char *tag)
{
	char path[PV_PATH_LEN];
	size_t i;

	if (tag[0] != 'x')
		return target_pid(t, atoi(tag));
	for (i = 1; tag[i] && i < sizeof(path); i++)
		path[i - 1] = tag[i] == '+' ? '/' : tag[i] == '=' ? '.' : tag[i];
	path[i - 1] = 0;
	return target_path(t, path);
}

static int attach_one(struct bpf_program *prog, const struct target *t,
		      const char *func, const char *pin)
{
	LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = func);
	struct bpf_link *l;
	char exe[64];
	int err;

	snprintf(exe, sizeof(exe), "/proc/%d/exe", t->pid);
	if (access(t->pid > 0 ? exe : t->path, R_OK))
		return -ESRCH;
	l = bpf_program__attach_uprobe_opts(prog, t->pid, t->pid > 0 ? exe : t->path,
					    0, &uo);
	if (!l)
		return -errno;
	err = pin_replace(bpf_link__fd(l), LINK_DIR, pin);
	bpf_link__destroy(l);
	return err;
}

int attach_tcg(struct pviommu_bpf *skel, const struct target *t)
{
	char name[PV_LINK_NAME_LEN];

	snprintf(name, sizeof(name), "tcg-%s", t->tag);
	return attach_one(skel->progs.pviommu_tcg_cpuid, t, "cpu_x86_cpuid",
			  name);
}

int attach_enforce(struct pviommu_bpf *skel, const struct target *t,
			  int *nlinks, const char **failed)
{
	char name[PV_LINK_NAME_LEN];
	int n, err;

	for (n = 0; n < (int)(sizeof(up_targets) / sizeof(up_targets[0])); n++) {
		const struct up_target *u = &up_targets[n];
		struct bpf_program *p = bpf_object__find_program_by_name(skel->obj, u->prog);

		if (!p)
			return -ENOENT;
		snprintf(name, sizeof(name), "enf-%s-%d", t->tag, n);
		err = attach_one(p, t, u->func, name);
		if (err) {
			*failed = u->func;
			return err;
		}
	}
	*nlinks = n;
	return 0;
}
/* ---- attach (TCG hypercall transport) ------------------------------------------------- */
/* does process pid have the in-process plane's library mapped? */
static int has_inproc(int pid)
{
	char path[64], line[512];
	int hit = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "r");
	while (f && !hit && fgets(line, sizeof(line), f))
		hit = strstr(line, "libpviommu-qemu.so") != NULL;
	if (f)
		fclose(f);
	return hit;
}

/*
 * Processes of binary 'path' (same inode as /proc/PID/exe) that run the
 * in-process plane; their pids, comma-separated, in buf. A uprobe on that
 * binary lands on the 'jmp rel32' libpviommu-qemu.so wrote over a patched
 * prologue: the kernel then emulates the file's first instruction and
 * resumes 2 or 3 bytes into the jmp, i.e. inside its displacement (seen as
 * QEMU 7.2 dying of SIGSEGV in address_space_stl_le -> flatview_do_translate
 * -> address_space_translate_internal: 'mov %rdi,%r14' was skipped, the
 * AddressSpace pointer is stale, its dispatch NULL). Removing the uprobe
 * writes the file's first byte back over the jmp: broken for good.
 */
static int inproc_users(const char *path, char *buf, size_t len)
{
	struct stat want, st;
	struct dirent *de;
	size_t off = 0;
	int n = 0;
	DIR *d;

	buf[0] = 0;
	if (stat(path, &want) || !(d = opendir("/proc")))
		return 0;
	while ((de = readdir(d))) {
		char exe[64];
		int pid = atoi(de->d_name);

		if (pid <= 0)
			continue;
		snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
		if (stat(exe, &st) || st.st_dev != want.st_dev || st.st_ino != want.st_ino ||
		    !has_inproc(pid))
			continue;
		if (off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%d", n ? "," : "", pid);
		n++;
	}
	closedir(d);
	return n;
}

static void attach_usage(void)
{
	printf("Usage: pviommuctl attach --pid P | --qemu PATH [--enforce]\n"
	       "  Attach to a running QEMU without restarting it:\n"
	       "  - always: the TCG hypercall transport (a uprobe on cpu_x86_cpuid),\n"
	       "    so the guest module's map/unmap calls reach the policy maps;\n"
	       "  - --enforce: the uprobe enforcement plane, a check on every call of\n"
	       "    QEMU's address-space functions (rw, read_full, write, map,\n"
	       "    cache_init, ld*/st*). Violations follow the domain's mode: audit\n"
	       "    (event), kill (SIGKILL before the transfer runs). Where uprobes\n"
	       "    cannot change registers, deny is a fail-stop too; 'pviommuctl run'\n"
	       "    (the in-process plane) denies precisely and costs no trap.\n"
	       "  --qemu PATH attaches to every process of that QEMU binary, running\n"
	       "  or started later.\n"
	       "  A uprobe hit traps into the kernel on every transfer: --enforce\n"
	       "  is the attach-without-restart and audit tool, not the fast path.\n");
}

/* the target of --pid P or --qemu PATH; 0, or 1 with the error said */
static int attach_target(struct target *t, __u64 pid, const char *qemu)
{
	if (qemu && (target_path(t, qemu) || access(qemu, R_OK))) {
		p_err("what is '%s'? --qemu wants the absolute path of a QEMU binary (no '+' or '=')",
		      qemu);
		return 1;
	}
	if (pid)
		target_pid(t, (int)pid);
	return 0;
}

/* --enforce: the device identity follows QEMU's structures; 0, or 1 with the error said */
static int check_qemu_layout(const struct target *t, const char *qemu)
{
	char exe[64], why[LAYOUT_WHY_LEN];

	snprintf(exe, sizeof(exe), "/proc/%d/exe", t->pid);
	if (!qemu_layout_check_file(qemu ? qemu : exe, why, sizeof(why)))
		return 0;
	p_err("cannot enforce on %s: its PCI device layout is not the one pviommu knows (%s); qemu-hooks/qemu_layout.h describes Debian's QEMU 7.2",
	      qemu ? qemu : t->tag, why);
	return 1;
}

/* only the uprobe programs: the TCG transport, and with --enforce the uprobe plane */
static void uprobe_set_autoload(struct pviommu_bpf *skel, int enforce)
{
	struct bpf_program *p;

	bpf_object__for_each_program(p, skel->obj)
		bpf_program__set_autoload(p,
			p == skel->progs.pviommu_tcg_cpuid ||
			(enforce && !strncmp(bpf_program__name(p), "pviommu_up_", 11)));
}

/* the uprobe programs, loaded onto the pinned maps of the loaded pviommu; NULL: said */
static struct pviommu_bpf *uprobe_skel_load(const struct pviommu_ctl *ctl, int enforce)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = PIN_DIR);
	struct pviommu_bpf *skel;
	int err;

	skel = pviommu_bpf__open_opts(&oo);
	if (!skel) {
		p_err("cannot open the BPF object: %s", strerror(errno));
		return NULL;
	}
	bpf_map__set_max_entries(skel->maps.pviommu_index,
				 pinned_max_entries(PVIOMMU_MAP_INDEX));
	skel->rodata->index_slots = PVIOMMU_INDEX_SLOTS(pinned_max_entries(PVIOMMU_MAP_INDEX));
	skel->rodata->load_gen = ctl->active_gen;
	skel->rodata->hash_key = ctl->hash_key;
	uprobe_set_autoload(skel, enforce);
	err = pviommu_bpf__load(skel);
	if (err) {
		p_err("loading the uprobe programs failed: %s", strerror(-err));
		pviommu_bpf__destroy(skel);
		return NULL;
	}
	return skel;
}

/*
 * The TCG transport on t, and the uprobe plane with --enforce (*nlinks: its
 * links); 0, or 1 with the error said and every link of t dropped.
 *
 * --qemu PATH: uprobes on the binary reach every process of it, those that
 * run the in-process plane too (see inproc_users). Checked right before and
 * right after attaching: a QEMU that starts later finds int3 in its
 * prologues and refuses to run, one whose constructor patched in between is
 * caught by the second look.
 */
static int attach_uprobes(struct pviommu_bpf *skel, const struct target *t, const char *qemu,
			  int enforce, int *nlinks)
{
	const char *failed = NULL;
	char users[PID_LIST_LEN];
	int err;

	if (qemu && inproc_users(qemu, users, sizeof(users))) {
		p_err("QEMU pids %s of %s run the in-process plane (pviommuctl run): uprobes on that binary would land on their patched prologues and crash them; stop them first, or attach to other VMs one by one (attach --pid P)",
		      users, qemu);
		return 1;
	}
	err = attach_tcg(skel, t);
	if (!err && enforce)
		err = attach_enforce(skel, t, nlinks, &failed);
	if (!err && qemu && inproc_users(qemu, users, sizeof(users))) {
		drop_links_of(t->tag);
		p_err("QEMU pids %s of %s started the in-process plane while the uprobes were being attached: uprobes removed again; check those VMs",
		      users, qemu);
		return 1;
	}
	if (!err)
		return 0;
	drop_links_of(t->tag);
	if (err == -ESRCH && t->pid > 0)
		p_err("no process %d", t->pid);
	else
		p_err("cannot attach to %s%s%s: %s (is it qemu-system-x86_64 7.x?)",
		      qemu ? qemu : t->tag, failed ? ": uprobe on " : "",
		      failed ? failed : "", strerror(-err));
	return 1;
}

/* what is attached now (and what this kernel's uprobes cannot do) */
static void attach_report(const struct target *t, const char *qemu, int enforce, int nlinks)
{
	struct pv_features f;
	struct jw w;

	if (enforce) {
		pv_probe_features(&f);
		if (!f.uprobe_regs.ok)
			p_note("this kernel refuses uprobe register writes: on this plane a denied transfer stops the VM (kill); 'pviommuctl run' denies precisely");
	}
	if (json) {
		jw_begin(&w, stdout);
		jw_str(&w, "attached", qemu ? qemu : t->tag);
		jw_bool(&w, "transport", 1);
		jw_int(&w, "enforce_uprobes", nlinks);
		jw_end(&w);
	} else {
		printf("attached to %s %s: TCG hypercall transport%s\n",
		       qemu ? "every process of" : "pid", qemu ? qemu : t->tag,
		       enforce ? ", uprobe enforcement" : "");
	}
}

int cmd_attach(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "enforce", no_argument, 0, 'e' },
		{ "qemu", required_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct cmd_opts o = { .cmd = "attach", .spec = "p:eq:", .lo = lo, .usage = attach_usage };
	struct pviommu_bpf *skel;
	struct pviommu_ctl *ctl;
	const char *qemu = NULL;
	int c, err, ctl_fd, enforce = 0, nl = 0;
	struct target t;
	__u64 pid = 0;

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &pid))
				return 1;
			break;
		case 'e':
			enforce = 1;
			break;
		case 'q':
			qemu = optarg;
			break;
		}
	}
	if (c < 0)
		return o.rc;
	if (!!pid == !!qemu || optind < argc) {
		p_err("attach wants --pid P or --qemu PATH (see 'pviommuctl attach --help')");
		return 1;
	}
	if (attach_target(&t, pid, qemu))
		return 1;
	if ((err = need_root()))
		return err;
	if (!loaded())
		return not_loaded();
	if (pid && has_inproc((int)pid)) {
		p_err("pid %llu already runs the in-process plane (libpviommu-qemu.so): it carries the hypercall transport and checks every transfer; uprobes on its patched functions would break it",
		      (unsigned long long)pid);
		return 1;
	}
	if (enforce && check_qemu_layout(&t, qemu))
		return 1;
	ctl = ctl_map(&ctl_fd);
	if (!ctl)
		return not_loaded();
	skel = uprobe_skel_load(ctl, enforce);
	err = !skel || attach_uprobes(skel, &t, qemu, enforce, &nl);
	if (!err)
		attach_report(&t, qemu, enforce, nl);
	pviommu_bpf__destroy(skel);
	ctl_unmap(ctl, ctl_fd);
	return err;
}

static void detach_usage(void)
{
	printf("Usage: pviommuctl detach --pid P | --qemu PATH\n"
	       "  Remove every uprobe pviommu attached to QEMU process P (or binary PATH).\n");
}

int cmd_detach(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "qemu", required_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct cmd_opts o = { .cmd = "detach", .spec = "p:q:", .lo = lo, .usage = detach_usage };
	const char *what = NULL;
	struct target t;
	__u64 pid = 0;
	int c, n = 0;

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		n++;
		what = optarg;
		if (c == 'p' && parse_pid(optarg, &pid))
			return 1;
		if (c == 'q' && target_path(&t, optarg)) {
			p_err("what is '%s'? --qemu wants the absolute path of a QEMU binary", optarg);
			return 1;
		}
	}
	if (c < 0)
		return o.rc;
	if (n != 1 || optind < argc) {
		p_err("detach wants --pid P or --qemu PATH (see 'pviommuctl detach --help')");
		return 1;
	}
	if (pid)
		target_pid(&t, (int)pid);
	if ((pid = need_root()))
		return (int)pid;
	if (!drop_links_of(t.tag)) {
		p_err("%s is not attached", what);
		return 1;
	}
	if (json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "detached", what);
		jw_end(&w);
	} else {
		printf("detached from %s\n", what);
	}
	return 0;
}

