#!/usr/bin/env bash
# Miri (nightly) over the code that reads untrusted bytes and the kernels' unsafe leaves:
#   scripts/miri.sh            the program crate's tests that read real fixtures and damaged ones,
#                              then the kernels' unsafe leaves at the portable level and again with
#                              AVX2+FMA enabled (Miri interprets the intrinsics)
#   scripts/miri.sh FILTER     only kernel tests whose name contains FILTER
# Any undefined behaviour (out-of-bounds or misaligned access, use of uninitialised memory,
# invalid values, data races) fails the run. Slow: minutes; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add --toolchain nightly miri rust-src
fi
# proptest keeps failures in files (isolation off); a few cases each, as Miri runs ~1000x slower.
# Tree Borrows: rayon's crossbeam-epoch breaks the older Stacked Borrows rules (a known
# false positive there, not in Ferrite); its integer-to-pointer casts are allowed likewise, and
# its global pool's threads outliving the test (ignore-leaks).
export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-tree-borrows -Zmiri-permissive-provenance -Zmiri-ignore-leaks ${MIRIFLAGS:-}"
export PROPTEST_CASES=${PROPTEST_CASES:-3}
# Miri's own target directory, apart from the normal build.
export CARGO_TARGET_DIR=target/miri
if [[ -z $filter ]]; then
  echo "== miri: ferrite-program (FlatBuffer access, verification, segments)"
  cargo +nightly miri test -p ferrite-program --lib
  cargo +nightly miri test -p ferrite-program --test malformed -- extreme_fields header_fields not_a_program delegate_segment
  cargo +nightly miri test -p ferrite-program --test fixtures -- constants_are_borrowed modified_program_round_trips
fi
# The kernels' tests that drive the unsafe leaves (GEMM tiles, row kernels, int8 micro-kernels,
# the small-matrix product) on small shapes; Level::available() is what Miri reports, so the
# second run covers the AVX2 leaves. (The larger every-level sweeps, conv and dense, take hours
# under Miri: `scripts/miri.sh convolutions_match` runs one anyway.)
kernels=(gemm_matches_reference column_split_gemm clamp_keeps_nan bad_bounds_are_errors
  binary_matches_scalar max_and_min_propagate sums_over_an_axis pooling_rows_match
  a_window_far_larger dense_tiles_agree add_is_executorchs bad_arguments_are_errors
  dynamic_dense_quantizes matmul::)
[[ -n $filter ]] && kernels=("$filter")
echo "== miri: ferrite-kernels, portable level (${kernels[*]})"
cargo +nightly miri test -p ferrite-kernels --lib -- "${kernels[@]}"
echo "== miri: ferrite-kernels, AVX2 + FMA (${kernels[*]})"
RUSTFLAGS="-Ctarget-feature=+avx2,+fma,+f16c ${RUSTFLAGS:-}" CARGO_TARGET_DIR=target/miri-avx2 \
  cargo +nightly miri test -p ferrite-kernels --lib -- "${kernels[@]}"
echo "== miri: no undefined behaviour found"
