# userspace: pvlib (shared helpers), pviommuctl

all: $(PVIOMMUCTL)

$(OUT)/%.o: $(SRC)/userspace/%.c $(BPF_SKELS) $(BPF_HDRS) $(wildcard $(SRC)/userspace/*.h)
	$(call msg,CC,$@)
	$(Q)$(CC) $(USER_CFLAGS) -c $< -o $@

# pviommuctl: one file per subject (userspace/pviommuctl.h lists them)
PVIOMMUCTL_OBJS	:= $(addprefix $(OUT)/,pviommuctl.o common.o pins.o load.o uprobe.o show.o \
			stats.o events.o domain.o)

$(PVIOMMUCTL): $(PVIOMMUCTL_OBJS) $(PVLIB_OBJS) $(PVIOMMUCTL_EXTRA_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(USER_CFLAGS) $^ $(LIBBPF_LIBS) -lelf -o $@

# pviommuctl --version: VERSION (one line) and the ABI of bpf/pviommu.h
$(OUT)/pviommuctl.o: USER_CFLAGS += -DPVIOMMU_VERSION='"$(PVIOMMU_VERSION)"'
$(OUT)/pviommuctl.o: $(SRC)/VERSION

# make install [DESTDIR=dir] [PREFIX=/usr]: the host parts where a package puts them.
# pviommuctl finds the library in PREFIX/lib/pviommu relative to itself (userspace/run.c).
PREFIX		?= /usr
SYSTEMD_UNITDIR	?= /lib/systemd/system
SYSCONFDIR	?= /etc
.PHONY: install
install: all
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)install -D -m 0755 $(PVIOMMUCTL) $(DESTDIR)$(PREFIX)/sbin/pviommuctl
	$(Q)install -D -m 0644 $(QEMU_HOOKS_LIB) $(DESTDIR)$(PREFIX)/lib/pviommu/libpviommu-qemu.so
	$(Q)install -D -m 0644 $(SRC)/man/pviommuctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/pviommuctl.8
	$(Q)install -D -m 0644 $(SRC)/man/pviommu.4 $(DESTDIR)$(PREFIX)/share/man/man4/pviommu.4
	$(Q)install -D -m 0644 $(SRC)/scripts/pviommuctl.bash-completion \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/pviommuctl
	$(Q)sed 's|/usr/sbin/pviommuctl|$(PREFIX)/sbin/pviommuctl|g' $(SRC)/packaging/libvirt/pviommu-hook \
		>$(OUT)/pviommu-hook
	$(Q)install -D -m 0755 $(OUT)/pviommu-hook $(DESTDIR)$(SYSCONFDIR)/libvirt/hooks/qemu.d/pviommu
	$(Q)sed 's|/usr/lib/pviommu/|$(PREFIX)/lib/pviommu/|g' $(SRC)/packaging/libvirt/domain-snippet.xml \
		>$(OUT)/libvirt-domain-snippet.xml
	$(Q)install -D -m 0644 $(OUT)/libvirt-domain-snippet.xml \
		$(DESTDIR)$(PREFIX)/share/pviommu/libvirt-domain-snippet.xml
	$(Q)for u in $(SRC)/packaging/systemd/*.service; do \
		sed 's|/usr/sbin/pviommuctl|$(PREFIX)/sbin/pviommuctl|g' $$u >$(OUT)/$$(basename $$u) && \
		install -D -m 0644 $(OUT)/$$(basename $$u) $(DESTDIR)$(SYSTEMD_UNITDIR)/$$(basename $$u) || exit 1; \
	done

# make deb: pviommu (host) and pviommu-dkms (guest module source) with Debian's own tooling
# (debhelper, dh-dkms: scripts/install-deps.sh --deb), from a copy of the tree in $(OUT)/deb
DEB_DIR	:= $(OUT)/deb/pviommu-$(PVIOMMU_VERSION)
.PHONY: deb
deb:
	$(Q)$(SRC)/scripts/install-deps.sh --deb
	$(call msg,DEB,$(DEB_DIR))
	$(Q)rm -rf $(OUT)/deb && mkdir -p $(DEB_DIR)
	$(Q)tar -C $(SRC) --exclude=./build --exclude=./.git --exclude='./$(notdir $(OUT))' -cf - . | \
		tar -C $(DEB_DIR) -xf -
	$(Q)cp -r $(SRC)/packaging/debian $(DEB_DIR)/debian
	$(Q)cd $(DEB_DIR) && dpkg-buildpackage -b -us -uc >$(OUT)/deb/build.log 2>&1 || \
		{ tail -n 30 $(OUT)/deb/build.log >&2; exit 1; }
	$(Q)ls $(OUT)/deb/*.deb
