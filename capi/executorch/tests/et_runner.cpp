// A stock ExecuTorch runner for Ferrite's plugin test: loads a program with ExecuTorch's own
// Program/Method API (FerriteBackend delegates run through libferrite_executorch.so, other
// operators on ExecuTorch's kernels), feeds .npy inputs (float32 / int64, little-endian, C order),
// executes, writes every tensor output as OUTDIR/output_<i>.npy and, with --expect DIR, compares
// each with DIR/output_<i>.npy (what `ferrite run` wrote for the same inputs).
//
//   et_runner MODEL.pte OUTDIR [--expect DIR] [--tolerance T] [--repeat N] [input0.npy ...]
//
// --repeat N executes N times more after the first and prints the median time.
//
// Exit status 0 when every output matches within T (absolute, and relative to the expected
// value's magnitude; default 0: bit for bit), 1 otherwise.
#include <cmath>
#include <executorch/extension/data_loader/file_data_loader.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/exec_aten.h>
#include <executorch/runtime/core/exec_aten/util/scalar_type_util.h>
#include <executorch/runtime/core/hierarchical_allocator.h>
#include <executorch/runtime/core/memory_allocator.h>
#include <executorch/runtime/executor/memory_manager.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/method_meta.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/log.h>
#include <executorch/runtime/platform/runtime.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::aten::TensorImpl;
using executorch::extension::FileDataLoader;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::MemoryAllocator;
using executorch::runtime::MemoryManager;
using executorch::runtime::Method;
using executorch::runtime::MethodMeta;
using executorch::runtime::Program;
using executorch::runtime::Result;
using executorch::runtime::Span;

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "runner: error: %s\n", msg.c_str());
  std::exit(1);
}

const char* err_str(Error e) {
  return executorch::runtime::to_string(e);
}

// ---------------------------------------------------------------- .npy I/O
struct Npy {
  ScalarType dtype;
  std::vector<int32_t> shape; // ExecuTorch SizesType is int32_t
  std::vector<uint8_t> data;
};

// Extract the value text after 'key': in a Python dict literal.
std::string dict_value(const std::string& hdr, const std::string& key) {
  size_t k = hdr.find("'" + key + "'");
  if (k == std::string::npos) return {};
  size_t c = hdr.find(':', k);
  if (c == std::string::npos) return {};
  size_t s = hdr.find_first_not_of(" ", c + 1);
  if (s == std::string::npos) return {};
  if (hdr[s] == '(') {
    size_t e = hdr.find(')', s);
    return e == std::string::npos ? std::string() : hdr.substr(s, e - s + 1);
  }
  if (hdr[s] == '\'') {
    size_t e = hdr.find('\'', s + 1);
    return e == std::string::npos ? std::string()
                                  : hdr.substr(s + 1, e - s - 1);
  }
  size_t e = hdr.find_first_of(",}", s);
  std::string v = hdr.substr(s, e - s);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

Npy read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) die("cannot open " + path);
  std::vector<uint8_t> buf((std::istreambuf_iterator<char>(f)), {});
  if (buf.size() < 10 || std::memcmp(buf.data(), "\x93NUMPY", 6) != 0)
    die(path + ": not a .npy file (bad magic)");
  uint8_t major = buf[6];
  size_t hlen, hoff;
  if (major == 1) {
    hlen = buf[8] | (buf[9] << 8);
    hoff = 10;
  } else if (major == 2 || major == 3) {
    if (buf.size() < 12) die(path + ": truncated header");
    hlen = buf[8] | (buf[9] << 8) | (buf[10] << 16) | ((size_t)buf[11] << 24);
    hoff = 12;
  } else {
    die(path + ": unsupported .npy version " + std::to_string(major));
  }
  if (hoff + hlen > buf.size()) die(path + ": truncated header");
  std::string hdr(reinterpret_cast<char*>(buf.data() + hoff), hlen);

  Npy out;
  std::string descr = dict_value(hdr, "descr");
  size_t esize;
  if (descr == "<f4") {
    out.dtype = ScalarType::Float;
    esize = 4;
  } else if (descr == "<i8") {
    out.dtype = ScalarType::Long;
    esize = 8;
  } else {
    die(path + ": unsupported dtype '" + descr +
        "' (only little-endian float32 '<f4' and int64 '<i8' are accepted)");
  }
  if (dict_value(hdr, "fortran_order") != "False")
    die(path + ": fortran_order arrays are not supported (need C order)");
  std::string shp = dict_value(hdr, "shape");
  if (shp.size() < 2 || shp.front() != '(' || shp.back() != ')')
    die(path + ": cannot parse shape in header: " + hdr);
  size_t numel = 1;
  {
    std::string inner = shp.substr(1, shp.size() - 2);
    std::stringstream ss(inner);
    std::string tok;
    while (std::getline(ss, tok, ',')) {
      size_t a = tok.find_first_not_of(" ");
      if (a == std::string::npos) continue; // trailing comma "(3,)"
      long long v = std::stoll(tok.substr(a));
      if (v < 0 || v > INT32_MAX) die(path + ": bad dimension");
      out.shape.push_back(static_cast<int32_t>(v));
      numel *= static_cast<size_t>(v);
    }
  }
  size_t doff = hoff + hlen;
  size_t nbytes = numel * esize;
  if (buf.size() - doff != nbytes)
    die(path + ": data size " + std::to_string(buf.size() - doff) +
        " != expected " + std::to_string(nbytes));
  out.data.assign(buf.begin() + doff, buf.end());
  return out;
}

