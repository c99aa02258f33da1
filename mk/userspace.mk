# userspace: pvlib (shared helpers), pviommuctl

all: $(PVIOMMUCTL)

$(OUT)/%.o: $(SRC)/userspace/%.c $(BPF_SKELS) $(BPF_HDRS) $(wildcard $(SRC)/userspace/*.h)
	$(call msg,CC,$@)
	$(Q)$(CC) $(USER_CFLAGS) -c $< -o $@

$(PVIOMMUCTL): $(OUT)/pviommuctl.o $(PVLIB_OBJS) $(PVIOMMUCTL_EXTRA_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(USER_CFLAGS) $^ $(LIBBPF_LIBS) -lelf -o $@
