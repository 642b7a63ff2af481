//! Ferrite's C ABI: load ExecuTorch programs and run their methods, or run one Ferrite delegate
//! on caller-owned tensors, from C and C++.
//!
//! The header is `include/ferrite.h`, generated from this file by cbindgen (a test checks it is
//! current; `FERRITE_BLESS=1 cargo test -p ferrite-capi` regenerates it). Build `libferrite_capi.so`
//! / `libferrite_capi.a` with `cargo build -p ferrite-capi --release`; `scripts/install-capi.sh`
//! lays them out with a CMake package (`find_package(ferrite)`, target `ferrite::runtime`).
//!
//! # Conventions
//! - Every fallible call returns a [`FerriteStatus`]; on failure,
//!   [`ferrite_last_error_message`] and [`ferrite_last_error_code`] describe it (per thread, until
//!   the next failing call on that thread). Outputs are written only on success.
//! - Objects are opaque pointers created by `*_load`/`*_new`/`*_init` and released by their
//!   `*_free` (which accept NULL). A method or delegate keeps what it needs alive: freeing its
//!   program or runtime first is allowed.
//! - A runtime and a program may be shared by threads; one method or delegate is used by one
//!   thread at a time.
//! - Tensors are contiguous, row-major, little-endian; `dtype` is ExecuTorch's `ScalarType`
//!   code ([`FERRITE_DTYPE_FLOAT`] = 6, ...).
//! - Nothing unwinds across the ABI: a panic (a Ferrite bug) becomes [`FerriteStatus::Internal`].
//!
//! This crate is the one place outside the kernels' leaf modules with `unsafe` code: it is the
//! boundary where C pointers become Rust references, each block justified by the function's
//! documented contract.

#![warn(missing_docs)]

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ferrite_program::{Program, ProgramError, ScalarType};
use ferrite_runtime::{EmbeddedDelegate, Method, Runtime, RuntimeError, TensorRef};

/// `float32` (ExecuTorch's `ScalarType::Float`).
pub const FERRITE_DTYPE_FLOAT: i32 = 6;
/// `int64` (ExecuTorch's `ScalarType::Long`).
pub const FERRITE_DTYPE_LONG: i32 = 4;
/// `int8` (ExecuTorch's `ScalarType::Char`).
pub const FERRITE_DTYPE_CHAR: i32 = 1;
/// The most dimensions a tensor passed through this ABI may have.
pub const FERRITE_MAX_DIMS: usize = 16;

/// What a call did. Details of a failure: [`ferrite_last_error_message`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FerriteStatus {
    /// Success.
    Ok = 0,
    /// A NULL pointer, an unknown dtype code, a name that is not UTF-8, a buffer of the wrong
    /// size, or an input the method does not accept (dtype, shape, count).
    InvalidArgument = 1,
    /// The program (or a delegate's blob) is malformed or inconsistent.
    InvalidProgram = 2,
    /// No such method, input or output.
    NotFound = 3,
    /// The program needs something this build does not run (an operator, a backend, a dtype).
    NotSupported = 4,
    /// Loading would exceed the runtime's memory limit (nothing was allocated).
    MemoryLimit = 5,
    /// A kernel or delegate failed while running.
    ExecutionFailed = 6,
    /// A file could not be read.
    Io = 7,
    /// A bug in Ferrite (a caught panic); report it with the program.
    Internal = 8,
}

/// A tensor passed in or handed out: `ndim` sizes, and `nbytes` bytes of contiguous data.
///
/// In a spec (`*_input_spec`, `*_output_spec`) `data` is NULL and `nbytes` is what the data
/// takes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FerriteTensor {
    /// ExecuTorch `ScalarType` code (`FERRITE_DTYPE_*`).
    pub dtype: i32,
    /// Number of dimensions (at most [`FERRITE_MAX_DIMS`]).
    pub ndim: usize,
    /// `ndim` sizes.
    pub sizes: *const usize,
    /// The elements, contiguous and row-major.
    pub data: *const c_void,
    /// Bytes at `data`.
    pub nbytes: usize,
}

/// A caller-owned buffer a delegate writes one output into.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FerriteBuffer {
    /// Where the output goes.
    pub data: *mut c_void,
    /// Bytes at `data`: exactly the output's size.
    pub nbytes: usize,
}

/// Threads, SIMD level and memory limit that methods and delegates run with.
#[derive(Debug)]
pub struct FerriteRuntime {
    runtime: Runtime,
}

