/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef __PVIOMMU_QEMU_ELF_H
#define __PVIOMMU_QEMU_ELF_H

#include <stddef.h>

/*
 * 0 when the QEMU binary at path has the PCI layout qemu_layout.h describes
 * (its accessors decoded from the file), else -errno with why[] filled in.
 */
int qemu_layout_check_file(const char *path, char *why, size_t len);

#endif
