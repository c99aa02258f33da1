// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * lsm_load - load and attach the VFIO gate (bpf/pviommu_lsm.bpf.c) next to a
 * loaded pviommu: its policy maps are reused through their pins under
 * pv_pin_dir(), pviommu_vfio_devs is created and pinned there, the LSM link
 * is pinned as links/vfio_lsm and the program as progs/pviommu_vfio_ioctl,
 * so the gate stays after this process exits (pviommuctl unload removes it).
 * Stand-in for a feature-probed step of `pviommuctl load` (see the report).
 *   lsm_load        exit 0: attached; 2: this kernel refuses the BPF LSM
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pvlib.h"
#include "pviommu_lsm.skel.h"

static int pin_replace(int fd, const char *path)
{
	char tmp[300];

	snprintf(tmp, sizeof(tmp), "%s_new", path);
	unlink(tmp);
	if (bpf_obj_pin(fd, tmp))
		return -errno;
	if (rename(tmp, path)) {
		int err = -errno;

		unlink(tmp);
		return err;
	}
	return 0;
}

int main(void)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pv_pin_dir());
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	struct pviommu_lsm_bpf *skel;
	struct bpf_link *link;
	int fd, err;

	fd = pv_obj_get(NULL, PVIOMMU_MAP_INDEX, 1);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
		fprintf(stderr, "lsm_load: pviommu is not loaded (%s)\n",
			pv_pin_path(PVIOMMU_MAP_INDEX));
		return 1;
	}
	close(fd);
	skel = pviommu_lsm_bpf__open_opts(&oo);
	if (!skel) {
		fprintf(stderr, "lsm_load: open: %s\n", strerror(errno));
		return 1;
	}
	bpf_map__set_max_entries(skel->maps.pviommu_index, info.max_entries);
	skel->rodata->index_mask = info.max_entries - 1;
	err = pviommu_lsm_bpf__load(skel);
	if (err) {
		fprintf(stderr, "lsm_load: load: %s\n", strerror(-err));
		goto out;
	}
	link = bpf_program__attach_lsm(skel->progs.pviommu_vfio_ioctl);
	if (!link) {
		err = -errno;
		fprintf(stderr, "lsm_load: attach: %s\n", strerror(-err));
		if (err == -EOPNOTSUPP || err == -EINVAL || err == -524 /* ENOTSUPP */)
			err = 2;
		goto out;
	}
	err = pin_replace(bpf_link__fd(link), pv_pin_path("links/vfio_lsm"));
	if (!err)
		err = pin_replace(bpf_program__fd(skel->progs.pviommu_vfio_ioctl),
				  pv_pin_path("progs/pviommu_vfio_ioctl"));
	if (err)
		fprintf(stderr, "lsm_load: pin: %s\n", strerror(-err));
	else
		printf("lsm_load: VFIO gate attached (index %u slots)\n",
		       info.max_entries);
	bpf_link__destroy(link);	/* the pin keeps it attached */
out:
	pviommu_lsm_bpf__destroy(skel);
	return err == 2 ? 2 : err ? 1 : 0;
}
