#!/usr/bin/env bash
# Soak: shared programs run by several threads for MINUTES (default 10), every output checked
# bit for bit against a single-threaded run and resident memory checked flat after warm-up
# (tests/soak.rs; CI runs the same test for a few seconds):
#   scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
FERRITE_SOAK_SECS=$((minutes * 60)) cargo test --release --locked -p ferrite --test soak -- --nocapture
