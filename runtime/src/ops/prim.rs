//! ExecuTorch's primitive operators on symbolic integers and scalars (`executorch_prim::*`,
//! `aten::sym_size.int`, ...), and `et_view`. Their arguments are `(a, b, out)` or `(a, out)`.

use super::{arg, infer_sizes, norm_dim};
use crate::env::{Env, Scalar};
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use ferrite_op_support::Op;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::SymSizeInt, sym_size);
    reg!(r, Op::SymNumel, sym_numel);
    reg!(r, Op::SymNumelDefault, sym_numel);
    reg!(r, Op::LocalScalarDense, local_scalar_dense);
    reg!(r, Op::LocalScalarDenseDefault, local_scalar_dense);
    reg!(r, Op::PrimEtViewDefault, et_view);
    reg!(r, Op::PrimAddScalar, |e, a| binary(e, a, |x, y| x.checked_add(y), |x, y| x + y));
    reg!(r, Op::PrimSubScalar, |e, a| binary(e, a, |x, y| x.checked_sub(y), |x, y| x - y));
    reg!(r, Op::PrimMulScalar, |e, a| binary(e, a, |x, y| x.checked_mul(y), |x, y| x * y));
    reg!(r, Op::PrimFloordivScalar, |e, a| binary(e, a, floordiv, |x, y| (x / y).floor()));
    reg!(r, Op::PrimFloordivInt, |e, a| binary(e, a, floordiv, |x, y| (x / y).floor()));
    reg!(r, Op::PrimModInt, |e, a| binary(e, a, modulo, |x, y| x - (x / y).floor() * y));
    reg!(r, Op::PrimModScalar, |e, a| binary(e, a, modulo, |x, y| x - (x / y).floor() * y));
    reg!(r, Op::PrimSymMaxScalar, |e, a| binary(e, a, |x, y| Some(x.max(y)), f64::max));
    reg!(r, Op::PrimSymMinScalar, |e, a| binary(e, a, |x, y| Some(x.min(y)), f64::min));
    reg!(r, Op::PrimTruedivScalar, truediv);
    reg!(r, Op::PrimEqScalar, |e, a| compare(e, a, |o| o == std::cmp::Ordering::Equal));
    reg!(r, Op::PrimGtScalar, |e, a| compare(e, a, |o| o == std::cmp::Ordering::Greater));
    reg!(r, Op::PrimLtScalar, |e, a| compare(e, a, |o| o == std::cmp::Ordering::Less));
    reg!(r, Op::PrimGeScalar, |e, a| compare(e, a, |o| o != std::cmp::Ordering::Less));
    reg!(r, Op::PrimLeScalar, |e, a| compare(e, a, |o| o != std::cmp::Ordering::Greater));
    reg!(r, Op::PrimNegScalar, |e, a| unary(e, a, |x| x.checked_neg(), |x| -x));
    reg!(r, Op::PrimSymFloatScalar, |e, a| {
        let x = e.scalar(arg(a, 0)?)?.to_f64();
        e.set_scalar(arg(a, 1)?, Scalar::Double(x))
    });
    reg!(r, Op::PrimSymIntScalar, |e, a| {
        let x = e.scalar(arg(a, 0)?)?.to_f64();
        e.set_scalar(arg(a, 1)?, Scalar::Int(x.trunc() as i64))
    });
    reg!(r, Op::PrimCeilScalar, |e, a| round_with(e, a, f64::ceil));
    reg!(r, Op::PrimTruncScalar, |e, a| round_with(e, a, f64::trunc));
    reg!(r, Op::PrimRoundScalar, |e, a| round_with(e, a, f64::round_ties_even));
    reg!(r, Op::PrimSymNotScalar, |e, a| {
        let x = e.bool(arg(a, 0)?)?;
        e.set_scalar(arg(a, 1)?, Scalar::Bool(!x))
    });
}

fn overflow() -> RuntimeError {
    RuntimeError::Invalid("integer overflow in a symbolic size computation".into())
}

