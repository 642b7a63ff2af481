#!/usr/bin/env bash
# Builds Ferrite's C ABI and installs it as a CMake package:
#   scripts/install-capi.sh PREFIX [PROFILE]     (PROFILE: dev, release (default), release-small)
# PREFIX/include/ferrite.h, PREFIX/lib/libferrite.{so,a}, PREFIX/lib/libferrite_delegate.a (the
# ABI without the `portable` feature: Ferrite's delegates and fully delegated programs only, what
# the ExecuTorch plugin links), PREFIX/lib/cmake/ferrite/.
# Then find_package(ferrite) with CMAKE_PREFIX_PATH=PREFIX gives ferrite::runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:?usage: scripts/install-capi.sh PREFIX [PROFILE]}
profile=${2:-release}
dir=target/$([[ $profile == dev ]] && echo debug || echo "$profile")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
mkdir -p "$prefix/include" "$prefix/lib/cmake/ferrite"
cp capi/include/ferrite.h "$prefix/include/"
# Copy to a temporary name, then rename: a process using the installed library keeps its copy.
install_lib() {
  cp "$dir/$1" "$prefix/lib/.$2.tmp"
  mv -f "$prefix/lib/.$2.tmp" "$prefix/lib/$2"
}
# The delegate-only library first: both builds write target/PROFILE/libferrite_capi.*.
cargo build --locked --quiet -p ferrite-capi --no-default-features --profile "$profile"
install_lib libferrite_capi.a libferrite_delegate.a
if [[ $profile == dev ]]; then
  # With the workspace's features unified as for the tests and examples, so that after
  # `cargo test --workspace` (as in CI) nothing is compiled again.
  cargo build --locked --quiet --workspace --lib --examples
else
  cargo build --locked --quiet -p ferrite-capi --profile "$profile"
fi
install_lib libferrite_capi.so libferrite.so
install_lib libferrite_capi.a libferrite.a
cp capi/cmake/ferrite-config.cmake "$prefix/lib/cmake/ferrite/"
sed "s/@VERSION@/$version/" capi/cmake/ferrite-config-version.cmake.in > "$prefix/lib/cmake/ferrite/ferrite-config-version.cmake"
echo "installed Ferrite $version ($profile) to $prefix"
