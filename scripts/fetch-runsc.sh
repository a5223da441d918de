#!/usr/bin/env bash
# Fetches a current gVisor runsc (one with the systrap platform) into matchlock's cache, as
# fetch-guest-kernel.sh does the guest kernel: Debian's backports build, downloaded with a
# private apt configuration (its own sources file, lists and package cache under the cache
# directory) and unpacked with `dpkg-deb -x`. The host's apt sources, lists and installed
# packages are never changed: the host's own runsc stays as it is.
#
# Result, keyed by the .deb's sha256:
#   $CACHE/gvisor/runsc-<sha>/runsc      the binary
#   $CACHE/gvisor/runsc-<sha>/version    what `runsc --version` says
#   $CACHE/gvisor/runsc -> runsc-<sha>   what the engine uses (before the runsc on PATH)
# Idempotent: does nothing when the link already points at a runsc. MATCHLOCK_REFETCH_RUNSC=1
# fetches again. On a host whose apt has no Debian backports for its release, it says so and
# leaves the engine on the host's runsc.
set -euo pipefail

cache="${MATCHLOCK_CACHE:-$HOME/.cache/matchlock}/gvisor"
link="$cache/runsc"
if [[ -x "$link/runsc" && -z "${MATCHLOCK_REFETCH_RUNSC:-}" ]]; then
  echo "runsc: $(cat "$link/version") (cached)"
  exit 0
fi
for tool in apt-get dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch-runsc: $tool is required" >&2; exit 1; }
done
# shellcheck disable=SC1091
. /etc/os-release
if [[ "${ID:-}" != "debian" || -z "${VERSION_CODENAME:-}" ]]; then
  echo "fetch-runsc: not Debian (${PRETTY_NAME:-unknown}): keeping the host's runsc"
  exit 0
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$keyring" ]] || { echo "fetch-runsc: $keyring is missing (package debian-archive-keyring)" >&2; exit 1; }

suite="$VERSION_CODENAME-backports"
mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/dl"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian $suite main" > "$work/sources.list"
# Only this run's files: no host sources, no host lists, no host package cache.
apt_private=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work" -o "Dir::Cache::archives=$work/archives"
  -o "APT::Get::List-Cleanup=0"
  # The cache may sit in a home _apt cannot enter: download as the user running this.
  -o "APT::Sandbox::User=$(id -un)")

echo "==> apt-get update ($suite, private lists)"
apt-get "${apt_private[@]}" update -qq
echo "==> apt-get download runsc/$suite"
(cd "$work/dl" && apt-get "${apt_private[@]}" download -q "runsc/$suite" >/dev/null)
deb=$(ls "$work"/dl/*.deb)
sha=$(sha256sum "$deb" | cut -c1-16)
dest="$cache/runsc-$sha"

if [[ ! -x "$dest/runsc" ]]; then
  dpkg-deb -x "$deb" "$work/root"
  mkdir -p "$work/out"
  mv "$work/root/usr/bin/runsc" "$work/out/runsc"
  "$work/out/runsc" --version | head -1 > "$work/out/version"
  rm -rf "$dest"
  mv "$work/out" "$dest"
fi
ln -sfn "runsc-$sha" "$cache/.runsc-new"
mv -T "$cache/.runsc-new" "$link"
echo "runsc: $(cat "$dest/version") in $dest"
