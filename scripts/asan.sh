#!/usr/bin/env bash
# AddressSanitizer (nightly) over the kernels' property tests at the machine's SIMD levels, and
# the runtime's and C ABI's unit tests (every unsafe leaf: SIMD loads and stores, the C
# boundary). Out-of-bounds reads or writes, use after free and leaks fail the run:
#   scripts/asan.sh [PROPTEST_CASES]      (default 256 cases per property)
# Not part of CI (an instrumented standard library takes minutes to build).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup component list --toolchain nightly --installed | grep -q rust-src; then
  rustup component add --toolchain nightly rust-src
fi
export PROPTEST_CASES=${1:-256}
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=address"
# A refused huge allocation must come back as a failure (Rust's try_reserve), as from the
# system allocator, not stop the process.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export CARGO_TARGET_DIR=target/asan
# An explicit --target keeps build scripts and proc macros uninstrumented; -Zbuild-std
# instruments the standard library too, so its containers' accesses are checked.
target=$(rustc +nightly -vV | sed -n 's/^host: //p')
for crate in ferrite-kernels ferrite-runtime ferrite-capi; do
  echo "== asan: $crate"
  cargo +nightly test -Zbuild-std --target "$target" -p "$crate" --lib --tests
done
echo "== asan: no findings"
