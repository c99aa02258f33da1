// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pviommuctl - load, inspect and steer the pviommu DMA policy enforcer.
 *
 *   pviommuctl [-j] [-v] OBJECT [ARGS]    see 'pviommuctl help'
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "pviommu.skel.h"
#include "pviommu_lsm.skel.h"
#include "pvlib.h"
#include "pv_user.h"
#include "probe.h"
#include "qemu_elf.h"
#include "pviommuctl.h"

#define LINK_DIR	pv_pin_path("links")
#define PROG_DIR	pv_pin_path("progs")
#define PIN_DIR		pv_pin_dir()

int json;
static int verbose;
static volatile sig_atomic_t stop;

/* ---- errors, bpftool style -------------------------------------------------- */
void p_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (json) {
		char buf[512];

		vsnprintf(buf, sizeof(buf), fmt, ap);
		for (char *c = buf; *c; c++)
			if (*c == '"' || *c == '\\')
				*c = '\'';
		printf("{\"error\":\"%s\"}\n", buf);
	} else {
		fprintf(stderr, "Error: ");
		vfprintf(stderr, fmt, ap);
		fprintf(stderr, "\n");
	}
	va_end(ap);
}

void p_note(const char *fmt, ...)
{
	va_list ap;

	if (json)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "note: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

int opt_err(int c, char **argv, const char *cmd)
{
	if (c == ':')
		p_err("%s wants an argument (see 'pviommuctl %s --help')",
		      argv[optind - 1], cmd);
	else
		p_err("what is '%s'? (see 'pviommuctl %s --help')",
		      argv[optind - 1], cmd);
	return 1;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt,
			va_list args)
{
	/* without -v the one Error line says what failed (and to run with -v) */
	if (level == LIBBPF_DEBUG && verbose < 2)
		return 0;
	if (!verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* exit 2: the environment cannot run pviommu at all */
static int need_root(void)
{
	if (geteuid() != 0) {
		p_err("pviommuctl needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)");
		return 2;
	}
	return 0;
}

static int need_btf(void)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		p_err("kernel BTF missing (/sys/kernel/btf/vmlinux): CO-RE needs CONFIG_DEBUG_INFO_BTF=y");
		return 2;
	}
	return 0;
}

static int ensure_bpffs(void)
{
	struct statfs st;

	if (!statfs("/sys/fs/bpf", &st) && st.f_type == BPF_FS_MAGIC)
		return 0;
	mkdir("/sys/fs/bpf", 0700);
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700")) {
		p_err("cannot mount bpffs on /sys/fs/bpf: %s", strerror(errno));
		return 2;
	}
	p_note("mounted bpffs on /sys/fs/bpf");
	return 0;
}

static int loaded(void)
{
	return access(pv_pin_path(PVIOMMU_MAP_CTL), F_OK) == 0;
}

static int not_loaded(void)
{
	p_err("pviommu is not loaded (run 'pviommuctl load')");
	return 1;
}

/* after option parsing: no stray argument, root, loaded; 0 or exit code */
static int ready(int argc, char **argv, const char *cmd)
{
	int err;

	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl %s --help')", argv[optind], cmd);
		return 1;
	}
	if ((err = need_root()))
		return err;
	return loaded() ? 0 : not_loaded();
}

/* a pinned map, or -1 with the error said */
static int open_pinned(const char *name, int rdonly)
{
	int fd = pv_obj_get(NULL, name, rdonly);

	if (fd < 0) {
		p_err("cannot open %s: %s", name, strerror(-fd));
		return -1;
	}
	return fd;
}

/* --pid P: 0 or -1 with the error said */
static int parse_pid(const char *s, __u64 *pid)
{
	if (pv_parse_u64(s, pid) || !*pid || *pid > 0x7fffffff) {
		p_err("what is '%s'? --pid wants a process id", s);
		return -1;
	}
	return 0;
}

/* ---- ctl, mmapped ------------------------------------------------------------ */
static struct pviommu_ctl *ctl_map(int *fdp)
{
	void *p;
	int fd = pv_obj_get(NULL, PVIOMMU_MAP_CTL, 0);

	if (fd < 0)
		return NULL;
	p = mmap(NULL, sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
		 MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	*fdp = fd;
	return p;
}

static void ctl_unmap(struct pviommu_ctl *c, int fd)
{
	munmap(c, sysconf(_SC_PAGESIZE));
	close(fd);
}

/* ---- load ------------------------------------------------------------------------ */
static __u32 pinned_max_entries(const char *name)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd = pv_obj_get(NULL, name, 1);
	__u32 n = 0;

	if (fd < 0)
		return 0;
	if (!bpf_obj_get_info_by_fd(fd, &info, &len))
		n = info.max_entries;
	close(fd);
	return n;
}

/*
 * A reload stages its pins (NAME_new, next to the old ones) and commits
 * them only after the new programs became active: until then the old
 * links stay attached and act, so no hypercall, exit or transfer falls
 * into a window where only idle programs are attached.
 */
#define MAX_STAGED	512
static char staged[MAX_STAGED][256];
static int nstaged, staging;

static int commit_staged(void)
{
	char tmp[280];
	int err = 0;

	for (int i = 0; i < nstaged; i++) {
		snprintf(tmp, sizeof(tmp), "%.255s_new", staged[i]);
		/* rename over the old pin: the old link goes with its last ref */
		if (rename(tmp, staged[i]) && !err)
			err = -errno;
	}
	nstaged = 0;
	return err;
}

static void drop_staged(void)
{
	char tmp[280];

	for (int i = 0; i < nstaged; i++) {
		snprintf(tmp, sizeof(tmp), "%.255s_new", staged[i]);
		unlink(tmp);
	}
	nstaged = 0;
}

static int pin_replace(int fd, const char *dir, const char *name, int is_link)
{
	char path[256], tmp[280];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s_new", path);
	unlink(tmp);
	if (bpf_obj_pin(fd, tmp))
		return -errno;
	if (staging) {
		if (nstaged == MAX_STAGED) {
			unlink(tmp);
			return -E2BIG;
		}
		snprintf(staged[nstaged++], sizeof(staged[0]), "%.255s", path);
		return 0;
	}
	/* rename over the old pin: the old link goes when its last ref does */
	if (rename(tmp, path)) {
		int err = -errno;

		unlink(tmp);
		return err;
	}
	return 0;
}

/*
 * Uprobes are per QEMU process. links/tcg-<pid>: the TCG hypercall
 * transport (cpu_x86_cpuid); links/enf-<pid>-<n>: the uprobe enforcement
 * plane on QEMU's address-space functions.
 */
static const struct up_target {
	const char	*prog;
	const char	*funcs;		/* space-separated */
} up_targets[] = {
	{ "pviommu_up_rw", "address_space_rw" },
	{ "pviommu_up_read", "address_space_read_full" },
	{ "pviommu_up_write", "address_space_write address_space_write_rom" },
	{ "pviommu_up_map", "address_space_map" },
	{ "pviommu_up_cache_init", "address_space_cache_init" },
	{ "pviommu_up_ld1", "address_space_ldub" },
	{ "pviommu_up_ld2", "address_space_lduw address_space_lduw_le address_space_lduw_be" },
	{ "pviommu_up_ld4", "address_space_ldl address_space_ldl_le address_space_ldl_be" },
	{ "pviommu_up_ld8", "address_space_ldq address_space_ldq_le address_space_ldq_be" },
	{ "pviommu_up_st1", "address_space_stb" },
	{ "pviommu_up_st2", "address_space_stw address_space_stw_le address_space_stw_be" },
	{ "pviommu_up_st4", "address_space_stl address_space_stl_le address_space_stl_be" },
	{ "pviommu_up_st8", "address_space_stq address_space_stq_le address_space_stq_be" },
};

/*
 * A target is one QEMU process (tag "<pid>") or every process of one QEMU
 * binary (tag "x<path>", '/' written '+' and '.' written '=': bpffs names
 * take no dot). Pins: links/tcg-<tag>, links/enf-<tag>-<n>.
 */
struct target {
	int	pid;		/* or -1 with path */
	char	path[200];
	char	tag[208];
};

static int target_pid(struct target *t, int pid)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	snprintf(t->tag, sizeof(t->tag), "%d", pid);
	return 0;
}

static int target_path(struct target *t, const char *path)
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

static int target_of_tag(struct target *t, const char *tag)
{
	char path[200];
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
	err = pin_replace(bpf_link__fd(l), LINK_DIR, pin, 1);
	bpf_link__destroy(l);
	return err;
}

static int attach_tcg(struct pviommu_bpf *skel, const struct target *t)
{
	char name[240];

	snprintf(name, sizeof(name), "tcg-%s", t->tag);
	return attach_one(skel->progs.pviommu_tcg_cpuid, t, "cpu_x86_cpuid",
			  name);
}

