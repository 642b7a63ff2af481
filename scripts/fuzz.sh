#!/usr/bin/env bash
# Fuzzes one input surface with cargo-fuzz (libFuzzer + AddressSanitizer, nightly toolchain):
#   scripts/fuzz.sh TARGET SECONDS [JOBS]
#   scripts/fuzz.sh all SECONDS          every target in turn (CI runs this briefly)
# Targets (fuzz/fuzz_targets/): program_load, blob_init, lower, method_inputs, npy_read.
# Corpora live in target/fuzz/corpus/TARGET, seeded from the fixtures; crashes are written to
# target/fuzz/artifacts/TARGET and fail the run. Installs cargo-fuzz from crates.io if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS [JOBS]}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS [JOBS]}
jobs=${3:-1}
# libFuzzer's -jobs runs children that log to fuzz-N.log: only for more than one job.
parallel=$([[ $jobs -gt 1 ]] && echo 1 || true)
all=(program_load blob_init lower method_inputs npy_read)
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked --quiet
fi
root=$PWD/target/fuzz
mkdir -p "$root/corpus" "$root/artifacts" "$root/seeds/programs"
for f in tests/fixtures/*/*.pte; do
  cp "$f" "$root/seeds/programs/$(basename "$(dirname "$f")")-$(basename "$f")"
done
# Blob seeds are committed (fuzz/seeds/blobs, written by the `seeds` tool in fuzz/src/seeds.rs).
seed() { # TARGET -> seed directory
  case $1 in
    program_load | lower) echo "$root/seeds/programs" ;;
    blob_init) echo "$PWD/fuzz/seeds/blobs" ;;
    *) echo "" ;;
  esac
}
run() {
  local t=$1
  mkdir -p "$root/corpus/$t" "$root/artifacts/$t"
  local seeds
  seeds=$(seed "$t")
  if [[ $t == npy_read && -z $(ls "$root/corpus/$t") ]]; then
    for f in tests/fixtures/*/*.npy; do
      cp "$f" "$root/corpus/$t/$(basename "$(dirname "$f")")-$(basename "$f")"
    done
  fi
  echo "== fuzz $t for ${seconds}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "$root/corpus/$t" ${seeds:+"$seeds"} -- \
    -max_total_time="$seconds" -dict=dict/pte.dict -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$root/artifacts/$t/" ${parallel:+"-jobs=$jobs" "-workers=$jobs"} -print_final_stats=1 2>&1) |
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+==ERROR|SUMMARY|Done)" || true
  if [[ -n $(ls "$root/artifacts/$t") ]]; then
    echo "FAILED: $t found crashes: $(ls "$root/artifacts/$t")" >&2
    return 1
  fi
}
if [[ $target == all ]]; then
  for t in "${all[@]}"; do run "$t"; done
else
  run "$target"
fi
