#!/usr/bin/env bash
# Installs what matchlock needs from Debian (bookworm) and npm. Idempotent: apt runs only when
# something is missing. Needs root (apt-get); says so otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-x86, cpio, kmod (depmod), python3 (vmlinux extraction), util-linux (setpriv),
# binutils (objcopy slims the guest's kernel modules), squashfs-tools (root images): the micro-VM engine. qemu-system-x86 is installed without recommends (they pull a GUI stack).
# iproute2, nftables: the network seal. docker-registry, apache2-utils, openssl, zstd: the registry pull tests.
# procps (ps) and perl: used by the tests.
packages=(runsc busybox-static mmdebstrap e2fsprogs gcc libc6-dev make ca-certificates
  qemu-system-x86 cpio kmod python3 util-linux iproute2 nftables docker-registry apache2-utils openssl
  zstd procps perl binutils squashfs-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "matchlock setup: installing ${missing[*]} needs root (apt-get); re-run as root or with sudo" >&2
    exit 1
  fi
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> npm ci"
npm ci --no-audit --no-fund --loglevel=error