/* the uprobe plane on t; on failure *failed names the function (the caller says it) */
static int attach_enforce(struct pviommu_bpf *skel, const struct target *t,
			  int *nlinks, const char **failed)
{
	char name[240], funcs[256], *f, *save;
	int n = 0, err;

	for (size_t i = 0; i < sizeof(up_targets) / sizeof(up_targets[0]); i++) {
		struct bpf_program *p =
			bpf_object__find_program_by_name(skel->obj, up_targets[i].prog);

		if (!p)
			return -ENOENT;
		snprintf(funcs, sizeof(funcs), "%s", up_targets[i].funcs);
		for (f = strtok_r(funcs, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
			snprintf(name, sizeof(name), "enf-%s-%d", t->tag, n);
			err = attach_one(p, t, f, name);
			if (err) {
				static char fn[64];

				snprintf(fn, sizeof(fn), "%s", f);
				*failed = fn;
				return err;
			}
			n++;
		}
	}
	*nlinks = n;
	return 0;
}

#define MAX_TAGS	64
/* tags with links of a kind ("tcg-" or "enf-"); returns how many */
static int link_tags(const char *prefix, char tags[][208], int max)
{
	DIR *d = opendir(LINK_DIR);
	struct dirent *de;
	int n = 0, j;
	char tag[208], *dash;

	while (d && (de = readdir(d)) && n < max) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) ||
		    strstr(de->d_name, "_new"))
			continue;
		snprintf(tag, sizeof(tag), "%s", de->d_name + strlen(prefix));
		if (!strcmp(prefix, "enf-") && (dash = strrchr(tag, '-')))
			*dash = 0;
		for (j = 0; j < n && strcmp(tags[j], tag); j++)
			;
		if (j == n)
			snprintf(tags[n++], 208, "%s", tag);
	}
	if (d)
		closedir(d);
	return n;
}

static int drop_links_of(const char *tag)
{
	DIR *d = opendir(LINK_DIR);
	struct dirent *de;
	char a[240], b[240];
	int n = 0;

	snprintf(a, sizeof(a), "tcg-%s", tag);
	snprintf(b, sizeof(b), "enf-%s-", tag);
	while (d && (de = readdir(d)))
		if (!strcmp(de->d_name, a) ||
		    (!strncmp(de->d_name, b, strlen(b)) &&
		     !strchr(de->d_name + strlen(b), '-')))
			n += !unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	return n;
}

/*
 * How the KVM handler tells a call of the guest kernel from one of guest
 * user space (KVM fires kvm:kvm_hypercall before its own CPL check):
 *   svm    read the CPL from the VMCB (kvm_amd's BTF): at the call
 *   entry  hold the call, carry it out at the vCPU's next kvm:kvm_entry
 *          unless KVM answered -KVM_EPERM (any vendor; needs kvm's BTF)
 *   none   no check: a vmcall from guest user space is carried out
 */
enum kvm_cpl { CPL_AUTO, CPL_SVM, CPL_ENTRY, CPL_NONE };
static const char *const kvm_cpl_names[] = { "auto", "svm", "entry", "none" };

/* kvm's types in the kernel's BTF (kvm built in, or the kvm module's) */
static int kvm_btf(void)
{
	struct btf *v = btf__load_vmlinux_btf(), *m;
	int ok = 0;

	if (!v)
		return 0;
	ok = btf__find_by_name_kind(v, "kvm_vcpu_arch", BTF_KIND_STRUCT) >= 0;
	if (!ok && (m = btf__load_module_btf("kvm", v))) {
		ok = btf__find_by_name_kind(m, "kvm_vcpu_arch", BTF_KIND_STRUCT) >= 0;
		btf__free(m);
	}
	btf__free(v);
	return ok;
}