const char* npy_descr(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "<f4";
    case ScalarType::Double: return "<f8";
    case ScalarType::Half: return "<f2";
    case ScalarType::Long: return "<i8";
    case ScalarType::Int: return "<i4";
    case ScalarType::Short: return "<i2";
    case ScalarType::Char: return "|i1";
    case ScalarType::Byte: return "|u1";
    case ScalarType::Bool: return "|b1";
    default: return nullptr;
  }
}

void write_npy(const std::string& path, const Tensor& t) {
  const char* descr = npy_descr(t.scalar_type());
  if (!descr)
    die(std::string("output dtype not supported by .npy writer: ") +
        executorch::runtime::toString(t.scalar_type()));
  // Outputs are expected contiguous (default dim order).
  auto dord = t.dim_order();
  for (size_t i = 0; i < dord.size(); ++i)
    if (dord[i] != i) die(path + ": non-contiguous dim_order output unsupported");
  std::string shape = "(";
  for (size_t i = 0; i < t.sizes().size(); ++i) {
    shape += std::to_string(t.sizes()[i]);
    shape += (t.sizes().size() == 1 || i + 1 < t.sizes().size()) ? "," : "";
    if (i + 1 < t.sizes().size()) shape += " ";
  }
  shape += ")";
  std::string hdr = std::string("{'descr': '") + descr +
      "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + hdr.size() + 1;
  hdr.append((64 - total % 64) % 64, ' ');
  hdr.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) die("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hl = static_cast<uint16_t>(hdr.size());
  uint8_t hlb[2] = {static_cast<uint8_t>(hl & 0xff), static_cast<uint8_t>(hl >> 8)};
  f.write(reinterpret_cast<char*>(hlb), 2);
  f.write(hdr.data(), hdr.size());
  f.write(static_cast<const char*>(t.const_data_ptr()), t.nbytes());
}

} // namespace

