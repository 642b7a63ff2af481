//! The element types kernels work on, as one trait hierarchy. [`dispatch!`](crate::dispatch)
//! (in `dispatch.rs`) is the one way from a run-time [`DType`] to a Rust type.
//!
//! ```text
//! Element        every type a tensor holds: u8 (also bool tensors), i8, i16, u16, i32, u32, i64,
//!  │             u64, f16, bf16, f32, f64 — C++-style conversions between all of them
//!  ├─ Number     the types arithmetic is done in: the integers, f32, f64 (integer arithmetic
//!  │   │         wraps, division is Python's where PyTorch's is)
//!  │   ├─ Integer      bit operations and the type's range
//!  │   ├─ Real         f32 and f64: the math library
//!  │   └─ Accumulator  f32, f64 and i64: what reductions sum in
//!  └─ Float      the floating-point storage types, each with the `Real` it computes in (f16 and
//!                bf16 compute in f32)
//! ```
//!
//! Kernels are written once, generic over the narrowest trait they need; operators dispatch on
//! the tensor's dtype in one place with [`dispatch!`](crate::dispatch). Where a kernel must do
//! something type-specific (a matrix product through `gemm` for f32, an integer loop for the
//! integers), it matches on [`Element::DTYPE`], a constant the compiler folds away.

use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use half::{bf16, f16};

/// The element type of a tensor, at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `bool`, stored as one byte (0 or 1): kernels see `u8`.
    Bool,
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `uint16`.
    U16,
    /// `int32`.
    I32,
    /// `uint32`.
    U32,
    /// `int64`.
    I64,
    /// `uint64`.
    U64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// Whether this is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// The name PyTorch gives the type (`float32`, `int64`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an element converts to others ([`Element::cast`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `f16`, `bf16`, `f32`, `f64`.
    Float,
    /// `i8` .. `i64`.
    Signed,
    /// `u8` .. `u64` (bool tensors are viewed as `u8`).
    Unsigned,
}

/// Every type a tensor's elements can be viewed as, with C++ `static_cast` conversions between
/// all of them: float to integer truncates toward zero (saturating, where C++ is undefined),
/// integer to integer wraps, integer to float rounds to nearest.
pub trait Element: bytemuck::Pod + Default + PartialOrd + fmt::Debug + Send + Sync + 'static {
    /// The run-time type (`u8` is [`DType::U8`]; bool tensors are viewed as `u8` too).
    const DTYPE: DType;
    /// Conversion class.
    const KIND: Kind;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// As f64 (exact for every type but 64-bit integers beyond 2^53).
    fn to_f64(self) -> f64;
    /// As i64 (floats truncate toward zero, saturating; unsigned integers wrap).
    fn to_i64(self) -> i64;
    /// As u64 (floats truncate, saturating; signed integers wrap).
    fn to_u64(self) -> u64;
    /// From f64 (rounding for floats, truncating and saturating for integers).
    fn from_f64(v: f64) -> Self;
    /// From i64 (wrapping for integers, rounding once for floats).
    fn from_i64(v: i64) -> Self;
    /// From u64 (wrapping for integers, rounding once for floats).
    fn from_u64(v: u64) -> Self;
    /// As f32 (through f64 for integers).
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
    /// From f32.
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        Self::from_f64(f64::from(v))
    }
    /// Converts to another element type with C++ `static_cast` semantics.
    #[inline(always)]
    fn cast<U: Element>(self) -> U {
        match Self::KIND {
            Kind::Float => U::from_f64(self.to_f64()),
            Kind::Signed => U::from_i64(self.to_i64()),
            Kind::Unsigned => U::from_u64(self.to_u64()),
        }
    }
    /// `self + b` in the type itself: wrapping for integers, in f32 (f64 for f64) rounded back
    /// for floats, as C++ arithmetic on `c10::Half` does.
    #[inline(always)]
    fn add_in_type(self, b: Self) -> Self {
        match (Self::KIND, Self::DTYPE) {
            (Kind::Float, DType::F64) => Self::from_f64(self.to_f64() + b.to_f64()),
            (Kind::Float, _) => Self::from_f32(self.to_f32() + b.to_f32()),
            _ => Self::from_u64(self.to_u64().wrapping_add(b.to_u64())),
        }
    }
    /// `self != 0` (NaN is non-zero): conversion to bool.
    fn nonzero(self) -> bool;
    /// Whether the value is NaN (never for integers).
    #[inline(always)]
    #[allow(clippy::eq_op)]
    fn is_nan(self) -> bool {
        self != self
    }
}

