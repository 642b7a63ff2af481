#!/usr/bin/env bash
# Builds bench/et_runner.cpp against the ExecuTorch pip wheel (runtime, XNNPACK delegate, CPU
# kernels) into target/et_runner, or runs it.
#
#   bench/et_runner.sh build [PYTHON]   # PYTHON: the venv's python with executorch installed
#   target/et_runner MODEL.pte [THREADS] [ITERS]
#
# Only the wheel's files are used (headers, shared libraries); PyTorch is not loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = build ] || { echo "usage: $0 build [PYTHON]" >&2; exit 2; }
py=${2:-python3}
# find_spec does not import the package (which would import torch).
et=$("$py" -c 'import importlib.util as u; print(u.find_spec("executorch").submodule_search_locations[0])')
lib="$et/lib"
mkdir -p target
# The delegate and kernel libraries register themselves when loaded: --no-as-needed keeps them.
${CXX:-c++} -O2 -std=c++17 -Wno-deprecated-declarations -DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED -DET_USE_THREADPOOL \
    -I"$et/include" -I"$et/include/executorch/runtime/core/portable_type/c10" \
    bench/et_runner.cpp -o target/et_runner \
    -L"$lib" -Wl,-rpath,"$lib" -Wl,--push-state,--no-as-needed \
    -lexecutorch -lexecutorch_threadpool -lexecutorch_backend_xnnpack -lexecutorch_kernels_optimized \
    -Wl,--pop-state
echo "built target/et_runner against $et"
