#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running sandbox: system packages, npm packages,
# the build (TypeScript + the static guest agent), the local images, then the quick start.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "==> build"
npm run --silent build
echo "==> link the matchlock command onto PATH"
npm link --no-audit --no-fund --loglevel=error >/dev/null
echo "==> micro-VM guest kernel"
bash scripts/fetch-guest-kernel.sh
echo "==> images"
bash scripts/build-test-images.sh
bash scripts/import-images.sh
echo "==> quick start"
node dist/examples/quickstart.js