macro_rules! element_int {
    ($kind:ident: $($t:ty => $dtype:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            const KIND: Kind = Kind::$kind;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn to_i64(self) -> i64 { self as i64 }
            #[inline(always)] fn to_u64(self) -> u64 { self as u64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)] fn from_i64(v: i64) -> Self { v as $t }
            #[inline(always)] fn from_u64(v: u64) -> Self { v as $t }
            #[inline(always)] fn nonzero(self) -> bool { self != 0 }
        }
    )*};
}
element_int!(Signed: i8 => I8, i16 => I16, i32 => I32, i64 => I64);
element_int!(Unsigned: u8 => U8, u16 => U16, u32 => U32, u64 => U64);

macro_rules! element_float {
    ($($t:ty => $dtype:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            const KIND: Kind = Kind::Float;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn to_i64(self) -> i64 { self as i64 }
            #[inline(always)] fn to_u64(self) -> u64 { self as u64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)] fn from_i64(v: i64) -> Self { v as $t }
            #[inline(always)] fn from_u64(v: u64) -> Self { v as $t }
            #[inline(always)] fn to_f32(self) -> f32 { self as f32 }
            #[inline(always)] fn from_f32(v: f32) -> Self { v as $t }
            #[inline(always)] fn nonzero(self) -> bool { self != 0.0 }
        }
    )*};
}
element_float!(f32 => F32, f64 => F64);

macro_rules! element_half {
    ($($t:ty => $dtype:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            const KIND: Kind = Kind::Float;
            const ZERO: Self = <$t>::ZERO;
            const ONE: Self = <$t>::ONE;
            #[inline(always)] fn to_f64(self) -> f64 { <$t>::to_f64(self) }
            #[inline(always)] fn to_i64(self) -> i64 { <$t>::to_f32(self) as i64 }
            #[inline(always)] fn to_u64(self) -> u64 { <$t>::to_f32(self) as u64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            #[inline(always)] fn from_i64(v: i64) -> Self { <$t>::from_f64(v as f64) }
            #[inline(always)] fn from_u64(v: u64) -> Self { <$t>::from_f64(v as f64) }
            #[inline(always)] fn to_f32(self) -> f32 { <$t>::to_f32(self) }
            #[inline(always)] fn from_f32(v: f32) -> Self { <$t>::from_f32(v) }
            #[inline(always)] fn nonzero(self) -> bool { <$t>::to_f32(self) != 0.0 }
        }
    )*};
}
element_half!(f16 => F16, bf16 => BF16);

/// A type arithmetic is done in: the integers, f32 and f64. Integer arithmetic wraps, as
/// ExecuTorch's C++ kernels do on two's-complement targets.
pub trait Number: Element {
    /// `a + b`.
    fn add(self, b: Self) -> Self;
    /// `a - b`.
    fn sub(self, b: Self) -> Self;
    /// `a * b`.
    fn mul(self, b: Self) -> Self;
    /// `a / b`, truncating for integers (0 for a zero divisor; callers reject those first).
    fn div(self, b: Self) -> Self;
    /// Python floor division (`a // b`), as ExecuTorch's `utils::floor_divide`.
    fn floor_div(self, b: Self) -> Self;
    /// Division rounded toward zero.
    fn trunc_div(self, b: Self) -> Self;
    /// Python remainder (sign of the divisor), as `torch.remainder`.
    fn py_rem(self, b: Self) -> Self;
    /// C `fmod` (sign of the dividend).
    fn c_fmod(self, b: Self) -> Self;
    /// Maximum, propagating NaN (the first NaN operand wins).
    fn max_nan(self, b: Self) -> Self;
    /// Minimum, propagating NaN (the first NaN operand wins).
    fn min_nan(self, b: Self) -> Self;
    /// Absolute value (wrapping for the most negative integer).
    fn abs_val(self) -> Self;
    /// Negation (wrapping).
    fn neg_val(self) -> Self;
    /// -1, 0 or 1 (NaN stays NaN).
    fn sign_val(self) -> Self;
}

