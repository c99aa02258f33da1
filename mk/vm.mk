# VM test harness: guest kernel (pinned in mk/guest.mk) + base initramfs; see tests/vm/lib.sh
#   make $(GUEST_INITRD_BASE)   fetch/unpack the guest kernel, build the base initramfs
#   make guest                  same, and the guest modules (mk/module.mk, mk/attack.mk)
#   make vm-smoke               boot smoke test (tests/vm/test_boot.sh)
# Test scripts get GUEST_VMLINUZ, GUEST_INITRD_BASE, VM_LIB and VM_OUT from the environment.
GUEST_DIR		:= $(OUT)/guest
GUEST_VMLINUZ		:= $(GUEST_DIR)/vmlinuz
GUEST_INITRD_BASE	:= $(GUEST_DIR)/base.cpio.gz
VM_LIB			:= $(SRC)/tests/vm/lib.sh
VM_OUT			:= $(OUT)
export GUEST_VMLINUZ GUEST_INITRD_BASE VM_LIB VM_OUT GUEST_KREL

.PHONY: guest vm-smoke

guest: $(GUEST_VMLINUZ) $(GUEST_INITRD_BASE)

# idempotent: the .deb is cached in $(GUEST_DIR)/debs, the unpacked tree has a stamp
$(GUEST_VMLINUZ): $(SRC)/mk/guest.mk $(SRC)/tests/vm/fetch-kernel.sh
	$(call msg,KERNEL,$@)
	$(Q)$(SRC)/tests/vm/fetch-kernel.sh $(OUT)
	$(Q)touch $@

$(GUEST_INITRD_BASE): $(GUEST_VMLINUZ) $(SRC)/tests/vm/mkinitramfs.sh \
		$(SRC)/tests/vm/guest/init $(SRC)/tests/vm/guest/pviommu-vm.sh
	$(call msg,INITRD,$@)
	$(Q)$(SRC)/tests/vm/mkinitramfs.sh base $(OUT)

vm-smoke: $(GUEST_VMLINUZ) $(GUEST_INITRD_BASE)
	$(call msg,VMTEST,test_boot)
	$(Q)$(SRC)/tests/vm/test_boot.sh
