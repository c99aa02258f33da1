# make demo: install what is missing, build, then the end-to-end run (scripts/demo.sh):
# a TCG guest with edu + e1000, pviommu loaded, benign traffic, rogue DMA blocked.
# Exit status 0 only if the attacks were blocked.
.PHONY: demo-run

demo: deps
	$(Q)$(MAKE) --no-print-directory demo-run

demo-run: all guest host-setup
	$(Q)OUT=$(OUT) VM_OUT=$(OUT) $(SRC)/scripts/demo.sh
