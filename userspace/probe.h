/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* probe - what this kernel allows, found by trying (never by version) */
#ifndef __PV_PROBE_H
#define __PV_PROBE_H
#include <stdio.h>

enum pv_feat_state { PV_FEAT_NO = 0, PV_FEAT_YES = 1 };

struct pv_feature {
	int	ok;
	int	err;		/* errno when refused */
};

struct pv_features {
	struct pv_feature	ringbuf;
	struct pv_feature	bpf_loop;
	struct pv_feature	mmapable;
	struct pv_feature	fentry;
	struct pv_feature	lsm;
	struct pv_feature	uprobe_regs;	/* uprobe programs may write registers */
};

void pv_probe_features(struct pv_features *f);
void pv_features_print(const struct pv_features *f, FILE *out);
struct jw;
/* the features as the value of key (an object) */
void pv_features_json(const struct pv_features *f, struct jw *w, const char *key);
#endif