// Largest difference between `got` and `want` (same dtype and shape), scaled: |g - w| / max(1, |w|).
double compare(const std::string& path, const Tensor& got, const Npy& want) {
  if (got.scalar_type() != want.dtype) die(path + ": dtype differs from the expected output");
  if (static_cast<size_t>(got.dim()) != want.shape.size()) die(path + ": rank differs from the expected output");
  for (size_t d = 0; d < want.shape.size(); ++d)
    if (got.size(d) != want.shape[d]) die(path + ": shape differs from the expected output");
  double worst = 0;
  size_t n = static_cast<size_t>(got.numel());
  for (size_t i = 0; i < n; ++i) {
    double g, w;
    if (want.dtype == ScalarType::Float) {
      g = got.const_data_ptr<float>()[i];
      w = reinterpret_cast<const float*>(want.data.data())[i];
    } else {
      g = static_cast<double>(got.const_data_ptr<int64_t>()[i]);
      w = static_cast<double>(reinterpret_cast<const int64_t*>(want.data.data())[i]);
    }
    if (std::isnan(g) != std::isnan(w)) return INFINITY;
    if (std::isnan(g)) continue;
    double diff = std::fabs(g - w) / std::fmax(1.0, std::fabs(w));
    if (diff > worst) worst = diff;
  }
  return worst;
}

