// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * qemu_elf.c - check a QEMU binary against qemu-hooks/qemu_layout.h before
 * the uprobe plane trusts its offsets: the exported one-line accessors
 * (QEMU_LAYOUT_FNS) are read from the file and decoded, as the in-process
 * library does in memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "pv_user.h"
#include "../qemu-hooks/qemu_layout.h"
#include "qemu_elf.h"

/* file offset of the code at virtual address va, or -1 */
static off_t va_to_off(Elf *e, GElf_Addr va)
{
	size_t n;
	GElf_Phdr ph;

	if (elf_getphdrnum(e, &n))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD &&
		    va >= ph.p_vaddr && va + QEMU_LAYOUT_CODE_LEN <= ph.p_vaddr + ph.p_filesz)
			return (off_t)(va - ph.p_vaddr + ph.p_offset);
	return -1;
}

/* the value of exported function sym in .dynsym, 0 if absent */
static GElf_Addr dynsym(Elf *e, const char *sym)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;

	while ((scn = elf_nextscn(e, scn))) {
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *name;

			if (!gelf_getsym(d, (int)i, &s) || s.st_shndx == SHN_UNDEF ||
			    GELF_ST_TYPE(s.st_info) != STT_FUNC)
				continue;
			name = elf_strptr(e, sh.sh_link, s.st_name);
			if (name && !strcmp(name, sym))
				return s.st_value;
		}
	}
	return 0;
}

int qemu_layout_check_file(const char *path, char *why, size_t len)
{
	static const struct qemu_layout_fn fns[] = QEMU_LAYOUT_FNS;
	unsigned char code[QEMU_LAYOUT_CODE_LEN];
	int fd, ok = 0, i;
	Elf *e = NULL;

	if (elf_version(EV_CURRENT) == EV_NONE) {
		snprintf(why, len, "libelf: %s", elf_errmsg(-1));
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF) {
		snprintf(why, len, "%s is not an ELF file", path);
		goto out;
	}
	for (i = 0; i < QEMU_LAYOUT_NR_FNS; i++) {
		GElf_Addr va = dynsym(e, fns[i].sym);
		off_t off = va ? va_to_off(e, va) : -1;
		long got;

		if (off < 0) {
			snprintf(why, len, "%s does not export %s", path, fns[i].sym);
			goto out;
		}
		if (pread(fd, code, sizeof(code), off) != (ssize_t)sizeof(code)) {
			snprintf(why, len, "%s: cannot read %s", path, fns[i].sym);
			goto out;
		}
		got = qemu_layout_decode(code, fns[i].ret_next);
		if (got != fns[i].want) {
			snprintf(why, len, "%s loads offset %ld, qemu_layout.h says %ld",
				 fns[i].sym, got, fns[i].want);
			goto out;
		}
	}
	ok = 1;
out:
	if (e)
		elf_end(e);
	close(fd);
	return ok ? 0 : -ENOEXEC;
}
