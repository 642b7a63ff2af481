// FerriteBackend for stock ExecuTorch: implements executorch::runtime::BackendInterface over
// Ferrite's C ABI (ferrite.h) and registers itself when the library is loaded, as ExecuTorch's
// own backends do. Link it with --no-as-needed (the ferrite::executorch_backend target does) or
// dlopen it (Python: ctypes.CDLL(path, mode=RTLD_GLOBAL)) before loading a program.
//
// Threads: FERRITE_THREADS=N in the environment (default: one per core), read once per process.
// Memory: the delegate handle comes from ExecuTorch's runtime allocator; Ferrite's packed
// weights and scratch are Ferrite's own, bounded by FERRITE_MEMORY_LIMIT=BYTES[K|M|G|T] (default: the
// machine's physical memory), checked before anything is allocated. Tensors: inputs are read where ExecuTorch holds them and outputs
// written straight into ExecuTorch's output tensors (no staging copies).

#include <ferrite.h>

#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/core/error.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/platform/log.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

using executorch::aten::SizesType;
using executorch::aten::Tensor;
using executorch::runtime::ArrayRef;
using executorch::runtime::Backend;
using executorch::runtime::BackendExecutionContext;
using executorch::runtime::BackendInitContext;
using executorch::runtime::BackendInterface;
using executorch::runtime::CompileSpec;
using executorch::runtime::DelegateHandle;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::FreeableBuffer;
using executorch::runtime::Result;
using executorch::runtime::Span;

// ExecuTorch's error for a Ferrite status.
Error to_error(FerriteStatus status) {
  switch (status) {
    case FERRITE_STATUS_OK: return Error::Ok;
    case FERRITE_STATUS_INVALID_ARGUMENT: return Error::InvalidArgument;
    case FERRITE_STATUS_INVALID_PROGRAM: return Error::InvalidProgram;
    case FERRITE_STATUS_NOT_FOUND: return Error::NotFound;
    case FERRITE_STATUS_NOT_SUPPORTED: return Error::NotSupported;
    case FERRITE_STATUS_MEMORY_LIMIT: return Error::DelegateMemoryAllocationFailed;
    case FERRITE_STATUS_IO: return Error::AccessFailed;
    case FERRITE_STATUS_EXECUTION_FAILED:
    case FERRITE_STATUS_INTERNAL:
    default: return Error::Internal;
  }
}

Error fail(const char* what, FerriteStatus status) {
  const char* message = ferrite_last_error_message();
  ET_LOG(Error, "FerriteBackend %s: %s", what, message ? message : "unknown error");
  return to_error(status);
}

// A positive count, with an optional K, M, G or T suffix (powers of 1024) where `suffix` allows,
// as the CLI's --memory-limit reads it: "8G", "512M", "1048576". False for anything else (signs,
// spaces, other suffixes, overflow), so a typo is reported instead of read as a tiny number.
bool parse_count(const char* text, bool suffix, uint64_t* out) {
  if (text == nullptr || *text < '0' || *text > '9') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long n = std::strtoull(text, &end, 10);
  if (errno == ERANGE) return false;
  unsigned shift = 0;
  switch (suffix ? *end : '\0') {
    case 'K': case 'k': shift = 10; ++end; break;
    case 'M': case 'm': shift = 20; ++end; break;
    case 'G': case 'g': shift = 30; ++end; break;
    case 'T': case 't': shift = 40; ++end; break;
    default: break;
  }
  if (*end != '\0' || n == 0 || n > (UINT64_MAX >> shift)) return false;
  *out = static_cast<uint64_t>(n) << shift;
  return true;
}

// One runtime for the process: its thread pool is shared by every delegate.
FerriteRuntime* shared_runtime() {
  static FerriteRuntime* runtime = [] {
    size_t threads = 0;  // one per core
    uint64_t n = 0;
    if (const char* env = std::getenv("FERRITE_THREADS")) {
      if (parse_count(env, false, &n) && n <= 4096) {
        threads = static_cast<size_t>(n);
      } else {
        ET_LOG(Error, "FerriteBackend: FERRITE_THREADS=\"%s\" is not a thread count (1 to 4096); using one per core", env);
      }
    }
    FerriteRuntime* rt = nullptr;
    FerriteStatus status = ferrite_runtime_new(threads, &rt);
    if (status != FERRITE_STATUS_OK) {
      fail("runtime", status);
      return static_cast<FerriteRuntime*>(nullptr);
    }
    if (const char* env = std::getenv("FERRITE_MEMORY_LIMIT")) {
      if (parse_count(env, true, &n)) {
        status = ferrite_runtime_set_memory_limit(rt, n);
        if (status != FERRITE_STATUS_OK) {
          fail("runtime", status);
        }
      } else {
        ET_LOG(Error,
               "FerriteBackend: FERRITE_MEMORY_LIMIT=\"%s\" is not a byte count (e.g. 512M, 8G); "
               "keeping the default (the machine's physical memory)",
               env);
      }
    }
    return rt;
  }();
  return runtime;
}

bool contiguous(const Tensor& t) {
  auto order = t.dim_order();
  for (size_t d = 0; d < order.size(); ++d) {
    if (order[d] != d) {
      return false;
    }
  }
  return true;
}

class FerriteBackend final : public BackendInterface {
 public:
  bool is_available() const override {
    return shared_runtime() != nullptr;
  }

