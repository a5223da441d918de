#!/usr/bin/env bash
# Bundles the engine (`matchlock rpc`, compiled by tsc into dist/src) into a few files under
# dist/bundle/rpc/, which dist/src/cli/main.js loads for `matchlock rpc`. Resolving and
# compiling ~150 small modules (zod alone is ~95) took a third of a sandbox's cold start.
# - zod and our own code are bundled; the CommonJS packages stay in node_modules (they are
#   loaded lazily, only for pulls and network interception);
# - --splitting keeps those lazy imports lazy;
# - the banner gives the ESM bundle a `require`, so that a CommonJS package that does get bundled
#   (a new dependency not listed below) can still load Node's built-in modules;
# - the output sits as deep as dist/src/engine/ because src/engine/paths.ts finds the package
#   root three directories above its own file.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist/bundle/rpc
exec node_modules/.bin/esbuild dist/src/cli/rpc.js --bundle --splitting --format=esm --platform=node --target=node20 \
  --outdir=dist/bundle/rpc --log-level=warning \
  '--banner:js=import { createRequire as __matchlockRequire } from "node:module"; const require = __matchlockRequire(import.meta.url);' \
  --external:commander --external:undici --external:tar --external:@peculiar/x509 --external:reflect-metadata --external:dns-packet
