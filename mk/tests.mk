# tests: unit (plain C), bpf (BPF_PROG_TEST_RUN in the real kernel), shell
TEST_CFLAGS	:= $(USER_CFLAGS) -I$(SRC)/tests
UNIT_TESTS	:= $(OUT)/tests/test_range $(OUT)/tests/test_chan $(OUT)/tests/test_vfio
BPF_TESTS	:= $(OUT)/tests/test_bpf
TEST_TOOLS	:= $(OUT)/tests/pvhc $(OUT)/tests/pvinsn.so
# libFuzzer (clang, libclang-rt): the range logic against a byte model, the CLI's parsers
FUZZ_TESTS	:= $(OUT)/tests/fuzz_policy
FUZZ_CFLAGS	:= -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		   -Wall -Werror -Wno-unused-parameter -I$(OUT) -I$(SRC)/bpf -I$(SRC)/userspace

all: $(UNIT_TESTS) $(BPF_TESTS) $(TEST_TOOLS) $(FUZZ_TESTS)

$(OUT)/tests/fuzz_policy: $(SRC)/tests/fuzz/fuzz_policy.c $(SRC)/userspace/pvlib.c \
		$(BPF_HDRS) $(SRC)/userspace/pv_user.h $(SRC)/userspace/pvlib.h
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $(SRC)/userspace/pvlib.c $(LIBBPF_LIBS) -o $@

$(OUT)/tests/%: $(SRC)/tests/unit/%.c $(BPF_HDRS) $(SRC)/userspace/pv_user.h $(SRC)/tests/testlib.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< -o $@

$(OUT)/tests/%: $(SRC)/tests/bpf/%.c $(BPF_SKELS) $(BPF_HDRS) $(PVLIB_OBJS) $(SRC)/tests/testlib.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< $(PVLIB_OBJS) $(LIBBPF_LIBS) -o $@

# a QEMU TCG plugin (the benchmarks' guest instruction counts): no libbpf, no pvlib
$(OUT)/tests/pvinsn.so: $(SRC)/tests/tools/pvinsn.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(USER_CFLAGS) -shared -fPIC -fvisibility=hidden $< -o $@

$(OUT)/tests/%: $(SRC)/tests/tools/%.c $(BPF_HDRS) $(PVLIB_OBJS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< $(PVLIB_OBJS) $(LIBBPF_LIBS) -o $@

# the shared page's host side is compiled into its test
$(OUT)/tests/test_chan: $(SRC)/qemu-hooks/pv_chan.c $(SRC)/qemu-hooks/pv_chan.h
# so is the IOMMU mirror of assigned devices
$(OUT)/tests/test_vfio: $(SRC)/qemu-hooks/pv_vfio.c $(SRC)/qemu-hooks/pv_vfio.h