int main(int argc, char** argv) {
  std::vector<const char*> positional;
  const char* expect = nullptr;
  double tolerance = 0;
  int repeat = 0;
  for (int a = 1; a < argc; ++a) {
    std::string arg = argv[a];
    if (arg == "--expect" && a + 1 < argc) {
      expect = argv[++a];
    } else if (arg == "--tolerance" && a + 1 < argc) {
      tolerance = std::strtod(argv[++a], nullptr);
    } else if (arg == "--repeat" && a + 1 < argc) {
      repeat = std::atoi(argv[++a]);
    } else {
      positional.push_back(argv[a]);
    }
  }
  if (positional.size() < 2) {
    std::fprintf(stderr, "usage: %s MODEL.pte OUTDIR [--expect DIR] [--tolerance T] [--repeat N] [input0.npy ...]\n", argv[0]);
    return 2;
  }
  executorch::runtime::runtime_init();
  const char* model = positional[0];
  std::string outdir = positional[1];
  for (size_t p = 1; p <= outdir.size(); ++p)  // mkdir -p
    if (p == outdir.size() || outdir[p] == '/')
      mkdir(outdir.substr(0, p).c_str(), 0755);
  struct stat st;
  if (stat(outdir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    die("cannot create output directory " + outdir);

  // ANCHOR: load
  Result<FileDataLoader> loader = FileDataLoader::from(model);
  if (!loader.ok()) die(std::string("FileDataLoader::from failed: ") + err_str(loader.error()));
  Result<Program> program = Program::load(&loader.get());
  if (!program.ok()) die(std::string("Program::load failed: ") + err_str(program.error()));

  const char* method_name = "forward";
  Result<MethodMeta> meta = program->method_meta(method_name);
  if (!meta.ok()) die(std::string("method_meta(forward) failed: ") + err_str(meta.error()));

  // Planned buffers: one malloc'd span each.
  std::vector<std::unique_ptr<uint8_t[]>> planned_bufs;
  std::vector<Span<uint8_t>> planned_spans;
  for (size_t i = 0; i < meta->num_memory_planned_buffers(); ++i) {
    size_t sz = static_cast<size_t>(meta->memory_planned_buffer_size(i).get());
    planned_bufs.emplace_back(new uint8_t[sz ? sz : 1]);
    planned_spans.emplace_back(planned_bufs.back().get(), sz);
  }
  HierarchicalAllocator planned({planned_spans.data(), planned_spans.size()});

  static uint8_t method_pool[4 * 1024 * 1024];
  static uint8_t temp_pool[1 * 1024 * 1024];
  MemoryAllocator method_alloc(sizeof(method_pool), method_pool);
  MemoryAllocator temp_alloc(sizeof(temp_pool), temp_pool);
  MemoryManager mm(&method_alloc, &planned, &temp_alloc);

  Result<Method> method = program->load_method(method_name, &mm);
  if (!method.ok()) die(std::string("load_method(forward) failed: ") + err_str(method.error()));
  // ANCHOR_END: load

  size_t n_in = method->inputs_size();
  size_t n_files = positional.size() - 2;
  if (n_files != n_in)
    die("model has " + std::to_string(n_in) + " inputs but " +
        std::to_string(n_files) + " .npy files were given");

  // Keep npy data + TensorImpl storage alive until after execute(): inputs
  // that are not memory planned alias the caller's buffer.
  std::vector<Npy> npys(n_in);
  std::vector<std::vector<uint8_t>> dim_orders(n_in);
  std::vector<std::vector<int32_t>> strides(n_in);
  std::vector<std::unique_ptr<TensorImpl>> impls(n_in);
  for (size_t i = 0; i < n_in; ++i) {
    auto tag = meta->input_tag(i);
    if (!tag.ok() || tag.get() != executorch::runtime::Tag::Tensor)
      die("input " + std::to_string(i) + " is not a tensor; unsupported");
    auto info = meta->input_tensor_meta(i);
    npys[i] = read_npy(positional[2 + i]);
    Npy& n = npys[i];
    if (info->scalar_type() != n.dtype)
      die(std::string(positional[2 + i]) + ": dtype " + executorch::runtime::toString(n.dtype) +
          " but model input " + std::to_string(i) + " expects " +
          executorch::runtime::toString(info->scalar_type()));
    size_t nd = n.shape.size();
    dim_orders[i].resize(nd);
    strides[i].resize(nd);
    for (size_t d = 0; d < nd; ++d) dim_orders[i][d] = static_cast<uint8_t>(d);
    int32_t s = 1;
    for (size_t d = nd; d-- > 0;) {
      strides[i][d] = s;
      s *= n.shape[d];
    }
    impls[i].reset(new TensorImpl(
        n.dtype, static_cast<ssize_t>(nd), n.shape.data(), n.data.data(),
        dim_orders[i].data(), strides[i].data(),
        executorch::runtime::TensorShapeDynamism::STATIC));
    Error e = method->set_input(EValue(Tensor(impls[i].get())), i);
    if (e != Error::Ok)
      die("set_input(" + std::to_string(i) + ") failed: " + err_str(e));
  }

  auto t0 = std::chrono::steady_clock::now();
  Error e = method->execute();
  auto t1 = std::chrono::steady_clock::now();
  if (e != Error::Ok) die(std::string("execute failed: ") + err_str(e));
  std::fprintf(stderr, "runner: execute ok in %.3f ms\n",
               std::chrono::duration<double, std::milli>(t1 - t0).count());
  if (repeat > 0) {
    std::vector<double> times;
    for (int r = 0; r < repeat; ++r) {
      auto s0 = std::chrono::steady_clock::now();
      if (method->execute() != Error::Ok) die("execute failed on a repeat");
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count());
    }
    std::sort(times.begin(), times.end());
    std::printf("median execute over %d runs: %.3f ms\n", repeat, times[times.size() / 2]);
  }

  int mismatches = 0;
  for (size_t i = 0; i < method->outputs_size(); ++i) {
    const EValue& v = method->get_output(i);
    if (!v.isTensor()) {
      std::fprintf(stderr, "runner: output %zu is not a tensor (tag %d); skipped\n", i,
                   static_cast<int>(v.tag));
      continue;
    }
    std::string p = outdir + "/output_" + std::to_string(i) + ".npy";
    write_npy(p, v.toTensor());
    if (expect != nullptr) {
      std::string e = std::string(expect) + "/output_" + std::to_string(i) + ".npy";
      double worst = compare(p, v.toTensor(), read_npy(e));
      bool ok = worst <= tolerance;
      std::printf("%s: largest difference from %s: %g (%s)\n", p.c_str(), e.c_str(), worst,
                  ok ? (worst == 0 ? "identical" : "within tolerance") : "MISMATCH");
      if (!ok) mismatches++;
    } else {
      std::printf("%s\n", p.c_str());
    }
  }
  return mismatches == 0 ? 0 : 1;
}
