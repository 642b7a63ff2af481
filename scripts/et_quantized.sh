#!/usr/bin/env bash
# Quantizes every float fixture with `ferrite quantize --emit qdq` (the schemes stock ExecuTorch
# has kernels for) and runs the results in stock ExecuTorch (pip runtime), comparing with
# Ferrite's portable run of the same file. Outside CI.
#
#   VENV=/path/to/venv scripts/et_quantized.sh [FIXTURES_DIR]
#
# The venv needs: pip install executorch==1.5.1 torch==2.14.1 numpy
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fixtures="${1:-$root/../shared/fixtures}"
venv="${VENV:-$root/../venv-et}"
cargo build --quiet --release -p ferrite-cli --manifest-path "$root/Cargo.toml"
target="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$root/scripts/et_quantized.py" "$target/release/ferrite" "$fixtures" "$work"