static int cmd_load(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "index-slots", required_argument, 0, 's' },
		{ "max-records", required_argument, 0, 'r' },
		{ "quota", required_argument, 0, 'q' },
		{ "kvm-cpl", required_argument, 0, 'c' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = PIN_DIR);
	struct pviommu_quota quota = {};
	__u64 key;
	__u64 slots = PVIOMMU_DEF_INDEX_SLOTS, recs = PVIOMMU_DEF_MAX_RECORDS;
	__u32 pin_slots, pin_recs;
	struct pviommu_bpf *skel = NULL;
	int svm, kvm, cpl = CPL_AUTO;
	struct pviommu_ctl *ctl = NULL;
	struct bpf_program *hc_prog;
	struct bpf_link *link;
	int c, err, ctl_fd = -1, kvm_ok = 0;
	__u64 gen;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:r:q:c:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			for (cpl = CPL_NONE; cpl >= 0 && strcmp(optarg, kvm_cpl_names[cpl]); cpl--)
				;
			if (cpl < 0) {
				p_err("what is '%s'? --kvm-cpl wants auto, svm, entry or none", optarg);
				return 1;
			}
			break;
		case 'q':
			if (pv_parse_quota(optarg, &quota)) {
				p_err("what is '%s'? --quota wants records=N,pages=N,devices=N,lanes=N (any of them, N > 0)",
				      optarg);
				return 1;
			}
			break;
		case 's':
			if (pv_parse_u64(optarg, &slots) || slots < 1024 ||
			    slots > (1u << 24) || (slots & (slots - 1))) {
				p_err("what is '%s'? --index-slots wants a power of two in [1024, 16M]", optarg);
				return 1;
			}
			break;
		case 'r':
			if (pv_parse_u64(optarg, &recs) || recs < 16 ||
			    recs > (1u << 24)) {
				p_err("what is '%s'? --max-records wants a number in [16, 16M]", optarg);
				return 1;
			}
			break;
		case 'h':
			printf("Usage: pviommuctl load [--index-slots N] [--max-records N] [--quota Q]\n"
			       "                     [--kvm-cpl auto|svm|entry|none]\n"
			       "  Load (or reload) the BPF programs, pin maps and links under %s.\n"
			       "  Idempotent: a reload keeps the pinned maps and every live mapping;\n"
			       "  the new programs take over atomically.\n"
			       "  --index-slots N   fast-index slots (power of two, default %u, 64 B each)\n"
			       "  --max-records N   mapping records (default %u)\n"
			       "  --quota Q         each new VM's share, Q = records=N,pages=N,devices=N,lanes=N\n"
			       "                    (defaults: records/%u, index slots/%u, %u devices, %u lanes:\n"
			       "                    %u VMs at their full quota fit; per VM: 'run --quota')\n"
			       "  --kvm-cpl M       how KVM hypercalls from guest user space are told apart:\n"
			       "                    svm (the VMCB's CPL, AMD), entry (held until KVM's answer\n"
			       "                    at the next kvm_entry, any vendor), none; auto (default):\n"
			       "                    svm where kvm_amd's BTF is, else entry where kvm's is\n",
			       PIN_DIR, PVIOMMU_DEF_INDEX_SLOTS,
			       PVIOMMU_DEF_MAX_RECORDS, PVIOMMU_QUOTA_VMS,
			       PVIOMMU_QUOTA_VMS * 2, PVIOMMU_DEF_QUOTA_DEVICES,
			       PVIOMMU_DEF_QUOTA_LANES, PVIOMMU_QUOTA_VMS);
			return 0;
		default:
			return opt_err(c, argv, "load");
		}
	}
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl load --help')", argv[optind]);
		return 1;
	}
	if ((err = need_root()) || (err = need_btf()) || (err = ensure_bpffs()))
		return err;
	if (mkdir(PIN_DIR, 0700) && errno != EEXIST) {
		p_err("mkdir %s: %s", PIN_DIR, strerror(errno));
		return 2;
	}
	mkdir(LINK_DIR, 0700);
	mkdir(PROG_DIR, 0700);

	skel = pviommu_bpf__open_opts(&oo);
	if (!skel) {
		p_err("cannot open the BPF object: %s", strerror(errno));
		return 1;
	}
	/* re-use pinned maps: their sizes win */
	pin_slots = pinned_max_entries(PVIOMMU_MAP_INDEX);
	pin_recs = pinned_max_entries(PVIOMMU_MAP_MAPPINGS);
	if (pin_slots && pin_slots != slots && slots != PVIOMMU_DEF_INDEX_SLOTS)
		p_note("keeping the pinned index of %u slots (unload to resize)", pin_slots);
	if (pin_slots)
		slots = pin_slots;
	if (pin_recs)
		recs = pin_recs;
	bpf_map__set_max_entries(skel->maps.pviommu_index, slots);
	bpf_map__set_max_entries(skel->maps.pviommu_mappings, recs);
	skel->rodata->index_mask = slots - 1;

	ctl = loaded() ? ctl_map(&ctl_fd) : NULL;
	gen = (ctl ? ctl->active_gen : 0) + 1;
	skel->rodata->load_gen = gen;
	/* the index hash's secret: made by the first load, kept by reloads */
	if (ctl)
		key = ctl->hash_key;
	else if (getrandom(&key, sizeof(key), 0) != sizeof(key))
		key = (__u64)time(NULL) * 0x9e3779b97f4a7c15ull ^ (__u64)getpid();
	skel->rodata->hash_key = key;
	/* each VM's share; the pages quota keeps the index at most half full */
	if (!quota.records)
		quota.records = (__u32)(recs / PVIOMMU_QUOTA_VMS);
	if (!quota.pages)
		quota.pages = (__u32)(slots / (2 * PVIOMMU_QUOTA_VMS));
	if (!quota.devices)
		quota.devices = PVIOMMU_DEF_QUOTA_DEVICES;
	if (!quota.lanes)
		quota.lanes = PVIOMMU_DEF_QUOTA_LANES;

	/*
	 * The tracepoint gets the handler that reads the guest's CPL where it
	 * can (AMD SVM); pviommu_kvm_hypercall is loaded in every case: the
	 * in-process plane's TCG transport and the tests call it by test_run.
	 */
	svm = !access("/sys/kernel/btf/kvm_amd", F_OK);
	kvm = kvm_btf();	/* parses the kernel's BTF: once */
	if (cpl == CPL_AUTO)
		cpl = svm ? CPL_SVM : kvm ? CPL_ENTRY : CPL_NONE;
	else if (cpl == CPL_SVM && !svm) {
		p_err("--kvm-cpl svm: no kvm_amd BTF (/sys/kernel/btf/kvm_amd): not an AMD KVM host?");
		err = 1;
		goto out;
	} else if (cpl == CPL_ENTRY && !kvm) {
		p_err("--kvm-cpl entry: kvm's types are not in the kernel's BTF (kvm not loaded?)");
		err = 1;
		goto out;
	}
	hc_prog = cpl == CPL_SVM ? skel->progs.pviommu_kvm_hypercall_svm :
		  cpl == CPL_ENTRY ? skel->progs.pviommu_kvm_hypercall_held :
				     skel->progs.pviommu_kvm_hypercall;
	bpf_program__set_autoload(skel->progs.pviommu_kvm_hypercall_svm, cpl == CPL_SVM);
	bpf_program__set_autoload(skel->progs.pviommu_kvm_hypercall_held, cpl == CPL_ENTRY);
	/* in every mode where kvm's BTF is: it also carries out the calls an
	 * earlier load in entry mode held (pviommu_held is shared) */
	bpf_program__set_autoload(skel->progs.pviommu_kvm_entry, kvm);
	/* the uprobe plane's programs are loaded by 'attach', or here when a
	 * reload must re-attach them */
	{
		static char enf[MAX_TAGS][208];
		struct bpf_program *p;
		int reattach = link_tags("enf-", enf, MAX_TAGS) > 0;

		bpf_object__for_each_program(p, skel->obj)
			if (!strncmp(bpf_program__name(p), "pviommu_up_", 11))
				bpf_program__set_autoload(p, reattach);
		/* the uprobe TCG transport likewise: 'attach' loads its own (a
		 * handler's verification is seconds of the load's time) */
		bpf_program__set_autoload(skel->progs.pviommu_tcg_cpuid,
					  link_tags("tcg-", enf, MAX_TAGS) > 0);
	}

	err = pviommu_bpf__load(skel);
	if (err) {
		p_err("loading the BPF programs failed: %s (run with -v for the verifier log)",
		      strerror(-err));
		err = 1;
		goto out;
	}
	if (!ctl)
		ctl = ctl_map(&ctl_fd);
	if (!ctl) {
		p_err("cannot map %s", PVIOMMU_MAP_CTL);
		err = 1;
		goto out;
	}

	/* attach the new programs; they stay idle until active_gen moves,
	 * next to the old ones, which act until then */
	staging = 1;
	link = bpf_program__attach(skel->progs.pviommu_proc_exit);
	if (!link) {
		p_err("attaching sched_process_exit failed: %s", strerror(errno));
		err = 1;
		goto out;
	}
	err = pin_replace(bpf_link__fd(link), LINK_DIR, "proc_exit", 1);
	bpf_link__destroy(link);
	if (err)
		goto pin_fail;
	/* the host IOMMU's faults of assigned devices, as events (printk:console) */
	link = bpf_program__attach(skel->progs.pviommu_iommu_fault);
	if (link) {
		err = pin_replace(bpf_link__fd(link), LINK_DIR, "iommu_fault", 1);
		bpf_link__destroy(link);
		if (err)
			goto pin_fail;
	} else {
		p_note("printk:console cannot be attached (%s): no events for the host IOMMU's faults of assigned devices",
		       strerror(errno));
	}

	/* kvm_entry before kvm_hypercall: no call is held with nobody to commit it */
	link = bpf_program__autoload(skel->progs.pviommu_kvm_entry) ?
	       bpf_program__attach(skel->progs.pviommu_kvm_entry) : NULL;
	if (link) {
		err = pin_replace(bpf_link__fd(link), LINK_DIR, "kvm_entry", 1);
		bpf_link__destroy(link);
		if (err)
			goto pin_fail;
	} else if (cpl == CPL_ENTRY) {
		p_note("kvm:kvm_entry cannot be attached (%s): KVM transport off",
		       strerror(errno));
		hc_prog = NULL;
	}
	link = hc_prog ? bpf_program__attach(hc_prog) : NULL;
	if (link) {
		err = pin_replace(bpf_link__fd(link), LINK_DIR, "kvm_hypercall", 1);
		bpf_link__destroy(link);
		if (err)
			goto pin_fail;
		kvm_ok = 1;
		if (cpl == CPL_NONE)
			p_note("the guest's CPL is not checked (--kvm-cpl none, or no kvm BTF): a vmcall from guest user space reaches the handler (KVM refuses it; pviommu cannot tell)");
	} else {
		unlink(pv_pin_path("links/kvm_hypercall"));
		p_note("kvm:kvm_hypercall is not available (kvm not loaded): KVM transport off");
	}

	/* the VFIO gate, where the kernel runs BPF LSM programs (probed) */
	{
		LIBBPF_OPTS(bpf_object_open_opts, lo, .pin_root_path = PIN_DIR);
		struct pviommu_lsm_bpf *ls = NULL;
		struct pv_features f;

		pv_probe_features(&f);
		/* an old gate stays until a new one replaces it (never none) */
		if (f.lsm.ok)
			ls = pviommu_lsm_bpf__open_opts(&lo);
		if (ls) {
			bpf_map__set_max_entries(ls->maps.pviommu_index, slots);
			ls->rodata->index_mask = slots - 1;
			ls->rodata->hash_key = key;
			link = NULL;
			err = pviommu_lsm_bpf__load(ls);
			if (err)
				p_note("the BPF LSM VFIO gate did not load: %s (run with -v for the verifier log)",
				       strerror(-err));
			else
				link = bpf_program__attach_lsm(ls->progs.pviommu_vfio_ioctl);
			err = 0;
			if (link) {
				err = pin_replace(bpf_link__fd(link), LINK_DIR, "vfio_lsm", 1);
				bpf_link__destroy(link);
				if (!err)
					err = pin_replace(bpf_program__fd(ls->progs.pviommu_vfio_ioctl),
							  PROG_DIR, "pviommu_vfio_ioctl", 0);
			} else {
				p_note("the BPF LSM VFIO gate could not be attached: VFIO maps are not checked%s",
				       access(pv_pin_path("links/vfio_lsm"), F_OK) ? "" :
				       " by a new gate (the previous load's gate stays)");
			}
			pviommu_lsm_bpf__destroy(ls);
			if (err)
				goto pin_fail;
		} else if (!f.lsm.ok) {
			p_note("this kernel refuses BPF LSM (%s): VFIO gate off", strerror(f.lsm.err));
		}
	}

	/* re-attach the uprobes of every QEMU process (or binary) attached before */
	{
		static char tcg[MAX_TAGS][208], enf[MAX_TAGS][208];
		int nt = link_tags("tcg-", tcg, MAX_TAGS);
		int ne = link_tags("enf-", enf, MAX_TAGS), nl;
		const char *why = NULL;
		struct target t;

		for (int i = 0; i < nt; i++)
			if (target_of_tag(&t, tcg[i]) || attach_tcg(skel, &t)) {
				drop_links_of(tcg[i]);
				p_note("%s is gone: dropped its uprobes", tcg[i]);
			}
		for (int i = 0; i < ne; i++)
			if (target_of_tag(&t, enf[i]) || attach_enforce(skel, &t, &nl, &why)) {
				drop_links_of(enf[i]);
				p_note("%s is gone%s%s%s: dropped its uprobes", enf[i],
				       why ? " (no uprobe on " : "", why ? why : "", why ? ")" : "");
				why = NULL;
			}
	}

	/* programs, for bpftool and for test_run */
	{
		struct bpf_program *p;

		bpf_object__for_each_program(p, skel->obj) {
			if (!bpf_program__autoload(p))
				continue;
			err = pin_replace(bpf_program__fd(p), PROG_DIR,
					  bpf_program__name(p), 0);
			if (err)
				goto pin_fail;
		}
	}

	/* a first load: violations are denied unless told otherwise */
	if (gen == 1)
		ctl->default_mode = PVIOMMU_MODE_DENY;
	ctl->hash_key = key;
	ctl->quota = quota;
	/* hand over: from here the new programs act, the old ones return */
	__atomic_store_n(&ctl->active_gen, gen, __ATOMIC_SEQ_CST);
	/* only now do the old links and program pins go */
	staging = 0;
	err = commit_staged();
	if (err)
		goto pin_fail;
	/* the KVM handler variants this load did not pick: an earlier load's stay no more */
	{
		struct bpf_program *kv[] = { skel->progs.pviommu_kvm_hypercall_svm,
					     skel->progs.pviommu_kvm_hypercall_held,
					     skel->progs.pviommu_kvm_entry };
		char path[300];

		for (unsigned int i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
			if (bpf_program__autoload(kv[i]))
				continue;
			snprintf(path, sizeof(path), "%s/%s", PROG_DIR, bpf_program__name(kv[i]));
			unlink(path);
		}
		if (!bpf_program__autoload(skel->progs.pviommu_kvm_entry))
			unlink(pv_pin_path("links/kvm_entry"));
	}

	if (json)
		printf("{\"loaded\":true,\"generation\":%llu,\"index_slots\":%llu,\"max_records\":%llu,\"kvm_hypercall\":%s}\n",
		       (unsigned long long)gen, (unsigned long long)slots,
		       (unsigned long long)recs, kvm_ok ? "true" : "false");
	else
		printf("pviommu loaded (generation %llu): %llu index slots, %llu records, pins in %s\n",
		       (unsigned long long)gen, (unsigned long long)slots,
		       (unsigned long long)recs, PIN_DIR);
	err = 0;
	goto out;
pin_fail:
	p_err("pinning under %s failed: %s", PIN_DIR, strerror(-err));
	err = 1;
