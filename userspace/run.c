// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pviommuctl run [--mode audit|deny|kill] [--lib PATH] -- QEMU [ARGS...]
 *
 * Starts QEMU under the in-process plane: LD_PRELOAD = libpviommu-qemu.so
 * (next to pviommuctl), every virtio PCI device with iommu_platform=on and
 * disable-legacy=on, then exec (QEMU keeps this process's pid, which is
 * therefore the VM's domain).
 *
 * Why virtio needs iommu_platform=on: without it QEMU 7.2 does a virtio-pci
 * device's DMA through address_space_memory, which carries no device
 * identity (nothing can tell the device's accesses from the CPU's), and the
 * guest does not use the DMA API for the device (VIRTIO_F_ACCESS_PLATFORM
 * is not offered), so the guest module never sees its buffers. Such a
 * device cannot be protected; an explicit iommu_platform=off is refused.
 * disable-legacy=on: QEMU refuses iommu_platform on a legacy/transitional
 * virtio device.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "pvlib.h"
#include "pviommuctl.h"

#define QEMU_LIB_NAME	"libpviommu-qemu.so"

static void run_usage(void)
{
	fprintf(stdout,
		"Usage: pviommuctl run [--mode audit|deny|kill] [--quota Q] [--lib PATH] -- qemu-system-x86_64 ARGS...\n"
		"  Run QEMU with the in-process enforcement plane (%s preloaded):\n"
		"  every DMA of a protected device is checked in QEMU against the ranges\n"
		"  its guest authorized. Adds iommu_platform=on,disable-legacy=on to every\n"
		"  virtio PCI -device that lacks it (without it a virtio device's DMA has\n"
		"  no device identity and its guest driver bypasses the DMA API); refuses\n"
		"  iommu_platform=off, transitional virtio devices and the -drive if=virtio /\n"
		"  -nic model=virtio shortcuts (use -device virtio-*-pci instead).\n"
		"  The library also carries the guest's TCG hypercall transport (the\n"
		"  cpuid leaf of pviommu.ko): no 'pviommuctl attach' is needed.\n"
		"  --mode M    what a violation of this VM does (default: the global default)\n"
		"  --quota Q   this VM's share: records=N,pages=N,devices=N,lanes=N (any of\n"
		"              them; default: 'pviommuctl load --quota'). The VM's capacity is\n"
		"              taken when QEMU starts: without room QEMU does not start.\n"
		"  --lib PATH  the library (default: next to pviommuctl)\n"
		"  Environment passed to QEMU: PVIOMMU_REQUIRE=0 runs QEMU unprotected when\n"
		"  pviommu is not loaded (default: refuse), PVIOMMU_DEBUG=1 logs detours and\n"
		"  device identities, PVIOMMU_RING_MAX=N serves shared-page rings of at most N\n"
		"  entries (64-512, default 512).\n", QEMU_LIB_NAME);
}

/* value of key in a "driver,k=v,k=v" option string; ",," is an escaped ',' */
static int opt_get(const char *s, const char *key, char *val, size_t vlen)
{
	size_t kl = strlen(key);
	const char *p = s;
	int first = 1;

	while (*p) {
		const char *e = p;

		while (*e && !(*e == ',' && e[1] != ',')) {
			if (*e == ',' && e[1] == ',')
				e++;
			e++;
		}
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			size_t n = (size_t)(e - p - kl - 1);

			if (n >= vlen)
				n = vlen - 1;
			memcpy(val, p + kl + 1, n);
			val[n] = 0;
			return 1;
		}
		if (first && !strcmp(key, "driver") && !memchr(p, '=', (size_t)(e - p))) {
			size_t n = (size_t)(e - p);

			if (n >= vlen)
				n = vlen - 1;
			memcpy(val, p, n);
			val[n] = 0;
			return 1;
		}
		first = 0;
		p = *e ? e + 1 : e;
	}
	return 0;
}

