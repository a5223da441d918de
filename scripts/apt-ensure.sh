#!/usr/bin/env bash
# The one place matchlock installs system packages: installs those of the named Debian/Ubuntu
# packages that are not installed yet (apt-get, without recommends), and does nothing when all
# are. Used by `matchlock setup` (what the engines need at run time), scripts/install-deps.sh
# and scripts/build-test-images.sh (what building and testing matchlock needs).
# Usage: apt-ensure.sh [--missing] PKG...   (--missing: only print the missing ones, one line)
set -euo pipefail

list_only=0
[[ "${1:-}" == "--missing" ]] && { list_only=1; shift; }
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "apt-ensure: this is not a Debian/Ubuntu system (no dpkg-query/apt-get): install the equivalents of $* yourself" >&2
  exit 1
fi
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((list_only)); then
  echo "${missing[*]}"
  exit 0
fi
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "apt-ensure: installing ${missing[*]} needs root (apt-get): re-run as root or with sudo" >&2
  exit 1
fi
echo "==> apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