fn floordiv(x: i64, y: i64) -> Option<i64> {
    if y == 0 {
        return None;
    }
    let q = x.checked_div(y)?;
    Some(if (x % y != 0) && ((x < 0) != (y < 0)) { q - 1 } else { q })
}

fn modulo(x: i64, y: i64) -> Option<i64> {
    let q = floordiv(x, y)?;
    x.checked_sub(q.checked_mul(y)?)
}

fn binary(
    env: &mut Env<'_>,
    args: &[usize],
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<()> {
    let (a, b) = (env.scalar(arg(args, 0)?)?, env.scalar(arg(args, 1)?)?);
    let out = match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => Scalar::Int(int(x, y).ok_or_else(overflow)?),
        _ => Scalar::Double(float(a.to_f64(), b.to_f64())),
    };
    env.set_scalar(arg(args, 2)?, out)
}

fn unary(env: &mut Env<'_>, args: &[usize], int: fn(i64) -> Option<i64>, float: fn(f64) -> f64) -> Result<()> {
    let out = match env.scalar(arg(args, 0)?)? {
        Scalar::Int(x) => Scalar::Int(int(x).ok_or_else(overflow)?),
        other => Scalar::Double(float(other.to_f64())),
    };
    env.set_scalar(arg(args, 1)?, out)
}

fn truediv(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, b) = (env.scalar(arg(args, 0)?)?.to_f64(), env.scalar(arg(args, 1)?)?.to_f64());
    env.set_scalar(arg(args, 2)?, Scalar::Double(a / b))
}

fn compare(env: &mut Env<'_>, args: &[usize], f: fn(std::cmp::Ordering) -> bool) -> Result<()> {
    let (a, b) = (env.scalar(arg(args, 0)?)?, env.scalar(arg(args, 1)?)?);
    let ord = match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => x.cmp(&y),
        _ => a.to_f64().partial_cmp(&b.to_f64()).unwrap_or(std::cmp::Ordering::Less),
    };
    env.set_scalar(arg(args, 2)?, Scalar::Bool(f(ord)))
}

fn round_with(env: &mut Env<'_>, args: &[usize], f: fn(f64) -> f64) -> Result<()> {
    let out = match env.scalar(arg(args, 0)?)? {
        Scalar::Int(x) => Scalar::Int(x),
        other => Scalar::Int(f(other.to_f64()) as i64),
    };
    env.set_scalar(arg(args, 1)?, out)
}

fn sym_size(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let sizes = env.sizes(arg(args, 0)?)?;
    let d = norm_dim(env.int(arg(args, 1)?)?, sizes.len())?;
    let n = sizes.get(d).copied().unwrap_or(1) as i64;
    env.set_scalar(arg(args, 2)?, Scalar::Int(n))
}

fn sym_numel(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let n = crate::tensor::numel(env.sizes(arg(args, 0)?)?)? as i64;
    env.set_scalar(arg(args, 1)?, Scalar::Int(n))
}

fn local_scalar_dense(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let t = env.read(arg(args, 0)?)?;
    let dtype = t.dtype;
    let v = t.to_f64_vec()?;
    let x = *v.first().ok_or_else(|| RuntimeError::Invalid("_local_scalar_dense of an empty tensor".into()))?;
    let s = if dtype.is_float() {
        Scalar::Double(x)
    } else if dtype == ferrite_program::ScalarType::Bool {
        Scalar::Bool(x != 0.0)
    } else {
        Scalar::Int(x as i64)
    };
    env.set_scalar(arg(args, 1)?, s)
}

/// `et_view(Tensor self, int[] size) -> Tensor`: the output aliases the input's memory.
fn et_view(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let numel = crate::tensor::numel(env.sizes(src)?)?;
    let sizes = infer_sizes(&env.int_list(arg(args, 1)?)?, numel)?;
    env.view_of(src, out, &sizes)
}