out:
	staging = 0;
	drop_staged();
	if (ctl)
		ctl_unmap(ctl, ctl_fd);
	pviommu_bpf__destroy(skel);
	return err;
}

/* ---- unload ------------------------------------------------------------------------ */
static int rm_dir_pins(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!unlink(path))
			n++;
	}
	closedir(d);
	rmdir(dir);
	return n;
}

/* domains whose QEMU still runs: their pids into buf; how many */
static int live_domains(char *buf, size_t len)
{
	int fd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 1), n = 0;
	__u32 key, next, *prev = NULL;
	size_t off = 0;

	buf[0] = 0;
	if (fd < 0)
		return 0;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (kill((pid_t)key, 0) && errno != EPERM)
			continue;	/* gone: nothing left to protect */
		n++;
		if (off + 12 < len)
			off += snprintf(buf + off, len - off, "%s%u", off ? " " : "", key);
	}
	close(fd);
	return n;
}

static int cmd_unload(int argc, char **argv)
{
	char pids[512];
	int err, n, force = 0, live;

	if (argc > 1 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
			 !strcmp(argv[1], "-h"))) {
		printf("Usage: pviommuctl unload [--force]\n"
		       "  Detach every program and remove every pin under %s\n"
		       "  (all policy state is dropped). Refused while a VM that pviommu\n"
		       "  protects still runs (their QEMU pids are named); --force unloads\n"
		       "  anyway: those VMs' DMA is then no longer checked against their\n"
		       "  guests' mappings.\n", PIN_DIR);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--force")) {
		force = 1;
		argc--;
		argv++;
	}
	if (argc > 1) {
		p_err("what is '%s'? (see 'pviommuctl unload help')", argv[1]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	if (access(PIN_DIR, F_OK)) {
		if (json)
			printf("{\"unloaded\":true,\"pins_removed\":0}\n");
		else
			printf("pviommu was not loaded\n");
		return 0;
	}
	live = live_domains(pids, sizeof(pids));
	if (live && !force) {
		p_err("%d running VM%s protected by pviommu (QEMU pid%s %s): stop %s first, "
		      "or 'pviommuctl unload --force' to leave %s DMA unchecked",
		      live, live > 1 ? "s are" : " is", live > 1 ? "s" : "", pids,
		      live > 1 ? "them" : "it", live > 1 ? "their" : "its");
		return 1;
	}
	if (live && !json)
		fprintf(stderr, "pviommuctl unload --force: %d running VM%s (QEMU pid%s %s) "
			"no longer protected: %s DMA is not checked from now on\n",
			live, live > 1 ? "s" : "", live > 1 ? "s" : "", pids,
			live > 1 ? "their" : "its");
	n = rm_dir_pins(LINK_DIR);
	n += rm_dir_pins(PROG_DIR);
	n += rm_dir_pins(PIN_DIR);
	if (!access(PIN_DIR, F_OK)) {
		p_err("could not remove %s", PIN_DIR);
		return 1;
	}
	if (json)
		printf("{\"unloaded\":true,\"pins_removed\":%d,\"unprotected_vms\":%d}\n",
		       n, live);
	else
		printf("pviommu unloaded (%d pins removed)\n", n);
	return 0;
}

/* ---- status ------------------------------------------------------------------------ */
static int count_links(const char *prefix, char *pids, size_t len)
{
	DIR *d = opendir(LINK_DIR);
	struct dirent *de;
	size_t off = 0;
	int n = 0, pid;

	if (pids && len)
		pids[0] = 0;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) ||
		    strstr(de->d_name, "_new"))
			continue;
		n++;
		if (pids && sscanf(de->d_name, "tcg-%d", &pid) == 1 &&
		    off + 12 < len)
			off += snprintf(pids + off, len - off, "%s%d",
					off ? "," : "", pid);
	}
	if (d)
		closedir(d);
	return n;
}

