#!/bin/sh
# install the Debian packages pviommu needs; idempotent, quiet when nothing is missing
set -eu
# --bench: also what the benchmarks' plots need; --deb: what 'make deb' and its lintian check need;
# --libvirt: Debian's libvirt daemon and virsh (tests/test_libvirt.sh)

GUEST_KABI=$(sed -n "s/^GUEST_KABI *:= *//p" "$(dirname "$0")/../mk/guest.mk")
GUEST_KABI_ALT=$(sed -n "s/^GUEST_KABI_ALT *:= *//p" "$(dirname "$0")/../mk/guest.mk")

PKGS="clang llvm libclang-rt-14-dev libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make gcc
      qemu-system-x86 busybox-static kmod libcapstone-dev jq python3 binutils
      python3-prometheus-client man-db groff-base dkms
      linux-headers-${GUEST_KABI}-amd64 linux-headers-${GUEST_KABI_ALT}-amd64"
for a in "$@"; do
	case $a in
	--bench) PKGS="$PKGS gnuplot-nox" ;;
	--deb) PKGS="$PKGS debhelper dh-dkms dpkg-dev lintian" ;;
	--libvirt) PKGS="$PKGS libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients" ;;
	*) echo "install-deps: what is '$a'? (--bench, --deb, --libvirt)" >&2; exit 2 ;;
	esac
done

# libvirt's QEMU driver looks its default user and group up before it reads qemu.conf;
# libvirt-daemon-system creates them, the daemon package alone does not
libvirt_users() {
	case " $* " in *" --libvirt "*) ;; *) return 0 ;; esac
	getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
	getent passwd libvirt-qemu >/dev/null ||
		useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt \
			--shell /usr/sbin/nologin libvirt-qemu
}

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	[ "$(id -u)" = 0 ] && libvirt_users "$@"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing; run as root (or: sudo $0)" >&2
	exit 2
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
libvirt_users "$@"
