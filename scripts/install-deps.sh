#!/bin/sh
# install the Debian packages pviommu needs; idempotent, quiet when nothing is missing
set -eu
# --bench: also what the benchmarks' plots need; --deb: what 'make deb' needs

GUEST_KABI=$(sed -n "s/^GUEST_KABI *:= *//p" "$(dirname "$0")/../mk/guest.mk")

PKGS="clang llvm libclang-rt-14-dev libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make gcc
      qemu-system-x86 busybox-static kmod libcapstone-dev jq python3 binutils
      python3-prometheus-client man-db groff-base dkms
      linux-headers-${GUEST_KABI}-amd64"
[ "${1:-}" = --bench ] && PKGS="$PKGS gnuplot-nox"
[ "${1:-}" = --deb ] && PKGS="$PKGS debhelper dh-dkms dpkg-dev"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing; run as root (or: sudo $0)" >&2
	exit 2
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
