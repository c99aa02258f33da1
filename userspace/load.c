// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* load.c - load (and reload: a staged, atomic hand-over), unload */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "pviommu.skel.h"
#include "pviommu_lsm.skel.h"
#include "probe.h"
#include "pviommuctl.h"

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


struct load_opts {
	__u64			slots;
	struct pviommu_quota	quota;
	int			cpl;		/* enum kvm_cpl */
};

static void load_usage(void)
{
	printf("Usage: pviommuctl load [--index-slots N] [--quota Q]\n"
	       "                     [--kvm-cpl auto|svm|entry|none]\n"
	       "  Load (or reload) the BPF programs, pin maps and links under %s.\n"
	       "  Idempotent: a reload keeps the pinned maps and every live mapping;\n"
	       "  the new programs take over atomically.\n"
	       "  --index-slots N   index slots (default %u, 64 B each; any number from 1024\n"
	       "                    to 16M, rounded up to a multiple of 64): pages, sub-page\n"
	       "                    pieces and mapping records all live there; up to two\n"
	       "                    thirds full keeps every lookup short\n"
	       "  --quota Q         each new VM's share, Q = records=N,pages=N,devices=N,lanes=N\n"
	       "                    (defaults: records and pages index slots/%u each, %u\n"
	       "                    devices, %u lanes: %u VMs at their full quota keep the\n"
	       "                    index at most half full; per VM: 'run --quota')\n"
	       "  --kvm-cpl M       how KVM hypercalls from guest user space are told apart:\n"
	       "                    svm (the VMCB's CPL, AMD), entry (held until KVM's answer\n"
	       "                    at the next kvm_entry, any vendor), none; auto (default):\n"
	       "                    svm where kvm_amd's BTF is, else entry where kvm's is\n",
	       PIN_DIR, PVIOMMU_DEF_INDEX_SLOTS, PVIOMMU_QUOTA_VMS * 4,
	       PVIOMMU_DEF_QUOTA_DEVICES, PVIOMMU_DEF_QUOTA_LANES, PVIOMMU_QUOTA_VMS);
}

