# make bench: benchmarks printing ratios measured side by side in one run
BENCH_CORE	:= $(OUT)/tests/bench_core
.PHONY: bench bench-run

all: $(BENCH_CORE)

$(OUT)/tests/%: $(SRC)/tests/bench/%.c $(BPF_SKELS) $(BPF_HDRS) $(PVLIB_OBJS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< $(PVLIB_OBJS) $(LIBBPF_LIBS) -o $@

bench: deps
	$(Q)$(MAKE) --no-print-directory bench-run

bench-run: all guest host-setup
	$(Q)$(MAKE) --no-print-directory bench-inproc
	$(Q)$(BENCH_CORE)
	$(Q)for b in $(SRC)/tests/bench/*.sh; do [ -x "$$b" ] && OUT=$(OUT) "$$b" || true; done
