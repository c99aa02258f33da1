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
 *
 * Bus number: a device on a secondary bus (behind a PCI-PCI bridge or a
 * PCIe root port) is on the bus its parent bridge's config space names, as
 * pci_bus_num() computes it:
 *
 *   PCIDevice.qdev.parent_bus   PCIDevice + 0x58   (PCIBus *)
 *   PCIBus.parent_dev           PCIBus + 0x8b8     (PCIDevice *, NULL on a root bus)
 *   PCIDevice.config            name - 64          (uint8_t *)
 *   bus = parent_dev ? parent_dev->config[PCI_SECONDARY_BUS (0x19)] : 0
 *
 * The guest programs that byte (firmware, or the kernel when it renumbers),
 * so it is read again at every check, not cached. The parent bridge must
 * pass the same name/as validation as the device. Root buses count as bus 0:
 * pxb/pxb-pcie expander buses (root buses with a number of their own) are
 * not supported. The three offsets are not guessed: QEMU exports one-line
 * accessors that load them (qdev_get_parent_bus, pci_bridge_get_device,
 * pci_bridge_get_base's first load is bridge->config), and both planes
 * decode those functions (qemu_layout_decode below) before trusting the
 * constants; on a mismatch bridged devices are not identified and the
 * planes say so.
 *
 * Checked against Debian's qemu-system-x86 7.2 by the VM tests, which
 * compare the derived BDF with what the guest sees (on the root bus and
 * behind a pci-bridge).
 */
#ifndef __PVIOMMU_QEMU_LAYOUT_H
#define __PVIOMMU_QEMU_LAYOUT_H

#define QEMU_AS_NAME_OFF		16	/* after struct rcu_head */
#define QEMU_PCIDEV_NAME_BEFORE_AS	344	/* 64 + 7 * 40 */
#define QEMU_PCIDEV_DEVFN_BEFORE_NAME	24
#define QEMU_PCIDEV_NAME_LEN		64
#define QEMU_PCIDEV_PARENT_BUS_OFF	0x58	/* from the PCIDevice */
#define QEMU_PCIBUS_PARENT_DEV_OFF	0x8b8
#define QEMU_PCIDEV_CONFIG_BEFORE_NAME	64
#define QEMU_PCI_SECONDARY_BUS		0x19
/* the PCIDevice of a (validated) bus-master address space */
#define QEMU_PCIDEV_OF_AS(as)		((as) - QEMU_PCIDEV_NAME_BEFORE_AS - 0xe8)
#define QEMU_PCIDEV_NAME_OFF		0xe8

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

/* the bdf of a validated device address space */
#define QEMU_BDF_OF_DEVFN(devfn)	((__u32)((devfn) & 0xff))
#define QEMU_BDF(bus, devfn)		((__u32)((bus) & 0xff) << 8 | ((devfn) & 0xff))
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

/*
 * The accessor functions that pin the layout down, and what their first
 * instruction must load: "mov disp(%rdi),%reg" (REX.W 8b, ModRM rm=rdi,
 * disp8 or disp32). ret_next: the load must be followed by "ret" into %rax
 * (a one-line getter).
 */
struct qemu_layout_fn {
	const char	*sym;
	long		want;
	int		ret_next;
};
#define QEMU_LAYOUT_FNS {						\
	{ "qdev_get_parent_bus", QEMU_PCIDEV_PARENT_BUS_OFF, 1 },	\
	{ "pci_bridge_get_device", QEMU_PCIBUS_PARENT_DEV_OFF, 1 },	\
	{ "pci_bridge_get_base",					\
	  QEMU_PCIDEV_NAME_OFF - QEMU_PCIDEV_CONFIG_BEFORE_NAME, 0 },	\
}
#define QEMU_LAYOUT_NR_FNS	3
#define QEMU_LAYOUT_CODE_LEN	8	/* bytes of each function decoded */

/* the displacement loaded by code[0..8), or -1 when it is not that shape */
static inline long qemu_layout_decode(const unsigned char *p, int ret_next)
{
	long disp;
	int n;

	if (p[0] != 0x48 || p[1] != 0x8b || (p[2] & 7) != 7)	/* REX.W mov r64, [rdi+d] */
		return -1;
	if ((p[2] & 0xc0) == 0x40) {
		disp = (signed char)p[3];
		n = 4;
	} else if ((p[2] & 0xc0) == 0x80) {
		disp = (int)((unsigned)p[3] | (unsigned)p[4] << 8 |
			     (unsigned)p[5] << 16 | (unsigned)p[6] << 24);
		n = 7;
	} else {
		return -1;
	}
	if (ret_next && ((p[2] & 0x38) != 0 || p[n] != 0xc3))	/* into %rax, then ret */
		return -1;
	return disp;
}

#endif
