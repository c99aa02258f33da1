# make check: install what is missing, build, run every test tier.
# make demo / make bench: the same set-up, then the end-to-end run / benchmarks.
.PHONY: check check-run check-unit check-bpf check-lifecycle check-cli check-vm host-setup fuzz

# the packages of every suite, before any runs: suites run side by side, and two apt-get at once
# would fight over dpkg's lock (make deb and test_libvirt.sh ask again, and find nothing missing)
check: deps
	$(Q)$(SRC)/scripts/install-deps.sh --deb --libvirt
	$(Q)$(MAKE) --no-print-directory check-run

check-run: all guest host-setup
	$(Q)$(SRC)/tests/run-all.sh $(OUT)

check-unit: $(UNIT_TESTS)
	$(Q)$(OUT)/tests/test_range && $(OUT)/tests/test_chan && $(OUT)/tests/test_vfio

check-bpf: $(BPF_TESTS) host-setup
	$(Q)$(OUT)/tests/test_bpf

# the hypercall fuzzer with its byte-level oracle, long (make check runs 3000 steps)
FUZZ_STEPS ?= 200000
FUZZ_SECONDS ?= 300
fuzz: $(BPF_TESTS) $(FUZZ_TESTS) host-setup
	$(Q)$(OUT)/tests/test_bpf --fuzz $(FUZZ_STEPS)
	$(Q)mkdir -p $(OUT)/fuzz/corpus
	$(Q)$(FUZZ_TESTS) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(OUT)/fuzz/corpus

check-lifecycle: all host-setup
	$(Q)OUT=$(OUT) $(SRC)/tests/test_lifecycle.sh

# the CLI's habits, metrics, completion, man pages, systemd unit
check-cli: all host-setup
	$(Q)OUT=$(OUT) $(SRC)/tests/test_cli.sh

# bpffs and tracefs, as pviommuctl would mount them; refuse clearly without root
host-setup:
	$(Q)if [ "$$(id -u)" != 0 ]; then \
		echo "error: the tests load BPF programs and boot VMs: run as root" >&2; exit 2; fi
	$(Q)mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(Q)mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
