// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * uvmcall - a pviommu hypercall from guest user space (CPL 3), for the L2 guest of
 * test_l1_kvm.sh. KVM fires kvm:kvm_hypercall before its own CPL check, so the host's
 * handler must ignore this call itself: no mapping may change.
 *
 *   uvmcall OP BDF IOVA SIZE [PERM [COOKIE]]     (numbers in C syntax: 0x.. ok)
 *     OP: map | unmap | dev_del | unregister; BDF: seg<<16|bus<<8|devfn (0x20 = 00:04.0)
 *   prints "rax=<value KVM returned>" (-1 = -KVM_EPERM: KVM refused CPL 3)
 * Uses vmmcall (AMD; L1 here is SVM) or, with UVMCALL_INTEL=1 in the environment, vmcall.
 * Built static (the L2 initramfs has no libc): gcc -static -O2 -o uvmcall uvmcall.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include "../../bpf/pviommu.h"

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	if (!*s || *end) {
		fprintf(stderr, "uvmcall: what is '%s'?\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	uint64_t a0, a1, a2, a3, rax = PVIOMMU_KVM_HC_NR;
	uint32_t op, perm;

	if (argc < 5) {
		fprintf(stderr, "usage: uvmcall map|unmap|dev_del|unregister BDF IOVA SIZE [PERM [COOKIE]]\n");
		return 2;
	}
	if (!strcmp(argv[1], "map"))
		op = PVIOMMU_OP_MAP;
	else if (!strcmp(argv[1], "unmap"))
		op = PVIOMMU_OP_UNMAP;
	else if (!strcmp(argv[1], "dev_del"))
		op = PVIOMMU_OP_DEV_DEL;
	else if (!strcmp(argv[1], "unregister"))
		op = PVIOMMU_OP_UNREGISTER;
	else {
		fprintf(stderr, "uvmcall: what is '%s'?\n", argv[1]);
		return 2;
	}
	perm = argc > 5 ? (uint32_t)num(argv[5]) : PVIOMMU_PERM_RW;
	a0 = PVIOMMU_HC_HDR(PVIOMMU_ABI_VERSION, op, perm, (uint32_t)num(argv[2]));
	a1 = num(argv[3]);
	a2 = num(argv[4]);
	a3 = argc > 6 ? num(argv[6]) : 0x5553455200000000ull;	/* "USER" */
	if (getenv("UVMCALL_INTEL"))
		__asm__ volatile("vmcall" : "+a"(rax) : "b"(a0), "c"(a1), "d"(a2), "S"(a3) : "memory");
	else
		__asm__ volatile("vmmcall" : "+a"(rax) : "b"(a0), "c"(a1), "d"(a2), "S"(a3) : "memory");
	printf("rax=%lld\n", (long long)rax);
	return 0;
}
