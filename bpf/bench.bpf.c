// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Baselines for make bench: what the map/unmap path is made of, measured
 * alone in the same run. Never loaded by pviommuctl.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "pviommu.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* a record table as a BPF hash would hold one: (domain, bdf, iova) -> record */
struct bench_key {
	__u32	domain;
	__u32	bdf;
	__u64	iova;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1u << 17);
	__type(key, struct bench_key);
	__type(value, struct pviommu_mapping);
} bench_records SEC(".maps");

/*
 * one hash insert and one delete: what a map + unmap pair paid for its
 * record when records lived in a BPF hash of their own
 */
SEC("raw_tp")
int bench_htab_pair(struct bpf_raw_tracepoint_args *ctx)
{
	struct bench_key k = { .domain = 1, .bdf = 2, .iova = ctx->args[0] };
	struct pviommu_mapping v = { .iova = ctx->args[0], .size = 4096 };

	bpf_map_update_elem(&bench_records, &k, &v, BPF_NOEXIST);
	bpf_map_delete_elem(&bench_records, &k);
	return 0;
}

/* an empty program: the floor of a BPF run */
SEC("raw_tp")
int bench_empty(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}
