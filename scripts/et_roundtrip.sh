#!/usr/bin/env bash
# Rewrites every fixture variant with Ferrite's ProgramWriter and runs the copies in stock
# ExecuTorch (pip runtime), comparing with the reference outputs. Outside CI.
#
#   VENV=/path/to/venv scripts/et_roundtrip.sh [FIXTURES_DIR]
#
# The venv needs: pip install executorch==1.5.1 torch==2.14.1 numpy
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fixtures="${1:-$root/../shared/fixtures}"
venv="${VENV:-$root/../venv-et}"
cargo build --quiet --release -p ferrite-program --example rewrite_program --manifest-path "$root/Cargo.toml"
target="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$root/scripts/et_roundtrip.py" "$target/release/examples/rewrite_program" "$fixtures" "$work"
