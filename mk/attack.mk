# guest test modules pvattack.ko (rogue DMA scenarios on QEMU's edu device) and pvhostile.ko
# (a hostile guest's floods and malformed hypercalls), pvdmacost.ko (the guest's time per DMA
# API call, make bench), pvoldops.ko (DMA ops of another layer, test_attacks' old-ops mode),
# built out of tree against the guest headers like pviommu.ko (mk/module.mk): W=1, any warning fails the build.
#   make guest-attack     build $(OUT)/guest-attack/pvattack.ko, pvhostile.ko, pvdmacost.ko and pvoldops.ko
# Used by tests/vm/test_attacks.sh, tests/vm/test_hostile.sh and scripts/demo.sh.
ATTACK_MODULE_DIR	:= $(OUT)/guest-attack
ATTACK_MODULE		:= $(ATTACK_MODULE_DIR)/pvattack.ko
HOSTILE_MODULE		:= $(ATTACK_MODULE_DIR)/pvhostile.ko
DMACOST_MODULE		:= $(ATTACK_MODULE_DIR)/pvdmacost.ko
OLDOPS_MODULE		:= $(ATTACK_MODULE_DIR)/pvoldops.ko
ATTACK_MODULE_SRCS	:= $(SRC)/tests/vm/guest-modules/pvattack.c \
			   $(SRC)/tests/vm/guest-modules/pvhostile.c \
			   $(SRC)/tests/vm/guest-modules/pvdmacost.c $(SRC)/tests/vm/guest-modules/pvoldops.c \
			   $(SRC)/tests/vm/guest-modules/Kbuild

.PHONY: guest-attack

guest: $(ATTACK_MODULE) $(HOSTILE_MODULE) $(DMACOST_MODULE) $(OLDOPS_MODULE)
guest-attack: $(ATTACK_MODULE) $(HOSTILE_MODULE) $(DMACOST_MODULE) $(OLDOPS_MODULE)

$(ATTACK_MODULE) $(HOSTILE_MODULE) $(DMACOST_MODULE) $(OLDOPS_MODULE) &: $(ATTACK_MODULE_SRCS) $(SRC)/bpf/pviommu.h $(SRC)/mk/attack.mk $(SRC)/mk/module.mk $(SRC)/mk/guest.mk
	$(call kbuild,$(ATTACK_MODULE_DIR),$(ATTACK_MODULE_SRCS),$(ATTACK_MODULE) $(HOSTILE_MODULE) $(DMACOST_MODULE) $(OLDOPS_MODULE),guest test modules)
