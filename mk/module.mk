# guest kernel module pviommu.ko, built out of tree against the guest headers (mk/guest.mk)
#   make guest-module     build $(OUT)/guest-module/pviommu.ko (W=1, any warning fails the build)
#   make checkpatch       run checkpatch.pl --no-tree -f on the module source, if available
# The sources are copied to $(OUT)/guest-module/ and built there: the source tree stays clean.
# O= : our O= (output dir) must not reach kbuild, where O= names the kernel's output dir.
# The log check matches diagnostics only (gcc "f.c:1:2: warning:", modpost "WARNING:"): with
# V=1 kbuild echoes its command lines, which contain -Werror.
GUEST_MODULE_DIR	:= $(OUT)/guest-module
GUEST_MODULE		:= $(GUEST_MODULE_DIR)/pviommu.ko
GUEST_MODULE_SRCS	:= $(SRC)/guest-module/pviommu.c $(SRC)/guest-module/Kbuild
CHECKPATCH		?= $(firstword $(wildcard $(GUEST_KHDR)/scripts/checkpatch.pl \
			   /usr/src/linux-headers-$(GUEST_KABI)-common/scripts/checkpatch.pl) checkpatch.pl)

.PHONY: guest-module checkpatch

# a guest part: 'make guest' builds it, 'make' (the host parts) does not need guest headers
guest: $(GUEST_MODULE)
guest-module: $(GUEST_MODULE)

# kbuild DIR, SOURCES, MODULES (.ko paths), NAME: one out-of-tree build against the guest
# headers, for pviommu.ko and the test modules alike (mk/attack.mk)
define kbuild
	$(call msg,KMOD,$(3))
	$(Q)test -d $(GUEST_KHDR) || \
		{ echo "error: $(GUEST_KHDR) missing: apt-get install linux-headers-$(GUEST_KREL)" >&2; exit 2; }
	$(Q)mkdir -p $(1)
	$(Q)cp $(2) $(1)/
	$(Q)+$(MAKE) --no-print-directory -C $(GUEST_KHDR) M=$(1) \
		PVIOMMU_INC=$(SRC)/bpf W=1 O= modules >$(1)/build.log 2>&1 || \
		{ cat $(1)/build.log >&2; rm -f $(3); exit 1; }
	$(Q)if grep -E '(^|: )(warning|error|WARNING|ERROR):' $(1)/build.log >&2; then \
		echo "error: $(4): the build printed warnings (full log: $(1)/build.log)" >&2; \
		rm -f $(3); exit 1; fi
	$(Q)for k in $(3); do test -f $$k || exit 1; done
endef

$(GUEST_MODULE): $(GUEST_MODULE_SRCS) $(SRC)/bpf/pviommu.h $(SRC)/mk/module.mk $(SRC)/mk/guest.mk
	$(call kbuild,$(GUEST_MODULE_DIR),$(GUEST_MODULE_SRCS),$@,pviommu.ko)

checkpatch:
	$(call msg,CHECK,guest-module/pviommu.c)
	$(Q)if command -v $(CHECKPATCH) >/dev/null 2>&1 || test -x $(CHECKPATCH); then \
		$(CHECKPATCH) --no-tree --strict -f $(SRC)/guest-module/pviommu.c; \
	else echo "checkpatch: checkpatch.pl not found (set CHECKPATCH=...): skipped" >&2; fi

# VM test of the module against the host policy (QEMU TCG guest, tests/vm harness; also run by
# tests/run-all.sh): tests/vm/test_guest_module.sh
.PHONY: vm-module
vm-module: $(GUEST_MODULE) $(PVIOMMUCTL) $(GUEST_VMLINUZ) $(GUEST_INITRD_BASE)
	$(call msg,VMTEST,guest-module)
	$(Q)PVIOMMU_KO=$(GUEST_MODULE) $(SRC)/tests/vm/test_guest_module.sh

# DKMS source tree (the pviommu-dkms package's /usr/src/pviommu-VERSION): make dkms-src
DKMS_SRC	:= $(OUT)/dkms/pviommu-$(PVIOMMU_VERSION)
.PHONY: dkms-src
dkms-src: $(DKMS_SRC)/dkms.conf
$(DKMS_SRC)/dkms.conf: $(SRC)/guest-module/dkms.conf $(GUEST_MODULE_SRCS) $(SRC)/bpf/pviommu.h $(SRC)/VERSION
	$(call msg,DKMS,$(DKMS_SRC))
	$(Q)mkdir -p $(DKMS_SRC)
	$(Q)cp $(GUEST_MODULE_SRCS) $(SRC)/bpf/pviommu.h $(DKMS_SRC)/
	$(Q)sed 's/#MODULE_VERSION#/$(PVIOMMU_VERSION)/' $< >$@
