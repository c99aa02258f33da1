// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "probe.h"
#include "json_writer.h"

static const struct bpf_insn ret0[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
	{ .code = BPF_JMP | BPF_EXIT },
};

static void set(struct pv_feature *f, int ok, int err)
{
	f->ok = ok;
	f->err = ok ? 0 : err;
}

/* load a BTF-attached program and attach it: both steps can be refused */
static void probe_btf_attach(struct pv_feature *f, struct btf *vmlinux,
			     enum bpf_prog_type type,
			     enum bpf_attach_type at, const char *func)
{
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = at);
	int id, fd, lfd;

	id = vmlinux ? btf__find_by_name_kind(vmlinux, func, BTF_KIND_FUNC) : -1;
	if (id < 0) {
		set(f, 0, ENOENT);
		return;
	}
	o.attach_btf_id = id;
	fd = bpf_prog_load(type, NULL, "GPL", ret0, 2, &o);
	if (fd < 0) {
		set(f, 0, errno);
		return;
	}
	lfd = bpf_link_create(fd, 0, at, NULL);
	set(f, lfd >= 0, errno);
	if (lfd >= 0)
		close(lfd);
	close(fd);
}

void pv_probe_features(struct pv_features *f)
{
	/* r1 = ctx; *(u64 *)(r1 + ax) = 0; r0 = 0; exit */
	const struct bpf_insn wr[] = {
		{ .code = BPF_ST | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_1,
		  .off = offsetof(struct pt_regs, rax), .imm = 0 },
		ret0[0], ret0[1],
	};
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int fd;

	memset(f, 0, sizeof(*f));
	set(&f->ringbuf, libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) == 1,
	    EOPNOTSUPP);
	set(&f->bpf_loop, libbpf_probe_bpf_helper(BPF_PROG_TYPE_RAW_TRACEPOINT,
						  BPF_FUNC_loop, NULL) == 1,
	    EOPNOTSUPP);
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, 64, 1,
			    &(struct bpf_map_create_opts){
				.sz = sizeof(struct bpf_map_create_opts),
				.map_flags = BPF_F_MMAPABLE });
	set(&f->mmapable, fd >= 0, errno);
	if (fd >= 0)
		close(fd);
	probe_btf_attach(&f->fentry, vmlinux, BPF_PROG_TYPE_TRACING,
			 BPF_TRACE_FENTRY, "do_nanosleep");
	probe_btf_attach(&f->lsm, vmlinux, BPF_PROG_TYPE_LSM, BPF_LSM_MAC,
			 "bpf_lsm_file_ioctl");
	fd = bpf_prog_load(BPF_PROG_TYPE_KPROBE, NULL, "GPL", wr, 3, NULL);
	set(&f->uprobe_regs, fd >= 0, errno);
	if (fd >= 0)
		close(fd);
	btf__free(vmlinux);
}

static const char *why(const struct pv_feature *x)
{
	return x->ok ? "yes" : strerror(x->err);
}

void pv_features_print(const struct pv_features *f, FILE *out)
{
	fprintf(out, "  ringbuf            %s\n", why(&f->ringbuf));
	fprintf(out, "  bpf_loop           %s\n", why(&f->bpf_loop));
	fprintf(out, "  mmapable maps      %s%s\n", why(&f->mmapable),
		f->mmapable.ok ? "" : " (in-process plane unavailable)");
	fprintf(out, "  fentry/fexit       %s%s\n", why(&f->fentry),
		f->fentry.ok ? "" : " (raw_tp variants used instead)");
	fprintf(out, "  BPF LSM            %s%s\n", why(&f->lsm),
		f->lsm.ok ? "" : " (VFIO gate unavailable: boot with lsm=...,bpf)");
	fprintf(out, "  uprobe reg writes  %s%s\n", why(&f->uprobe_regs),
		f->uprobe_regs.ok ? "" :
		" (uprobe plane: audit/kill only; deny needs the in-process plane)");
}

void pv_features_json(const struct pv_features *f, struct jw *w, const char *key)
{
	jw_obj(w, key);
	jw_bool(w, "ringbuf", f->ringbuf.ok);
	jw_bool(w, "bpf_loop", f->bpf_loop.ok);
	jw_bool(w, "mmapable", f->mmapable.ok);
	jw_bool(w, "fentry", f->fentry.ok);
	jw_bool(w, "lsm", f->lsm.ok);
	jw_bool(w, "uprobe_regs", f->uprobe_regs.ok);
	jw_end(w);
}
