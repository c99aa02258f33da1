# guest test modules pvattack.ko (rogue DMA scenarios on QEMU's edu device) and pvhostile.ko
# (a hostile guest's floods and malformed hypercalls), built out of tree against the guest
# headers like pviommu.ko (mk/module.mk): W=1, any warning fails the build.
#   make guest-attack     build $(OUT)/guest-attack/pvattack.ko and pvhostile.ko
# Used by tests/vm/test_attacks.sh, tests/vm/test_hostile.sh and scripts/demo.sh.
ATTACK_MODULE_DIR	:= $(OUT)/guest-attack
ATTACK_MODULE		:= $(ATTACK_MODULE_DIR)/pvattack.ko
HOSTILE_MODULE		:= $(ATTACK_MODULE_DIR)/pvhostile.ko
ATTACK_MODULE_SRCS	:= $(SRC)/tests/vm/guest-modules/pvattack.c \
			   $(SRC)/tests/vm/guest-modules/pvhostile.c $(SRC)/tests/vm/guest-modules/Kbuild

.PHONY: guest-attack

guest: $(ATTACK_MODULE) $(HOSTILE_MODULE)
guest-attack: $(ATTACK_MODULE) $(HOSTILE_MODULE)

$(ATTACK_MODULE) $(HOSTILE_MODULE) &: $(ATTACK_MODULE_SRCS) $(SRC)/bpf/pviommu.h $(SRC)/mk/attack.mk $(SRC)/mk/guest.mk
	$(call msg,KMOD,$@)
	$(Q)test -d $(GUEST_KHDR) || \
		{ echo "error: $(GUEST_KHDR) missing: apt-get install linux-headers-$(GUEST_KREL)" >&2; exit 2; }
	$(Q)mkdir -p $(ATTACK_MODULE_DIR)
	$(Q)cp $(ATTACK_MODULE_SRCS) $(ATTACK_MODULE_DIR)/
	$(Q)$(MAKE) --no-print-directory -C $(GUEST_KHDR) M=$(ATTACK_MODULE_DIR) \
		PVIOMMU_INC=$(SRC)/bpf W=1 modules \
		>$(ATTACK_MODULE_DIR)/build.log 2>&1 || \
		{ cat $(ATTACK_MODULE_DIR)/build.log >&2; rm -f $(ATTACK_MODULE) $(HOSTILE_MODULE); exit 1; }
	$(Q)if grep -iE 'warning|error' $(ATTACK_MODULE_DIR)/build.log >&2; then \
		echo "error: guest test modules: the build printed warnings (full log: $(ATTACK_MODULE_DIR)/build.log)" >&2; \
		rm -f $(ATTACK_MODULE) $(HOSTILE_MODULE); exit 1; fi
	$(Q)test -f $(ATTACK_MODULE) && test -f $(HOSTILE_MODULE)