macro_rules! number_int {
    ($($t:ty),*) => {$(
        impl Number for $t {
            #[inline(always)] fn add(self, b: Self) -> Self { self.wrapping_add(b) }
            #[inline(always)] fn sub(self, b: Self) -> Self { self.wrapping_sub(b) }
            #[inline(always)] fn mul(self, b: Self) -> Self { self.wrapping_mul(b) }
            #[inline(always)] fn div(self, b: Self) -> Self { if b == 0 { 0 } else { self.wrapping_div(b) } }
            #[inline(always)]
            fn floor_div(self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let q = self.wrapping_div(b);
                #[allow(unused_comparisons)]
                let same_sign = (self < 0) == (b < 0);
                if same_sign || self.wrapping_rem(b) == 0 { q } else { q.wrapping_sub(1) }
            }
            #[inline(always)] fn trunc_div(self, b: Self) -> Self { Number::div(self, b) }
            #[inline(always)]
            fn py_rem(self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(b);
                #[allow(unused_comparisons)]
                let fix = r != 0 && ((r < 0) != (b < 0));
                if fix { r.wrapping_add(b) } else { r }
            }
            #[inline(always)] fn c_fmod(self, b: Self) -> Self { if b == 0 { 0 } else { self.wrapping_rem(b) } }
            #[inline(always)] fn max_nan(self, b: Self) -> Self { if self >= b { self } else { b } }
            #[inline(always)] fn min_nan(self, b: Self) -> Self { if self <= b { self } else { b } }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn abs_val(self) -> Self { if self < 0 { (0 as $t).wrapping_sub(self) } else { self } }
            #[inline(always)] fn neg_val(self) -> Self { (0 as $t).wrapping_sub(self) }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn sign_val(self) -> Self { if self > 0 { 1 } else if self < 0 { (0 as $t).wrapping_sub(1) } else { 0 } }
        }
    )*};
}
number_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! number_float {
    ($($t:ty),*) => {$(
        impl Number for $t {
            #[inline(always)] fn add(self, b: Self) -> Self { self + b }
            #[inline(always)] fn sub(self, b: Self) -> Self { self - b }
            #[inline(always)] fn mul(self, b: Self) -> Self { self * b }
            #[inline(always)] fn div(self, b: Self) -> Self { self / b }
            #[inline(always)]
            fn floor_div(self, b: Self) -> Self {
                if b == 0.0 {
                    return if self.is_sign_negative() { <$t>::NEG_INFINITY } else { <$t>::INFINITY };
                }
                let m = self % b;
                let d = (self - m) / b;
                if m != 0.0 && b.is_sign_negative() != m.is_sign_negative() { d - 1.0 } else { d }
            }
            #[inline(always)] fn trunc_div(self, b: Self) -> Self { (self / b).trunc() }
            #[inline(always)]
            fn py_rem(self, b: Self) -> Self {
                let r = self % b;
                if r != 0.0 && ((self < 0.0) != (b < 0.0)) { r + b } else { r }
            }
            #[inline(always)] fn c_fmod(self, b: Self) -> Self { self % b }
            #[inline(always)]
            fn max_nan(self, b: Self) -> Self {
                if self.is_nan() { self } else if b.is_nan() { b } else if self >= b { self } else { b }
            }
            #[inline(always)]
            fn min_nan(self, b: Self) -> Self {
                if self.is_nan() { self } else if b.is_nan() { b } else if self <= b { self } else { b }
            }
            #[inline(always)] fn abs_val(self) -> Self { self.abs() }
            #[inline(always)] fn neg_val(self) -> Self { -self }
            #[inline(always)]
            fn sign_val(self) -> Self {
                if self.is_nan() { self } else if self > 0.0 { 1.0 } else if self < 0.0 { -1.0 } else { 0.0 }
            }
        }
    )*};
}
number_float!(f32, f64);

/// The integers (bool tensors as `u8` 0/1): bit operations and the type's range.
pub trait Integer: Number {
    /// The smallest value, as i64.
    const LOWEST: i64;
    /// The largest value, as i64 (saturated: `u64`'s is `i64::MAX`).
    const HIGHEST: i64;
    /// `a & b`.
    fn and(self, b: Self) -> Self;
    /// `a | b`.
    fn or(self, b: Self) -> Self;
    /// `a ^ b`.
    fn xor(self, b: Self) -> Self;
    /// `!a`.
    fn not(self) -> Self;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Integer for $t {
            const LOWEST: i64 = <$t>::MIN as i64;
            #[allow(clippy::cast_possible_wrap)]
            const HIGHEST: i64 = if (<$t>::MAX as u64) > i64::MAX as u64 { i64::MAX } else { <$t>::MAX as i64 };
            #[inline(always)] fn and(self, b: Self) -> Self { self & b }
            #[inline(always)] fn or(self, b: Self) -> Self { self | b }
            #[inline(always)] fn xor(self, b: Self) -> Self { self ^ b }
            #[inline(always)] fn not(self) -> Self { !self }
        }
    )*};
}
integer!(i8, i16, i32, i64, u8, u16, u32, u64);

