#!/usr/bin/env bash
# Miri (nightly) over the code that reads untrusted bytes and the kernels' unsafe leaves:
#   scripts/miri.sh            the program crate's unit tests, then the kernels' at the portable
#                              level and again with AVX2+FMA enabled (Miri interprets the intrinsics)
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
export MIRIFLAGS="-Zmiri-disable-isolation ${MIRIFLAGS:-}"
export PROPTEST_CASES=${PROPTEST_CASES:-3}
# Miri's own target directory, apart from the normal build.
export CARGO_TARGET_DIR=target/miri
if [[ -z $filter ]]; then
  echo "== miri: ferrite-program (FlatBuffer access, verification, segments)"
  cargo +nightly miri test -p ferrite-program --lib
fi
# The kernels' tests that check every SIMD level against references; Level::available() is what
# Miri reports, so the second run covers the AVX2 leaves.
kernels=(simd:: int8:: quantized:: conv:: pool:: dense:: nhwc::)
[[ -n $filter ]] && kernels=("$filter")
echo "== miri: ferrite-kernels, portable level (${kernels[*]})"
cargo +nightly miri test -p ferrite-kernels --lib -- "${kernels[@]}"
echo "== miri: ferrite-kernels, AVX2 + FMA (${kernels[*]})"
RUSTFLAGS="-Ctarget-feature=+avx2,+fma,+f16c ${RUSTFLAGS:-}" CARGO_TARGET_DIR=target/miri-avx2 \
  cargo +nightly miri test -p ferrite-kernels --lib -- "${kernels[@]}"
echo "== miri: no undefined behaviour found"
