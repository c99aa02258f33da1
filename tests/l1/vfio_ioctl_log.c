// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libvfio_ioctl_log.so - an LD_PRELOAD library that interposes ioctl() (it
 * exports the symbol, unlike libpviommu-qemu.so) and logs what QEMU asks of
 * VFIO, for tests/l1/l1-assign.sh:
 *
 *   LD_PRELOAD=.../libvfio_ioctl_log.so VFIO_IOCTL_LOG=/tmp/ioctl.log \
 *       qemu-system-x86_64 ... -device vfio-pci,host=BDF
 *
 * One line per VFIO ioctl (type ';'), per KVM_SET_USER_MEMORY_REGION and for
 * the first KVM_RUN of the process (the guest's first instruction):
 *   IOCTL t=<CLOCK_BOOTTIME s> tid=<tid> thread=<name> fd=<n>(<what fd is>)
 *         <request> [its arguments] rc=<r>[ errno=<e>]
 * CLOCK_BOOTTIME is the clock of /proc/uptime, so the times line up with the
 * phases the L1 script records. Decoding a VFIO request needs the kind of fd
 * (VFIO_BASE + 12..14 mean one thing on a container, another on a device):
 * readlink(/proc/self/fd/N) says which. Pure pass-through otherwise; the
 * result and errno of the real ioctl are returned unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/kvm.h>
#include <linux/vfio.h>

#define EXPORT __attribute__((visibility("default")))

static int (*real_ioctl)(int, unsigned long, ...);
static int log_fd = -1;
static int kvm_run_seen;

__attribute__((constructor)) static void init(void)
{
	const char *p = getenv("VFIO_IOCTL_LOG");

	real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	if (p && *p)
		log_fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* what fd is: "container" (/dev/vfio/vfio), "group N", "device", "kvm-vm", ... */
static const char *fd_kind(int fd, char *buf, size_t len)
{
	char path[64], link[128];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return "?";
	link[n] = 0;
	if (!strcmp(link, "/dev/vfio/vfio"))
		return "container";
	if (!strncmp(link, "/dev/vfio/", 10)) {
		snprintf(buf, len, "group %s", link + 10);
		return buf;
	}
	if (strstr(link, "vfio-device"))
		return "device";
	if (strstr(link, "kvm-vm"))
		return "kvm-vm";
	if (strstr(link, "kvm-vcpu"))
		return "kvm-vcpu";
	snprintf(buf, len, "%s", link);
	return buf;
}

static const char *vfio_name(unsigned long req, const char *kind)
{
	int container = !strcmp(kind, "container");

	switch (_IOC_NR(req) - VFIO_BASE) {
	case 0: return "VFIO_GET_API_VERSION";
	case 1: return "VFIO_CHECK_EXTENSION";
	case 2: return "VFIO_SET_IOMMU";
	case 3: return "VFIO_GROUP_GET_STATUS";
	case 4: return "VFIO_GROUP_SET_CONTAINER";
	case 5: return "VFIO_GROUP_UNSET_CONTAINER";
	case 6: return "VFIO_GROUP_GET_DEVICE_FD";
	case 7: return "VFIO_DEVICE_GET_INFO";
	case 8: return "VFIO_DEVICE_GET_REGION_INFO";
	case 9: return "VFIO_DEVICE_GET_IRQ_INFO";
	case 10: return "VFIO_DEVICE_SET_IRQS";
	case 11: return "VFIO_DEVICE_RESET";
	case 12: return container ? "VFIO_IOMMU_GET_INFO" : "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";
	case 13: return container ? "VFIO_IOMMU_MAP_DMA" : "VFIO_DEVICE_PCI_HOT_RESET";
	case 14: return container ? "VFIO_IOMMU_UNMAP_DMA" : "VFIO_DEVICE_QUERY_GFX_PLANE";
	case 15: return container ? "VFIO_IOMMU_ENABLE" : "VFIO_DEVICE_GET_GFX_DMABUF";
	case 16: return container ? "VFIO_IOMMU_DISABLE" : "VFIO_DEVICE_IOEVENTFD";
	case 17: return "VFIO_DEVICE_FEATURE";
	case 18: return "VFIO_IOMMU_DIRTY_PAGES";
	default: return "VFIO_?";
	}
}

static double boottime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void logline(int fd, const char *kind, const char *what, const char *args, int rc, int err)
{
	char name[17] = "", line[512];
	int n;

	prctl(PR_GET_NAME, name);
	for (char *c = name; *c; c++)	/* "CPU 0/KVM": one word in the log */
		if (*c == ' ')
			*c = '_';
	n = snprintf(line, sizeof(line), "IOCTL t=%.6f tid=%ld thread=%s fd=%d(%s) %s%s%s rc=%d",
		     boottime(), (long)syscall(SYS_gettid), name, fd, kind, what,
		     *args ? " " : "", args, rc);
	if (rc < 0 && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " errno=%d", err);
	if (n >= (int)sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* nothing to do: the log is best effort */
	}
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	char kbuf[160], args[256] = "";
	const char *kind, *what;
	va_list ap;
	void *arg;
	int rc, err;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real_ioctl)
		real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	if (log_fd < 0)
		return real_ioctl(fd, req, arg);

	if (_IOC_TYPE(req) == VFIO_TYPE) {
		rc = real_ioctl(fd, req, arg);
		err = errno;
		kind = fd_kind(fd, kbuf, sizeof(kbuf));
		what = vfio_name(req, kind);
		if (!strcmp(what, "VFIO_IOMMU_MAP_DMA")) {
			const struct vfio_iommu_type1_dma_map *m = arg;

			snprintf(args, sizeof(args), "iova=0x%llx size=0x%llx vaddr=0x%llx flags=0x%x",
				 (unsigned long long)m->iova, (unsigned long long)m->size,
				 (unsigned long long)m->vaddr, m->flags);
		} else if (!strcmp(what, "VFIO_IOMMU_UNMAP_DMA")) {
			const struct vfio_iommu_type1_dma_unmap *u = arg;

			snprintf(args, sizeof(args), "iova=0x%llx size=0x%llx flags=0x%x",
				 (unsigned long long)u->iova, (unsigned long long)u->size, u->flags);
		} else if (req == VFIO_SET_IOMMU || req == VFIO_CHECK_EXTENSION) {
			snprintf(args, sizeof(args), "arg=%lu", (unsigned long)arg);
		} else if (req == VFIO_GROUP_GET_DEVICE_FD) {
			snprintf(args, sizeof(args), "name=%s", (const char *)arg);
		} else if (req == VFIO_GROUP_SET_CONTAINER) {
			snprintf(args, sizeof(args), "container=%d", *(const int *)arg);
		}
		logline(fd, kind, what, args, rc, err);
		errno = err;
		return rc;
	}
	if (req == KVM_SET_USER_MEMORY_REGION) {
		const struct kvm_userspace_memory_region *r = arg;

		rc = real_ioctl(fd, req, arg);
		err = errno;
		snprintf(args, sizeof(args), "slot=%u gpa=0x%llx size=0x%llx hva=0x%llx flags=0x%x",
			 r->slot, (unsigned long long)r->guest_phys_addr,
			 (unsigned long long)r->memory_size, (unsigned long long)r->userspace_addr,
			 r->flags);
		logline(fd, "kvm-vm", "KVM_SET_USER_MEMORY_REGION", args, rc, err);
		errno = err;
		return rc;
	}
	if (req == KVM_RUN && !__atomic_exchange_n(&kvm_run_seen, 1, __ATOMIC_RELAXED))
		logline(fd, "kvm-vcpu", "KVM_RUN(first)", "entering", 0, 0);
	return real_ioctl(fd, req, arg);
}
