#!/usr/bin/env bash
# Builds the static guest binaries (the agent, the micro-VM init) and records them in
# guest/manifest.json, which every engine checks them against before it serves
# (src/cli/guest-binaries.ts). Part of `npm run build`, and so of `prepack`: the npm package
# carries these prebuilt binaries. Needs the TypeScript build (dist/) first.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C guest/agent
make -s -C guest/microvm
node --input-type=module -e 'await (await import("./dist/src/cli/guest-binaries.js")).writeGuestManifest()'
