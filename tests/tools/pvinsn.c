// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pvinsn.so: a QEMU TCG plugin that counts the guest instructions QEMU
 * executes, per vCPU, into a file the benchmarks read while the guest runs:
 *
 *   qemu-system-x86_64 ... -plugin build/tests/pvinsn.so,out=FILE
 *
 * FILE holds one little-endian __u64 per vCPU (up to 64, kernel and user
 * alike); a reader sums them before and after a piece of work. The count is
 * what the guest itself executed: the host's noise does not move it (two
 * boots of one workload count within 1-3%, where their time spreads tens of
 * %), the figure the benchmarks pair with their guest-timed throughput. An exec callback per translation block adds its
 * instruction count to the vCPU's own counter (QEMU's inline add is one
 * counter for all vCPUs, not atomic: it would lose counts).
 *
 * The few plugin API entry points it needs are declared here from QEMU's
 * documented plugin API (version 1, QEMU 7.2); Debian ships no header.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct {
	const char	*target_name;
	struct { int min, cur; } version;
	bool		system_emulation;
	union { struct { int smp_vcpus, max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
					  qemu_plugin_vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);

#define PVINSN_VCPUS	64	/* counters in the file (one 4 KiB page holds 512) */
#define EXPORT		__attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1;
static volatile uint64_t *counts;

/* a block ran on vcpu: its instruction count, from translation time */
static void pvinsn_exec(unsigned int vcpu, void *n)
{
	counts[vcpu % PVINSN_VCPUS] += (uintptr_t)n;
}

static void pvinsn_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	qemu_plugin_register_vcpu_tb_exec_cb(tb, pvinsn_exec, QEMU_PLUGIN_CB_NO_REGS,
					     (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
			       char **argv)
{
	const char *out = NULL;
	void *p;
	int fd;

	for (int i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "out=", 4)) {
			out = argv[i] + 4;
		} else {
			fprintf(stderr, "pvinsn: unknown argument '%s' (out=FILE)\n", argv[i]);
			return -1;
		}
	}
	if (!out || !*out) {
		fprintf(stderr, "pvinsn: needs out=FILE (-plugin pvinsn.so,out=FILE)\n");
		return -1;
	}
	if (info->version.cur < 1 || info->version.min > 1) {
		fprintf(stderr, "pvinsn: QEMU's plugin API %d-%d, not 1\n", info->version.min,
			info->version.cur);
		return -1;
	}
	fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, PVINSN_VCPUS * sizeof(uint64_t))) {
		fprintf(stderr, "pvinsn: %s: %s\n", out, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	p = mmap(NULL, PVINSN_VCPUS * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "pvinsn: mmap %s: %s\n", out, strerror(errno));
		return -1;
	}
	counts = p;
	qemu_plugin_register_vcpu_tb_trans_cb(id, pvinsn_trans);
	return 0;
}
