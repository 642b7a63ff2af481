// A minimal C++ runner over ExecuTorch's prebuilt runtime (the pip wheel's libexecutorch.so and
// its XNNPACK and kernel libraries): loads a .pte with the memory-mapping loader, times loading
// and running its `forward` method, and reports the process's peak RSS — the figure to set
// against `ferrite bench` / `/usr/bin/time ferrite run`, without a Python interpreter and
// PyTorch in the same process. Inputs are zeros of each input's declared shape and type (speed
// and memory do not depend on their values); correctness is what bench/compare.py checks.
//
// Build and run (bench/et_runner.sh does both):
//   bench/et_runner.sh build
//   target/et_runner MODEL.pte [THREADS] [ITERS]
//
// Output: one line of JSON, {"load_ms":…, "median_ms":…, "min_ms":…, "peak_rss_kib":…}.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

// The wheel ships the thread pool's library but not its header; these are the two entry points
// the XNNPACK delegate's pool is sized through (as ExecuTorch's own runners do).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
} // namespace executorch::extension::threadpool

using executorch::extension::Module;
using executorch::runtime::EValue;

static long peak_rss_kib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) {
    return -1;
  }
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) {
      kib = std::strtol(line + 6, nullptr, 10);
    }
  }
  std::fclose(f);
  return kib;
}

static double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.pte [THREADS] [ITERS]\n", argv[0]);
    return 2;
  }
  const unsigned threads = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 1;
  const int iters = argc > 3 ? std::atoi(argv[3]) : 20;
  if (threads == 0 || iters <= 0) {
    std::fprintf(stderr, "THREADS and ITERS must be positive\n");
    return 2;
  }
  if (auto* pool = executorch::extension::threadpool::get_threadpool()) {
    pool->_unsafe_reset_threadpool(threads);
  }

  auto t0 = std::chrono::steady_clock::now();
  Module module(argv[1], Module::LoadMode::Mmap);
  if (module.load_method("forward") != executorch::runtime::Error::Ok) {
    std::fprintf(stderr, "could not load method forward of %s\n", argv[1]);
    return 1;
  }
  const double load_ms = ms_since(t0);

  auto meta = module.method_meta("forward");
  if (!meta.ok()) {
    std::fprintf(stderr, "no method metadata\n");
    return 1;
  }
  std::vector<executorch::extension::TensorPtr> tensors;
  std::vector<EValue> inputs;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) {
      std::fprintf(stderr, "input %zu is not a tensor\n", i);
      return 1;
    }
    auto sizes = info->sizes();
    std::vector<executorch::aten::SizesType> shape(sizes.begin(), sizes.end());
    tensors.push_back(executorch::extension::zeros(shape, info->scalar_type()));
    inputs.emplace_back(tensors.back());
  }

  std::vector<double> times;
  for (int i = 0; i < iters + 3; ++i) {
    auto t = std::chrono::steady_clock::now();
    auto out = module.execute("forward", inputs);
    const double ms = ms_since(t);
    if (!out.ok()) {
      std::fprintf(stderr, "execute failed: error %d\n", static_cast<int>(out.error()));
      return 1;
    }
    if (i >= 3) {
      times.push_back(ms);
    }
  }
  std::sort(times.begin(), times.end());
  std::printf(
      "{\"load_ms\": %.3f, \"median_ms\": %.4f, \"min_ms\": %.4f, \"peak_rss_kib\": %ld, \"threads\": %u}\n",
      load_ms,
      times[times.size() / 2],
      times.front(),
      peak_rss_kib(),
      threads);
  return 0;
}
