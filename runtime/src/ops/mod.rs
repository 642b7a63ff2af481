//! Operator adapters: parse an ExecuTorch kernel call's arguments (schema order, outputs last;
//! ExecuTorch appends the returned values after the outputs, which adapters ignore), resize the
//! outputs, and call the kernels in [`ferrite_kernels`].
//!
//! Each file covers one family; [`register_all`] lists every operator Ferrite implements.

use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;

mod conv;
mod copy;
mod elementwise;
mod index;
mod linalg;
mod norm;
mod pool;
mod prim;
mod quantized;
mod reduce;

/// A registry of every operator Ferrite implements (what [`crate::Runtime::new`] uses).
pub fn portable_kernels() -> KernelRegistry {
    let mut r = KernelRegistry::empty();
    register_all(&mut r);
    r
}

/// Registers every operator Ferrite implements.
pub fn register_all(r: &mut KernelRegistry) {
    prim::register(r);
    copy::register(r);
    conv::register(r);
    pool::register(r);
    elementwise::register(r);
    reduce::register(r);
    norm::register(r);
    linalg::register(r);
    index::register(r);
    quantized::register(r);
}

/// Argument `i` of a call, or an error naming the operator's arity.
pub(crate) fn arg(args: &[usize], i: usize) -> Result<usize> {
    args.get(i)
        .copied()
        .ok_or_else(|| RuntimeError::Invalid(format!("expected at least {} arguments, got {}", i + 1, args.len())))
}

/// Normalises a possibly negative dimension against `rank`.
pub(crate) fn norm_dim(dim: i64, rank: usize) -> Result<usize> {
    let r = rank.max(1) as i64;
    let d = if dim < 0 { dim + r } else { dim };
    if (0..r).contains(&d) {
        Ok(d as usize)
    } else {
        Err(RuntimeError::Invalid(format!("dimension {dim} is out of range for a rank-{rank} tensor")))
    }
}

/// Converts a size list from the program (may hold -1 for one inferred dimension).
pub(crate) fn infer_sizes(sizes: &[i64], numel: usize) -> Result<Vec<usize>> {
    let mut infer = None;
    let mut known = 1usize;
    let mut out = Vec::with_capacity(sizes.len());
    for (i, &s) in sizes.iter().enumerate() {
        if s == -1 {
            if infer.replace(i).is_some() {
                return Err(RuntimeError::Invalid(format!("size {sizes:?} has more than one -1")));
            }
            out.push(1);
        } else {
            let s = usize::try_from(s).map_err(|_| RuntimeError::Invalid(format!("invalid size {s} in {sizes:?}")))?;
            known = known.checked_mul(s).ok_or_else(|| RuntimeError::Invalid(format!("size {sizes:?} overflows")))?;
            out.push(s);
        }
    }
    if let Some(i) = infer {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(RuntimeError::Invalid(format!("cannot infer -1 in {sizes:?} for {numel} elements")));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(RuntimeError::Invalid(format!("size {sizes:?} does not hold {numel} elements")));
    }
    Ok(out)
}

/// Calls `$body` with `$t` bound to the Rust type of `$dtype` (all numeric types; bool as u8).
macro_rules! dispatch_all {
    ($dtype:expr, $t:ident => $body:expr) => {{
        use ferrite_program::ScalarType as S;
        match $dtype {
            S::Float => {
                type $t = f32;
                $body
            }
            S::Double => {
                type $t = f64;
                $body
            }
            S::Half => {
                type $t = half::f16;
                $body
            }
            S::BFloat16 => {
                type $t = half::bf16;
                $body
            }
            S::Long => {
                type $t = i64;
                $body
            }
            S::Int => {
                type $t = i32;
                $body
            }
            S::Short => {
                type $t = i16;
                $body
            }
            S::Char => {
                type $t = i8;
                $body
            }
            S::Byte | S::Bool => {
                type $t = u8;
                $body
            }
            S::UInt16 => {
                type $t = u16;
                $body
            }
            S::UInt32 => {
                type $t = u32;
                $body
            }
            S::UInt64 => {
                type $t = u64;
                $body
            }
            other => return Err($crate::error::RuntimeError::Unsupported(format!("{other} tensors in this operator"))),
        }
    }};
}

/// Calls `$body` with `$t` bound to the Rust type of a floating-point `$dtype`.
macro_rules! dispatch_float {
    ($dtype:expr, $t:ident => $body:expr) => {{
        use ferrite_program::ScalarType as S;
        match $dtype {
            S::Float => {
                type $t = f32;
                $body
            }
            S::Double => {
                type $t = f64;
                $body
            }
            S::Half => {
                type $t = half::f16;
                $body
            }
            S::BFloat16 => {
                type $t = half::bf16;
                $body
            }
            other => {
                return Err($crate::error::RuntimeError::Unsupported(format!(
                    "{other} tensors in this operator (floating point only)"
                )))
            }
        }
    }};
}
pub(crate) use {dispatch_all, dispatch_float};
