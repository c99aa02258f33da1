/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* pvlib - helpers shared by pviommuctl, the tests and the benchmarks */
#ifndef __PVLIB_H
#define __PVLIB_H

#include <linux/types.h>
#include <stddef.h>
#include "pviommu.h"

/* parse "SSSS:BB:DD.F" or "BB:DD.F"; 0 or -EINVAL */
int pv_parse_bdf(const char *s, __u32 *bdf);
/* "SSSS:BB:DD.F" into buf (at least 16 bytes) */
char *pv_fmt_bdf(__u32 bdf, char *buf);
const char *pv_perm_str(__u32 perm);
/* strict unsigned parse (dec, 0x hex, optional K/M/G suffix); 0 or -EINVAL */
int pv_parse_u64(const char *s, __u64 *v);
const char *pv_mode_str(__u32 mode);
int pv_parse_mode(const char *s, __u32 *mode);
const char *pv_verdict_str(int verdict);
const char *pv_event_type_str(__u32 type);
const char *pv_action_str(__u32 action);
const char *pv_plane_str(__u32 plane);
const char *pv_op_str(__u32 op);
const char *pv_stat_name(int i);

/* the pin directory: $PVIOMMU_PIN_DIR or PVIOMMU_PIN_DIR */
const char *pv_pin_dir(void);
/* pv_pin_dir()/name, in a static buffer (one of four in rotation) */
const char *pv_pin_path(const char *name);

/* open a pinned object under dir (NULL = PVIOMMU_PIN_DIR); fd or -errno */
int pv_obj_get(const char *dir, const char *name, int rdonly);

/* the pinned index, mapped into this process */
struct pv_index_view {
	int			fd;
	__u32			slots;
	size_t			len;
	struct pviommu_slot	*base;
	/* pviommu_fast, the check's page bits; NULL when not pinned */
	int			fast_fd;
	__u64			*fast;
};
int pv_index_map(const char *dir, struct pv_index_view *v, int rdonly);
void pv_index_unmap(struct pv_index_view *v);

/* what the index holds (a glance, not a consistent read) */
struct pv_census {
	__u64	used;		/* slots in use, of any kind */
	__u64	tomb;		/* tombstones */
	__u64	records;	/* live mapping records (pviommu.h) */
};
void pv_index_census(const struct pv_index_view *v, struct pv_census *c);

/* run one hypercall through a (pinned) kvm_hypercall program's test_run:
 * the caller's tgid is the domain. Returns the handler's result. */
int pv_hypercall(int prog_fd, __u32 op, __u32 perm, __u32 bdf, __u64 iova,
		 __u64 size, __u64 cookie);
int pv_hypercall_raw(int prog_fd, __u64 nr, __u64 a0, __u64 a1, __u64 a2,
		     __u64 a3);
/*
 * RESERVE through the pinned pviommu_reserve program (pviommu.h, the state
 * machine): dom 0 = the caller's own process (its host tgid, also inside a
 * PID namespace); mode < 0: the default; q: the VM's quotas (NULL or 0
 * fields: the defaults). Returns the domain or -errno.
 */
int pv_reserve(int prog_fd, __u32 dom, int mode, const struct pviommu_quota *q);
/* "records=N,pages=N,devices=N,lanes=N" (any subset); 0 or -EINVAL */
int pv_parse_quota(const char *s, struct pviommu_quota *q);
/* MODE through the pinned pviommu_set_mode program: dom 0 = every domain;
 * the number of domains changed, or -errno */
int pv_set_mode(int prog_fd, __u32 dom, __u32 mode);
/* enum pviommu_fail as text */
const char *pv_fail_str(__u32 why);
/* the check through the test wrapper program; returns the verdict */
int pv_check_prog(int prog_fd, __u32 dom, __u32 bdf, __u64 addr, __u64 len,
		  __u32 need);

/* sum the per-CPU stats */
int pv_stats_read(int map_fd, struct pviommu_stats *out);

#endif