/// A loaded, verified program.
#[derive(Debug)]
pub struct FerriteProgram {
    program: Arc<Program<'static>>,
    names: Vec<CString>,
}

/// A method ready to run: its memory planned, its delegates initialised.
#[derive(Debug)]
pub struct FerriteMethod {
    method: Method,
    input_sizes: Vec<Vec<usize>>,
}

/// One Ferrite delegate (a `FerriteBackend` blob) ready to run on caller-owned tensors.
#[derive(Debug)]
pub struct FerriteDelegate {
    delegate: EmbeddedDelegate,
}

// ---------------------------------------------------------------------------------------------
// Errors

struct Failure {
    status: FerriteStatus,
    code: &'static str,
    message: String,
}

impl Failure {
    fn argument(message: impl Into<String>) -> Self {
        Failure { status: FerriteStatus::InvalidArgument, code: "A001", message: message.into() }
    }
}

impl From<ProgramError> for Failure {
    fn from(e: ProgramError) -> Self {
        let status = match e {
            ProgramError::Io { .. } => FerriteStatus::Io,
            ProgramError::Unsupported(_) => FerriteStatus::NotSupported,
            _ => FerriteStatus::InvalidProgram,
        };
        Failure { status, code: e.code(), message: format!("{e} (hint: {})", e.hint()) }
    }
}

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Self {
        if let RuntimeError::Program(p) = e {
            return p.into();
        }
        let status = match e.code() {
            "R001" => FerriteStatus::NotFound,
            "R002" | "R003" | "R030" => FerriteStatus::NotSupported,
            "R010" | "R011" | "R012" | "R013" => FerriteStatus::InvalidArgument,
            "R040" => FerriteStatus::MemoryLimit,
            _ => FerriteStatus::ExecutionFailed,
        };
        Failure { status, code: e.code(), message: format!("{e} (hint: {})", e.hint()) }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<(CString, CString)>> = const { RefCell::new(None) };
}

/// Runs `f`, turning its error or panic into a status and the thread's last error.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> FerriteStatus {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return FerriteStatus::Ok,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure {
                status: FerriteStatus::Internal,
                code: "A002",
                message: format!("Ferrite panicked: {what} (a bug: please report it with the program)"),
            }
        }
    };
    tracing::debug!(code = failure.code, message = %failure.message, "C ABI call failed");
    let message = CString::new(format!("{}: {}", failure.code, failure.message.replace('\0', "\\0")))
        .unwrap_or_else(|_| c"error message unavailable".to_owned());
    let code = CString::new(failure.code).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = Some((code, message)));
    failure.status
}

/// The message of the last call that failed on this thread (`"R012: input 0 of method ..."`),
/// or NULL if none has. Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn ferrite_last_error_message() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ref().map_or(std::ptr::null(), |(_, m)| m.as_ptr()))
}

/// The code of the last call that failed on this thread (`"R012"`; the book's error catalogue
/// explains each), or NULL if none has. Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn ferrite_last_error_code() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ref().map_or(std::ptr::null(), |(code, _)| code.as_ptr()))
}

/// Ferrite's version (`"0.1.0"`), a static string.
#[no_mangle]
pub extern "C" fn ferrite_version() -> *const c_char {
    static VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

// ---------------------------------------------------------------------------------------------
// Pointer helpers: each turns a C pointer into a reference under the calling function's contract.

/// `&T` from a pointer the caller promises is NULL or valid.
///
/// # Safety
/// `p` is NULL or points to a live `T` not mutated during the call.
unsafe fn borrow<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller's contract: `p` is NULL (checked by `as_ref`) or valid for reads.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::argument(format!("{what} is NULL")))
}

/// `&mut T` from a pointer the caller promises is NULL or valid and unaliased.
///
/// # Safety
/// `p` is NULL or points to a live `T` no one else uses during the call.
unsafe fn borrow_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller's contract: `p` is NULL (checked by `as_mut`) or valid and unaliased.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::argument(format!("{what} is NULL")))
}

/// A UTF-8 string from a NUL-terminated C string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string alive during the call.
unsafe fn string<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and NUL-terminated and alive by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Failure::argument(format!("{what} is not UTF-8")))
}

