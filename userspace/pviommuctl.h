/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pviommuctl.h - what the files of pviommuctl share. One file per subject,
 * as bpftool has them:
 *   pviommuctl.c  the command table, help, global options, main
 *   common.c      errors, what the environment must offer, pinned objects
 *   pins.c        staged pins (a reload's atomic hand-over), links by tag
 *   load.c        load, unload
 *   uprobe.c      uprobe targets; attach, detach
 *   show.c        status, mappings
 *   stats.c       stats (text, JSON, Prometheus)
 *   events.c      events
 *   domain.c      mode, vfio
 *   run.c         run (the in-process plane)
 *   json_writer.c every JSON document
 */
#ifndef __PVIOMMUCTL_H
#define __PVIOMMUCTL_H

#include <stdarg.h>
#include <stddef.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include "pviommu.h"
#include "pvlib.h"
#include "json_writer.h"

#define LINK_DIR	pv_pin_path("links")
#define PROG_DIR	pv_pin_path("progs")
#define PIN_DIR		pv_pin_dir()

extern int json;		/* -j, --json */
extern int verbose;		/* -v, --verbose (twice: libbpf's debug too) */

/* ---- common.c ---- */
/* one "Error: ..." line on stderr, or {"error":"..."} on stdout with -j */
void p_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "note: ..." on stderr; nothing with -j */
void p_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* getopt_long's '?' or ':' (optstring starting with ':', opterr = 0) as one error; returns 1 */
int opt_err(int c, char **argv, const char *cmd);

/*
 * The option loop every command shares:
 *	struct cmd_opts o = { "mode", "p:", lo, mode_usage };
 *	while ((c = cmd_getopt(&o, argc, argv)) > 0)
 *		switch (c) { case 'p': ... }
 *	if (c < 0)
 *		return o.rc;
 * spec is getopt's, without the leading ':' and the 'h' (both added; a
 * leading '+' stops at the first word that is not an option); lo has
 * { "help", no_argument, 0, 'h' }. Returns the next option, 0 when they
 * are done (optind: the first word after them), or -1 with o.rc the exit
 * status: -h printed usage (0), an unknown option or a missing value was
 * said in one error line (1). 'pviommuctl CMD help' (the one word) prints
 * usage too, as bpftool takes it.
 */
struct option;
struct cmd_opts {
	const char		*cmd;
	const char		*spec;
	const struct option	*lo;
	void			(*usage)(void);
	int			rc;
	int			started;
};
int cmd_getopt(struct cmd_opts *o, int argc, char **argv);
int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args);
/* 0, or exit status 2 with the error said: the system cannot run pviommu */
int need_root(void);
int need_btf(void);
int ensure_bpffs(void);
int loaded(void);
int not_loaded(void);			/* says so; returns 1 */
/* after option parsing: no stray argument, root, loaded; 0 or exit code */
int ready(int argc, char **argv, const char *cmd);
int open_pinned(const char *name, int rdonly);	/* fd, or -1 with the error said */
int parse_pid(const char *s, __u64 *pid);	/* --pid P: 0, or -1 with the error said */
struct pviommu_ctl *ctl_map(int *fdp);	/* the pinned control page, mmapped */
void ctl_unmap(struct pviommu_ctl *c, int fd);
__u32 pinned_max_entries(const char *name);	/* 0 when not pinned */

/* ---- pins.c ---- */
/* pin fd as dir/name: at once, or staged until pins_commit() */
int pin_replace(int fd, const char *dir, const char *name);
void pins_stage(void);		/* from here pin_replace stages */
int pins_commit(void);		/* the staged pins replace the old ones */
void pins_drop(void);		/* the staged pins go; the old ones stay */
int rm_dir_pins(const char *dir);

/* the sizes of a uprobe target's names (uprobe.c) */
#define PV_PATH_LEN	200			/* a QEMU binary's path, its NUL included */
#define PV_TAG_LEN	(PV_PATH_LEN + 8)	/* "<pid>" or "x<path>" */
#define PV_LINK_NAME_LEN (PV_TAG_LEN + 32)	/* its links: "tcg-<tag>", "enf-<tag>-<n>" */
struct tag_list {
	int	n;
	char	(*tag)[PV_TAG_LEN];
};
/* the targets with links of a kind ("tcg-" or "enf-"); free with tags_free */
int link_tags(const char *prefix, struct tag_list *l);
void tags_free(struct tag_list *l);
int drop_links_of(const char *tag);	/* how many links of target tag went */
/* how many links have a name that starts with prefix */
int count_links(const char *prefix);

/* ---- uprobe.c ---- */
struct pviommu_bpf;
/* one QEMU process (tag "<pid>") or every process of one QEMU binary (tag "x<path>") */
struct target {
	int	pid;		/* or -1 with path */
	char	path[PV_PATH_LEN];
	char	tag[PV_TAG_LEN];
};
int target_pid(struct target *t, int pid);
int target_path(struct target *t, const char *path);
int target_of_tag(struct target *t, const char *tag);
int attach_tcg(struct pviommu_bpf *skel, const struct target *t);
/* the uprobe plane on t; on failure *failed names the function (a constant string; the
 * caller says it) */
int attach_enforce(struct pviommu_bpf *skel, const struct target *t, int *nlinks,
		   const char **failed);

/* ---- the commands ---- */
int cmd_load(int argc, char **argv);
int cmd_unload(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_mappings(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_mode(int argc, char **argv);
int cmd_vfio(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_run(int argc, char **argv);

#endif