  Result<DelegateHandle*> init(
      BackendInitContext& context,
      FreeableBuffer* processed,
      ArrayRef<CompileSpec> /*compile_specs: Ferrite's blob carries everything*/) const override {
    FerriteRuntime* runtime = shared_runtime();
    if (runtime == nullptr) {
      return Error::NotSupported;
    }
    FerriteDelegate* delegate = nullptr;
    FerriteStatus status =
        ferrite_delegate_init(runtime, processed->data(), processed->size(), &delegate);
    // Ferrite keeps what it needs (packed weights), so the blob can go now.
    processed->Free();
    if (status != FERRITE_STATUS_OK) {
      return fail("init", status);
    }
    auto* handle = context.get_runtime_allocator()->allocateInstance<FerriteDelegate*>();
    if (handle == nullptr) {
      ferrite_delegate_free(delegate);
      ET_LOG(Error, "FerriteBackend init: the runtime allocator is out of memory");
      return Error::MemoryAllocationFailed;
    }
    *handle = delegate;
    return handle;
  }

  Error execute(BackendExecutionContext& /*context*/, DelegateHandle* handle, Span<EValue*> args)
      const override {
    if (handle == nullptr || *static_cast<FerriteDelegate**>(handle) == nullptr) {
      return Error::DelegateInvalidHandle;
    }
    FerriteDelegate* delegate = *static_cast<FerriteDelegate**>(handle);
    const size_t n_in = ferrite_delegate_input_count(delegate);
    const size_t n_out = ferrite_delegate_output_count(delegate);
    if (args.size() != n_in + n_out) {
      ET_LOG(Error, "FerriteBackend execute: %zu arguments, the delegate takes %zu inputs and %zu outputs",
             args.size(), n_in, n_out);
      return Error::InvalidArgument;
    }
    std::vector<FerriteTensor> inputs(n_in);
    std::vector<std::array<size_t, FERRITE_MAX_DIMS>> sizes(n_in);
    std::vector<FerriteBuffer> outputs(n_out);
    for (size_t i = 0; i < n_in; ++i) {
      if (!args[i]->isTensor()) {
        ET_LOG(Error, "FerriteBackend execute: input %zu is not a tensor", i);
        return Error::InvalidArgument;
      }
      const Tensor& t = args[i]->toTensor();
      if (!contiguous(t) || t.dim() > static_cast<ssize_t>(FERRITE_MAX_DIMS)) {
        ET_LOG(Error, "FerriteBackend execute: input %zu is not contiguous (or has over %d dims)", i,
               FERRITE_MAX_DIMS);
        return Error::NotSupported;
      }
      for (ssize_t d = 0; d < t.dim(); ++d) {
        sizes[i][d] = static_cast<size_t>(t.size(d));
      }
      inputs[i] = FerriteTensor{static_cast<int32_t>(t.scalar_type()), static_cast<size_t>(t.dim()),
                                sizes[i].data(), t.const_data_ptr(), t.nbytes()};
    }
    for (size_t j = 0; j < n_out; ++j) {
      EValue* value = args[n_in + j];
      if (!value->isTensor()) {
        ET_LOG(Error, "FerriteBackend execute: output %zu is not a tensor", j);
        return Error::InvalidArgument;
      }
      Tensor& t = value->toTensor();
      FerriteTensor spec;
      FerriteStatus status = ferrite_delegate_output_spec(delegate, j, &spec);
      if (status != FERRITE_STATUS_OK) {
        return fail("execute", status);
      }
      if (static_cast<int32_t>(t.scalar_type()) != spec.dtype || !contiguous(t) ||
          t.dim() != static_cast<ssize_t>(spec.ndim)) {
        ET_LOG(Error, "FerriteBackend execute: output %zu's tensor does not match the delegate's output", j);
        return Error::InvalidArgument;
      }
      bool same = true;
      std::array<SizesType, FERRITE_MAX_DIMS> want{};
      for (size_t d = 0; d < spec.ndim; ++d) {
        want[d] = static_cast<SizesType>(spec.sizes[d]);
        same = same && t.size(static_cast<ssize_t>(d)) == want[d];
      }
      if (!same) {
        Error e = executorch::runtime::resize_tensor(t, ArrayRef<SizesType>(want.data(), spec.ndim));
        if (e != Error::Ok) {
          ET_LOG(Error, "FerriteBackend execute: output %zu cannot be resized to the delegate's shape", j);
          return e;
        }
      }
      outputs[j] = FerriteBuffer{t.mutable_data_ptr(), t.nbytes()};
    }
    FerriteStatus status = ferrite_delegate_execute(delegate, inputs.data(), n_in, outputs.data(), n_out);
    if (status != FERRITE_STATUS_OK) {
      return fail("execute", status);
    }
    return Error::Ok;
  }

  void destroy(DelegateHandle* handle) const override {
    if (handle != nullptr) {
      auto** slot = static_cast<FerriteDelegate**>(handle);
      ferrite_delegate_free(*slot);  // the slot itself belongs to ExecuTorch's allocator
      *slot = nullptr;
    }
  }
};

FerriteBackend backend_instance;
const Backend backend_entry{"FerriteBackend", &backend_instance};
const Error registered = executorch::runtime::register_backend(backend_entry);

}  // namespace

extern "C" {
// Whether FerriteBackend registered with ExecuTorch when this library loaded (0: yes; else the
// ExecuTorch error code, e.g. a second registration under the same name).
__attribute__((visibility("default"))) int ferrite_executorch_registration_status() {
  return static_cast<int>(registered);
}
}