static int cmd_status(int argc, char **argv)
{
	struct pv_index_view iv;
	int lanes;
	struct pviommu_stats st;
	struct pv_features f;
	__u32 key, next, *prev = NULL;
	struct pviommu_domain dv;
	char fl[64];
	int dfd, sfd, err, first = 1, ctl_fd;
	struct pviommu_ctl *ctl;
	__u64 used = 0, tomb = 0;
	char pids[256];
	__u32 rec_max;

	if (argc > 1 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
			 !strcmp(argv[1], "-h"))) {
		printf("Usage: pviommuctl [-j] status\n"
		       "  Programs and where they are attached, what this kernel allows\n"
		       "  (probed), index use, domains (QEMU processes) and counters.\n");
		return 0;
	}
	if (argc > 1) {
		p_err("what is '%s'? (see 'pviommuctl status help')", argv[1]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	pv_probe_features(&f);
	if (!loaded()) {
		/* what this kernel allows, then the error: one JSON object with -j */
		if (json) {
			printf("{\"loaded\":false,\"error\":\"pviommu is not loaded (run 'pviommuctl load')\",\"features\":");
			pv_features_json(&f, stdout);
			printf("}\n");
			return 1;
		}
		printf("pviommu: not loaded\nkernel features:\n");
		pv_features_print(&f, stdout);
		fflush(stdout);
		return not_loaded();
	}
	ctl = ctl_map(&ctl_fd);
	dfd = pv_obj_get(NULL, PVIOMMU_MAP_DOMAINS, 1);
	sfd = pv_obj_get(NULL, PVIOMMU_MAP_STATS, 1);
	if (!ctl || dfd < 0 || sfd < 0 || pv_index_map(NULL, &iv, 1)) {
		p_err("pinned maps under %s are incomplete: run 'pviommuctl unload; pviommuctl load'",
		      PIN_DIR);
		return 1;
	}
	for (__u32 i = 0; i < iv.slots; i++) {
		__u16 k = iv.base[i].kind;

		used += k == PVIOMMU_SLOT_PAGE || k == PVIOMMU_SLOT_DEVICE;
		tomb += k == PVIOMMU_SLOT_TOMB;
	}
	pv_stats_read(sfd, &st);
	rec_max = pinned_max_entries(PVIOMMU_MAP_MAPPINGS);
	count_links("tcg-", pids, sizeof(pids));
	lanes = iv.fast ? __builtin_popcountll(iv.fast[PVIOMMU_FAST_USED]) : -1;

	if (json) {
		printf("{\"loaded\":true,\"generation\":%llu,\"programs\":{"
		       "\"kvm_hypercall\":%s,\"proc_exit\":%s,\"tcg_cpuid\":[%s]},",
		       (unsigned long long)ctl->active_gen,
		       count_links("kvm_hypercall", NULL, 0) ? "true" : "false",
		       count_links("proc_exit", NULL, 0) ? "true" : "false", pids);
		printf("\"features\":");
		pv_features_json(&f, stdout);
		printf(",\"index\":{\"slots\":%u,\"used\":%llu,\"tombstones\":%llu,\"bytes\":%zu},"
		       "\"fast_lanes\":{\"used\":%d,\"max\":%d},"
		       "\"max_records\":%u,\"default_mode\":\"%s\",\"lock_busy\":%llu,\"domains\":[",
		       iv.slots, (unsigned long long)used, (unsigned long long)tomb,
		       iv.len, lanes, PVIOMMU_FAST_LANES, rec_max, pv_mode_str(ctl->default_mode),
		       (unsigned long long)ctl->lock_busy);
	} else {
		printf("pviommu: loaded (generation %llu), pins under %s\n",
		       (unsigned long long)ctl->active_gen, PIN_DIR);
		printf("programs:\n");
		printf("  kvm_hypercall  %s\n", !count_links("kvm_hypercall", NULL, 0) ?
		       "not attached (kvm not loaded; reload after 'modprobe kvm')" :
		       !access(pv_pin_path("progs/pviommu_kvm_hypercall_svm"), F_OK) ?
		       "attached (raw_tp kvm:kvm_hypercall, guest CPL checked: SVM)" :
		       !access(pv_pin_path("progs/pviommu_kvm_hypercall_held"), F_OK) ?
		       "attached (raw_tp kvm:kvm_hypercall, held until KVM's answer at kvm:kvm_entry: guest CPL checked)" :
		       "attached (raw_tp kvm:kvm_hypercall; guest CPL not checked on this host)");
		printf("  vfio_lsm       %s\n", count_links("vfio_lsm", NULL, 0) ?
		       "attached (lsm.s/file_ioctl: VFIO_IOMMU_MAP_DMA gate)" :
		       "not attached (BPF LSM unavailable)");
		printf("  proc_exit      %s\n", count_links("proc_exit", NULL, 0) ?
		       "attached (raw_tp sched_process_exit)" : "not attached");
		printf("  tcg_cpuid      %s%s\n", pids[0] ? "attached to QEMU pids " :
		       "not attached (pviommuctl attach --pid P)", pids);
		{
			static char enf[MAX_TAGS][208];
			int n = link_tags("enf-", enf, MAX_TAGS);
			struct target t;

			printf("  uprobe plane   ");
			for (int i = 0; i < n; i++) {
				target_of_tag(&t, enf[i]);
				printf("%s%s", i ? "," : "enforcing in QEMU ",
				       t.pid > 0 ? enf[i] : t.path);
			}
			printf("%s\n", n ? "" : "not attached (pviommuctl attach --pid P --enforce)");
		}
		printf("kernel features:\n");
		pv_features_print(&f, stdout);
		printf("index: %u slots x %zu B (%zu KiB), %llu used (%.1f%%), %llu tombstones\n",
		       iv.slots, sizeof(struct pviommu_slot), iv.len >> 10,
		       (unsigned long long)used, 100.0 * used / iv.slots,
		       (unsigned long long)tomb);
		if (lanes < 0)
			printf("page bits: pviommu_fast not pinned (every check asks the index)\n");
		else
			printf("page bits: %d of %d device lanes in use%s\n", lanes,
			       PVIOMMU_FAST_LANES, lanes == PVIOMMU_FAST_LANES ?
			       " (full: devices protected from now on are checked by the index alone)" : "");
		printf("records: max %u; default mode %s\n", rec_max,
		       pv_mode_str(ctl->default_mode));
		printf("domains:\n  %-8s %-7s %-8s %-12s %-6s %s\n", "PID", "DEVICES",
		       "RECORDS", "BYTES", "MODE", "FLAGS");
	}
	while (!bpf_map_get_next_key(dfd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(dfd, &key, &dv))
			continue;
		snprintf(fl, sizeof(fl), "%s%s%s%s",
			 dv.flags & PVIOMMU_DOM_REGISTERED ? "registered" :
			 dv.flags & PVIOMMU_DOM_RESERVED ? "reserved" : "-",
			 dv.flags & PVIOMMU_DOM_FAILED ? ",FAILED-CLOSED" : "",
			 dv.flags & PVIOMMU_DOM_TABLE_FULL ? ",table-full" : "",
			 dv.flags & PVIOMMU_DOM_QUOTA ? ",quota-hit" : "");
		if (json)
			printf("%s{\"pid\":%u,\"abi\":%u,\"devices\":%u,\"records\":%llu,"
			       "\"mapped_bytes\":%llu,\"generation\":%llu,\"mode\":\"%s\","
			       "\"state\":\"%s\",\"failed_closed\":%s,"
			       "\"pages\":%llu,\"lanes\":%u,\"quota_refused\":%u,"
			       "\"quota\":{\"records\":%u,\"pages\":%u,\"devices\":%u,\"lanes\":%u},"
			       "\"table_full\":%s}", first ? "" : ",", key, dv.abi,
			       dv.nr_devices, (unsigned long long)dv.nr_records,
			       (unsigned long long)dv.mapped_bytes,
			       (unsigned long long)dv.generation, pv_mode_str(dv.mode),
			       dv.flags & PVIOMMU_DOM_REGISTERED ? "registered" :
			       dv.flags & PVIOMMU_DOM_RESERVED ? "reserved" : "none",
			       dv.flags & PVIOMMU_DOM_FAILED ? "true" : "false",
			       (unsigned long long)dv.nr_pages, dv.nr_lanes, dv.refused,
			       dv.quota.records, dv.quota.pages, dv.quota.devices, dv.quota.lanes,
			       dv.flags & PVIOMMU_DOM_TABLE_FULL ? "true" : "false");
		else
			printf("  %-8u %-7u %-8llu %-12llu %-6s %s\n", key,
			       dv.nr_devices, (unsigned long long)dv.nr_records,
			       (unsigned long long)dv.mapped_bytes,
			       pv_mode_str(dv.mode), fl);
		first = 0;
	}
	if (json) {
		printf("],\"stats\":{");
		for (int i = 0; i < PVIOMMU_ST_MAX; i++)
			printf("%s\"%s\":%llu", i ? "," : "", pv_stat_name(i),
			       (unsigned long long)st.v[i]);
		printf("}}\n");
	} else {
		if (first)
			printf("  (none)\n");
		printf("stats:\n");
		for (int i = 0; i < PVIOMMU_ST_MAX; i++)
			printf("  %-18s %llu\n", pv_stat_name(i),
			       (unsigned long long)st.v[i]);
	}
	pv_index_unmap(&iv);
	ctl_unmap(ctl, ctl_fd);
	close(dfd);
	close(sfd);
	return 0;
}

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

/* a Prometheus label value or JSON string: \ " and newline escaped, other controls dropped */
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
			     const struct vm_stat *vm, int nvm, __u32 slots, __u64 used,
			     __u64 tomb, int lanes, __u32 rec_max)
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
	prom_head(o, "index_slots_used", "gauge", "Index slots in use (pages and devices).");
	fprintf(o, "pviommu_index_slots_used %llu\n", (unsigned long long)used);
	prom_head(o, "index_tombstones", "gauge", "Index slots freed but not reusable yet.");
	fprintf(o, "pviommu_index_tombstones %llu\n", (unsigned long long)tomb);
	prom_head(o, "records_max", "gauge", "Mapping records the table holds at most (every VM).");
	fprintf(o, "pviommu_records_max %u\n", rec_max);
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
	fprintf(o, "{\"loaded\":true,\"stats\":{");
	for (int i = 0; i < PVIOMMU_ST_MAX; i++)
		fprintf(o, "%s\"%s\":%llu", i ? "," : "", pv_stat_name(i),
			(unsigned long long)st->v[i]);
	fprintf(o, "},\"vms\":[");
	for (int v = 0; v < nvm; v++) {
		const struct pviommu_domain *d = &vm[v].d;

		fprintf(o, "%s{\"pid\":%u,\"name\":\"", v ? "," : "", vm[v].pid);
		put_escaped(o, vm[v].name);
		fprintf(o, "\",\"state\":\"%s\",\"mode\":\"%s\",\"devices\":%u,\"mappings\":%llu,"
			"\"mapped_bytes\":%llu,\"index_pages\":%llu,\"page_lanes\":%u,"
			"\"quota_refused\":%u,\"failed_closed\":%s,\"table_full\":%s}",
			dom_state(d), pv_mode_str(d->mode), d->nr_devices,
			(unsigned long long)d->nr_records, (unsigned long long)d->mapped_bytes,
			(unsigned long long)d->nr_pages, d->nr_lanes, d->refused,
			d->flags & PVIOMMU_DOM_FAILED ? "true" : "false",
			d->flags & PVIOMMU_DOM_TABLE_FULL ? "true" : "false");
	}
	fprintf(o, "]}\n");
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

static int cmd_stats(int argc, char **argv)
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
	__u32 key, next, *prev = NULL, rec_max;
	__u64 used = 0, tomb = 0;
	int c, err = 1, prom = 0, nvm = 0, more = 0, lanes, dfd = -1, sfd = -1, ctl_fd = -1;
	int have_iv = 0;
	FILE *o = stdout;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":Po:h", lo, NULL)) != -1) {
		switch (c) {
		case 'P':
			prom = 1;
			json = 0;	/* the format is Prometheus', errors a line on stderr */
			break;
		case 'o':
			output = optarg;
			break;
		case 'h':
			printf("Usage: pviommuctl [-j] stats [--prometheus] [--output FILE]\n"
			       "  Counters: every VM's (hypercalls, refused hypercalls, maps, checks,\n"
			       "  violations, denied, killed, ...) and each VM's (QEMU pid, name, state,\n"
			       "  mode, devices, mappings, bytes, index pages, lanes, quota refusals).\n"
			       "  --prometheus   the Prometheus text format, for node_exporter's\n"
			       "                 textfile collector (pviommu_up 0 when not loaded);\n"
			       "                 -j does not apply\n"
			       "  --output FILE  write FILE.tmp, then rename it to FILE (what the\n"
			       "                 collector wants: it never reads half a file)\n");
			return 0;
		default:
			return opt_err(c, argv, "stats");
		}
	}
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
			fprintf(o, "{\"loaded\":false,\"error\":\"pviommu is not loaded (run 'pviommuctl load')\"}\n");
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
	for (__u32 i = 0; i < iv.slots; i++) {
		__u16 k = iv.base[i].kind;

		used += k == PVIOMMU_SLOT_PAGE || k == PVIOMMU_SLOT_DEVICE;
		tomb += k == PVIOMMU_SLOT_TOMB;
	}
	lanes = iv.fast ? __builtin_popcountll(iv.fast[PVIOMMU_FAST_USED]) : -1;
	rec_max = pinned_max_entries(PVIOMMU_MAP_MAPPINGS);
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
		stats_prometheus(o, &st, ctl, vm, nvm, iv.slots, used, tomb, lanes, rec_max);
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

