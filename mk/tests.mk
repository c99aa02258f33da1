# tests: unit (plain C), bpf (BPF_PROG_TEST_RUN in the real kernel), shell
TEST_CFLAGS	:= $(USER_CFLAGS) -I$(SRC)/tests
UNIT_TESTS	:= $(OUT)/tests/test_range
BPF_TESTS	:= $(OUT)/tests/test_bpf
TEST_TOOLS	:= $(OUT)/tests/pvhc

all: $(UNIT_TESTS) $(BPF_TESTS) $(TEST_TOOLS)

$(OUT)/tests/%: $(SRC)/tests/unit/%.c $(BPF_HDRS) $(SRC)/userspace/pv_user.h $(SRC)/tests/testlib.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< -o $@

$(OUT)/tests/%: $(SRC)/tests/bpf/%.c $(BPF_SKELS) $(BPF_HDRS) $(PVLIB_OBJS) $(SRC)/tests/testlib.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< $(PVLIB_OBJS) $(LIBBPF_LIBS) -o $@

$(OUT)/tests/%: $(SRC)/tests/tools/%.c $(BPF_HDRS) $(PVLIB_OBJS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) $< $(PVLIB_OBJS) $(LIBBPF_LIBS) -o $@
