# userspace: pvlib (shared helpers), pviommuctl

all: $(PVIOMMUCTL)

$(OUT)/%.o: $(SRC)/userspace/%.c $(BPF_SKELS) $(BPF_HDRS) $(wildcard $(SRC)/userspace/*.h)
	$(call msg,CC,$@)
	$(Q)$(CC) $(USER_CFLAGS) -c $< -o $@

$(PVIOMMUCTL): $(OUT)/pviommuctl.o $(PVLIB_OBJS) $(PVIOMMUCTL_EXTRA_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(USER_CFLAGS) $^ $(LIBBPF_LIBS) -lelf -o $@

# pviommuctl --version: VERSION (one line) and the ABI of bpf/pviommu.h
PVIOMMU_VERSION	:= $(shell cat $(SRC)/VERSION)
$(OUT)/pviommuctl.o: USER_CFLAGS += -DPVIOMMU_VERSION='"$(PVIOMMU_VERSION)"'
$(OUT)/pviommuctl.o: $(SRC)/VERSION