/// `len` bytes at `p` (NULL allowed when `len` is 0).
///
/// # Safety
/// `p` is valid for reads of `len` bytes during the call, or `len` is 0.
unsafe fn bytes<'a>(p: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL but {len} bytes were promised")));
    }
    if isize::try_from(len).is_err() {
        return Err(Failure::argument(format!("{what}: {len} bytes is more than any buffer holds")));
    }
    // SAFETY: non-NULL, `len` fits an isize, and valid for `len` bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// `len` writable bytes at `p`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes during the call and not otherwise borrowed, or `len` is 0.
unsafe fn bytes_mut<'a>(p: *mut c_void, len: usize, what: &str) -> Result<&'a mut [u8], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL but {len} bytes were promised")));
    }
    if isize::try_from(len).is_err() {
        return Err(Failure::argument(format!("{what}: {len} bytes is more than any buffer holds")));
    }
    // SAFETY: non-NULL, `len` fits an isize, and valid and exclusive for `len` bytes by the
    // caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// Dtype, sizes and bytes of a tensor the caller passes in.
///
/// # Safety
/// `t.sizes` is valid for `t.ndim` reads and `t.data` for `t.nbytes`, during the call.
unsafe fn tensor_parts<'a>(t: &FerriteTensor, what: &str) -> Result<(ScalarType, Vec<usize>, &'a [u8]), Failure> {
    let dtype = i8::try_from(t.dtype)
        .ok()
        .and_then(ScalarType::from_code)
        .ok_or_else(|| Failure::argument(format!("{what}: dtype code {} is not an ExecuTorch ScalarType", t.dtype)))?;
    if t.ndim > FERRITE_MAX_DIMS {
        return Err(Failure::argument(format!("{what}: {} dimensions (at most {FERRITE_MAX_DIMS})", t.ndim)));
    }
    let sizes = if t.ndim == 0 {
        Vec::new()
    } else {
        if t.sizes.is_null() {
            return Err(Failure::argument(format!("{what}: sizes is NULL for {} dimensions", t.ndim)));
        }
        // SAFETY: non-NULL, `ndim` ≤ 16 elements, valid by the caller's contract.
        unsafe { std::slice::from_raw_parts(t.sizes, t.ndim) }.to_vec()
    };
    let need = ferrite_runtime::nbytes(dtype, &sizes)?;
    if t.nbytes != need {
        return Err(Failure::argument(format!(
            "{what}: {dtype} {sizes:?} takes {need} bytes, nbytes says {}",
            t.nbytes
        )));
    }
    // SAFETY: forwarded from this function's contract.
    let data = unsafe { bytes(t.data, t.nbytes, what) }?;
    Ok((dtype, sizes, data))
}

/// A spec or view handed out: sizes point into memory the object owns.
fn describe(dtype: ScalarType, sizes: &[usize], data: *const c_void) -> Result<FerriteTensor, Failure> {
    Ok(FerriteTensor {
        dtype: i32::from(dtype.code()),
        ndim: sizes.len(),
        sizes: sizes.as_ptr(),
        data,
        nbytes: ferrite_runtime::nbytes(dtype, sizes)?,
    })
}

/// Writes `value` through an out-pointer already checked non-NULL.
fn put<T>(out: &mut *mut T, value: T) {
    *out = Box::into_raw(Box::new(value));
}

// ---------------------------------------------------------------------------------------------
// Runtime

/// Creates a runtime: `threads` kernel threads (0: one per core, sharing a process-wide pool),
/// the best SIMD level this CPU runs, a memory limit of the machine's physical memory.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_runtime_new(threads: usize, out: *mut *mut FerriteRuntime) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { borrow_mut(out, "out") }?;
        let runtime = if threads == 0 { Runtime::new() } else { Runtime::new().with_threads(threads)? };
        put(out, FerriteRuntime { runtime });
        Ok(())
    })
}

/// Makes `runtime` refuse to load methods or delegates whose buffers would take more than
/// `bytes` (status [`FerriteStatus::MemoryLimit`], before allocating). Affects later loads.
///
/// # Safety
/// `runtime` is NULL or from [`ferrite_runtime_new`], not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn ferrite_runtime_set_memory_limit(runtime: *mut FerriteRuntime, bytes: u64) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let rt = unsafe { borrow_mut(runtime, "runtime") }?;
        rt.runtime = rt.runtime.clone().with_memory_limit(bytes);
        Ok(())
    })
}

