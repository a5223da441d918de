#!/usr/bin/env bash
# Imports the locally built images (scripts/build-test-images.sh) into the matchlock image store
# ($MATCHLOCK_HOME or ~/.matchlock), under the names the README examples use.
set -euo pipefail
cd "$(dirname "$0")/.."
images="${MATCHLOCK_TEST_IMAGES:-$HOME/.cache/matchlock/test-images}"
node dist/src/cli/main.js image import local/busybox:latest "$images/busybox.tar"
node dist/src/cli/main.js image import local/python:3.11 "$images/python.tar"
