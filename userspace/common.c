// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* common.c - errors (bpftool's habits), what the environment must offer, pinned objects */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pviommuctl.h"

int json;
int verbose;

/* ---- errors, bpftool style -------------------------------------------------- */
void p_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (json) {
		char buf[1024];
		struct jw w;

		vsnprintf(buf, sizeof(buf), fmt, ap);
		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "error", buf);
		jw_end(&w);
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

int cmd_getopt(struct cmd_opts *o, int argc, char **argv)
{
	const char *s = o->spec;
	char spec[64];
	int c;

	if (!o->started) {
		optind = 1;
		o->started = 1;
		/* 'pviommuctl CMD help', as bpftool takes it */
		if (argc == 2 && !strcmp(argv[1], "help")) {
			o->usage();
			o->rc = 0;
			return -1;
		}
	}
	/* '+' stays first; ':' next (a missing value comes back as ':'); -h always */
	snprintf(spec, sizeof(spec), "%s:%sh", *s == '+' ? "+" : "", s + (*s == '+'));
	c = getopt_long(argc, argv, spec, o->lo, NULL);
	switch (c) {
	case -1:
		return 0;
	case 'h':
		o->usage();
		o->rc = 0;
		return -1;
	case '?':
	case ':':
		o->rc = opt_err(c, argv, o->cmd);
		return -1;
	default:
		return c;
	}
}

int libbpf_print(enum libbpf_print_level level, const char *fmt,
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
int need_root(void)
{
	if (geteuid() != 0) {
		p_err("pviommuctl needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)");
		return 2;
	}
	return 0;
}

int need_btf(void)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		p_err("kernel BTF missing (/sys/kernel/btf/vmlinux): CO-RE needs CONFIG_DEBUG_INFO_BTF=y");
		return 2;
	}
	return 0;
}

int ensure_bpffs(void)
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

int loaded(void)
{
	return access(pv_pin_path(PVIOMMU_MAP_CTL), F_OK) == 0;
}

int not_loaded(void)
{
	p_err("pviommu is not loaded (run 'pviommuctl load')");
	return 1;
}

/* after option parsing: no stray argument, root, loaded; 0 or exit code */
int ready(int argc, char **argv, const char *cmd)
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
int open_pinned(const char *name, int rdonly)
{
	int fd = pv_obj_get(NULL, name, rdonly);

	if (fd < 0) {
		p_err("cannot open %s: %s", name, strerror(-fd));
		return -1;
	}
	return fd;
}

/* --pid P: 0 or -1 with the error said */
int parse_pid(const char *s, __u64 *pid)
{
	if (pv_parse_u64(s, pid) || !*pid || *pid > 0x7fffffff) {
		p_err("what is '%s'? --pid wants a process id", s);
		return -1;
	}
	return 0;
}

/* ---- ctl, mmapped ------------------------------------------------------------ */
struct pviommu_ctl *ctl_map(int *fdp)
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

void ctl_unmap(struct pviommu_ctl *c, int fd)
{
	munmap(c, sysconf(_SC_PAGESIZE));
	close(fd);
}

__u32 pinned_max_entries(const char *name)
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