/// Threads the runtime's kernels may use.
///
/// # Safety
/// `runtime` is NULL (returns 0) or from [`ferrite_runtime_new`].
#[no_mangle]
pub unsafe extern "C" fn ferrite_runtime_threads(runtime: *const FerriteRuntime) -> usize {
    // SAFETY: the caller's contract.
    unsafe { runtime.as_ref() }.map_or(0, |rt| rt.runtime.threads())
}

/// Releases a runtime (NULL is ignored). Methods and delegates loaded with it stay usable.
///
/// # Safety
/// `runtime` is NULL or from [`ferrite_runtime_new`], and not used again.
#[no_mangle]
pub unsafe extern "C" fn ferrite_runtime_free(runtime: *mut FerriteRuntime) {
    if !runtime.is_null() {
        // SAFETY: from `Box::into_raw` in `ferrite_runtime_new`, freed once by the contract.
        drop(unsafe { Box::from_raw(runtime) });
    }
}

// ---------------------------------------------------------------------------------------------
// Program

fn program(program: Program<'static>) -> FerriteProgram {
    let names = program.method_names().filter_map(|n| CString::new(n).ok()).collect();
    FerriteProgram { program: Arc::new(program), names }
}

/// Reads and verifies the program in the file `path` (UTF-8).
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_program_load_file(
    path: *const c_char,
    out: *mut *mut FerriteProgram,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (path, out) = unsafe { (string(path, "path")?, borrow_mut(out, "out")?) };
        put(out, program(Program::read(path)?));
        Ok(())
    })
}

/// Copies `len` bytes at `data` and verifies them as a program (the caller may free `data`
/// afterwards).
///
/// # Safety
/// `data` is valid for `len` bytes; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_program_load_bytes(
    data: *const c_void,
    len: usize,
    out: *mut *mut FerriteProgram,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (data, out) = unsafe { (bytes(data, len, "data")?, borrow_mut(out, "out")?) };
        put(out, program(Program::copy_from(data)?));
        Ok(())
    })
}

/// Number of methods in the program (0 for NULL).
///
/// # Safety
/// `program` is NULL or from a `ferrite_program_load_*` call.
#[no_mangle]
pub unsafe extern "C" fn ferrite_program_method_count(program: *const FerriteProgram) -> usize {
    // SAFETY: the caller's contract.
    unsafe { program.as_ref() }.map_or(0, |p| p.names.len())
}

/// Name of method `index` (NUL-terminated, owned by the program), or NULL when out of range.
///
/// # Safety
/// `program` is NULL or from a `ferrite_program_load_*` call.
#[no_mangle]
pub unsafe extern "C" fn ferrite_program_method_name(program: *const FerriteProgram, index: usize) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { program.as_ref() }.and_then(|p| p.names.get(index)).map_or(std::ptr::null(), |n| n.as_ptr())
}

/// Releases a program (NULL is ignored). Methods loaded from it stay usable.
///
/// # Safety
/// `program` is NULL or from a `ferrite_program_load_*` call, and not used again.
#[no_mangle]
pub unsafe extern "C" fn ferrite_program_free(program: *mut FerriteProgram) {
    if !program.is_null() {
        // SAFETY: from `Box::into_raw` in `put`, freed once by the contract.
        drop(unsafe { Box::from_raw(program) });
    }
}

// ---------------------------------------------------------------------------------------------
// Method

/// Loads method `name` of `program` with `runtime`: resolves kernels, initialises delegates,
/// allocates the memory plan.
///
/// # Safety
/// `runtime` and `program` are NULL or live objects of this library; `name` is NULL or
/// NUL-terminated; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_load(
    runtime: *const FerriteRuntime,
    program: *const FerriteProgram,
    name: *const c_char,
    out: *mut *mut FerriteMethod,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (rt, program, name, out) = unsafe {
            (borrow(runtime, "runtime")?, borrow(program, "program")?, string(name, "name")?, borrow_mut(out, "out")?)
        };
        let method = rt.runtime.load_method(&program.program, name)?;
        let input_sizes = (0..method.input_count())
            .map(|i| method.input_spec(i).map(|(_, s)| s.to_vec()).unwrap_or_default())
            .collect();
        put(out, FerriteMethod { method, input_sizes });
        Ok(())
    })
}

/// Number of inputs of the method (0 for NULL).
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`].
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_input_count(method: *const FerriteMethod) -> usize {
    // SAFETY: the caller's contract.
    unsafe { method.as_ref() }.map_or(0, |m| m.method.input_count())
}

/// Number of outputs of the method (0 for NULL).
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`].
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_output_count(method: *const FerriteMethod) -> usize {
    // SAFETY: the caller's contract.
    unsafe { method.as_ref() }.map_or(0, |m| m.method.output_count())
}

