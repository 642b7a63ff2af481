#!/usr/bin/env bash
# The C ABI and the ExecuTorch plugin end to end, as CI runs them (`.ci/run`):
#  1. installs the C ABI as a CMake package, builds the C example (capi/examples) with CMake
#     and runs it on fixtures;
#  2. builds libferrite_executorch.so and et_runner against the executorch wheel (installed
#     here with `pip install --no-deps`, 19 MB: headers, libexecutorch.so, CMake package), then
#     runs Ferrite-lowered fixtures through stock ExecuTorch's Program/Method API and checks
#     that the outputs equal `ferrite run`'s: fully delegated programs bit for bit, programs
#     mixing Ferrite delegates with ExecuTorch's own kernels within 1e-5.
# Everything it creates lives in target/capi-check (CMake, if the machine lacks 3.28+, comes from
# PyPI into the same venv); pip caches nothing.
#   scripts/capi-check.sh [PROFILE]     (cargo profile of the C ABI: dev (default) or release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dev}
work=target/capi-check
rm -rf "$work/prefix" "$work/build" "$work/out"
mkdir -p "$work"

echo "== C ABI: install ($profile)"
scripts/install-capi.sh "$work/prefix" "$profile"
if [[ $profile == dev ]]; then
  # The test build's `ferrite` (fresh after `cargo test --workspace`, as in CI): building the CLI
  # alone would compile the runtime again with other features.
  cargo test --workspace --locked --no-run --quiet
  ferrite=target/debug/ferrite
else
  cargo build --locked --quiet -p ferrite-cli --profile "$profile"
  ferrite=target/$profile/ferrite
fi

echo "== tools: CMake and the executorch wheel (no dependencies)"
venv=$work/venv
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-cache-dir --quiet "$@"; }
cmake_ok() { command -v "$1" >/dev/null && "$1" --version | awk 'NR==1{split($3,v,"."); exit !(v[1]>3 || (v[1]==3 && v[2]>=28))}'; }
if cmake_ok cmake; then
  cmake=cmake
else
  [[ -x $venv/bin/cmake ]] || pip install "cmake>=3.28,<5"
  cmake=$venv/bin/cmake
fi
et=$(ls -d "$venv"/lib/python3*/site-packages/executorch 2>/dev/null | head -1 || true)
if [[ -z $et || ! -f $et/share/cmake/executorch-config.cmake ]]; then
  pip install --no-deps "executorch==1.5.1"
  et=$(ls -d "$venv"/lib/python3*/site-packages/executorch | head -1)
fi
et=$(cd "$et" && pwd)
"$cmake" --version | head -1
echo "executorch package: $et"

echo "== C example (find_package(ferrite), ferrite::runtime)"
"$cmake" -S capi/examples -B "$work/build/example" -DCMAKE_PREFIX_PATH="$PWD/$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
"$cmake" --build "$work/build/example" >/dev/null
# The book shows this run (book/src/generated/console-c-example.txt; FERRITE_BLESS=1 rewrites it).
golden=book/src/generated/console-c-example.txt
got=$(printf '$ build/run_model tests/fixtures/mlp/portable.pte\n'; "$work/build/example/run_model" tests/fixtures/mlp/portable.pte)
if [[ -n ${FERRITE_BLESS:-} ]]; then printf '%s\n' "$got" >"$golden"; fi
if [[ "$got" != "$(cat "$golden")" ]]; then
  echo "FAILED: the C example's output differs from $golden (re-bless with FERRITE_BLESS=1):" >&2
  diff <(printf '%s\n' "$got") "$golden" >&2 || true
  exit 1
fi
printf '%s\n' "$got"
"$work/build/example/run_model" tests/fixtures/two_methods/portable.pte
"$work/build/example/run_model" tests/fixtures/two_methods/portable.pte encode 2

echo "== ExecuTorch plugin (libferrite_executorch.so) and et_runner"
"$cmake" -S capi/executorch -B "$work/build/plugin" -DCMAKE_PREFIX_PATH="$et;$PWD/$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release -DFERRITE_BUILD_RUNNER=ON >/dev/null
"$cmake" --build "$work/build/plugin" -j 2 >/dev/null
"$cmake" --install "$work/build/plugin" --prefix "$work/prefix" >/dev/null
runner=$work/build/plugin/et_runner

