#!/usr/bin/env bash
# Fetches the micro-VM guest kernel: Debian's linux-image-amd64 (bookworm), downloaded with
# `apt-get download` and unpacked with `dpkg-deb -x` into matchlock's cache. Nothing is
# installed and the host's boot loader is never touched.
#
# Result, keyed by the .deb's sha256:
#   $CACHE/microvm/kernel-<sha>/vmlinux        uncompressed PVH kernel (QEMU boots it directly,
#                                             skipping the bzImage decompressor: ~3 s under TCG)
#   $CACHE/microvm/kernel-<sha>/modules/       the unpacked lib/modules/<release> tree + modules.dep
#   $CACHE/microvm/kernel-<sha>/release        the kernel release, e.g. 6.1.0-56-amd64
#   $CACHE/microvm/kernel-<sha>/config         its build config (the engine checks an option in it)
#   $CACHE/microvm/kernel -> kernel-<sha>      what the engine uses
# Idempotent: does nothing when the link already points at a complete kernel.
set -euo pipefail

cache="${MATCHLOCK_CACHE:-$HOME/.cache/matchlock}/microvm"
link="$cache/kernel"
if [[ -f "$link/vmlinux" && -f "$link/modules/modules.dep" && -f "$link/config" && -z "${MATCHLOCK_REFETCH_KERNEL:-}" ]]; then
  echo "guest kernel: $(cat "$link/release") (cached)"
  exit 0
fi
for tool in apt-get apt-cache dpkg-deb depmod python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch-guest-kernel: $tool is required" >&2; exit 1; }
done

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch-XXXXXX")
chmod 755 "$work" # apt-get download drops to the _apt user, which must be able to write here
trap 'rm -rf "$work"' EXIT

# linux-image-amd64 is a meta package: its Depends names the versioned image package.
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(kernel_pkg)
if [[ -z "$pkg" && $(id -u) -eq 0 ]]; then
  apt-get update -qq
  pkg=$(kernel_pkg)
fi
if [[ -z "$pkg" ]]; then
  echo "fetch-guest-kernel: apt knows no linux-image-amd64; run apt-get update" >&2
  exit 1
fi
echo "==> apt-get download $pkg"
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
deb=$(ls "$work"/*.deb)
sha=$(sha256sum "$deb" | cut -c1-16)
dest="$cache/kernel-$sha"

if [[ ! -f "$dest/vmlinux" || ! -f "$dest/config" ]]; then
  dpkg-deb -x "$deb" "$work/root"
  release=$(ls "$work/root/lib/modules")
  # The .deb ships no modules.dep; depmod -b generates it inside the unpacked tree.
  depmod -b "$work/root" "$release"
  mkdir -p "$work/out"
  # Keep only the module tree the initramfs can draw from (the rest of the package is
  # firmware-less docs and the compressed image we replace with the vmlinux below).
  mv "$work/root/lib/modules/$release" "$work/out/modules"
  echo "$release" > "$work/out/release"
  cp "$work/root/boot/config-$release" "$work/out/config"
  # The bzImage's payload is one XZ stream; decompressing it gives the ELF vmlinux, which
  # carries the PVH entry note QEMU's -kernel uses.
  python3 - "$work/root/boot/vmlinuz-$release" "$work/out/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("no XZ payload in " + sys.argv[1])
elf = lzma.LZMADecompressor().decompress(data[start:])
if elf[:4] != b"\x7fELF":
    sys.exit("the XZ payload is not an ELF kernel")
open(sys.argv[2], "wb").write(elf)
PY
  rm -rf "$dest"
  mv "$work/out" "$dest"
fi
ln -sfn "kernel-$sha" "$cache/.kernel-new"
mv -T "$cache/.kernel-new" "$link"
echo "guest kernel: $(cat "$dest/release") in $dest"
