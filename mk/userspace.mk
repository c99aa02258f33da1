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

# make install [DESTDIR=dir] [PREFIX=/usr]: the host parts where a package puts them.
# pviommuctl finds the library in PREFIX/lib/pviommu relative to itself (userspace/run.c).
PREFIX		?= /usr
SYSTEMD_UNITDIR	?= /lib/systemd/system
.PHONY: install
install: all
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)install -D -m 0755 $(PVIOMMUCTL) $(DESTDIR)$(PREFIX)/sbin/pviommuctl
	$(Q)install -D -m 0644 $(QEMU_HOOKS_LIB) $(DESTDIR)$(PREFIX)/lib/pviommu/libpviommu-qemu.so
	$(Q)install -D -m 0644 $(SRC)/man/pviommuctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/pviommuctl.8
	$(Q)install -D -m 0644 $(SRC)/man/pviommu.4 $(DESTDIR)$(PREFIX)/share/man/man4/pviommu.4
	$(Q)install -D -m 0644 $(SRC)/scripts/pviommuctl.bash-completion \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/pviommuctl
	$(Q)for u in $(SRC)/packaging/systemd/*.service; do \
		sed 's|/usr/sbin/pviommuctl|$(PREFIX)/sbin/pviommuctl|g' $$u >$(OUT)/$$(basename $$u) && \
		install -D -m 0644 $(OUT)/$$(basename $$u) $(DESTDIR)$(SYSTEMD_UNITDIR)/$$(basename $$u) || exit 1; \
	done
