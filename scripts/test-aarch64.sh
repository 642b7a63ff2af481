#!/usr/bin/env bash
# Runs the kernels crate's unit tests and the lowering pass tests (which run the backend) for aarch64 (the NEON level) on an x86_64 machine:
# cross-compiled for aarch64-unknown-linux-musl with `zig cc` as the linker, run under QEMU user
# mode. Not part of CI (it needs the tools below); run it after changing the SIMD kernels.
#
# Needs:
#   rustup target add aarch64-unknown-linux-musl
#   zig on PATH, or ZIG=/path/to/zig      (e.g. `pip install ziglang`, then python -m ziglang)
#   qemu-aarch64-static on PATH, or QEMU=/path/to/qemu-aarch64-static   (Debian: qemu-user-static)
#
# Usage: scripts/test-aarch64.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

zig=${ZIG:-$(command -v zig || true)}
qemu=${QEMU:-$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)}
if [[ -z "$zig" || -z "$qemu" ]]; then
  echo "needs zig (ZIG=…) and qemu-aarch64-static (QEMU=…); see the comment at the top" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# zig cc as C compiler and linker for aarch64 musl (dropping the --target cc-rs passes).
cat >"$work/cc" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do [[ "\$a" == --target=* ]] || args+=("\$a"); done
exec "$zig" cc -target aarch64-linux-musl "\${args[@]}"
WRAP
printf '#!/bin/sh\nexec "%s" ar "$@"\n' "$zig" >"$work/ar"
chmod +x "$work/cc" "$work/ar"

export CC_aarch64_unknown_linux_musl="$work/cc"
export AR_aarch64_unknown_linux_musl="$work/ar"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER="$work/cc"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=no"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER="$qemu"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/aarch64}

cargo test --target aarch64-unknown-linux-musl -p ferrite-kernels --lib -p ferrite-lower --test passes "$@"