/* 0: go on; 1: an error (said); -1: done (help) */
static int load_parse(int argc, char **argv, struct load_opts *o)
{
	static const struct option lo[] = {
		{ "index-slots", required_argument, 0, 's' },
		{ "max-records", required_argument, 0, 'r' },
		{ "quota", required_argument, 0, 'q' },
		{ "kvm-cpl", required_argument, 0, 'c' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct cmd_opts op = { .cmd = "load", .spec = "s:r:q:c:", .lo = lo, .usage = load_usage };
	int c;

	o->slots = PVIOMMU_DEF_INDEX_SLOTS;
	o->cpl = CPL_AUTO;
	while ((c = cmd_getopt(&op, argc, argv)) > 0) {
		switch (c) {
		case 'c':
			for (o->cpl = CPL_NONE; o->cpl >= 0 && strcmp(optarg, kvm_cpl_names[o->cpl]);
			     o->cpl--)
				;
			if (o->cpl < 0) {
				p_err("what is '%s'? --kvm-cpl wants auto, svm, entry or none", optarg);
				return 1;
			}
			break;
		case 'q':
			if (pv_parse_quota(optarg, &o->quota)) {
				p_err("what is '%s'? --quota wants records=N,pages=N,devices=N,lanes=N (any of them, N > 0)",
				      optarg);
				return 1;
			}
			break;
		case 's':
			if (pv_parse_u64(optarg, &o->slots) || o->slots < PVIOMMU_MIN_INDEX_SLOTS ||
			    o->slots > PVIOMMU_MAX_INDEX_SLOTS) {
				p_err("what is '%s'? --index-slots wants a number of slots in [%u, %u]",
				      optarg, PVIOMMU_MIN_INDEX_SLOTS, PVIOMMU_MAX_INDEX_SLOTS);
				return 1;
			}
			/* a multiple of 64: never a power of two entries with the header */
			o->slots = (o->slots + PVIOMMU_INDEX_ALIGN - 1) & ~(__u64)(PVIOMMU_INDEX_ALIGN - 1);
			break;
		case 'r':
			p_err("--max-records is gone: mapping records live in the index now "
			      "(size it with --index-slots)");
			return 1;
		}
	}
	if (c < 0)
		return op.rc ? op.rc : -1;
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl load --help')", argv[optind]);
		return 1;
	}
	return 0;
}

/*
 * Earlier builds kept the records in a pinned hash of their own. Their
 * pages are in the pinned index this load keeps, but an UNMAP would find
 * no record to revoke them by: a reload over live records is refused (the
 * VMs stop, or 'pviommuctl unload' first); an empty table goes.
 */
static int load_old_records(void)
{
	int fd = pv_obj_get(NULL, PVIOMMU_MAP_OLD_RECORDS, 1);
	char key[64];

	if (fd < 0)
		return 0;
	if (!bpf_map_get_next_key(fd, NULL, key)) {
		close(fd);
		p_err("%s holds live mappings of an earlier pviommu, which this one cannot "
		      "revoke: stop their VMs or run 'pviommuctl unload', then load",
		      pv_pin_path(PVIOMMU_MAP_OLD_RECORDS));
		return 1;
	}
	close(fd);
	if (unlink(pv_pin_path(PVIOMMU_MAP_OLD_RECORDS)) && errno != ENOENT) {
		p_err("cannot remove %s: %s", pv_pin_path(PVIOMMU_MAP_OLD_RECORDS), strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * An earlier build's index (a power of two slots, no header, first come
 * first served chains from the hash's low bits) cannot be read by this
 * one's hashing: a reload over live entries in it is refused, an empty one
 * goes (this load makes the new one).
 */
static int load_old_index(void)
{
	__u32 n = pinned_max_entries(PVIOMMU_MAP_INDEX), key, live = 0;
	struct pviommu_slot s;
	int fd;

	if (!n || !PVIOMMU_INDEX_EARLIER(n))
		return 0;
	fd = pv_obj_get(NULL, PVIOMMU_MAP_INDEX, 1);
	if (fd < 0)
		return 0;
	for (key = 0; key < n && !live; key++)
		live = !bpf_map_lookup_elem(fd, &key, &s) &&
		       s.kind != PVIOMMU_SLOT_EMPTY && s.kind != PVIOMMU_SLOT_TOMB;
	close(fd);
	if (live) {
		p_err("%s is an earlier pviommu's index and holds live entries, which this one "
		      "cannot read: stop their VMs or run 'pviommuctl unload', then load",
		      pv_pin_path(PVIOMMU_MAP_INDEX));
		return 1;
	}
	if (unlink(pv_pin_path(PVIOMMU_MAP_INDEX)) && errno != ENOENT) {
		p_err("cannot remove %s: %s", pv_pin_path(PVIOMMU_MAP_INDEX), strerror(errno));
		return 1;
	}
	return 0;
}

/* sizes (pinned maps win), generation, the index hash's secret, each VM's share */
static void load_size(struct pviommu_bpf *skel, struct load_opts *o,
		      const struct pviommu_ctl *ctl, __u64 *gen, __u64 *key)
{
	__u32 pin_ent = pinned_max_entries(PVIOMMU_MAP_INDEX);
	__u32 pin_slots = pin_ent ? PVIOMMU_INDEX_SLOTS(pin_ent) : 0;

	if (pin_slots && pin_slots != o->slots && o->slots != PVIOMMU_DEF_INDEX_SLOTS)
		p_note("keeping the pinned index of %u slots (unload to resize)", pin_slots);
	if (pin_slots)
		o->slots = pin_slots;
	bpf_map__set_max_entries(skel->maps.pviommu_index, PVIOMMU_INDEX_ENTRIES((__u32)o->slots));
	skel->rodata->index_slots = (__u32)o->slots;

	*gen = (ctl ? ctl->active_gen : 0) + 1;
	skel->rodata->load_gen = *gen;
	/* made by the first load, kept by reloads */
	if (ctl)
		*key = ctl->hash_key;
	else if (getrandom(key, sizeof(*key), 0) != sizeof(*key))
		*key = (__u64)time(NULL) * 0x9e3779b97f4a7c15ull ^ (__u64)getpid();
	skel->rodata->hash_key = *key;
	/*
	 * the records and pages quotas keep the index at most half full: a
	 * record takes a page's slot or one of its own, a page (or 8 sub-page
	 * pieces, each charged a page) one slot
	 */
	if (!o->quota.records)
		o->quota.records = (__u32)(o->slots / (4 * PVIOMMU_QUOTA_VMS));
	if (!o->quota.pages)
		o->quota.pages = (__u32)(o->slots / (4 * PVIOMMU_QUOTA_VMS));
	if (!o->quota.devices)
		o->quota.devices = PVIOMMU_DEF_QUOTA_DEVICES;
	if (!o->quota.lanes)
		o->quota.lanes = PVIOMMU_DEF_QUOTA_LANES;
}

/*
 * Which programs load. The tracepoint gets the handler that reads the
 * guest's CPL where it can (AMD SVM); pviommu_kvm_hypercall is loaded in
 * every case: the in-process plane's TCG transport and the tests call it by
 * test_run. The uprobe programs are loaded by 'attach', or here when a
 * reload must re-attach them (a handler's verification is seconds of the
 * load's time). Returns the KVM handler, NULL with the error said.
 */
static struct bpf_program *load_pick(struct pviommu_bpf *skel, struct load_opts *o)
{
	int svm = !access("/sys/kernel/btf/kvm_amd", F_OK);
	int kvm = kvm_btf();	/* parses the kernel's BTF: once */
	struct tag_list enf, tcg;
	struct bpf_program *p;

	if (o->cpl == CPL_AUTO)
		o->cpl = svm ? CPL_SVM : kvm ? CPL_ENTRY : CPL_NONE;
	else if (o->cpl == CPL_SVM && !svm) {
		p_err("--kvm-cpl svm: no kvm_amd BTF (/sys/kernel/btf/kvm_amd): not an AMD KVM host?");
		return NULL;
	} else if (o->cpl == CPL_ENTRY && !kvm) {
		p_err("--kvm-cpl entry: kvm's types are not in the kernel's BTF (kvm not loaded?)");
		return NULL;
	}
	bpf_program__set_autoload(skel->progs.pviommu_kvm_hypercall_svm, o->cpl == CPL_SVM);
	bpf_program__set_autoload(skel->progs.pviommu_kvm_hypercall_held, o->cpl == CPL_ENTRY);
	/* in every mode where kvm's BTF is: it also carries out the calls an
	 * earlier load in entry mode held (pviommu_held is shared) */
	bpf_program__set_autoload(skel->progs.pviommu_kvm_entry, kvm);

	if (link_tags("enf-", &enf) < 0 || link_tags("tcg-", &tcg) < 0) {
		p_err("listing %s: out of memory", LINK_DIR);
		tags_free(&enf);
		return NULL;
	}
	bpf_object__for_each_program(p, skel->obj)
		if (!strncmp(bpf_program__name(p), "pviommu_up_", 11))
			bpf_program__set_autoload(p, enf.n > 0);
	bpf_program__set_autoload(skel->progs.pviommu_tcg_cpuid, tcg.n > 0);
	tags_free(&enf);
	tags_free(&tcg);
	return o->cpl == CPL_SVM ? skel->progs.pviommu_kvm_hypercall_svm :
	       o->cpl == CPL_ENTRY ? skel->progs.pviommu_kvm_hypercall_held :
				     skel->progs.pviommu_kvm_hypercall;
}

/* attach prog and pin its link as links/name; NULL prog or a refused attach: -ENOENT */
static int link_pin(struct bpf_program *prog, const char *name, int *attach_err)
{
	struct bpf_link *l = prog ? bpf_program__attach(prog) : NULL;
	int err;

	if (!l) {
		*attach_err = prog ? errno : ENOENT;
		return -ENOENT;
	}
	err = pin_replace(bpf_link__fd(l), LINK_DIR, name);
	bpf_link__destroy(l);
	return err;
}

/* the kernel's attach points: exit purge, host IOMMU faults, KVM's tracepoints */
static int load_link(struct pviommu_bpf *skel, const struct load_opts *o,
		     struct bpf_program *hc_prog, int *kvm_ok)
{
	int err, why;

	err = link_pin(skel->progs.pviommu_proc_exit, "proc_exit", &why);
	if (err == -ENOENT) {
		p_err("attaching sched_process_exit failed: %s", strerror(why));
		return 1;
	}
	if (err)
		goto pin_fail;
	/* the host IOMMU's faults of assigned devices, as events (printk:console) */
	err = link_pin(skel->progs.pviommu_iommu_fault, "iommu_fault", &why);
	if (err == -ENOENT)
		p_note("printk:console cannot be attached (%s): no events for the host IOMMU's faults of assigned devices",
		       strerror(why));
	else if (err)
		goto pin_fail;
	/* kvm_entry before kvm_hypercall: no call is held with nobody to commit it */
	err = link_pin(bpf_program__autoload(skel->progs.pviommu_kvm_entry) ?
		       skel->progs.pviommu_kvm_entry : NULL, "kvm_entry", &why);
	if (err == -ENOENT && o->cpl == CPL_ENTRY) {
		p_note("kvm:kvm_entry cannot be attached (%s): KVM transport off", strerror(why));
		hc_prog = NULL;
	} else if (err && err != -ENOENT) {
		goto pin_fail;
	}
	err = link_pin(hc_prog, "kvm_hypercall", &why);
	if (err == -ENOENT) {
		unlink(pv_pin_path("links/kvm_hypercall"));
		p_note("kvm:kvm_hypercall is not available (kvm not loaded): KVM transport off");
	} else if (err) {
		goto pin_fail;
	} else {
		*kvm_ok = 1;
		if (o->cpl == CPL_NONE)
			p_note("the guest's CPL is not checked (--kvm-cpl none, or no kvm BTF): a vmcall from guest user space reaches the handler (KVM refuses it; pviommu cannot tell)");
	}
	return 0;
pin_fail:
	p_err("pinning under %s failed: %s", PIN_DIR, strerror(-err));
	return 1;
}

/* the VFIO gate, where the kernel runs BPF LSM programs (probed); an old gate
 * stays until a new one replaces it (never none) */
static int load_gate(const struct load_opts *o, __u64 key)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = PIN_DIR);
	struct pviommu_lsm_bpf *ls;
	struct bpf_link *link = NULL;
	struct pv_features f;
	int err;

	pv_probe_features(&f);
	if (!f.lsm.ok) {
		p_note("this kernel refuses BPF LSM (%s): VFIO gate off", strerror(f.lsm.err));
		return 0;
	}
	ls = pviommu_lsm_bpf__open_opts(&oo);
	if (!ls) {
		p_note("the BPF LSM VFIO gate cannot be opened: %s", strerror(errno));
		return 0;
	}
	bpf_map__set_max_entries(ls->maps.pviommu_index, PVIOMMU_INDEX_ENTRIES((__u32)o->slots));
	ls->rodata->index_slots = (__u32)o->slots;
	ls->rodata->hash_key = key;
	err = pviommu_lsm_bpf__load(ls);
	if (err)
		p_note("the BPF LSM VFIO gate did not load: %s (run with -v for the verifier log)",
		       strerror(-err));
	else if (!(link = bpf_program__attach_lsm(ls->progs.pviommu_vfio_ioctl)))
		p_note("the BPF LSM VFIO gate could not be attached: %s", strerror(errno));
	err = 0;
	if (link) {
		err = pin_replace(bpf_link__fd(link), LINK_DIR, "vfio_lsm");
		bpf_link__destroy(link);
		if (!err)
			err = pin_replace(bpf_program__fd(ls->progs.pviommu_vfio_ioctl),
					  PROG_DIR, "pviommu_vfio_ioctl");
	} else {
		p_note("VFIO maps are not checked%s",
		       access(pv_pin_path("links/vfio_lsm"), F_OK) ? "" :
		       " by a new gate (the previous load's gate stays)");
	}
	pviommu_lsm_bpf__destroy(ls);
	if (err) {
		p_err("pinning under %s failed: %s", PIN_DIR, strerror(-err));
		return 1;
	}
	return 0;
}

/* the uprobes of every QEMU process (or binary) attached before, onto the new programs */
static void load_reattach(struct pviommu_bpf *skel)
{
	struct tag_list tcg, enf;
	const char *why = NULL;
	struct target t;
	int nl;

	if (link_tags("tcg-", &tcg) < 0 || link_tags("enf-", &enf) < 0) {
		/* the old links stay: they keep acting until their QEMU goes */
		p_note("listing %s: out of memory: uprobes of attached QEMUs kept on the old programs",
		       LINK_DIR);
		tags_free(&tcg);
		return;
	}
	for (int i = 0; i < tcg.n; i++)
		if (target_of_tag(&t, tcg.tag[i]) || attach_tcg(skel, &t)) {
			drop_links_of(tcg.tag[i]);
			p_note("%s is gone: dropped its uprobes", tcg.tag[i]);
		}
	for (int i = 0; i < enf.n; i++)
		if (target_of_tag(&t, enf.tag[i]) || attach_enforce(skel, &t, &nl, &why)) {
			drop_links_of(enf.tag[i]);
			p_note("%s is gone%s%s%s: dropped its uprobes", enf.tag[i],
			       why ? " (no uprobe on " : "", why ? why : "", why ? ")" : "");
			why = NULL;
		}
	tags_free(&tcg);
	tags_free(&enf);
}

/* programs, for bpftool and for test_run */
static int load_pin_progs(struct pviommu_bpf *skel)
{
	struct bpf_program *p;
	int err;

	bpf_object__for_each_program(p, skel->obj) {
		if (!bpf_program__autoload(p))
			continue;
		err = pin_replace(bpf_program__fd(p), PROG_DIR, bpf_program__name(p));
		if (err) {
			p_err("pinning under %s failed: %s", PIN_DIR, strerror(-err));
			return 1;
		}
	}
	return 0;
}

/* the KVM handler variants this load did not pick: an earlier load's stay no more */
static void load_drop_unpicked(struct pviommu_bpf *skel)
{
	struct bpf_program *kv[] = { skel->progs.pviommu_kvm_hypercall_svm,
				     skel->progs.pviommu_kvm_hypercall_held,
				     skel->progs.pviommu_kvm_entry };
	char path[PATH_MAX];

	for (unsigned int i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (bpf_program__autoload(kv[i]))
			continue;
		snprintf(path, sizeof(path), "%s/%s", PROG_DIR, bpf_program__name(kv[i]));
		unlink(path);
	}
	if (!bpf_program__autoload(skel->progs.pviommu_kvm_entry))
		unlink(pv_pin_path("links/kvm_entry"));
}

/* the verifier's work for the loaded programs: how many, instructions processed */
struct verify_cost {
	unsigned int	progs;
	unsigned long long insns;
	double		secs;	/* wall time of the load (the verifier, mostly) */
};

static void verify_cost(struct bpf_object *obj, struct verify_cost *vc)
{
	struct bpf_program *p;

	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
			continue;
		vc->progs++;
		vc->insns += info.verified_insns;
	}
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int cmd_load(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = PIN_DIR);
	struct pviommu_bpf *skel = NULL;
	struct pviommu_ctl *ctl = NULL;
	struct bpf_program *hc_prog;
	struct load_opts o = {};
	int err, ctl_fd = -1, kvm_ok = 0;
	struct verify_cost vc = {};
	__u64 gen, key;
	double t0;

	err = load_parse(argc, argv, &o);
	if (err)
		return err < 0 ? 0 : err;
	if ((err = need_root()) || (err = need_btf()) || (err = ensure_bpffs()))
		return err;
	if (mkdir(PIN_DIR, 0700) && errno != EEXIST) {
		p_err("mkdir %s: %s", PIN_DIR, strerror(errno));
		return 2;
	}
	mkdir(LINK_DIR, 0700);
	mkdir(PROG_DIR, 0700);
	if (load_old_records() || load_old_index())
		return 1;

	skel = pviommu_bpf__open_opts(&oo);
	if (!skel) {
		p_err("cannot open the BPF object: %s", strerror(errno));
		return 1;
	}
	ctl = loaded() ? ctl_map(&ctl_fd) : NULL;
	load_size(skel, &o, ctl, &gen, &key);
	err = 1;
	hc_prog = load_pick(skel, &o);
	if (!hc_prog)
		goto out;
	t0 = now_s();
	err = pviommu_bpf__load(skel);
	vc.secs = now_s() - t0;
	if (err) {
		p_err("loading the BPF programs failed: %s (run with -v for the verifier log)",
		      strerror(-err));
		err = 1;
		goto out;
	}
	verify_cost(skel->obj, &vc);
	err = 1;
	if (!ctl && !(ctl = ctl_map(&ctl_fd))) {
		p_err("cannot map %s", PVIOMMU_MAP_CTL);
		goto out;
	}
	/* the new programs attach next to the old ones and stay idle until
	 * active_gen moves; the old ones act until then */
	pins_stage();
	if (load_link(skel, &o, hc_prog, &kvm_ok) || load_gate(&o, key))
		goto out;
	load_reattach(skel);
	if (load_pin_progs(skel))
		goto out;

	/* a first load: violations are denied unless told otherwise */
	if (gen == 1)
		ctl->default_mode = PVIOMMU_MODE_DENY;
	ctl->hash_key = key;
	ctl->quota = o.quota;
	/* hand over: from here the new programs act, the old ones return */
	__atomic_store_n(&ctl->active_gen, gen, __ATOMIC_SEQ_CST);
	/* only now do the old links and program pins go */
	err = pins_commit();
	if (err) {
		p_err("pinning under %s failed: %s", PIN_DIR, strerror(-err));
		err = 1;
		goto out;
	}
	load_drop_unpicked(skel);

	if (json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_bool(&w, "loaded", 1);
		jw_u64(&w, "generation", gen);
		jw_u64(&w, "index_slots", o.slots);
		jw_bool(&w, "kvm_hypercall", kvm_ok);
		jw_obj(&w, "verifier");
		jw_u64(&w, "programs", vc.progs);
		jw_u64(&w, "insns_processed", vc.insns);
		jw_u64(&w, "load_ms", (__u64)(vc.secs * 1000 + 0.5));
		jw_end(&w);
		jw_end(&w);
	} else {
		printf("pviommu loaded (generation %llu): %llu index slots, pins in %s\n",
		       (unsigned long long)gen, (unsigned long long)o.slots, PIN_DIR);
		printf("verifier: %u programs, %llu instructions processed, loaded in %.2f s\n",
		       vc.progs, vc.insns, vc.secs);
	}
	err = 0;
out:
	pins_drop();
	if (ctl)
		ctl_unmap(ctl, ctl_fd);
	pviommu_bpf__destroy(skel);
	return err;
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

static void unload_usage(void)
{
	printf("Usage: pviommuctl unload [--force]\n"
	       "  Detach every program and remove every pin under %s\n"
	       "  (all policy state is dropped). Refused while a VM that pviommu\n"
	       "  protects still runs (their QEMU pids are named); --force unloads\n"
	       "  anyway: those VMs' DMA is then no longer checked against their\n"
	       "  guests' mappings.\n", PIN_DIR);
}

int cmd_unload(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "force", no_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct cmd_opts o = { .cmd = "unload", .spec = "f", .lo = lo, .usage = unload_usage };
	char pids[512];
	int c, err, n, force = 0, live;

	while ((c = cmd_getopt(&o, argc, argv)) > 0)
		force |= c == 'f';
	if (c < 0)
		return o.rc;
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl unload --help')", argv[optind]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	if (access(PIN_DIR, F_OK)) {
		if (json) {
			struct jw w;

			jw_begin(&w, stdout);
			jw_bool(&w, "unloaded", 1);
			jw_int(&w, "pins_removed", 0);
			jw_end(&w);
		} else {
			printf("pviommu was not loaded\n");
		}
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
	if (json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_bool(&w, "unloaded", 1);
		jw_int(&w, "pins_removed", n);
		jw_int(&w, "unprotected_vms", live);
		jw_end(&w);
	} else {
		printf("pviommu unloaded (%d pins removed)\n", n);
	}
	return 0;
}

