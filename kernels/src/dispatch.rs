//! [`dispatch!`](crate::dispatch): the one dtype dispatch.

/// Runs `$body` with the type alias `$T` bound to the Rust type of `$dtype` (a [`DType`](crate::DType)),
/// choosing from one set of types:
///
/// | set | types |
/// |---|---|
/// | `all` | every element type; `Bool` as `u8` |
/// | `float` | `f16`, `bf16`, `f32`, `f64` |
/// | `real` | `f32`, `f64`, with `f16` and `bf16` computed as `f32` |
/// | `compute` | `real`, the integers, and `Bool` as `u8` |
/// | `quantized` | the integer types quantized values are stored in: `u8`, `i8`, `i16`, `u16`, `i32` |
/// | `accumulator` | `f64` for `F64`, `f32` for the other floats, `i64` otherwise (no `else` arm) |
///
/// Every set but `accumulator` ends with `else $other => $fallback`, run (with `$other` bound
/// to the dtype) for a dtype outside the set.
///
/// Without the crate's `all-dtypes` feature (a build that runs only what Ferrite's backend is
/// handed, such as the ExecuTorch plugin), the sets hold `Bool`, `u8`, `i8`, `i32`, `i64` and
/// `f32` alone: `f16`, `bf16`, `f64`, `i16`, `u16`, `u32` and `u64` take the `else` arm, and no
/// code is generated for them. (`accumulator` keeps `f64`: it names a type to sum in, not a
/// tensor's.) ([`ALL_DTYPES`](crate::ALL_DTYPES) says which build this is.)
///
/// ```
/// use ferrite_kernels::num::{DType, Element};
///
/// fn bytes_of_one(dtype: DType) -> Result<usize, String> {
///     ferrite_kernels::dispatch!(all dtype, T => Ok(std::mem::size_of_val(&T::ONE)), else other => Err(format!("{other}")))
/// }
/// assert_eq!(bytes_of_one(DType::F16), Ok(2));
/// ```
#[macro_export]
macro_rules! dispatch {
    (@one $T:ident = $t:ty, $body:expr) => {{
        #[allow(dead_code)]
        type $T = $t;
        $body
    }};
    (all $dtype:expr, $T:ident => $body:expr, else $other:ident => $fallback:expr) => {{
        use $crate::num::DType as __D;
        match $dtype {
            __D::Bool | __D::U8 => $crate::dispatch!(@one $T = u8, $body),
            __D::I8 => $crate::dispatch!(@one $T = i8, $body),
            __D::I16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = i16, $body),
            __D::U16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u16, $body),
            __D::I32 => $crate::dispatch!(@one $T = i32, $body),
            __D::U32 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u32, $body),
            __D::I64 => $crate::dispatch!(@one $T = i64, $body),
            __D::U64 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u64, $body),
            __D::F16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = $crate::half::f16, $body),
            __D::BF16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = $crate::half::bf16, $body),
            __D::F32 => $crate::dispatch!(@one $T = f32, $body),
            __D::F64 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = f64, $body),
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    }};
    (float $dtype:expr, $T:ident => $body:expr, else $other:ident => $fallback:expr) => {{
        use $crate::num::DType as __D;
        match $dtype {
            __D::F16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = $crate::half::f16, $body),
            __D::BF16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = $crate::half::bf16, $body),
            __D::F32 => $crate::dispatch!(@one $T = f32, $body),
            __D::F64 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = f64, $body),
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    }};
    (real $dtype:expr, $T:ident => $body:expr, else $other:ident => $fallback:expr) => {{
        use $crate::num::DType as __D;
        match $dtype {
            __D::F16 | __D::BF16 | __D::F32 => $crate::dispatch!(@one $T = f32, $body),
            __D::F64 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = f64, $body),
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    }};
    (compute $dtype:expr, $T:ident => $body:expr, else $other:ident => $fallback:expr) => {{
        use $crate::num::DType as __D;
        match $dtype {
            __D::F16 | __D::BF16 | __D::F32 => $crate::dispatch!(@one $T = f32, $body),
            __D::F64 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = f64, $body),
            __D::Bool | __D::U8 => $crate::dispatch!(@one $T = u8, $body),
            __D::I8 => $crate::dispatch!(@one $T = i8, $body),
            __D::I16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = i16, $body),
            __D::U16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u16, $body),
            __D::I32 => $crate::dispatch!(@one $T = i32, $body),
            __D::U32 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u32, $body),
            __D::I64 => $crate::dispatch!(@one $T = i64, $body),
            __D::U64 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u64, $body),
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    }};
    (quantized $dtype:expr, $T:ident => $body:expr, else $other:ident => $fallback:expr) => {{
        use $crate::num::DType as __D;
        match $dtype {
            __D::U8 => $crate::dispatch!(@one $T = u8, $body),
            __D::I8 => $crate::dispatch!(@one $T = i8, $body),
            __D::I16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = i16, $body),
            __D::U16 if $crate::ALL_DTYPES => $crate::dispatch!(@one $T = u16, $body),
            __D::I32 => $crate::dispatch!(@one $T = i32, $body),
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    }};
    (accumulator $dtype:expr, $T:ident => $body:expr) => {{
        use $crate::num::DType as __D;
        match $dtype {
            __D::F64 => $crate::dispatch!(@one $T = f64, $body),
            __D::F16 | __D::BF16 | __D::F32 => $crate::dispatch!(@one $T = f32, $body),
            _ => $crate::dispatch!(@one $T = i64, $body),
        }
    }};
}