static int is_off(const char *v)
{
	return !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") ||
	       !strcmp(v, "n");
}

static int ends_with(const char *s, const char *t)
{
	size_t a = strlen(s), b = strlen(t);

	return a >= b && !strcmp(s + a - b, t);
}

/* a virtio PCI device: virtio-*-pci[-non-transitional|-transitional] */
static int virtio_pci_kind(const char *drv)
{
	if (strncmp(drv, "virtio-", 7))
		return 0;
	if (ends_with(drv, "-pci-transitional"))
		return 2;
	if (ends_with(drv, "-pci") || ends_with(drv, "-pci-non-transitional"))
		return 1;
	return 0;
}

static const char *const why_platform =
	"without iommu_platform=on QEMU does this device's DMA through "
	"address_space_memory (no device identity: its accesses cannot be told "
	"from the CPU's) and the guest driver bypasses the DMA API, so pviommu "
	"can neither see its buffers nor check its transfers";

static char *oom(void)
{
	p_err("out of memory");
	return NULL;
}

static char *dup_arg(const char *arg)
{
	char *d = strdup(arg);

	return d ? d : oom();
}

/* the driver of a -device argument, "" when it names none */
static void device_driver(const char *arg, char *drv, size_t len)
{
	const char *d;
	size_t n;

	drv[0] = 0;
	if (arg[0] != '{') {
		opt_get(arg, "driver", drv, len);
		return;
	}
	d = strstr(arg, "\"driver\"");
	if (d && (d = strchr(d + 8, '"'))) {
		n = strcspn(d + 1, "\"");
		if (n < len) {
			memcpy(drv, d + 1, n);
			drv[n] = 0;
		}
	}
}

/* a JSON -device of virtio device drv: with iommu_platform and disable-legacy; NULL: said */
static char *fix_device_json(const char *arg, int idx, const char *drv)
{
	char *out;

	if (strstr(arg, "\"iommu_platform\":false") ||
	    strstr(arg, "\"iommu_platform\": false") ||
	    strstr(arg, "\"disable-legacy\":\"off\"")) {
		p_err("-device %s: refusing iommu_platform=off / disable-legacy=off: %s",
		      drv, why_platform);
		return NULL;
	}
	if (strstr(arg, "\"iommu_platform\""))
		return dup_arg(arg);
	if (asprintf(&out, "{\"iommu_platform\":true,%s%s",
		     strstr(arg, "\"disable-legacy\"") ? "" :
		     "\"disable-legacy\":\"on\",", arg + 1) < 0)
		return oom();
	fprintf(stderr, "pviommuctl run: argument %d (%s): added iommu_platform=on\n", idx, drv);
	return out;
}

/* a "driver,k=v,..." -device of virtio device drv: the same; NULL: said */
static char *fix_device_opts(const char *arg, int idx, const char *drv)
{
	int has_p, has_l;
	char v[64], *out;

	if (opt_get(arg, "iommu_platform", v, sizeof(v)) && is_off(v)) {
		p_err("-device %s: refusing iommu_platform=%s: %s; remove iommu_platform=%s "
		      "('pviommuctl run' adds iommu_platform=on)", drv, v, why_platform, v);
		return NULL;
	}
	if (opt_get(arg, "disable-legacy", v, sizeof(v)) && is_off(v)) {
		p_err("-device %s: refusing disable-legacy=off: QEMU cannot offer "
		      "iommu_platform=on on a legacy virtio interface, and %s", drv, why_platform);
		return NULL;
	}
	has_p = opt_get(arg, "iommu_platform", v, sizeof(v));
	has_l = opt_get(arg, "disable-legacy", v, sizeof(v));
	if (has_p && has_l)
		return dup_arg(arg);
	if (asprintf(&out, "%s%s%s", arg, has_p ? "" : ",iommu_platform=on",
		     has_l ? "" : ",disable-legacy=on") < 0)
		return oom();
	fprintf(stderr, "pviommuctl run: argument %d (%s): added%s%s\n", idx, drv,
		has_p ? "" : " iommu_platform=on", has_l ? "" : " disable-legacy=on");
	return out;
}