/// What input `index` takes: dtype and (upper-bound) sizes; `data` is NULL, `nbytes` the size
/// at those sizes. The sizes are owned by the method.
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`]; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_input_spec(
    method: *const FerriteMethod,
    index: usize,
    out: *mut FerriteTensor,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (m, out) = unsafe { (borrow(method, "method")?, borrow_mut(out, "out")?) };
        let (dtype, _) =
            m.method.input_spec(index).ok_or_else(|| not_found(format!("the method has no tensor input {index}")))?;
        *out = describe(dtype, &m.input_sizes[index], std::ptr::null())?;
        Ok(())
    })
}

fn not_found(message: String) -> Failure {
    Failure { status: FerriteStatus::NotFound, code: "A003", message }
}

/// Copies `tensor` into input `index`, checking dtype and shape (equal for static inputs,
/// within the bound for dynamic ones). Set every input before each execution.
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`], not in use by another thread; `tensor` is
/// NULL or valid, its `sizes` and `data` readable for `ndim` and `nbytes`.
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_set_input(
    method: *mut FerriteMethod,
    index: usize,
    tensor: *const FerriteTensor,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (m, t) = unsafe { (borrow_mut(method, "method")?, borrow(tensor, "tensor")?) };
        // SAFETY: the caller's contract on `tensor`'s pointers.
        let (dtype, sizes, data) = unsafe { tensor_parts(t, "tensor") }?;
        m.method.set_input_bytes(index, dtype, &sizes, data)?;
        Ok(())
    })
}

/// Runs the method on the inputs set.
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`], not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_execute(method: *mut FerriteMethod) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { borrow_mut(method, "method") }?;
        m.method.execute()?;
        Ok(())
    })
}

/// Output `index` of the last execution, in place: `sizes` and `data` point into the method
/// and stay valid until it runs again, its inputs are set, or it is freed.
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`]; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_output(
    method: *const FerriteMethod,
    index: usize,
    out: *mut FerriteTensor,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (m, out) = unsafe { (borrow(method, "method")?, borrow_mut(out, "out")?) };
        if index >= m.method.output_count() {
            return Err(not_found(format!("the method has {} outputs, not {}", m.method.output_count(), index + 1)));
        }
        let (dtype, sizes, data) = m.method.output_bytes(index)?;
        *out = describe(dtype, sizes, data.as_ptr().cast())?;
        Ok(())
    })
}

/// Releases a method (NULL is ignored).
///
/// # Safety
/// `method` is NULL or from [`ferrite_method_load`], and not used again.
#[no_mangle]
pub unsafe extern "C" fn ferrite_method_free(method: *mut FerriteMethod) {
    if !method.is_null() {
        // SAFETY: from `Box::into_raw` in `put`, freed once by the contract.
        drop(unsafe { Box::from_raw(method) });
    }
}

// ---------------------------------------------------------------------------------------------
// Delegate: what an embedding runtime's backend interface calls (ExecuTorch's, through the
// `FerriteBackend` plugin).

/// Decodes, verifies and initialises one Ferrite delegate from its blob (`len` bytes at
/// `blob`, copied as needed; the caller may free it afterwards): weights packed, buffers
/// allocated within the runtime's memory limit.
///
/// # Safety
/// `runtime` is NULL or from [`ferrite_runtime_new`]; `blob` is valid for `len` bytes; `out` is
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_init(
    runtime: *const FerriteRuntime,
    blob: *const c_void,
    len: usize,
    out: *mut *mut FerriteDelegate,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (rt, blob, out) =
            unsafe { (borrow(runtime, "runtime")?, bytes(blob, len, "blob")?, borrow_mut(out, "out")?) };
        let delegate = EmbeddedDelegate::init(&rt.runtime, blob).map_err(|e| {
            // A blob that does not decode or initialise is a malformed program, not a run failure.
            let mut f = Failure::from(e);
            if f.status == FerriteStatus::ExecutionFailed {
                f.status = FerriteStatus::InvalidProgram;
            }
            f
        })?;
        put(out, FerriteDelegate { delegate });
        Ok(())
    })
}