/// f32 and f64: the types floating-point kernels compute in, with the math library.
pub trait Real:
    Number
    + Neg<Output = Self>
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + AddAssign
{
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// `e^x`.
    fn exp(self) -> Self;
    /// `e^x - 1`.
    fn exp_m1(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + x)`.
    fn ln_1p(self) -> Self;
    /// Base-2 logarithm.
    fn log2(self) -> Self;
    /// Base-10 logarithm.
    fn log10(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Tangent.
    fn tan(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Arcsine.
    fn asin(self) -> Self;
    /// Arccosine.
    fn acos(self) -> Self;
    /// Arctangent.
    fn atan(self) -> Self;
    /// Two-argument arctangent.
    fn atan2(self, b: Self) -> Self;
    /// Hyperbolic sine.
    fn sinh(self) -> Self;
    /// Hyperbolic cosine.
    fn cosh(self) -> Self;
    /// Error function ([`crate::elementwise::erf_f64`], rounded for f32).
    fn erf(self) -> Self;
    /// Round toward -inf.
    fn floor(self) -> Self;
    /// Round toward +inf.
    fn ceil(self) -> Self;
    /// Round toward zero.
    fn trunc(self) -> Self;
    /// Round half to even.
    fn round_even(self) -> Self;
    /// `a^b`.
    fn powf(self, b: Self) -> Self;
    /// Whether the value is ±inf.
    fn is_inf(self) -> bool;
}

macro_rules! real {
    ($t:ty, $erf:path) => {
        impl Real for $t {
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn log2(self) -> Self {
                <$t>::log2(self)
            }
            #[inline(always)]
            fn log10(self) -> Self {
                <$t>::log10(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn asin(self) -> Self {
                <$t>::asin(self)
            }
            #[inline(always)]
            fn acos(self) -> Self {
                <$t>::acos(self)
            }
            #[inline(always)]
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            #[inline(always)]
            fn atan2(self, b: Self) -> Self {
                <$t>::atan2(self, b)
            }
            #[inline(always)]
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            #[inline(always)]
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            #[inline(always)]
            fn trunc(self) -> Self {
                <$t>::trunc(self)
            }
            #[inline(always)]
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            #[inline(always)]
            fn powf(self, b: Self) -> Self {
                <$t>::powf(self, b)
            }
            #[inline(always)]
            fn is_inf(self) -> bool {
                <$t>::is_infinite(self)
            }
        }
    };
}
real!(f32, crate::elementwise::erf_f32);
real!(f64, crate::elementwise::erf_f64);

/// What reductions accumulate in: f32 (for f32, f16 and bf16 results), f64, or wrapping i64
/// (integers).
pub trait Accumulator: Number {
    /// Converts an input element.
    fn from_elem<T: Element>(v: T) -> Self;
    /// Converts to a result element.
    fn to_elem<T: Element>(self) -> T;
}

impl Accumulator for f32 {
    #[inline(always)]
    fn from_elem<T: Element>(v: T) -> Self {
        v.to_f32()
    }
    #[inline(always)]
    fn to_elem<T: Element>(self) -> T {
        T::from_f32(self)
    }
}

impl Accumulator for f64 {
    #[inline(always)]
    fn from_elem<T: Element>(v: T) -> Self {
        v.to_f64()
    }
    #[inline(always)]
    fn to_elem<T: Element>(self) -> T {
        T::from_f64(self)
    }
}

impl Accumulator for i64 {
    #[inline(always)]
    fn from_elem<T: Element>(v: T) -> Self {
        v.to_i64()
    }
    #[inline(always)]
    fn to_elem<T: Element>(self) -> T {
        // Floats through f64, as the reductions always converted integer sums.
        match T::KIND {
            Kind::Float => T::from_f64(self as f64),
            Kind::Signed | Kind::Unsigned => T::from_i64(self),
        }
    }
}

/// A floating-point storage type and the [`Real`] it computes in (f32 for f16 and bf16).
pub trait Float: Element {
    /// The compute type.
    type Compute: Real;
    /// Widens to the compute type.
    fn to_compute(self) -> Self::Compute;
    /// Narrows from the compute type (rounding to nearest).
    fn from_compute(c: Self::Compute) -> Self;
}

impl Float for f32 {
    type Compute = f32;
    #[inline(always)]
    fn to_compute(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_compute(c: f32) -> Self {
        c
    }
}

impl Float for f64 {
    type Compute = f64;
    #[inline(always)]
    fn to_compute(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_compute(c: f64) -> Self {
        c
    }
}

macro_rules! float_half {
    ($($t:ty),*) => {$(
        impl Float for $t {
            type Compute = f32;
            #[inline(always)]
            fn to_compute(self) -> f32 {
                <$t>::to_f32(self)
            }
            #[inline(always)]
            fn from_compute(c: f32) -> Self {
                <$t>::from_f32(c)
            }
        }
    )*};
}
float_half!(f16, bf16);

/// `values` viewed as `U` when `T` and `U` are the same type (`T::DTYPE == U::DTYPE`): how a
/// kernel generic over `T` reaches a type-specific implementation.
pub fn same<T: Element, U: Element>(values: &[T]) -> Option<&[U]> {
    (T::DTYPE == U::DTYPE).then(|| bytemuck::try_cast_slice(values).ok()).flatten()
}

/// [`same`] for mutable slices.
pub fn same_mut<T: Element, U: Element>(values: &mut [T]) -> Option<&mut [U]> {
    (T::DTYPE == U::DTYPE).then(|| bytemuck::try_cast_slice_mut(values).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_follow_cpp() {
        assert_eq!((-1i8).cast::<u8>(), 255);
        assert_eq!(300i32.cast::<u8>(), 44);
        assert_eq!((-2.7f32).cast::<i32>(), -2);
        assert_eq!(1e10f64.cast::<i32>(), i32::MAX);
        assert_eq!(f32::NAN.cast::<i32>(), 0);
        assert_eq!(u64::MAX.cast::<f32>(), 18_446_744_073_709_551_615.0);
        assert_eq!(f16::from_f32(1.5).cast::<i64>(), 1);
        assert_eq!(((1i64 << 53) + 1).cast::<f32>(), ((1i64 << 53) + 1) as f32);
        assert_eq!((-1i64).cast::<u32>(), u32::MAX);
        assert_eq!(0.1f32.cast::<bf16>(), bf16::from_f32(0.1));
        // Integer sums reach floats through f64 (two roundings), as reductions always did.
        let big = (1i64 << 53) + (1 << 29) + 1;
        assert_eq!(Accumulator::to_elem::<f32>(big), big as f64 as f32);
    }

    #[test]
    fn python_division_semantics() {
        assert_eq!((-7i64).floor_div(2), -4);
        assert_eq!(7i64.floor_div(-2), -4);
        assert_eq!((-7i64).py_rem(2), 1);
        assert_eq!(7i64.py_rem(-2), -1);
        assert_eq!(i64::MIN.floor_div(-1), i64::MIN);
        assert_eq!((-7.0f64).floor_div(2.0), -4.0);
        assert_eq!((-7.5f64).py_rem(2.0), 0.5);
        assert_eq!(1.0f32.floor_div(0.0), f32::INFINITY);
        assert_eq!((-1.0f32).floor_div(0.0), f32::NEG_INFINITY);
        assert!(f32::NAN.max_nan(1.0).is_nan());
        assert!(1.0f32.min_nan(f32::NAN).is_nan());
    }

    #[test]
    fn ranges_and_views() {
        assert_eq!((i8::LOWEST, i8::HIGHEST), (-128, 127));
        assert_eq!(u64::HIGHEST, i64::MAX);
        assert!(same::<f32, f32>(&[1.0f32]).is_some());
        assert!(same::<f32, i32>(&[1.0f32]).is_none());
        assert_eq!(DType::BF16.size(), 2);
        assert_eq!(DType::F32.to_string(), "float32");
        assert_eq!(250u8.add_in_type(10), 4);
        assert_eq!((-128i8).add_in_type(-1), 127);
        assert_eq!(f16::from_f32(2048.0).add_in_type(f16::ONE), f16::from_f32(2048.0));
    }
}