/* the -device argument, rewritten if needed; NULL after an error message */
static char *fix_device(const char *arg, int idx)
{
	char drv[128];
	int kind;

	device_driver(arg, drv, sizeof(drv));
	if (!strncmp(drv, "vhost-", 6))
		fprintf(stderr, "pviommuctl run: warning: -device %s: vhost does DMA outside QEMU: "
			"pviommu cannot check it\n", drv);
	kind = virtio_pci_kind(drv);
	if (!kind)
		return dup_arg(arg);
	if (kind == 2) {
		p_err("-device %s: a transitional virtio device keeps the legacy interface, "
		      "which cannot use iommu_platform=on; use %.*s-non-transitional or %.*s",
		      drv, (int)(strlen(drv) - 13), drv, (int)(strlen(drv) - 13), drv);
		return NULL;
	}
	if (arg[0] == '{')
		return fix_device_json(arg, idx, drv);
	return fix_device_opts(arg, idx, drv);
}

/* -drive if=virtio and -nic/-net model=virtio* create unprotectable devices */
static int check_shortcut(const char *opt, const char *arg)
{
	char v[64];

	if (!strcmp(opt, "drive") && opt_get(arg, "if", v, sizeof(v)) &&
	    !strcmp(v, "virtio")) {
		p_err("-drive %s: if=virtio creates a virtio-blk device without "
		      "iommu_platform=on, which pviommu cannot protect; use "
		      "-drive if=none,id=ID,... -device virtio-blk-pci,drive=ID", arg);
		return -1;
	}
	if ((!strcmp(opt, "nic") || !strcmp(opt, "net")) &&
	    opt_get(arg, "model", v, sizeof(v)) && !strncmp(v, "virtio", 6)) {
		p_err("-%s %s: model=%s creates a virtio NIC without iommu_platform=on, "
		      "which pviommu cannot protect; use "
		      "-netdev TYPE,id=ID,... -device virtio-net-pci,netdev=ID", opt, arg, v);
		return -1;
	}
	return 0;
}

/*
 * The library, found from where pviommuctl is: next to it (the build tree),
 * else PREFIX/lib/pviommu for PREFIX/sbin/pviommuctl ('make install', the
 * Debian package: /usr/sbin and /usr/lib/pviommu). Relative to the binary,
 * so an install under DESTDIR or another prefix works the same.
 */
static int lib_path(char *buf, size_t len)
{
	static const char *const rel[] = { "", "/../lib/pviommu" };
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return -errno;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		char p[PATH_MAX];

		if ((size_t)snprintf(p, sizeof(p), "%s%s/%s", exe, rel[i], QEMU_LIB_NAME) >= sizeof(p))
			return -ENAMETOOLONG;
		if (!access(p, R_OK) && realpath(p, buf) && strlen(buf) < len)
			return 0;
	}
	if ((size_t)snprintf(buf, len, "%.1024s/ and %.1024s/../lib/pviommu/", exe, exe) >= len)
		buf[0] = 0;
	return -ENOENT;
}