/* ---- mappings --------------------------------------------------------------------- */
static int cmd_mappings(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "bdf", required_argument, 0, 'b' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct pviommu_map_key k, nk, *prev = NULL;
	struct pviommu_mapping v;
	__u64 pid = 0, n = 0, bytes = 0;
	__u32 bdf = 0;
	int c, fd, has_bdf = 0, err;
	char b[16];

	optind = 1;
	while ((c = getopt_long(argc, argv, ":p:b:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &pid))
				return 1;
			break;
		case 'b':
			if (pv_parse_bdf(optarg, &bdf)) {
				p_err("what is '%s'? --bdf wants a PCI address like 0000:00:04.0", optarg);
				return 1;
			}
			has_bdf = 1;
			break;
		case 'h':
			printf("Usage: pviommuctl [-j] mappings [--pid P] [--bdf B]\n"
			       "  Live DMA mappings the guests authorized: domain (QEMU pid), device,\n"
			       "  iova, size, permission (r: device reads memory, w: device writes it).\n");
			return 0;
		default:
			return opt_err(c, argv, "mappings");
		}
	}
	if ((err = ready(argc, argv, "mappings")))
		return err;
	fd = open_pinned(PVIOMMU_MAP_MAPPINGS, 1);
	if (fd < 0)
		return 1;
	if (json)
		printf("[");
	else
		printf("%-8s %-13s %-18s %-10s %-4s %-4s %s\n", "PID", "BDF", "IOVA",
		       "SIZE", "PERM", "REFS", "GEN");
	while (!bpf_map_get_next_key(fd, prev, &nk)) {
		k = nk;
		prev = &k;
		if (bpf_map_lookup_elem(fd, &k, &v))
			continue;
		if ((pid && k.domain != pid) || (has_bdf && k.bdf != bdf))
			continue;
		if (json)
			printf("%s{\"pid\":%u,\"bdf\":\"%s\",\"iova\":%llu,\"size\":%llu,"
			       "\"perm\":\"%s\",\"refs\":%u,\"generation\":%llu,\"cookie\":%llu}",
			       n ? "," : "", k.domain, pv_fmt_bdf(k.bdf, b),
			       (unsigned long long)v.iova, (unsigned long long)v.size,
			       pv_perm_str(v.perm), v.refs,
			       (unsigned long long)v.generation,
			       (unsigned long long)v.cookie);
		else
			printf("%-8u %-13s 0x%016llx %-10llu %-4s %-4u %llu\n", k.domain,
			       pv_fmt_bdf(k.bdf, b), (unsigned long long)v.iova,
			       (unsigned long long)v.size, pv_perm_str(v.perm), v.refs,
			       (unsigned long long)v.generation);
		n++;
		bytes += v.size;
	}
	if (json)
		printf("]\n");
	else
		printf("%llu mappings, %llu bytes\n", (unsigned long long)n,
		       (unsigned long long)bytes);
	close(fd);
	return 0;
}

/* ---- events ----------------------------------------------------------------------- */
static __u64 ev_count, ev_max;
static __s64 ev_wall_off;	/* CLOCK_REALTIME - CLOCK_MONOTONIC (ts_ns is the latter) */

/* an event's time as RFC 3339 UTC, for log shippers */
static char *ev_time(__u64 ts_ns, char *buf, size_t len)
{
	__s64 ns = (__s64)ts_ns + ev_wall_off;
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;
	size_t n;

	if (!gmtime_r(&sec, &tm) || !(n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)))
		return strcpy(buf, "-");
	snprintf(buf + n, len - n, ".%06lldZ", (long long)(ns % 1000000000 / 1000));
	return buf;
}

static void on_sig(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_event(void *ctx, void *data, size_t len)
{
	const struct pviommu_event *e = data;
	char b[16], tb[40];

	if (len < sizeof(*e))
		return 0;
	if (json)
		printf("{\"ts_ns\":%llu,\"type\":\"%s\",\"pid\":%u,\"tid\":%u,\"bdf\":\"%s\","
		       "\"addr\":%llu,\"len\":%llu,\"access\":\"%s\",\"op\":\"%s\",\"err\":%d,"
		       "\"reason\":\"%s\",\"action\":\"%s\",\"plane\":\"%s\",\"time\":\"%s\"}\n",
		       (unsigned long long)e->ts_ns, pv_event_type_str(e->type),
		       e->domain, e->tid, pv_fmt_bdf(e->bdf, b),
		       (unsigned long long)e->addr, (unsigned long long)e->len,
		       pv_perm_str(e->perm), pv_op_str(e->op), e->err,
		       e->type == PVIOMMU_EV_VIOLATION ? pv_verdict_str(-e->err) :
		       e->type == PVIOMMU_EV_FAILED ? pv_fail_str(e->perm) :
		       e->err ? strerror(-e->err) : "-",
		       pv_action_str(e->action), pv_plane_str(e->plane),
		       ev_time(e->ts_ns, tb, sizeof(tb)));
	else if (e->type == PVIOMMU_EV_VIOLATION)
		printf("%llu.%06llu violation pid=%u bdf=%s addr=0x%llx len=%llu %s reason=%s action=%s plane=%s\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000), e->domain,
		       pv_fmt_bdf(e->bdf, b), (unsigned long long)e->addr,
		       (unsigned long long)e->len,
		       e->perm & PVIOMMU_PERM_WRITE ? "write" : "read",
		       pv_verdict_str(-e->err), pv_action_str(e->action),
		       pv_plane_str(e->plane));
	else if (e->type == PVIOMMU_EV_LIMITED)
		printf("%llu.%06llu events-limited pid=%u: %llu events of its calls not sent in its last window (over %u a second)\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000), e->domain,
		       (unsigned long long)e->len, PVIOMMU_EV_BUDGET);
	else if (e->type == PVIOMMU_EV_FAILED)
		printf("%llu.%06llu failed-closed pid=%u %s%s after op=%s err=%s: %s; its transfers are denied\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000), e->domain,
		       e->bdf == ~0u ? "every device" : "bdf=",
		       e->bdf == ~0u ? "" : pv_fmt_bdf(e->bdf, b), pv_op_str(e->op),
		       e->err ? strerror(-e->err) : "ok", pv_fail_str(e->perm));
	else
		printf("%llu.%06llu %s pid=%u bdf=%s op=%s iova=0x%llx size=%llu err=%s plane=%s\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000),
		       pv_event_type_str(e->type), e->domain, pv_fmt_bdf(e->bdf, b),
		       pv_op_str(e->op), (unsigned long long)e->addr,
		       (unsigned long long)e->len, e->err ? strerror(-e->err) : "ok",
		       pv_plane_str(e->plane));
	fflush(stdout);
	if (ev_max && ++ev_count >= ev_max)
		stop = 1;
	return 0;
}

/* the id of the pinned event ring, 0 if there is none */
static __u32 events_id(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), id = 0;
	int own = fd < 0;

	if (own && (fd = pv_obj_get(NULL, PVIOMMU_MAP_EVENTS, 1)) < 0)
		return 0;
	if (!bpf_obj_get_info_by_fd(fd, &info, &len))
		id = info.id;
	if (own)
		close(fd);
	return id;
}

/* --follow says on stderr what it waits for, also with -j (stdout stays events only) */
static void follow_note(const char *what)
{
	fprintf(stderr, "note: %s\n", what);
}

static int cmd_events(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "count", required_argument, 0, 'c' },
		{ "timeout", required_argument, 0, 't' },
		{ "follow", no_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct ring_buffer *rb = NULL;
	__u64 timeout = 0, last_look = 0, now;
	struct timespec t0, t, rt;
	int c, fd = -1, err = 0, follow = 0, waiting = 0;
	__u32 id = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":c:t:fh", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (pv_parse_u64(optarg, &ev_max) || !ev_max) {
				p_err("what is '%s'? --count wants a positive number", optarg);
				return 1;
			}
			break;
		case 't':
			if (pv_parse_u64(optarg, &timeout)) {
				p_err("what is '%s'? --timeout wants seconds", optarg);
				return 1;
			}
			break;
		case 'f':
			follow = 1;
			break;
		case 'h':
			printf("Usage: pviommuctl [-j] events [--follow] [--count N] [--timeout SEC]\n"
			       "  Follow the event ring buffer, one line per event: violations\n"
			       "  (pid, device, address, length, direction, reason, action),\n"
			       "  refused hypercalls, full tables, domains coming and going.\n"
			       "  With -j, one JSON object per line (JSON lines), with \"time\" (RFC 3339).\n"
			       "  Stops after N events, after SEC seconds, or on SIGINT/SIGTERM (exit 0).\n"
			       "  --follow  for log shippers and services: start before pviommu is loaded\n"
			       "            and wait for it, and keep following across unload and load\n"
			       "            (the new event ring is picked up within a second).\n");
			return 0;
		default:
			return opt_err(c, argv, "events");
		}
	}
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl events --help')", argv[optind]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	if (!follow && !loaded())
		return not_loaded();
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	setvbuf(stdout, NULL, _IOLBF, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_REALTIME, &rt);
	ev_wall_off = ((__s64)rt.tv_sec - t0.tv_sec) * 1000000000 + (rt.tv_nsec - t0.tv_nsec);
	while (!stop) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (timeout && (__u64)(t.tv_sec - t0.tv_sec) >= timeout)
			break;
		now = (__u64)t.tv_sec * 1000 + t.tv_nsec / 1000000;
		if (!rb) {
			fd = pv_obj_get(NULL, PVIOMMU_MAP_EVENTS, 0);
			if (fd < 0 && !follow) {
				p_err("cannot open %s: %s", PVIOMMU_MAP_EVENTS, strerror(-fd));
				return 1;
			}
			if (fd < 0) {
				if (!waiting++)
					follow_note("pviommu is not loaded: waiting for 'pviommuctl load'");
				usleep(200000);
				continue;
			}
			rb = ring_buffer__new(fd, on_event, NULL, NULL);
			if (!rb) {
				err = -errno;
				p_err("ring buffer: %s", strerror(-err));
				close(fd);
				return 1;
			}
			id = events_id(fd);
			if (waiting)
				follow_note("pviommu is loaded: following its events");
			waiting = 0;
			last_look = now;
		}
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR) {
			p_err("polling events: %s", strerror(-err));
			break;
		}
		err = 0;
		/* --follow: an unload, or an unload and a load, replaced the ring */
		if (follow && now - last_look >= 1000) {
			__u32 cur = events_id(-1);

			last_look = now;
			if (cur != id) {
				ring_buffer__consume(rb);
				ring_buffer__free(rb);
				close(fd);
				rb = NULL;
				fd = -1;
				follow_note(cur ? "a new load replaced the event ring: following the new one" :
					    "pviommu was unloaded: waiting for 'pviommuctl load'");
				waiting = !cur;
			}
		}
	}
	if (rb)
		ring_buffer__free(rb);
	if (fd >= 0)
		close(fd);
	return err < 0 ? 1 : 0;
}

