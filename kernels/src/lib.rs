//! **ferrite-kernels**: Ferrite's compute library — the role tract-linalg plays for tract. It
//! knows nothing of programs: kernels take slices and shapes, check every precondition and return
//! a [`KernelError`] rather than panicking.
//!
//! - [`num`]: the element types as one trait hierarchy ([`Element`] → [`Number`] → [`Real`] /
//!   [`Integer`] / [`Accumulator`], and [`Float`]) and [`dispatch!`], the one way from a run-time
//!   [`DType`] to a Rust type.
//! - [`simd`]: the SIMD [`Level`](simd::Level) (AVX-512, AVX2+FMA, NEON, portable), detected once
//!   and injectable; the vector leaf (with `int8`'s micro-kernels, the only `unsafe`): packed GEMM tiles, depthwise rows, row
//!   kernels.
//! - Portable kernels, generic over the element type: [`elementwise`], [`reduce`], [`norm`],
//!   [`pool`], [`conv`] (im2col + GEMM, depthwise, transposed), [`linalg`] (products through the
//!   `gemm` crate, [`ordered`] products in ExecuTorch's summation order), [`quantized`],
//!   [`layout`].
//! - The Ferrite backend's kernels, f32 over SIMD: [`nhwc`] (channels-last convolution with
//!   packed weights), [`dense`], [`rowwise`] (broadcast arithmetic, activations, softmax, layer
//!   norm, sums, NHWC pooling).
//! - The backend's integer kernels: [`int8`] (int8 × int8 → `i32` products with packed weights
//!   and requantization: linear layers, NHWC and depthwise convolutions).
//!
//! ```
//! use ferrite_kernels::elementwise::binary;
//!
//! # fn main() -> Result<(), ferrite_kernels::KernelError> {
//! let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [10.0f32, 20.0]);
//! let mut out = [0.0f32; 4];
//! // [2, 2] + [2] broadcast: each row gets b.
//! binary(&a, &[2, 2], &b, &[2], &mut out, &[2, 2], |x, y| x + y)?;
//! assert_eq!(out, [11.0, 22.0, 13.0, 24.0]);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod conv;
pub mod dense;
mod dispatch;
pub mod elementwise;
pub mod int8;
pub mod layout;
pub mod linalg;
pub mod matmul;
pub mod nhwc;
pub mod norm;
pub mod num;
pub mod ordered;
pub mod par;
pub mod pool;
pub mod quantized;
pub mod reduce;
pub mod rowwise;
pub mod simd;

use std::cell::Cell;

#[doc(hidden)]
pub use half;

/// Whether [`dispatch!`] covers every element type (the `all-dtypes` feature, on by default) or
/// only those Ferrite's backend is handed: `Bool`, `u8`, `i8`, `i32`, `i64`, `f32`.
pub const ALL_DTYPES: bool = cfg!(feature = "all-dtypes");
pub use num::{Accumulator, DType, Element, Float, Integer, Kind, Number, Real};

thread_local! {
    /// Set while [`serial`] runs: kernels then stay on the calling thread.
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Threads a kernel may split its work over: 1 inside [`serial`], otherwise the size of the
/// rayon pool the caller runs in. Kernels only use rayon's parallel iterators when this is
/// above 1.
pub fn threads() -> usize {
    if SERIAL.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `f` with every kernel on the calling thread (a one-thread runtime: no hand-off to a
/// pool thread and back on each execution).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// A kernel's precondition did not hold. Operator adapters validate shapes
/// before calling kernels, so reaching one of these is a bug in the adapter or
/// a program the adapter failed to reject; it is reported, never a panic.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// A buffer's length does not match the shape it was given with.
    #[error("{what}: buffer holds {actual} elements but the shape needs {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Elements the shape implies.
        expected: usize,
        /// Elements the buffer holds.
        actual: usize,
    },
    /// Two shapes that must agree do not.
    #[error("{0}")]
    Shape(String),
    /// An argument is outside the range the kernel supports.
    #[error("{0}")]
    Argument(String),
}

/// Result of a kernel.
pub type KResult<T = ()> = Result<T, KernelError>;

/// Number of elements of `shape`, or `None` on overflow.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major (contiguous) strides, in elements, of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].saturating_mul(shape[i + 1]);
    }
    strides
}

/// Checks that `buf` holds exactly `numel(shape)` elements.
pub fn check_len<T>(what: &'static str, buf: &[T], shape: &[usize]) -> KResult {
    check_numel(what, buf.len(), shape)
}

/// [`check_len`] on a length: not generic, so not copied into every caller's instantiations.
pub(crate) fn check_numel(what: &'static str, len: usize, shape: &[usize]) -> KResult {
    let expected = numel(shape).ok_or_else(|| KernelError::Shape(format!("{what}: shape {shape:?} overflows")))?;
    if len != expected {
        return Err(KernelError::Length { what, expected, actual: len });
    }
    Ok(())
}
