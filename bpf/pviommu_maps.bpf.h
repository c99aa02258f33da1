/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pviommu_maps.bpf.h - the pinned maps that more than one BPF object uses
 * (pviommu.bpf.c, pviommu_lsm.bpf.c), defined once. Pinned by name: the
 * second object to load re-uses the first one's maps, so the definitions
 * (and the loader's max_entries) must agree; here they cannot differ.
 */
#ifndef __PVIOMMU_MAPS_BPF_H
#define __PVIOMMU_MAPS_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVIOMMU_MAX_DOMAINS);
	__type(key, __u32);
	__type(value, struct pviommu_domain);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PVIOMMU_DEF_INDEX_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct pviommu_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pviommu_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_events SEC(".maps");

/* the devices a domain's VFIO containers serve (the LSM gate) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVIOMMU_MAX_DOMAINS);
	__type(key, __u32);
	__type(value, struct pviommu_vfio_devs);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pviommu_vfio_devs SEC(".maps");

#endif
