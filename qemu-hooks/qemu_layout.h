/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * qemu_layout.h - what pviommu assumes about QEMU's memory layout, written
 * once for the uprobe plane (BPF) and the in-process plane (C).
 *
 * Device identity: a PCI device model does DMA through its bus-master
 * address space, &pci_dev->bus_master_as (include/hw/pci/pci.h, QEMU 7.x):
 *
 *   struct PCIDevice {
 *       ...
 *       int32_t          devfn;                    name - 24
 *       PCIReqIDCache    requester_id_cache;       name - 16 (16 bytes)
 *       char             name[64];                 as - 344
 *       PCIIORegion      io_regions[7];            40 bytes each
 *       AddressSpace     bus_master_as;            as
 *   }
 *   struct AddressSpace { struct rcu_head rcu; char *name; ... }
 *
 * address_space_init() names the bus-master space after the device
 * (g_strdup of pci_dev->name), so an AddressSpace *as is taken as a PCI
 * device's only when the string at as->name equals the name[] that sits
 * 344 bytes before it; devfn is then read 24 bytes before that name. Any
 * other address space (address_space_memory, "cpu-memory-0", ...) fails the
 * comparison and is not a device: its accesses pass untouched.
 * The guest bus number is taken as 0 (devices on the root bus, the q35
 * pcie.0 or pc pci.0 default); devices behind bridges are not identified.
 * Checked against Debian's qemu-system-x86 7.2 by the VM tests, which
 * compare the derived BDF with what the guest sees.
 */
#ifndef __PVIOMMU_QEMU_LAYOUT_H
#define __PVIOMMU_QEMU_LAYOUT_H

#define QEMU_AS_NAME_OFF		16	/* after struct rcu_head */
#define QEMU_PCIDEV_NAME_BEFORE_AS	344	/* 64 + 7 * 40 */
#define QEMU_PCIDEV_DEVFN_BEFORE_NAME	24
#define QEMU_PCIDEV_NAME_LEN		64

/* QEMU 7.2 include/exec/memattrs.h */
#define QEMU_MEMTX_OK			0
#define QEMU_MEMTX_ACCESS_ERROR		(1u << 2)

/* CPUX86State (target/i386/cpu.h): regs[16], eip, eflags, cc_dst, cc_src,
 * cc_src2, cc_op, df, hflags; hflags & 3 is the CPL */
#define QEMU_ENV_HFLAGS_OFF		176
#define QEMU_R_EAX			0
#define QEMU_R_ECX			1
#define QEMU_R_EDX			2
#define QEMU_R_EBX			3
#define QEMU_R_ESI			6

/*
 * MSI/MSI-X: a device signals an interrupt by writing to the x86 interrupt
 * window through its bus-master space (msi_send_message ->
 * address_space_stl_le). A hardware IOMMU routes that window to interrupt
 * remapping, not to memory; the guest never maps it. Device writes of up to
 * 4 bytes inside it are interrupts and pass.
 */
#define QEMU_MSI_BASE			0xfee00000ull
#define QEMU_MSI_SIZE			0x100000ull
#define qemu_is_msi(addr, len, is_write)				\
	((is_write) && (len) <= 4 && (addr) >= QEMU_MSI_BASE &&		\
	 (addr) + (len) <= QEMU_MSI_BASE + QEMU_MSI_SIZE)

/* the bdf of a validated device address space (bus 0) */
#define QEMU_BDF_OF_DEVFN(devfn)	((__u32)((devfn) & 0xff))
/* cached answer for an address space that is not a PCI device's */
#define QEMU_AS_NOT_DEVICE		0xffffffffu

/*
 * The two name buffers (as->name's string and the name[] before as) as
 * read by the caller; returns 1 when they are the same C string.
 */
static inline int qemu_names_match(const char *a, const char *b)
{
	int i;

	for (i = 0; i < QEMU_PCIDEV_NAME_LEN; i++) {
		if (a[i] != b[i])
			return 0;
		if (!a[i])
			return i > 0;
	}
	return 0;
}

#endif