/* ---- mode --------------------------------------------------------------------------- */
static int cmd_mode(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct pviommu_ctl *ctl;
	__u32 mode;
	__u64 pid = 0;
	int c, fd, ctl_fd, err, n = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":p:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &pid))
				return 1;
			break;
		case 'h':
			printf("Usage: pviommuctl mode audit|deny|kill [--pid P]\n"
			       "  What a violation does: audit (event + counter, transfer allowed),\n"
			       "  deny (the transfer fails like an IOMMU fault), kill (QEMU gets\n"
			       "  SIGKILL before the transfer runs). Without --pid: the default for\n"
			       "  new domains and every current one.\n");
			return 0;
		default:
			return opt_err(c, argv, "mode");
		}
	}
	if (optind != argc - 1) {
		p_err("mode wants one of audit, deny, kill (see 'pviommuctl mode --help')");
		return 1;
	}
	if (pv_parse_mode(argv[optind], &mode)) {
		p_err("what is '%s'? mode is audit, deny or kill", argv[optind]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	if (!loaded())
		return not_loaded();
	fd = pv_obj_get(NULL, "progs/pviommu_set_mode", 0);
	ctl = ctl_map(&ctl_fd);
	if (fd < 0 || !ctl) {
		p_err("cannot open the pinned program and maps (reload with 'pviommuctl load')");
		if (fd >= 0)
			close(fd);
		if (ctl)
			ctl_unmap(ctl, ctl_fd);
		return 1;
	}
	/* the mode word alone, written by a BPF program: the rest of a record
	 * belongs to the hypercall handlers */
	if (!pid)
		__atomic_store_n(&ctl->default_mode, mode, __ATOMIC_SEQ_CST);
	n = pv_set_mode(fd, (__u32)pid, mode);
	if (n < 0) {
		if (n == -ENOENT)
			p_err("no domain for pid %llu (QEMU not started with 'pviommuctl run', and the guest has not registered)",
			      (unsigned long long)pid);
		else
			p_err("cannot set the mode: %s", strerror(-n));
		close(fd);
		ctl_unmap(ctl, ctl_fd);
		return 1;
	}
	if (json)
		printf("{\"mode\":\"%s\",\"domains\":%d}\n", pv_mode_str(mode), n);
	else
		printf("mode %s: %d domain%s%s\n", pv_mode_str(mode), n,
		       n == 1 ? "" : "s", pid ? "" : " (and the default)");
	close(fd);
	ctl_unmap(ctl, ctl_fd);
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

static int cmd_attach(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "enforce", no_argument, 0, 'e' },
		{ "qemu", required_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = PIN_DIR);
	struct pviommu_bpf *skel;
	struct pviommu_ctl *ctl;
	struct pv_features f;
	__u64 pid = 0;
	int c, err, ctl_fd, enforce = 0, nl = 0;
	const char *qemu = NULL, *failed = NULL;
	char users[256];
	struct target t;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":p:eq:h", lo, NULL)) != -1) {
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
		case 'h':
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
			return 0;
		default:
			return opt_err(c, argv, "attach");
		}
	}
	if (!!pid == !!qemu || optind < argc) {
		p_err("attach wants --pid P or --qemu PATH (see 'pviommuctl attach --help')");
		return 1;
	}
	if (qemu && (target_path(&t, qemu) || access(qemu, R_OK))) {
		p_err("what is '%s'? --qemu wants the absolute path of a QEMU binary (no '+' or '=')",
		      qemu);
		return 1;
	}
	if (pid)
		target_pid(&t, (int)pid);
	if ((err = need_root()))
		return err;
	if (!loaded())
		return not_loaded();
	if (pid && has_inproc((int)pid)) {
		p_err("pid %llu already runs the in-process plane (libpviommu-qemu.so): it carries the hypercall transport and checks every transfer; uprobes on its patched functions would break it",
		      (unsigned long long)pid);
		return 1;
	}
	if (enforce) {
		/* the device identity follows QEMU's structures: check them first */
		char exe[64], why[256];

		snprintf(exe, sizeof(exe), "/proc/%llu/exe", (unsigned long long)pid);
		if (qemu_layout_check_file(qemu ? qemu : exe, why, sizeof(why))) {
			p_err("cannot enforce on %s: its PCI device layout is not the one pviommu knows (%s); qemu-hooks/qemu_layout.h describes Debian's QEMU 7.2",
			      qemu ? qemu : t.tag, why);
			return 1;
		}
	}
	ctl = ctl_map(&ctl_fd);
	if (!ctl)
		return not_loaded();
	skel = pviommu_bpf__open_opts(&oo);
	if (!skel) {
		p_err("cannot open the BPF object: %s", strerror(errno));
		ctl_unmap(ctl, ctl_fd);
		return 1;
	}
	bpf_map__set_max_entries(skel->maps.pviommu_index,
				 pinned_max_entries(PVIOMMU_MAP_INDEX));
	bpf_map__set_max_entries(skel->maps.pviommu_mappings,
				 pinned_max_entries(PVIOMMU_MAP_MAPPINGS));
	skel->rodata->index_mask = pinned_max_entries(PVIOMMU_MAP_INDEX) - 1;
	skel->rodata->load_gen = ctl->active_gen;
	skel->rodata->hash_key = ctl->hash_key;
	/* only the uprobe programs are needed */
	{
		struct bpf_program *p;

		bpf_object__for_each_program(p, skel->obj)
			bpf_program__set_autoload(p,
				p == skel->progs.pviommu_tcg_cpuid ||
				(enforce && !strncmp(bpf_program__name(p),
						     "pviommu_up_", 11)));
	}
	err = pviommu_bpf__load(skel);
	if (err) {
		p_err("loading the uprobe programs failed: %s", strerror(-err));
		goto out;
	}
	/*
	 * --qemu PATH: uprobes on the binary reach every process of it,
	 * those that run the in-process plane too (see inproc_users). Checked
	 * right before and right after attaching: a QEMU that starts later
	 * finds int3 in its prologues and refuses to run, one whose
	 * constructor patched in between is caught by the second look.
	 */
	if (qemu && inproc_users(qemu, users, sizeof(users))) {
		p_err("QEMU pids %s of %s run the in-process plane (pviommuctl run): uprobes on that binary would land on their patched prologues and crash them; stop them first, or attach to other VMs one by one (attach --pid P)",
		      users, qemu);
		err = -EBUSY;
		goto out;
	}
	err = attach_tcg(skel, &t);
	if (!err && enforce)
		err = attach_enforce(skel, &t, &nl, &failed);
	if (!err && qemu && inproc_users(qemu, users, sizeof(users))) {
		drop_links_of(t.tag);
		p_err("QEMU pids %s of %s started the in-process plane while the uprobes were being attached: uprobes removed again; check those VMs",
		      users, qemu);
		err = -EBUSY;
		goto out;
	}
	if (err) {
		drop_links_of(t.tag);
		if (err == -ESRCH)
			p_err("no process %llu", (unsigned long long)pid);
		else
			p_err("cannot attach to %s%s%s: %s (is it qemu-system-x86_64 7.x?)",
			      qemu ? qemu : t.tag, failed ? ": uprobe on " : "",
			      failed ? failed : "", strerror(-err));
		goto out;
	}
	if (enforce) {
		pv_probe_features(&f);
		if (!f.uprobe_regs.ok)
			p_note("this kernel refuses uprobe register writes: on this plane a denied transfer stops the VM (kill); 'pviommuctl run' denies precisely");
	}
	if (json)
		printf("{\"attached\":\"%s\",\"transport\":true,\"enforce_uprobes\":%d}\n",
		       qemu ? qemu : t.tag, nl);
	else
		printf("attached to %s %s: TCG hypercall transport%s\n",
		       qemu ? "every process of" : "pid", qemu ? qemu : t.tag,
		       enforce ? ", uprobe enforcement" : "");
out:
	pviommu_bpf__destroy(skel);
	ctl_unmap(ctl, ctl_fd);
	return err ? 1 : 0;
}

static int cmd_detach(int argc, char **argv)
{
	struct target t;
	__u64 pid = 0;

	if (argc == 3 && !strcmp(argv[1], "--pid") && !pv_parse_u64(argv[2], &pid) && pid)
		target_pid(&t, (int)pid);
	else if (argc == 3 && !strcmp(argv[1], "--qemu") && !target_path(&t, argv[2]))
		;
	else if (argc == 2 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
			       !strcmp(argv[1], "-h"))) {
		printf("Usage: pviommuctl detach --pid P | --qemu PATH\n"
		       "  Remove every uprobe pviommu attached to QEMU process P (or binary PATH).\n");
		return 0;
	} else {
		p_err("detach wants --pid P or --qemu PATH (see 'pviommuctl detach --help')");
		return 1;
	}
	if ((pid = need_root()))
		return (int)pid;
	if (!drop_links_of(t.tag)) {
		p_err("%s is not attached", argv[2]);
		return 1;
	}
	if (json)
		printf("{\"detached\":\"%s\"}\n", argv[2]);
	else
		printf("detached from %s\n", argv[2]);
	return 0;
}