# name, fixture directory, variant, tolerance, extra `ferrite lower` flags
cases=(
  "mlp tests/fixtures/mlp portable 0"
  "digits_cnn tests/fixtures/digits_cnn portable 0"
  "tiny_gpt tests/fixtures/tiny_gpt portable 0"
  "digits_cnn_q8 tests/fixtures/digits_cnn q8 0"
  "mlp_qd8 tests/fixtures/mlp qd8 0"
  "tiny_gpt_mixed tests/fixtures/tiny_gpt portable 1e-5 --exclude-ops aten::_softmax.out,aten::native_layer_norm.out,aten::gelu.out"
  "digits_cnn_mixed tests/fixtures/digits_cnn portable 1e-5 --exclude-ops aten::max_pool2d_with_indices.out"
)
if [[ -f ../shared/fixtures/mobilenet_v2/portable.pte ]]; then
  cases+=("mobilenet_v2 ../shared/fixtures/mobilenet_v2 portable 0")
fi
mkdir -p "$work/out"
failed=0
for c in "${cases[@]}"; do
  read -r name dir variant tolerance flags <<<"$c"
  lowered=$work/out/$name.pte
  # shellcheck disable=SC2086
  "$ferrite" lower "$dir/$variant.pte" -o "$lowered" $flags >/dev/null
  "$ferrite" run "$lowered" -i "$dir/input_0.npy" -o "$work/out/$name.ferrite" --threads 1 >/dev/null
  echo "-- $name ($("$ferrite" inspect "$lowered" | grep -m1 instructions | sed 's/^ *//'))"
  if ! FERRITE_THREADS=1 "$runner" "$lowered" "$work/out/$name.executorch" --expect "$work/out/$name.ferrite" \
    --tolerance "$tolerance" "$dir/input_0.npy" 2> >(grep -v cpuinfo >&2); then
    echo "FAILED: $name" >&2
    failed=1
  fi
done
# Ferrite's errors reach ExecuTorch as an Error code plus a log line with Ferrite's coded message.
if FERRITE_MEMORY_LIMIT=1K "$runner" "$work/out/digits_cnn.pte" "$work/out/limit" tests/fixtures/digits_cnn/input_0.npy \
  >"$work/out/limit.log" 2>&1; then
  echo "FAILED: a delegate over FERRITE_MEMORY_LIMIT loaded" >&2
  failed=1
elif ! grep -q "FerriteBackend init: R040" "$work/out/limit.log"; then
  echo "FAILED: no FerriteBackend R040 log line:" >&2
  cat "$work/out/limit.log" >&2
  failed=1
else
  echo "-- over FERRITE_MEMORY_LIMIT: $(grep -m1 -o 'FerriteBackend init: R040.\{0,60\}' "$work/out/limit.log")..."
  grep -m1 "load_method" "$work/out/limit.log"
fi

# A setting that is not a count is reported, and the default used (not read as a tiny number).
if ! FERRITE_THREADS=two FERRITE_MEMORY_LIMIT=8GB "$runner" "$work/out/digits_cnn.pte" "$work/out/settings" \
  tests/fixtures/digits_cnn/input_0.npy >"$work/out/settings.log" 2>&1 ||
  [[ $(grep -c "is not a thread count\|is not a byte count" "$work/out/settings.log") -ne 2 ]]; then
  echo "FAILED: bad FERRITE_THREADS / FERRITE_MEMORY_LIMIT values were not reported, or stopped the run:" >&2
  cat "$work/out/settings.log" >&2
  failed=1
fi

# The comparison itself can fail: outputs of another model must be reported as a mismatch.
if FERRITE_THREADS=1 "$runner" "$work/out/mlp.pte" "$work/out/mismatch" --expect "$work/out/digits_cnn.ferrite" \
  tests/fixtures/mlp/input_0.npy >/dev/null 2>&1; then
  echo "FAILED: et_runner accepted outputs that differ from the expected ones" >&2
  failed=1
fi
exit $failed
