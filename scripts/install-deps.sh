#!/usr/bin/env bash
# Installs what building and testing matchlock needs beyond what the engines need at run time
# (those come with `matchlock setup`, which scripts/setup.sh runs after the build), then the npm
# packages. Idempotent: apt runs only when something is missing. Needs root (apt-get) for that.
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc, libc6-dev, make: the static guest binaries. busybox-static, mmdebstrap: the test images.
# docker-registry, apache2-utils, openssl, zstd: the registry pull tests. procps (ps), perl: tests.
bash scripts/apt-ensure.sh gcc libc6-dev make busybox-static mmdebstrap docker-registry apache2-utils openssl zstd procps perl

echo "==> npm ci"
npm ci --no-audit --no-fund --loglevel=error
