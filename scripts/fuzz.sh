#!/usr/bin/env bash
# Fuzzes one input surface with cargo-fuzz (libFuzzer + AddressSanitizer, nightly toolchain):
#   scripts/fuzz.sh TARGET SECONDS [JOBS]
#   scripts/fuzz.sh all SECONDS          every target in turn (CI runs this briefly)
# Targets (fuzz/fuzz_targets/): program_load, blob_init, lower, method_inputs, npy_read, calibration.
# Corpora live in target/fuzz/corpus/TARGET, seeded from the fixtures; crashes are written to
# target/fuzz/artifacts/TARGET/<run's time> and fail the run (add each to fuzz/regressions/TARGET
# once fixed: those run first, every time). Installs cargo-fuzz from crates.io if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS [JOBS]}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS [JOBS]}
jobs=${3:-1}
# libFuzzer's -jobs runs children that log to fuzz-N.log: only for more than one job.
parallel=$([[ $jobs -gt 1 ]] && echo 1 || true)
all=(program_load blob_init lower method_inputs npy_read calibration)
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked --quiet
fi
root=$PWD/target/fuzz
stamp=$(date +%Y%m%d-%H%M%S)
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
  local artifacts=$root/artifacts/$t/$stamp
  mkdir -p "$root/corpus/$t" "$artifacts"
  local seeds
  seeds=$(seed "$t")
  if [[ $t == npy_read || $t == calibration ]] && [[ -z $(ls "$root/corpus/$t") ]]; then
    for f in tests/fixtures/*/*.npy; do
      cp "$f" "$root/corpus/$t/$(basename "$(dirname "$f")")-$(basename "$f")"
    done
  fi
  # Inputs that once failed (fuzz/regressions/TARGET) run first, once each.
  if [[ -d fuzz/regressions/$t ]]; then
    local log=$root/artifacts/$t/$stamp-regressions.log
    if ! (cd fuzz && cargo +nightly fuzz run "$t" "$PWD/regressions/$t"/* -- -timeout=30 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" >"$log" 2>&1); then
      grep -E "^(Running|==[0-9]+==ERROR|SUMMARY|thread .* panicked)" "$log" >&2 || true
      echo "FAILED: $t: a regression input fails again (log: $log)" >&2
      return 1
    fi
    echo "== fuzz $t: $(grep -c "^Executed" "$log") regression input(s) pass"
  fi
  echo "== fuzz $t for ${seconds}s"
  local log=$root/artifacts/$t/$stamp.log status=0
  (cd fuzz && cargo +nightly fuzz run "$t" "$root/corpus/$t" ${seeds:+"$seeds"} -- \
    -max_total_time="$seconds" -dict=dict/pte.dict -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$artifacts/" ${parallel:+"-jobs=$jobs" "-workers=$jobs"} -print_final_stats=1 \
    >"$log" 2>&1) || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+==ERROR|SUMMARY|Done)" "$log" || true
  if [[ -n $(ls "$artifacts") ]]; then
    echo "FAILED: $t found crashes: $(ls "$artifacts") (in $artifacts; log: $log)" >&2
    return 1
  fi
  if [[ $status -ne 0 ]]; then # a build failure, or libFuzzer stopping without an artifact
    tail -20 "$log" >&2
    echo "FAILED: $t: cargo fuzz exited with status $status (log: $log)" >&2
    return 1
  fi
}
if [[ $target == all ]]; then
  for t in "${all[@]}"; do run "$t"; done
else
  run "$target"
fi
