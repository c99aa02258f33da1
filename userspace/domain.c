// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* domain.c - a domain's settings: mode (what a violation does), vfio (its assigned devices) */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "pviommuctl.h"

/* ---- mode --------------------------------------------------------------------------- */
static void mode_usage(void)
{
	printf("Usage: pviommuctl mode audit|deny|kill [--pid P]\n"
	       "  What a violation does: audit (event + counter, transfer allowed),\n"
	       "  deny (the transfer fails like an IOMMU fault), kill (QEMU gets\n"
	       "  SIGKILL before the transfer runs). Without --pid: the default for\n"
	       "  new domains and every current one.\n");
}

int cmd_mode(int argc, char **argv)
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
	struct cmd_opts o = { .cmd = "mode", .spec = "p:", .lo = lo, .usage = mode_usage };

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &pid))
				return 1;
			break;
		}
	}
	if (c < 0)
		return o.rc;
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
	if (json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "mode", pv_mode_str(mode));
		jw_int(&w, "domains", n);
		jw_end(&w);
	} else {
		printf("mode %s: %d domain%s%s\n", pv_mode_str(mode), n,
		       n == 1 ? "" : "s", pid ? "" : " (and the default)");
	}
	close(fd);
	ctl_unmap(ctl, ctl_fd);
	return 0;
}

/* ---- vfio: the devices a domain's VFIO containers serve --------------------------- */
static void vfio_usage(void)
{
	printf("Usage: pviommuctl vfio --pid P [BDF...]\n"
	       "  The guest BDFs whose devices QEMU process P assigned with VFIO: the\n"
	       "  BPF LSM gate lets P's VFIO_IOMMU_MAP_DMA through only for ranges its\n"
	       "  guest mapped for one of them. No BDF: show them. '-' : clear.\n");
}

int cmd_vfio(int argc, char **argv)
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
	struct cmd_opts o = { .cmd = "vfio", .spec = "+p:", .lo = lo, .usage = vfio_usage };

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		switch (c) {
		case 'p':
			if (parse_pid(optarg, &pid))
				return 1;
			break;
		}
	}
	if (c < 0)
		return o.rc;
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
		struct jw w;

		jw_begin(&w, stdout);
		jw_u64(&w, "pid", pid);
		jw_arr(&w, "devices");
		for (__u32 i = 0; i < v.nr && i < PVIOMMU_VFIO_MAX_DEVS; i++)
			jw_str(&w, NULL, pv_fmt_bdf(v.bdf[i], b));
		jw_end(&w);
		jw_end(&w);
	} else {
		printf("pid %llu: VFIO devices", (unsigned long long)pid);
		for (__u32 i = 0; i < v.nr && i < PVIOMMU_VFIO_MAX_DEVS; i++)
			printf(" %s", pv_fmt_bdf(v.bdf[i], b));
		printf("%s\n", v.nr ? "" : " none");
	}
	close(fd);
	return 0;
}

