#!/usr/bin/env bash
# Set up ocirun (Debian packages, .venv, the package), build a busybox bundle
# and run a container from it; prints what the container printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
bundle=${1:-/tmp/ocirun-demo}
rm -rf "$bundle"
PATH="$PWD/.venv/bin:$PATH" bash examples/make-bundle.sh "$bundle" \
  sh -c 'echo "hello from $(hostname): pid $$, uid $(id -u), in $(pwd)"; cat /proc/self/status | grep -E "^(CapEff|NoNewPrivs)"'
exec .venv/bin/ocirun --root /run/ocirun run --bundle "$bundle" "demo-$$"
