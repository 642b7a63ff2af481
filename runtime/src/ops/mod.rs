//! Operator adapters: parse an ExecuTorch kernel call's arguments (schema order, outputs last;
//! ExecuTorch appends the returned values after the outputs, which adapters ignore), resize the
//! outputs, and call the kernels in [`ferrite_kernels`].
//!
//! Each file covers one family; [`register_all`] lists every operator Ferrite implements.
//!
//! Without the crate's `portable` feature only the operators a delegate can hand the backend
//! ([`ferrite_op_support::delegable`]) are registered, and the others' kernels are not compiled
//! in: the build the ExecuTorch plugin ships, which runs Ferrite's delegates and nothing else.

use std::fmt::Display;

use ferrite_kernels::DType;
use ferrite_program::ScalarType;

use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;

/// Registers kernel `$f` for `$op` when this build has it ([`built`]); the test is a constant,
/// so a kernel left out is not generated.
macro_rules! reg {
    ($r:expr, $op:expr, $f:expr) => {
        if const { $crate::ops::built($op) } {
            $r.register($op, $f)
        }
    };
}

mod conv;
mod copy;
mod elementwise;
#[cfg(test)]
mod harness;
mod index;
mod linalg;
mod norm;
mod pool;
mod prim;
mod quantized;
mod reduce;

/// Whether this build registers a kernel for `op`: every operator with the `portable` feature
/// (the default), otherwise only those the backend can be handed.
pub const fn built(op: ferrite_op_support::Op) -> bool {
    cfg!(feature = "portable") || ferrite_op_support::delegable(op)
}

/// A registry of every operator Ferrite implements (what [`crate::Runtime::new`] uses); without
/// the `portable` feature, of those a delegate can hand the backend ([`built`]).
pub fn portable_kernels() -> KernelRegistry {
    let mut r = KernelRegistry::empty();
    register_all(&mut r);
    r
}

/// Registers every operator Ferrite implements (without the `portable` feature: those [`built`]).
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

/// The kernels' element type of `t`, for [`ferrite_kernels::dispatch!`]; an error for types no
/// operator computes on (quantized, complex, bits).
pub(crate) fn el(t: ScalarType) -> Result<DType> {
    crate::tensor::element_type(t).ok_or_else(|| unsupported(t))
}

/// [`el`] for the storage of quantized values, where `bits16` is `uint16`.
pub(crate) fn quantized_el(t: ScalarType) -> Result<DType> {
    match t {
        ScalarType::Bits16 => Ok(DType::U16),
        other => el(other),
    }
}

/// An operator does not take `t` tensors.
pub(crate) fn unsupported(t: impl Display) -> RuntimeError {
    RuntimeError::Unsupported(format!("{t} tensors in this operator{}", NARROW))
}

/// A floating-point-only operator got `t` tensors.
pub(crate) fn float_only(t: impl Display) -> RuntimeError {
    RuntimeError::Unsupported(format!("{t} tensors in this operator (floating point only){}", NARROW))
}

/// What a build without the `portable` feature adds to a dtype error: it computes only the
/// element types Ferrite's partitioner delegates, so the type may well be fine elsewhere.
const NARROW: &str = if ferrite_kernels::ALL_DTYPES {
    ""
} else {
    "; this delegate-only build computes bool, uint8, int8, int32, int64 and float32 tensors alone \
     (the full build, feature `portable`, computes every type)"
};

/// `float64` tensors, which a build without the `portable` feature does not compute (the
/// partitioner delegates none): the error there.
pub(crate) fn double_built() -> Result<()> {
    if ferrite_kernels::ALL_DTYPES {
        Ok(())
    } else {
        Err(unsupported(ScalarType::Double))
    }
}