/// Number of inputs the delegate takes (0 for NULL).
///
/// # Safety
/// `delegate` is NULL or from [`ferrite_delegate_init`].
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_input_count(delegate: *const FerriteDelegate) -> usize {
    // SAFETY: the caller's contract.
    unsafe { delegate.as_ref() }.map_or(0, |d| d.delegate.input_count())
}

/// Number of outputs the delegate writes (0 for NULL).
///
/// # Safety
/// `delegate` is NULL or from [`ferrite_delegate_init`].
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_output_count(delegate: *const FerriteDelegate) -> usize {
    // SAFETY: the caller's contract.
    unsafe { delegate.as_ref() }.map_or(0, |d| d.delegate.output_count())
}

/// What input `index` must be (`data` NULL; sizes owned by the delegate).
///
/// # Safety
/// `delegate` is NULL or from [`ferrite_delegate_init`]; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_input_spec(
    delegate: *const FerriteDelegate,
    index: usize,
    out: *mut FerriteTensor,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (d, out) = unsafe { (borrow(delegate, "delegate")?, borrow_mut(out, "out")?) };
        let (dtype, sizes) =
            d.delegate.input_spec(index).ok_or_else(|| not_found(format!("the delegate has no input {index}")))?;
        *out = describe(dtype, sizes, std::ptr::null())?;
        Ok(())
    })
}

/// What output `index` is (`data` NULL; sizes owned by the delegate).
///
/// # Safety
/// `delegate` is NULL or from [`ferrite_delegate_init`]; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_output_spec(
    delegate: *const FerriteDelegate,
    index: usize,
    out: *mut FerriteTensor,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (d, out) = unsafe { (borrow(delegate, "delegate")?, borrow_mut(out, "out")?) };
        let (dtype, sizes) =
            d.delegate.output_spec(index).ok_or_else(|| not_found(format!("the delegate has no output {index}")))?;
        *out = describe(dtype, sizes, std::ptr::null())?;
        Ok(())
    })
}

/// Runs the delegate on `n_inputs` tensors, writing its `n_outputs` outputs into `outputs`
/// (each buffer exactly the output's `nbytes`). Inputs must match the input specs exactly.
///
/// # Safety
/// `delegate` is NULL or from [`ferrite_delegate_init`], not in use by another thread;
/// `inputs` is valid for `n_inputs` tensors (their sizes and data readable), `outputs` for
/// `n_outputs` buffers (writable, not overlapping each other or the inputs).
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_execute(
    delegate: *mut FerriteDelegate,
    inputs: *const FerriteTensor,
    n_inputs: usize,
    outputs: *const FerriteBuffer,
    n_outputs: usize,
) -> FerriteStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { borrow_mut(delegate, "delegate") }?;
        let ins = array(inputs, n_inputs, "inputs")?;
        let outs = array(outputs, n_outputs, "outputs")?;
        let mut parts = Vec::with_capacity(ins.len());
        for (k, t) in ins.iter().enumerate() {
            // SAFETY: the caller's contract on each input's pointers.
            parts.push(unsafe { tensor_parts(t, &format!("input {k}")) }?);
        }
        let views: Vec<TensorRef<'_>> =
            parts.iter().map(|(dtype, sizes, data)| TensorRef { dtype: *dtype, sizes, dim_order: &[], data }).collect();
        let mut buffers = Vec::with_capacity(outs.len());
        for (k, b) in outs.iter().enumerate() {
            // SAFETY: the caller's contract: each buffer writable and not overlapping.
            buffers.push(unsafe { bytes_mut(b.data, b.nbytes, &format!("output {k}")) }?);
        }
        d.delegate.execute(&views, &mut buffers)?;
        Ok(())
    })
}

/// `n` elements at `p` (NULL allowed when `n` is 0).
fn array<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL for {n} elements")));
    }
    if n > 1 << 20 {
        return Err(Failure::argument(format!("{what}: {n} elements")));
    }
    // SAFETY: the calling ABI function's contract makes `p` valid for `n` elements; `n` is
    // bounded so the byte length fits an isize.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Releases a delegate (NULL is ignored).
///
/// # Safety
/// `delegate` is NULL or from [`ferrite_delegate_init`], and not used again.
#[no_mangle]
pub unsafe extern "C" fn ferrite_delegate_free(delegate: *mut FerriteDelegate) {
    if !delegate.is_null() {
        // SAFETY: from `Box::into_raw` in `put`, freed once by the contract.
        drop(unsafe { Box::from_raw(delegate) });
    }
}
