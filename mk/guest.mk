# the guest kernel: pinned in this one place (Debian bookworm ABI)
GUEST_KABI := 6.1.0-56
# another guest kernel the DKMS package must serve (tests/test_dkms.sh builds, installs, boots it
# with its image from build/guest-alt and runs the module's tests).
# Does not build: bookworm-backports' 6.12 (MAX_ORDER, dma_map_ops.flags and .alloc_pages changed)
GUEST_KABI_ALT := 6.1.0-57
GUEST_KREL := $(GUEST_KABI)-amd64
GUEST_KHDR ?= /usr/src/linux-headers-$(GUEST_KREL)