int cmd_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mode", required_argument, 0, 'm' },
		{ "quota", required_argument, 0, 'q' },
		{ "lib", required_argument, 0, 'l' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	char lib[PATH_MAX] = "", **qargv, *pre;
	const char *old;
	__u32 mode = 0;
	const char *quota = NULL;
	int c, i, have_mode = 0, fd, err, qargc;
	struct cmd_opts o = { .cmd = "run", .spec = "+m:q:l:", .lo = lo, .usage = run_usage };

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		switch (c) {
		case 'q': {
			struct pviommu_quota q = {};

			if (pv_parse_quota(optarg, &q)) {
				p_err("what is '%s'? --quota wants records=N,pages=N,devices=N,lanes=N (any of them, N > 0)",
				      optarg);
				return 1;
			}
			quota = optarg;
			break;
		}
		case 'm':
			if (pv_parse_mode(optarg, &mode)) {
				p_err("what is '%s'? --mode wants audit, deny or kill", optarg);
				return 1;
			}
			have_mode = 1;
			break;
		case 'l':
			snprintf(lib, sizeof(lib), "%s", optarg);
			break;
		}
	}
	if (c < 0)
		return o.rc;
	qargc = argc - optind;
	if (qargc < 1) {
		p_err("which QEMU? (pviommuctl run -- qemu-system-x86_64 ARGS...)");
		return 1;
	}
	if (!lib[0] && (err = lib_path(lib, sizeof(lib)))) {
		p_err("cannot find %s (looked in %s): %s (give it with --lib)", QEMU_LIB_NAME,
		      lib, strerror(-err));
		return 1;
	}
	if (access(lib, R_OK)) {
		p_err("%s: %s (build it: make qemu-hooks)", lib, strerror(errno));
		return 1;
	}
	/* pviommu must be loaded: the library maps the pinned index */
	fd = pv_obj_get(NULL, PVIOMMU_MAP_INDEX, 1);
	if (fd < 0) {
		p_err("pviommu is not loaded (%s: %s): run 'pviommuctl load' first",
		      pv_pin_path(PVIOMMU_MAP_INDEX), strerror(-fd));
		return 1;
	}
	close(fd);

	qargv = calloc((size_t)qargc + 1, sizeof(*qargv));
	if (!qargv) {
		p_err("out of memory");
		return 1;
	}
	for (i = 0; i < qargc; i++) {
		const char *a = argv[optind + i];
		const char *opt = a[0] == '-' ? a + 1 + (a[1] == '-') : NULL;
		const char *eq = opt ? strchr(opt, '=') : NULL;
		char name[16] = "";

		qargv[i] = (char *)a;
		if (!opt || i == 0)
			continue;
		/* "-device ARG", "--device ARG", "-device=ARG" */
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - opt) : 15, opt);
		if (strcmp(name, "device") && strcmp(name, "drive") &&
		    strcmp(name, "nic") && strcmp(name, "net"))
			continue;
		const char *val = eq ? eq + 1 : (i + 1 < qargc ? argv[optind + i + 1] : NULL);

		if (!val)
			continue;
		if (check_shortcut(name, val))
			return 1;
		if (!strcmp(name, "device")) {
			char *fixed = fix_device(val, i);

			if (!fixed)
				return 1;	/* said */
			if (eq) {
				if (asprintf(&qargv[i], "-device=%s", fixed) < 0) {
					p_err("out of memory");
					return 1;
				}
			} else {
				qargv[++i] = fixed;
			}
		} else if (!eq) {
			qargv[++i] = (char *)val;
		}
	}
	/*
	 * The library reserves the domain in its constructor, before QEMU
	 * runs any guest code, with this mode (its host tgid: getpid() is
	 * wrong inside a PID namespace), and QEMU refuses to start without it.
	 */
	if (have_mode)
		setenv("PVIOMMU_MODE", pv_mode_str(mode), 1);
	else
		unsetenv("PVIOMMU_MODE");
	if (quota)
		setenv("PVIOMMU_QUOTA", quota, 1);
	else
		unsetenv("PVIOMMU_QUOTA");
	old = getenv("LD_PRELOAD");
	if (old && *old) {
		if (asprintf(&pre, "%s:%s", lib, old) < 0) {
			p_err("out of memory");
			return 1;
		}
	} else {
		pre = lib;
	}
	setenv("LD_PRELOAD", pre, 1);
	/* the library reads the same pins */
	setenv("PVIOMMU_PIN_DIR", pv_pin_dir(), 1);
	execvp(qargv[0], qargv);
	p_err("cannot execute %s: %s", qargv[0], strerror(errno));
	return 127;
}
