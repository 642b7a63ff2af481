// A minimal C++ runner over ExecuTorch's prebuilt runtime (the pip wheel's libexecutorch.so and
// its XNNPACK and kernel libraries): loads a .pte with the memory-mapping loader, times loading
// and running its `forward` method, and reports the process's peak RSS — the figure to set
// against `ferrite bench` / `/usr/bin/time ferrite run`, without a Python interpreter and
// PyTorch in the same process. Inputs are zeros of each input's declared shape and type (speed
// and memory do not depend on their values) unless `.npy` files are given (C-order float32,
// int64 or int32: an embedding's memory does depend on which rows the tokens read); correctness
// is what bench/compare.py checks.
//
// Build and run:
//   bench/et_runner.sh build PYTHON
//   target/et_runner MODEL.pte [THREADS] [ITERS] [INPUT.npy...]
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

// A C-order little-endian .npy file: its element type, shape and bytes.
struct Npy {
  executorch::aten::ScalarType type;
  std::vector<executorch::aten::SizesType> shape;
  std::vector<uint8_t> data;
};

static bool read_npy(const char* path, Npy& out) {
  FILE* f = std::fopen(path, "rb");
  if (!f) {
    return false;
  }
  std::vector<uint8_t> bytes;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    bytes.insert(bytes.end(), buf, buf + n);
  }
  std::fclose(f);
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    return false;
  }
  const size_t len_bytes = bytes[6] == 1 ? 2 : 4;
  size_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) {
    header_len |= static_cast<size_t>(bytes[8 + i]) << (8 * i);
  }
  const size_t start = 8 + len_bytes + header_len;
  if (start > bytes.size()) {
    return false;
  }
  const std::string header(bytes.begin() + 8 + len_bytes, bytes.begin() + start);
  if (header.find("'fortran_order': False") == std::string::npos) {
    return false;
  }
  size_t elem = 0;
  if (header.find("'<f4'") != std::string::npos) {
    out.type = executorch::aten::ScalarType::Float, elem = 4;
  } else if (header.find("'<i8'") != std::string::npos) {
    out.type = executorch::aten::ScalarType::Long, elem = 8;
  } else if (header.find("'<i4'") != std::string::npos) {
    out.type = executorch::aten::ScalarType::Int, elem = 4;
  } else {
    return false;
  }
  const size_t open = header.find("'shape': (");
  const size_t close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) {
    return false;
  }
  size_t count = 1;
  const char* p = header.c_str() + open + 10;
  while (p < header.c_str() + close) {
    char* end = nullptr;
    const long d = std::strtol(p, &end, 10);
    if (end == p) {
      ++p;
      continue;
    }
    out.shape.push_back(static_cast<executorch::aten::SizesType>(d));
    count *= static_cast<size_t>(d);
    p = end;
  }
  if (bytes.size() - start != count * elem) {
    return false;
  }
  out.data.assign(bytes.begin() + start, bytes.end());
  return true;
}

static double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.pte [THREADS] [ITERS] [INPUT.npy...]\n", argv[0]);
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
  std::vector<Npy> files(argc > 4 ? argc - 4 : 0);
  for (size_t i = 0; i < files.size(); ++i) {
    if (!read_npy(argv[4 + i], files[i])) {
      std::fprintf(stderr, "%s: not a C-order float32/int64/int32 .npy file\n", argv[4 + i]);
      return 1;
    }
    tensors.push_back(executorch::extension::from_blob(files[i].data.data(), files[i].shape, files[i].type));
    inputs.emplace_back(tensors.back());
  }
  for (size_t i = files.size(); i < meta->num_inputs(); ++i) {
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
