#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running sandbox: the build tools and npm
# packages, the build (TypeScript + the static guest binaries), what the engines need (the same
# `matchlock setup` a project that installed the package runs), the local images, then the quick start.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "==> build"
npm run --silent build
echo "==> matchlock setup"
node dist/src/cli/main.js setup
echo "==> link the matchlock command onto PATH"
npm link --no-audit --no-fund --loglevel=error >/dev/null
echo "==> images"
bash scripts/build-test-images.sh
bash scripts/import-images.sh
echo "==> quick start"
node dist/examples/quickstart.js
