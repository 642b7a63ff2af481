#!/usr/bin/env bash
# Stripped sizes of the C ABI library and the ExecuTorch plugin against ExecuTorch's own
# XNNPACK backend, and the plugin's speed on mobilenet_v2 (outside CI: it builds in release).
#   scripts/footprint.sh [PROFILE ...]     (default: release release-small)
# Prints a Markdown table; `--bless` as the first argument also writes the book's copy
# (book/src/generated/footprint.md). Needs what scripts/capi-check.sh installs into
# target/capi-check/venv (run that once first).
set -euo pipefail
cd "$(dirname "$0")/.."
bless=0
if [[ ${1:-} == --bless ]]; then bless=1; shift; fi
profiles=("$@")
[[ ${#profiles[@]} -gt 0 ]] || profiles=(release release-small)
venv=target/capi-check/venv
et=$(cd "$(ls -d "$venv"/lib/python3*/site-packages/executorch | head -1)" && pwd)
cmake=$(command -v cmake || echo "$venv/bin/cmake")
model=../shared/fixtures/mobilenet_v2
work=target/footprint
mkdir -p "$work"
size() { cp "$1" "$work/strip.tmp" && strip "$work/strip.tmp" && stat -c %s "$work/strip.tmp"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
xnn=$(size "$et/lib/libexecutorch_backend_xnnpack.so")
cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
simd=$(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo AVX2)
rows=()
for profile in "${profiles[@]}"; do
  prefix=$PWD/$work/$profile
  scripts/install-capi.sh "$prefix" "$profile" >/dev/null
  "$cmake" -S capi/executorch -B "$work/build-$profile" -DCMAKE_PREFIX_PATH="$et;$prefix" \
    -DCMAKE_BUILD_TYPE=Release -DFERRITE_BUILD_RUNNER=ON >/dev/null
  "$cmake" --build "$work/build-$profile" -j 2 >/dev/null
  capi=$(size "$prefix/lib/libferrite.so")
  plugin=$(size "$work/build-$profile/libferrite_executorch.so")
  speed="-"
  if [[ -f $model/portable.pte ]]; then
    target/debug/ferrite lower "$model/portable.pte" -o "$work/mobilenet_v2.pte" >/dev/null 2>&1 ||
      cargo run --locked --quiet -p ferrite-cli -- lower "$model/portable.pte" -o "$work/mobilenet_v2.pte" >/dev/null
    # All cores, as ExecuTorch's threadpool gives XNNPACK by default.
    speed=$("$work/build-$profile/et_runner" "$work/mobilenet_v2.pte" "$work/out" --repeat 30 \
      "$model/input_0.npy" 2>/dev/null | sed -n 's/median execute over 30 runs: //p')
  fi
  rows+=("| \`$profile\` | $(mb "$capi") | $(mb "$plugin") ($(awk -v p="$plugin" -v x="$xnn" 'BEGIN { printf "%.2f", p / x }')× XNNPACK's) | $speed |")
done
xspeed="-"
runner_x=$work/build-${profiles[0]}/et_runner_xnnpack
if [[ -x $runner_x && -f $model/xnnpack.pte ]]; then
  xspeed=$("$runner_x" "$model/xnnpack.pte" "$work/out" --repeat 30 "$model/input_0.npy" 2>/dev/null |
    sed -n 's/median execute over 30 runs: //p')
fi
{
  echo "| Cargo profile | \`libferrite.so\` (C ABI) | \`libferrite_executorch.so\` (plugin) | mobilenet_v2 in ExecuTorch's runtime, all cores (median of 30) |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo "| ExecuTorch 1.5.1's \`libexecutorch_backend_xnnpack.so\` | | $(mb "$xnn") | $xspeed (its own \`xnnpack.pte\`) |"
  echo
  echo "Measured by \`scripts/footprint.sh\` on $cpu ($simd, $(nproc) cores), $(date -u +%Y-%m-%d)."
} | tee "$work/footprint.md"
if [[ $bless == 1 ]]; then cp "$work/footprint.md" book/src/generated/footprint.md; fi
