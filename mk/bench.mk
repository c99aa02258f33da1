# make bench: benchmarks printing ratios measured side by side in one run
BENCH_CORE	:= $(OUT)/tests/bench_core
BENCH_SCALE	:= $(OUT)/tests/bench_scale
.PHONY: bench bench-run bench-peers bench-peers-run

all: $(BENCH_CORE) $(BENCH_SCALE)

$(OUT)/tests/%: $(SRC)/tests/bench/%.c $(SRC)/tests/bench/bench_util.h $(BPF_SKELS) $(BPF_HDRS) $(PVLIB_OBJS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< $(PVLIB_OBJS) $(LIBBPF_LIBS) -o $@

bench: deps
	$(Q)$(SRC)/scripts/install-deps.sh --bench
	$(Q)$(MAKE) --no-print-directory bench-run

bench-run: all guest host-setup
	$(Q)$(MAKE) --no-print-directory bench-inproc
	$(Q)$(BENCH_CORE)
	$(Q)SCALE_GP=$(SRC)/tests/bench/scale.gp $(BENCH_SCALE) $(OUT)/bench
	$(Q)rc=0; for b in $(SRC)/tests/bench/*.sh; do \
		[ -x "$$b" ] || continue; \
		BENCH_SHORT=1 OUT=$(OUT) "$$b" || { echo "bench: $$(basename $$b) failed" >&2; rc=1; }; \
	done; exit $$rc

# make bench-peers: pviommu strict (posted and kicked) and lazy beside QEMU's intel-iommu strict and
# lazy and no IOMMU, in interleaved rounds (ROUNDS, default 8): $(OUT)/bench/peers.md, .json, .png
bench-peers:
	$(Q)$(SRC)/scripts/install-deps.sh --bench
	$(Q)$(MAKE) --no-print-directory bench-peers-run

bench-peers-run: all guest host-setup
	$(Q)PEERS_OUT=$(OUT)/bench OUT=$(OUT) ROUNDS=$${ROUNDS:-8} \
		BENCH_CONFIGS="$${BENCH_CONFIGS:-bare inproc ring64 kick lazy viommu viommu-lazy}" \
		$(SRC)/tests/bench/bench_workload.sh
