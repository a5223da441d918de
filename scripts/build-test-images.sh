#!/usr/bin/env bash
# Builds the images the tests and examples use, as tarballs that `matchlock image import` takes:
#   busybox.tar  a tiny rootfs: Debian's static busybox + applet links + minimal /etc
#   python.tar   a Debian bookworm minbase rootfs with python3 (mmdebstrap)
# No Docker Hub here: everything comes from Debian's apt mirror. An image is rebuilt only when it
# is missing or its recipe (the build function + its inputs' versions) changed; the recipe hash
# is kept next to the tarball in <name>.tar.recipe.
# Usage: scripts/build-test-images.sh [--force]   (output dir: $MATCHLOCK_TEST_IMAGES)
set -euo pipefail

out="${MATCHLOCK_TEST_IMAGES:-$HOME/.cache/matchlock/test-images}"
mirror="${MATCHLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { echo "==> $*" >&2; }

pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# Reproducible tar of a directory: numeric root ownership kept as-is, sorted, fixed mtimes.
tar_dir() {
  tar --numeric-owner --sort=name --mtime=@0 --clamp-mtime -C "$1" -cf "$2" .
}

# A subshell function, so its EXIT trap cleans the scratch dir however it ends.
build_busybox() (
  local dest="$1" tmp rootfs bb
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  rootfs="$tmp/rootfs"
  # The static binary, whichever path the package ships it at.
  bb=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)
  install -d -m 0755 "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,var}
  install -d -m 1777 "$rootfs/tmp"
  install -d -m 0700 "$rootfs/root"
  install -m 0755 "$bb" "$rootfs/bin/busybox"
  # Same links as `busybox --install -s` run inside the rootfs (absolute symlinks to
  # /bin/busybox at each applet's full path), made without chroot so no root is needed.
  local applet
  while read -r applet; do
    [[ "$applet" == "bin/busybox" || -e "$rootfs/$applet" ]] || ln -s /bin/busybox "$rootfs/$applet"
  done < <("$rootfs/bin/busybox" --list-full)
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$rootfs/etc/group"
  printf '%s\n' '127.0.0.1 localhost' '::1 localhost ip6-localhost ip6-loopback' >"$rootfs/etc/hosts"
  chmod 0644 "$rootfs"/etc/{passwd,group,hosts}
  if [[ $(id -u) -eq 0 ]]; then chown -R 0:0 "$rootfs"; fi
  tar_dir "$rootfs" "$dest"
)

build_python() {
  local dest="$1"
  # minbase + python3, small: merged /usr set up by mmdebstrap's hook (the usrmerge package
  # would pull in perl), no recommends, no docs, man pages or translations.
  # mmdebstrap already drops apt's package lists and .deb cache.
  mmdebstrap --quiet --variant=minbase --include=python3 \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/cache/debconf/*-old' \
    "$suite" "$dest" "$mirror" >&2 # (its hooks chat on stdout, which carries our tarball paths)
}

# recipe_hash NAME INPUTS...: hash of the build function's text and the given inputs.
recipe_hash() {
  local name="$1"; shift
  { declare -f "build_$name" tar_dir; printf '%s\n' "$@"; } | sha256sum | cut -d' ' -f1
}

build() {
  local name="$1"; shift
  local tarball="$out/$name.tar" partial="$out/.$name.partial.tar" recipe start ms
  recipe=$(recipe_hash "$name" "$@")
  if ((!force)) && [[ -f "$tarball" && "$(cat "$tarball.recipe" 2>/dev/null)" == "$recipe" ]]; then
    log "$name: up to date ($tarball)"
    echo "$tarball"
    return
  fi
  log "$name: building"
  start=$(date +%s%N)
  rm -f "$partial" # (mmdebstrap picks the output format from the ".tar" extension)
  "build_$name" "$partial" # (not in an `if`: that would switch off set -e inside it)
  mv -f "$partial" "$tarball" # atomic: a half-built tarball is never at the final path
  echo "$recipe" >"$tarball.recipe"
  ms=$((($(date +%s%N) - start) / 1000000))
  log "$name: built in $((ms / 1000)).$(printf %03d $((ms % 1000)))s, $(du -h "$tarball" | cut -f1)"
  echo "$tarball"
}

bash "$(dirname "$0")/apt-ensure.sh" busybox-static mmdebstrap
mkdir -p "$out"
trap 'rm -f "$out"/.*.partial.tar' EXIT # a failed build leaves no half-written tarball
build busybox "busybox-static=$(pkg_version busybox-static)"
build python "mmdebstrap=$(pkg_version mmdebstrap)" "suite=$suite" "mirror=$mirror"
