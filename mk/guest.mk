# the guest kernel: pinned in this one place (Debian bookworm ABI)
GUEST_KABI := 6.1.0-56
GUEST_KREL := $(GUEST_KABI)-amd64
GUEST_KHDR ?= /usr/src/linux-headers-$(GUEST_KREL)
