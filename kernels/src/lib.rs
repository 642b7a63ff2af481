//! Portable compute kernels: safe, slice-based, generic over the element type.
//!
//! Every kernel takes contiguous row-major (`dim_order` = identity) slices plus
//! the shapes it needs, validates its preconditions and returns
//! [`KernelError`] rather than panicking. Operator adapters (argument parsing,
//! dtype promotion, output resizing) live one level up, in `crate::ops`.

pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod layout;
pub mod linalg;
pub mod matmul;
pub mod nhwc;
pub mod norm;
pub mod ordered;
pub mod pool;
pub mod quantized;
pub mod reduce;
pub mod rowwise;
pub mod simd;

use std::cell::Cell;

use half::{bf16, f16};

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

/// An element type a tensor can hold.
pub trait Element: Copy + Send + Sync + Default + PartialOrd + std::fmt::Debug + 'static {
    /// Widen to f64 (exact for every supported type except i64/u64 beyond 2^53).
    fn to_f64(self) -> f64;
    /// Narrow from f64 (saturating for integers, `!= 0` for bool).
    fn from_f64(v: f64) -> Self;
    /// Widen to f32.
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
    /// Narrow from f32.
    fn from_f32(v: f32) -> Self {
        Self::from_f64(v as f64)
    }
}

/// A floating-point element type; arithmetic on it is done in f32 (f64 for f64).
pub trait Float: Element {}

macro_rules! element_int {
    ($($t:ty),*) => {$(
        impl Element for $t {
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v as $t }
        }
    )*};
}
element_int!(i8, u8, i16, u16, i32, u32, i64, u64);

impl Element for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl Element for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl Element for f16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}
impl Element for bf16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
impl Element for bool {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}
impl Float for f32 {}
impl Float for f64 {}
impl Float for f16 {}
impl Float for bf16 {}

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
    let expected = numel(shape).ok_or_else(|| KernelError::Shape(format!("{what}: shape {shape:?} overflows")))?;
    if buf.len() != expected {
        return Err(KernelError::Length { what, expected, actual: buf.len() });
    }
    Ok(())
}
