#!/usr/bin/env bash
# Runs every crate's examples with the arguments each needs, as CI does (`.ci/run`). Fails if an
# example fails, or if an example file is not listed here.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One build of every example, with the workspace's features unified as for the tests (building
# them one package at a time recompiled the shared crates with each package's features).
cargo build --locked --quiet --workspace --examples
ran=()
run() {
  local pkg=$1 example=$2
  shift 2
  echo "== $pkg: example $example $*"
  "target/debug/examples/$example" "$@"
  ran+=("$example")
}

run ferrite-program inspect_program tests/fixtures/mlp/portable.pte
run ferrite-program rewrite_program tests/fixtures/mlp/portable.pte "$tmp/mlp.pte"
run ferrite-op-support check_node tests/fixtures/mlp_dynamic/portable.pte
run ferrite-partitioner partition_report tests/fixtures/tiny_gpt/portable.pte
run ferrite-kernels simd_levels
run ferrite-kernels int8_dense
run ferrite-blob blob_roundtrip
run ferrite-lower lower_program tests/fixtures/digits_cnn/portable.pte
run ferrite-quantizer quantize_program tests/fixtures/digits_cnn/portable.pte tests/fixtures/digits_cnn/calibration.npy "$tmp/digits_q8.pte"
run ferrite-troubleshooting profile_program tests/fixtures/digits_cnn/portable.pte "$tmp/trace.json"
run ferrite-troubleshooting debug_numerics tests/fixtures/tiny_transformer/portable.pte
run ferrite-runtime run_program tests/fixtures/mlp/portable.pte
run ferrite-runtime serve_threads tests/fixtures/digits_cnn/portable.pte 2
run ferrite lower_and_run tests/fixtures/digits_cnn/portable.pte

missing=0
for file in */examples/*.rs examples/*.rs; do
  name=$(basename "$file" .rs)
  if [[ ! " ${ran[*]} " == *" $name "* ]]; then
    echo "example $file is not run by scripts/run-examples.sh" >&2
    missing=1
  fi
done
exit $missing