/* ---- vfio: the devices a domain's VFIO containers serve --------------------------- */
static int cmd_vfio(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct pviommu_vfio_devs v = {};
	__u64 pid = 0;
	__u32 key;
	int c, fd, err;
	char b[16];

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:p:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &pid))
				return 1;
			break;
		case 'h':
			printf("Usage: pviommuctl vfio --pid P [BDF...]\n"
			       "  The guest BDFs whose devices QEMU process P assigned with VFIO: the\n"
			       "  BPF LSM gate lets P's VFIO_IOMMU_MAP_DMA through only for ranges its\n"
			       "  guest mapped for one of them. No BDF: show them. '-' : clear.\n");
			return 0;
		default:
			return opt_err(c, argv, "vfio");
		}
	}
	if (!pid) {
		p_err("vfio wants --pid P (see 'pviommuctl vfio --help')");
		return 1;
	}
	for (int i = optind; i < argc; i++) {
		if (!strcmp(argv[i], "-"))
			continue;
		if (v.nr == PVIOMMU_VFIO_MAX_DEVS) {
			p_err("at most %d devices per domain", PVIOMMU_VFIO_MAX_DEVS);
			return 1;
		}
		if (pv_parse_bdf(argv[i], &v.bdf[v.nr])) {
			p_err("what is '%s'? a PCI address like 0000:00:04.0", argv[i]);
			return 1;
		}
		v.nr++;
	}
	if ((err = need_root()))
		return err;
	if (!loaded())
		return not_loaded();
	fd = open_pinned(PVIOMMU_MAP_VFIO_DEVS, 0);
	if (fd < 0) {
		p_err("(the VFIO gate needs BPF LSM; see 'pviommuctl status')");
		return 1;
	}
	key = pid;
	if (optind < argc) {
		err = v.nr ? bpf_map_update_elem(fd, &key, &v, BPF_ANY) :
			     (bpf_map_delete_elem(fd, &key) && errno != ENOENT ? -1 : 0);
		if (err) {
			p_err("updating %s: %s", PVIOMMU_MAP_VFIO_DEVS, strerror(errno));
			close(fd);
			return 1;
		}
	} else if (bpf_map_lookup_elem(fd, &key, &v)) {
		v.nr = 0;
	}
	if (json) {
		printf("{\"pid\":%llu,\"devices\":[", (unsigned long long)pid);
		for (__u32 i = 0; i < v.nr && i < PVIOMMU_VFIO_MAX_DEVS; i++)
			printf("%s\"%s\"", i ? "," : "", pv_fmt_bdf(v.bdf[i], b));
		printf("]}\n");
	} else {
		printf("pid %llu: VFIO devices", (unsigned long long)pid);
		for (__u32 i = 0; i < v.nr && i < PVIOMMU_VFIO_MAX_DEVS; i++)
			printf(" %s", pv_fmt_bdf(v.bdf[i], b));
		printf("%s\n", v.nr ? "" : " none");
	}
	close(fd);
	return 0;
}

/* ---- main ------------------------------------------------------------------------------ */
#ifndef PVIOMMU_VERSION
#define PVIOMMU_VERSION	"unknown"
#endif

static int cmd_help(int argc, char **argv);

static const struct cmd {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{ "load", cmd_load, "load/reload programs, pin maps (keeps live mappings)" },
	{ "unload", cmd_unload, "detach everything, remove every pin" },
	{ "status", cmd_status, "programs, kernel features, index, domains, counters" },
	{ "stats", cmd_stats, "counters, every VM's and each VM's [--prometheus]" },
	{ "mappings", cmd_mappings, "live mappings [--pid P] [--bdf B]" },
	{ "events", cmd_events, "follow violations and refused hypercalls" },
	{ "mode", cmd_mode, "audit|deny|kill [--pid P]" },
	{ "run", cmd_run, "run QEMU under the in-process plane: [--mode M] -- QEMU ARGS" },
	{ "attach", cmd_attach, "into a running QEMU --pid P [--enforce]" },
	{ "detach", cmd_detach, "remove it again --pid P" },
	{ "vfio", cmd_vfio, "the VFIO-assigned devices of --pid P, for the LSM gate" },
	{ "help", cmd_help, "this text; 'pviommuctl help CMD' for one command" },
};

#define NR_CMDS	(sizeof(cmds) / sizeof(cmds[0]))

/* the command that name is, or the one it is a prefix of; NULL with the error said */
static const struct cmd *find_cmd(const char *name)
{
	const struct cmd *hit = NULL;
	char which[256] = "";
	size_t off = 0, len = strlen(name);
	int n = 0;

	for (size_t i = 0; i < NR_CMDS; i++) {
		if (!strcmp(name, cmds[i].name))
			return &cmds[i];
		if (strncmp(name, cmds[i].name, len))
			continue;
		hit = &cmds[i];
		n++;
		if (off < sizeof(which))
			off += snprintf(which + off, sizeof(which) - off, "%s%s",
					off ? ", " : "", cmds[i].name);
	}
	if (n == 1)
		return hit;
	if (n)
		p_err("which command is '%s'? %s (see 'pviommuctl help')", name, which);
	else
		p_err("what is '%s'? (see 'pviommuctl help')", name);
	return NULL;
}

static int cmd_help(int argc, char **argv)
{
	const struct cmd *c;

	if (argc > 2) {
		p_err("what is '%s'? help takes one command (see 'pviommuctl help')", argv[2]);
		return 1;
	}
	if (argc == 2) {
		c = find_cmd(argv[1]);
		if (!c)
			return 1;
		if (c->fn != cmd_help) {
			char *av[] = { (char *)c->name, "--help", NULL };

			return c->fn(2, av);
		}
	}
	printf("Usage: pviommuctl [OPTIONS] COMMAND [ARGS]\n\n"
	       "pviommu: guest-authorized DMA ranges per VM and device, enforced on\n"
	       "every transfer of QEMU-emulated and VFIO-assigned devices.\n\n"
	       "Commands (a unique prefix is enough):\n");
	for (size_t i = 0; i < NR_CMDS; i++)
		printf("  %-9s %s\n", cmds[i].name, cmds[i].what);
	printf("\nOptions (before or after the command, not after '--'):\n"
	       "  -j, --json     JSON output (errors too: {\"error\":\"...\"} on stdout)\n"
	       "  -v, --verbose  libbpf's messages, verifier logs included (-vv: debug too)\n"
	       "  -V, --version  version and hypercall ABI\n"
	       "  -h, --help     this text\n\n"
	       "Examples:\n"
	       "  pviommuctl load\n"
	       "  pviommuctl attach --pid $(pidof qemu-system-x86_64)\n"
	       "  pviommuctl mappings --bdf 0000:00:04.0\n"
	       "  pviommuctl status -j\n"
	       "  bpftool map dump pinned %s/%s\n"
	       "\nExit status: 0 ok, 1 error (one 'Error: ...' line says which), 2 this\n"
	       "system cannot run pviommu (not root, no BTF, no bpffs); 'run' ends as QEMU\n"
	       "does (127: QEMU cannot be executed).\n", PIN_DIR,
	       PVIOMMU_MAP_MAPPINGS);
	return 0;
}

static int print_version(void)
{
	if (json)
		printf("{\"version\":\"%s\",\"abi\":%u,\"libbpf\":\"%s\"}\n",
		       PVIOMMU_VERSION, PVIOMMU_ABI_VERSION, libbpf_version_string());
	else
		printf("pviommuctl v%s\nABI %u (hypercalls, shared page: bpf/pviommu.h)\nusing libbpf %s\n",
		       PVIOMMU_VERSION, PVIOMMU_ABI_VERSION, libbpf_version_string());
	return 0;
}

/* -j, --json, -v, --verbose (and -jv, -vv...): 1 if a is one of them */
static int global_opt(const char *a)
{
	if (!strcmp(a, "--json") || !strcmp(a, "--verbose")) {
		json |= a[2] == 'j';
		verbose += a[2] == 'v';
		return 1;
	}
	if (a[0] != '-' || !a[1] || strspn(a + 1, "jv") != strlen(a + 1))
		return 0;
	for (a++; *a; a++) {
		json |= *a == 'j';
		verbose += *a == 'v';
	}
	return 1;
}

/* an option of 'run' whose value is the next word: -m -q -l, --mode --quota --lib */
static int run_opt_value(const char *a)
{
	static const char *const lo[] = { "--mode", "--quota", "--lib" };
	size_t len = strlen(a);

	if (!strcmp(a, "-m") || !strcmp(a, "-q") || !strcmp(a, "-l"))
		return 1;
	if (len < 3 || strncmp(a, "--", 2) || strchr(a, '='))
		return 0;
	for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++)
		if (!strncmp(a, lo[i], len))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const struct cmd *cmd;
	int i, k, n, help = 0, version = 0, value = 0;

	opterr = 0;	/* getopt's complaints go through opt_err() */
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (global_opt(argv[i]))
			continue;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			help = 1;
		} else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
			version = 1;
		} else {
			p_err("what is '%s'? (see 'pviommuctl help')", argv[i]);
			return 1;
		}
	}
	if (version)
		return print_version();
	if (help)
		return cmd_help(1, argv);
	if (i >= argc) {
		cmd_help(1, argv);
		p_err("which command? (see above)");
		return 1;
	}
	cmd = find_cmd(argv[i]);
	if (!cmd)
		return 1;
	/*
	 * The global options after the command too, as bpftool takes them;
	 * never past '--', nor into QEMU's own arguments ('run' ends its
	 * options at the first word that is not one of them or their value).
	 */
	for (k = n = i + 1; k < argc; k++) {
		const char *a = argv[k];

		if (!strcmp(a, "--") || (cmd->fn == cmd_run && !value && a[0] != '-')) {
			while (k < argc)
				argv[n++] = argv[k++];
			break;
		}
		if (!value && global_opt(a))
			continue;
		value = !value && cmd->fn == cmd_run && run_opt_value(a);
		argv[n++] = argv[k];
	}
	argv[n] = NULL;
	argc = n;
	libbpf_set_print(libbpf_print);
	return cmd->fn(argc - i, argv + i);
}
