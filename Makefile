# pviommu - top-level build. Everything lands in $(O) (default ./build).
#   make            the host parts: BPF objects, skeletons, pviommuctl, libraries, test programs
#                   (no guest kernel headers needed)
#   make guest      the guest parts: pviommu.ko, the test modules, the test guest's kernel and
#                   initramfs (needs linux-headers of the guest kernel: make deps installs them)
#   make check      install missing packages, build, run every test
#   make demo       end-to-end run on the embedded default guest
#   make bench      benchmarks, ratios measured side by side in one run
#   make bench-peers  pviommu beside QEMU's intel-iommu and no IOMMU (build/bench/peers.*)
#   make fuzz       the hypercall fuzzer against its byte-level model, long (FUZZ_STEPS)
#   make install    the host parts under DESTDIR/PREFIX;  make deb: Debian packages
#   make clean      remove $(O)
#   V=1             show the commands
O		?= build
OUT		:= $(abspath $(O))
CLANG		?= clang
BPFTOOL		?= bpftool
CC		?= gcc
ARCH		:= $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
SRC		:= $(abspath .)

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(patsubst $(OUT)/%,%,$(2))";
endif

CFLAGS		?= -O2 -g
USER_CFLAGS	:= $(CFLAGS) -Wall -Wextra -Werror -Wno-unused-parameter \
		   -I$(OUT) -I$(SRC)/bpf -I$(SRC)/userspace
BPF_CFLAGS	:= -g -O2 -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) \
		   -I$(OUT) -I$(SRC)/bpf
LIBBPF_LIBS	:= $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf -lelf -lz)

.DELETE_ON_ERROR:
.PHONY: all deps check demo bench clean

all:

deps:
	$(Q)$(SRC)/scripts/install-deps.sh

# names every fragment may use, whatever the include order
PVLIB_OBJS	:= $(OUT)/pvlib.o $(OUT)/probe.o $(OUT)/json_writer.o
PVIOMMUCTL_EXTRA_OBJS := $(OUT)/qemu_elf.o
PVIOMMUCTL	:= $(OUT)/pviommuctl
# VERSION (one line): pviommuctl --version, the DKMS tree, the Debian packages
PVIOMMU_VERSION	:= $(shell cat $(SRC)/VERSION)

# Prerequisites expand when a rule is read: a fragment comes after every fragment whose names
# its rules use (tests/test_lifecycle.sh checks the targets that run tests against make -p).
MK_ORDER	:= guest vm bpf qemu-hooks userspace tests module attack check bench demo
include $(foreach m,$(MK_ORDER),$(SRC)/mk/$(m).mk)
ifneq ($(sort $(notdir $(wildcard $(SRC)/mk/*.mk))),$(sort $(addsuffix .mk,$(MK_ORDER))))
$(error mk/ holds fragments MK_ORDER does not list: $(notdir $(wildcard $(SRC)/mk/*.mk)))
endif

clean:
	$(call msg,CLEAN,$(OUT))
	$(Q)rm -rf $(OUT)
