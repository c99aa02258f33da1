# BPF objects: vmlinux.h -> %.bpf.o -> %.skel.h (libbpf-bootstrap chain)
BPF_SRCS	:= $(wildcard $(SRC)/bpf/*.bpf.c)
BPF_OBJS	:= $(patsubst $(SRC)/bpf/%.bpf.c,$(OUT)/%.bpf.o,$(BPF_SRCS))
BPF_SKELS	:= $(BPF_OBJS:.bpf.o=.skel.h)
BPF_HDRS	:= $(wildcard $(SRC)/bpf/*.h)

all: $(BPF_OBJS) $(BPF_SKELS)

$(OUT)/vmlinux.h:
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(OUT)
	$(Q)test -r /sys/kernel/btf/vmlinux || \
		{ echo "error: /sys/kernel/btf/vmlinux missing: the kernel needs CONFIG_DEBUG_INFO_BTF=y" >&2; exit 2; }
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUT)/%.bpf.o: $(SRC)/bpf/%.bpf.c $(OUT)/vmlinux.h $(BPF_HDRS)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(Q)$(BPFTOOL) gen object $@ $@.tmp && rm -f $@.tmp

$(OUT)/%.skel.h: $(OUT)/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@
