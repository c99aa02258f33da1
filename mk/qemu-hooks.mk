# qemu-hooks: the in-process plane, libpviommu-qemu.so (preloaded into QEMU),
# and 'pviommuctl run' (userspace/run.c, linked into pviommuctl through
# PVIOMMUCTL_EXTRA_OBJS).
#   make qemu-hooks      build $(OUT)/libpviommu-qemu.so
#   make bench-inproc    per-call cost of a detoured, allowed check
QEMU_HOOKS_LIB		:= $(OUT)/libpviommu-qemu.so
QEMU_HOOKS_DIR		:= $(OUT)/qemu-hooks
QEMU_HOOKS_HDRS		:= $(wildcard $(SRC)/qemu-hooks/*.h) $(BPF_HDRS) \
			   $(SRC)/userspace/pv_user.h $(SRC)/userspace/pvlib.h
CAPSTONE_CFLAGS		:= $(shell pkg-config --cflags capstone 2>/dev/null)
CAPSTONE_LIBS		:= $(shell pkg-config --libs capstone 2>/dev/null || echo -lcapstone)
# everything in the library is hidden but ioctl (VFIO, pviommu_qemu.c): it must not
# interpose QEMU's symbols
QEMU_HOOKS_CFLAGS	:= $(USER_CFLAGS) -fPIC -fvisibility=hidden -I$(SRC)/qemu-hooks
QEMU_HOOKS_OBJS		:= $(QEMU_HOOKS_DIR)/pviommu_qemu.o $(QEMU_HOOKS_DIR)/detour.o $(QEMU_HOOKS_DIR)/pv_chan.o \
			   $(QEMU_HOOKS_DIR)/pv_vfio.o \
			   $(QEMU_HOOKS_DIR)/pvlib.o
INPROC_BENCH		:= $(OUT)/tests/bench_inproc

PVIOMMUCTL_EXTRA_OBJS	+= $(OUT)/run.o

.PHONY: qemu-hooks bench-inproc

all: $(QEMU_HOOKS_LIB) $(INPROC_BENCH) $(OUT)/run.o
qemu-hooks: $(QEMU_HOOKS_LIB)

$(QEMU_HOOKS_DIR)/%.o: $(SRC)/qemu-hooks/%.c $(QEMU_HOOKS_HDRS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(QEMU_HOOKS_CFLAGS) $(CAPSTONE_CFLAGS) -c $< -o $@

# pvlib again, position-independent, for the shared library
$(QEMU_HOOKS_DIR)/pvlib.o: $(SRC)/userspace/pvlib.c $(QEMU_HOOKS_HDRS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(QEMU_HOOKS_CFLAGS) -c $< -o $@

$(QEMU_HOOKS_LIB): $(QEMU_HOOKS_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(QEMU_HOOKS_CFLAGS) -shared -Wl,--no-undefined -Wl,-z,now \
		$^ $(CAPSTONE_LIBS) $(LIBBPF_LIBS) -ldl -lpthread -o $@

# fake "QEMU" exporting every function in g_detours (qemu-hooks/pviommu_qemu.c): functional
# test of the library's decisions (tests/vm/test_inproc.sh) and per-call microbenchmark
$(INPROC_BENCH): $(SRC)/tests/bench/bench_inproc.c $(QEMU_HOOKS_HDRS) $(PVLIB_OBJS) $(SRC)/tests/testlib.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(USER_CFLAGS) -I$(SRC)/tests -I$(SRC)/qemu-hooks -rdynamic \
		$< $(PVLIB_OBJS) $(LIBBPF_LIBS) -ldl -o $@

bench-inproc: $(INPROC_BENCH) $(QEMU_HOOKS_LIB) $(PVIOMMUCTL) host-setup
	$(Q)export PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-bench-$$$$; \
	$(PVIOMMUCTL) load >/dev/null && $(INPROC_BENCH) $(QEMU_HOOKS_LIB) --bench; \
	rc=$$?; $(PVIOMMUCTL) unload --force >/dev/null; exit $$rc
