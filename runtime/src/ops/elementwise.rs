//! Element-wise operators: broadcasting arithmetic, comparisons, logical and bitwise operators,
//! selection (`where`, `masked_fill`), unary math and activations.
//!
//! Dtype handling follows ExecuTorch's portable kernels: a *common type* is chosen per operator
//! (`promoteTypes` for two tensors, `promote_type_with_scalar` for a tensor and a Scalar, where
//! the Scalar's category only wins when higher), the *compute type* is the common type with
//! f16/bf16 widened to f32, inputs are converted to the compute type, and the results are cast
//! to the output's dtype (which must be castable from the common type). Bool compute is done on
//! `u8` and normalised to 0/1.
//!
//! Where ExecuTorch's portable kernels deviate from PyTorch in ways that look accidental, PyTorch
//! wins: integer `remainder` uses Python semantics (sign of the divisor), f64 `remainder` stays in
//! f64, and integer division / remainder / fmod by zero is an error (PyTorch raises).

use ferrite_op_support::Op;
use std::borrow::Cow;

use super::{arg, dispatch_all};
use crate::env::{Env, Scalar};
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{Pod, TensorMut, TensorRef};
use ferrite_kernels::elementwise::{self as k, Bits, Num, Prim, Real};
use ferrite_program::ScalarType as S;

// ---------------------------------------------------------------------------------------------
// Registration

pub(super) fn register(r: &mut KernelRegistry) {
    // Arithmetic.
    r.register(Op::Add, |e, a| add_sub(e, a, false));
    r.register(Op::AddScalar, |e, a| add_sub_scalar(e, a, false, false));
    r.register(Op::Sub, |e, a| add_sub(e, a, true));
    r.register(Op::SubScalar, |e, a| add_sub_scalar(e, a, true, false));
    r.register(Op::RsubScalar, |e, a| add_sub_scalar(e, a, true, true));
    r.register(Op::Mul, mul);
    r.register(Op::MulScalar, mul_scalar);
    r.register(Op::Div, |e, a| div(e, arg(a, 0)?, Operand::Tensor(arg(a, 1)?), None, arg(a, 2)?));
    r.register(Op::DivScalar, |e, a| div(e, arg(a, 0)?, Operand::Scalar(e.scalar(arg(a, 1)?)?), None, arg(a, 2)?));
    r.register(Op::DivMode, |e, a| {
        let mode = e.opt_string(arg(a, 2)?)?.map(str::to_owned);
        div(e, arg(a, 0)?, Operand::Tensor(arg(a, 1)?), mode.as_deref(), arg(a, 3)?)
    });
    r.register(Op::DivScalarMode, |e, a| {
        let mode = e.opt_string(arg(a, 2)?)?.map(str::to_owned);
        div(e, arg(a, 0)?, Operand::Scalar(e.scalar(arg(a, 1)?)?), mode.as_deref(), arg(a, 3)?)
    });
    r.register(Op::FloorDivide, |e, a| int_div_like(e, a, DivKind::Floor, false));
    r.register(Op::FloorDivideScalar, |e, a| int_div_like(e, a, DivKind::Floor, true));
    r.register(Op::RemainderTensor, |e, a| int_div_like(e, a, DivKind::Remainder, false));
    r.register(Op::RemainderScalar, |e, a| int_div_like(e, a, DivKind::Remainder, true));
    r.register(Op::FmodTensor, |e, a| int_div_like(e, a, DivKind::Fmod, false));
    r.register(Op::FmodScalar, |e, a| int_div_like(e, a, DivKind::Fmod, true));
    r.register(Op::PowTensorTensor, |e, a| {
        pow(e, Operand::Tensor(arg(a, 0)?), Operand::Tensor(arg(a, 1)?), arg(a, 2)?)
    });
    r.register(Op::PowTensorScalar, |e, a| {
        pow(e, Operand::Tensor(arg(a, 0)?), Operand::Scalar(e.scalar(arg(a, 1)?)?), arg(a, 2)?)
    });
    r.register(Op::PowScalar, |e, a| {
        pow(e, Operand::Scalar(e.scalar(arg(a, 0)?)?), Operand::Tensor(arg(a, 1)?), arg(a, 2)?)
    });
    r.register(Op::Maximum, |e, a| min_max(e, a, true));
    r.register(Op::Minimum, |e, a| min_max(e, a, false));
    r.register(Op::Atan2, atan2);
    r.register(Op::Square, square);
    r.register(Op::BitwiseAndTensor, |e, a| bitwise(e, a, BitOp::And, false));
    r.register(Op::BitwiseAndScalar, |e, a| bitwise(e, a, BitOp::And, true));
    r.register(Op::BitwiseOrTensor, |e, a| bitwise(e, a, BitOp::Or, false));
    r.register(Op::BitwiseOrScalar, |e, a| bitwise(e, a, BitOp::Or, true));
    r.register(Op::BitwiseXorTensor, |e, a| bitwise(e, a, BitOp::Xor, false));
    r.register(Op::BitwiseXorScalar, |e, a| bitwise(e, a, BitOp::Xor, true));
    r.register(Op::BitwiseNot, bitwise_not);

    // Comparisons.
    r.register(Op::EqTensor, |e, a| compare(e, a, Cmp::Eq, false));
    r.register(Op::EqScalar, |e, a| compare(e, a, Cmp::Eq, true));
    r.register(Op::NeTensor, |e, a| compare(e, a, Cmp::Ne, false));
    r.register(Op::NeScalar, |e, a| compare(e, a, Cmp::Ne, true));
    r.register(Op::LtTensor, |e, a| compare(e, a, Cmp::Lt, false));
    r.register(Op::LtScalar, |e, a| compare(e, a, Cmp::Lt, true));
    r.register(Op::LeTensor, |e, a| compare(e, a, Cmp::Le, false));
    r.register(Op::LeScalar, |e, a| compare(e, a, Cmp::Le, true));
    r.register(Op::GtTensor, |e, a| compare(e, a, Cmp::Gt, false));
    r.register(Op::GtScalar, |e, a| compare(e, a, Cmp::Gt, true));
    r.register(Op::GeTensor, |e, a| compare(e, a, Cmp::Ge, false));
    r.register(Op::GeScalar, |e, a| compare(e, a, Cmp::Ge, true));
    r.register(Op::Isnan, |e, a| float_predicate(e, a, false));
    r.register(Op::Isinf, |e, a| float_predicate(e, a, true));

    // Logical.
    r.register(Op::LogicalAnd, |e, a| logical(e, a, |x, y| x & y));
    r.register(Op::LogicalOr, |e, a| logical(e, a, |x, y| x | y));
    r.register(Op::LogicalXor, |e, a| logical(e, a, |x, y| x ^ y));
    r.register(Op::LogicalNot, logical_not);

    // Selection.
    r.register(Op::WhereSelf, where_self);
    r.register(Op::MaskedFillScalar, masked_fill);

    // Unary math to floating point (integer and bool inputs give float outputs).
    r.register(Op::Sqrt, |e, a| unary_float(e, a, |x| x.sqrt(), |x| x.sqrt()));
    r.register(Op::Rsqrt, |e, a| unary_float(e, a, |x| 1.0 / x.sqrt(), |x| 1.0 / x.sqrt()));
    r.register(Op::Exp, |e, a| unary_float(e, a, |x| x.exp(), |x| x.exp()));
    r.register(Op::Expm1, |e, a| unary_float(e, a, |x| x.exp_m1(), |x| x.exp_m1()));
    r.register(Op::Log, |e, a| unary_float(e, a, |x| x.ln(), |x| x.ln()));
    r.register(Op::Log1p, |e, a| unary_float(e, a, |x| x.ln_1p(), |x| x.ln_1p()));
    r.register(Op::Log2, |e, a| unary_float(e, a, |x| x.log2(), |x| x.log2()));
    r.register(Op::Log10, |e, a| unary_float(e, a, |x| x.log10(), |x| x.log10()));
    r.register(Op::Sin, |e, a| unary_float(e, a, |x| x.sin(), |x| x.sin()));
    r.register(Op::Cos, |e, a| unary_float(e, a, |x| x.cos(), |x| x.cos()));
    r.register(Op::Tan, |e, a| unary_float(e, a, |x| x.tan(), |x| x.tan()));
    r.register(Op::Tanh, |e, a| unary_float(e, a, |x| x.tanh(), |x| x.tanh()));
    r.register(Op::Asin, |e, a| unary_float(e, a, |x| x.asin(), |x| x.asin()));
    r.register(Op::Acos, |e, a| unary_float(e, a, |x| x.acos(), |x| x.acos()));
    r.register(Op::Atan, |e, a| unary_float(e, a, |x| x.atan(), |x| x.atan()));
    r.register(Op::Sinh, |e, a| unary_float(e, a, |x| x.sinh(), |x| x.sinh()));
    r.register(Op::Cosh, |e, a| unary_float(e, a, |x| x.cosh(), |x| x.cosh()));
    r.register(Op::Asinh, |e, a| unary_float(e, a, |x| x.asinh(), |x| x.asinh()));
    r.register(Op::Acosh, |e, a| unary_float(e, a, |x| x.acosh(), |x| x.acosh()));
    r.register(Op::Atanh, |e, a| unary_float(e, a, |x| x.atanh(), |x| x.atanh()));
    r.register(Op::Erf, |e, a| unary_float(e, a, k::erf_f32, k::erf_f64));
    r.register(Op::Reciprocal, |e, a| unary_float(e, a, |x| 1.0 / x, |x| 1.0 / x));
    r.register(Op::Sigmoid, |e, a| unary_float(e, a, |x| 1.0 / (1.0 + (-x).exp()), |x| 1.0 / (1.0 + (-x).exp())));

    // Unary operators that keep the dtype.
    r.register(Op::Abs, |e, a| unary_same(e, a, Same::Abs));
    r.register(Op::Neg, |e, a| unary_same(e, a, Same::Neg));
    r.register(Op::Sign, |e, a| unary_same(e, a, Same::Sign));
    r.register(Op::Floor, |e, a| unary_same(e, a, Same::Floor));
    r.register(Op::Ceil, |e, a| unary_same(e, a, Same::Ceil));
    r.register(Op::Round, |e, a| unary_same(e, a, Same::Round));
    r.register(Op::Trunc, |e, a| unary_same(e, a, Same::Trunc));
    r.register(Op::Relu, |e, a| unary_same(e, a, Same::Relu));
    r.register(Op::Clamp, clamp_scalar);
    r.register(Op::ClampTensor, clamp_tensor);
    r.register(Op::Hardtanh, hardtanh);

    // Activations (floating point).
    r.register(Op::Gelu, gelu);
    r.register(Op::Hardswish, |e, a| {
        activation(
            e,
            arg(a, 0)?,
            arg(a, 1)?,
            |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        )
    });
    r.register(Op::Hardsigmoid, |e, a| {
        activation(e, arg(a, 0)?, arg(a, 1)?, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0)
    });
    r.register(Op::Silu, |e, a| {
        activation(e, arg(a, 0)?, arg(a, 1)?, |x| x / (1.0 + (-x).exp()), |x| x / (1.0 + (-x).exp()))
    });
    r.register(Op::LeakyRelu, leaky_relu);
    r.register(Op::Elu, elu);
    r.register(Op::Softplus, softplus);
    r.register(Op::Glu, glu);
}

// ---------------------------------------------------------------------------------------------
// Dtype rules

fn is_float(t: S) -> bool {
    matches!(t, S::Half | S::Float | S::Double | S::BFloat16)
}

fn is_integral(t: S, include_bool: bool) -> bool {
    matches!(t, S::Byte | S::Char | S::Short | S::Int | S::Long | S::UInt16 | S::UInt32 | S::UInt64)
        || (include_bool && t == S::Bool)
}

fn is_real_or_bool(t: S) -> bool {
    is_float(t) || is_integral(t, true)
}

fn unsupported(t: S) -> RuntimeError {
    RuntimeError::Unsupported(format!("{t} tensors in element-wise operators"))
}

/// PyTorch's `promoteTypes` for two tensor dtypes.
pub(crate) fn promote(a: S, b: S) -> Result<S> {
    if !is_real_or_bool(a) {
        return Err(unsupported(a));
    }
    if !is_real_or_bool(b) {
        return Err(unsupported(b));
    }
    if a == b {
        return Ok(a);
    }
    if a == S::Bool {
        return Ok(b);
    }
    if b == S::Bool {
        return Ok(a);
    }
    match (is_float(a), is_float(b)) {
        (true, false) => return Ok(a),
        (false, true) => return Ok(b),
        (true, true) => {
            return Ok(if a == S::Double || b == S::Double { S::Double } else { S::Float });
        }
        (false, false) => {}
    }
    fn rank(t: S) -> Option<u8> {
        match t {
            S::Char => Some(1),
            S::Short => Some(2),
            S::Int => Some(3),
            S::Long => Some(4),
            _ => None,
        }
    }
    match (a, b) {
        (S::Byte, S::Char) | (S::Char, S::Byte) => Ok(S::Short),
        (S::Byte, o) | (o, S::Byte) if rank(o).is_some() => Ok(o),
        (S::Byte, o) | (o, S::Byte) => Ok(o), // u8 with u16/u32/u64
        _ => match (rank(a), rank(b)) {
            (Some(x), Some(y)) => Ok(if x >= y { a } else { b }),
            _ => Err(RuntimeError::Unsupported(format!("type promotion of {a} and {b}"))),
        },
    }
}

/// ExecuTorch's `promote_type_with_scalar`: the Scalar only changes the type when its category
/// (bool < integer < floating point) is higher than the tensor's.
fn promote_scalar(t: S, s: Scalar) -> S {
    match s {
        Scalar::Bool(_) => t,
        Scalar::Int(_) => {
            if t == S::Bool {
                S::Long
            } else {
                t
            }
        }
        Scalar::Double(_) => {
            if is_float(t) {
                t
            } else {
                S::Float
            }
        }
    }
}

/// ExecuTorch's `canCast`: no floating point to integer, nothing but bool to bool.
fn can_cast(from: S, to: S) -> bool {
    let float_to_int = is_float(from) && is_integral(to, false);
    let to_bool = from != S::Bool && to == S::Bool;
    !float_to_int && !to_bool
}

fn check_cast(common: S, out: S) -> Result<()> {
    if !is_real_or_bool(out) {
        return Err(unsupported(out));
    }
    if can_cast(common, out) {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!("the result type {common} cannot be cast to the output's {out}")))
    }
}

/// The compute type of a common type (f16/bf16 computed in f32).
fn compute_type(t: S) -> S {
    match t {
        S::Half | S::BFloat16 => S::Float,
        other => other,
    }
}

/// Calls `$body` with `$t` bound to the Rust compute type of `$dtype`.
macro_rules! dispatch_compute {
    ($dtype:expr, $t:ident => $body:expr) => {{
        match $dtype {
            S::Float | S::Half | S::BFloat16 => {
                type $t = f32;
                $body
            }
            S::Double => {
                type $t = f64;
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
            other => return Err(unsupported(other)),
        }
    }};
}

/// A Scalar converted to compute type `C` (C++ `static_cast` semantics).
fn sc<C: Prim>(s: Scalar) -> C {
    match s {
        Scalar::Int(i) => C::of_i64(i),
        Scalar::Double(d) => C::of_f64(d),
        Scalar::Bool(b) => C::of_i64(i64::from(b)),
    }
}

fn scalar_dtype(s: Scalar) -> S {
    match s {
        Scalar::Int(_) => S::Long,
        Scalar::Double(_) => S::Double,
        Scalar::Bool(_) => S::Bool,
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and storing

/// The elements of `t` as compute type `C` (borrowed when the dtype already matches).
fn load<'a, C: Prim + Pod>(t: &TensorRef<'a>) -> Result<Cow<'a, [C]>> {
    if t.dtype == C::DTYPE || (t.dtype == S::Bool && C::DTYPE == S::Byte) {
        return Ok(Cow::Borrowed(t.typed::<C>()?));
    }
    dispatch_all!(t.dtype, T => {
        let src = t.typed::<T>()?;
        let mut v = vec![C::default(); src.len()];
        k::cast_slice(src, &mut v)?;
        Ok(Cow::Owned(v))
    })
}

/// The elements of `t` as 0/1 bytes (`!= 0`).
fn load_bool<'a>(t: &TensorRef<'a>) -> Result<Cow<'a, [u8]>> {
    if t.dtype == S::Bool {
        return Ok(Cow::Borrowed(t.typed::<u8>()?));
    }
    dispatch_all!(t.dtype, T => {
        let src = t.typed::<T>()?;
        let mut v = vec![0u8; src.len()];
        k::unary(src, &mut v, |x| u8::from(x.nonzero()))?;
        Ok(Cow::Owned(v))
    })
}

/// Casts `src` into `out`'s dtype.
fn store<C: Prim>(src: &[C], out: &mut TensorMut<'_>) -> Result<()> {
    if out.dtype == S::Bool {
        k::unary(src, out.typed::<u8>()?, |v| u8::from(v.nonzero()))?;
        return Ok(());
    }
    dispatch_all!(out.dtype, D => { k::cast_slice(src, out.typed::<D>()?)?; });
    Ok(())
}

/// Runs `f` on an output buffer of type `C`: `out`'s own data when its dtype is `C`, otherwise
/// a temporary cast into `out` afterwards. `normalize` maps results to 0/1 (bool compute).
fn write_out<C: Prim + Pod>(
    out: &mut TensorMut<'_>,
    normalize: bool,
    f: impl FnOnce(&mut [C]) -> Result<()>,
) -> Result<()> {
    let to_bool = out.dtype == S::Bool;
    if out.dtype == C::DTYPE || (to_bool && C::DTYPE == S::Byte) {
        let o = out.typed::<C>()?;
        f(o)?;
        if normalize || to_bool {
            for v in o.iter_mut() {
                *v = C::of_i64(i64::from(v.nonzero()));
            }
        }
        return Ok(());
    }
    let mut tmp = vec![C::default(); out.numel()];
    f(&mut tmp)?;
    if normalize {
        for v in tmp.iter_mut() {
            *v = C::of_i64(i64::from(v.nonzero()));
        }
    }
    store(&tmp, out)
}

/// A second operand: a tensor (value index) or a Scalar.
#[derive(Debug, Clone, Copy)]
enum Operand {
    Tensor(usize),
    Scalar(Scalar),
}

/// Broadcast shape of the tensor operands (a Scalar is a 0-d tensor).
fn out_shape(env: &Env<'_>, ops: &[Operand]) -> Result<Vec<usize>> {
    let mut shape: Vec<usize> = Vec::new();
    for op in ops {
        if let Operand::Tensor(t) = op {
            shape = k::broadcast_shape(&shape, env.sizes(*t)?)?;
        }
    }
    Ok(shape)
}

fn dtype_of(env: &Env<'_>, op: Operand) -> Result<S> {
    match op {
        Operand::Tensor(t) => env.dtype(t),
        Operand::Scalar(s) => Ok(scalar_dtype(s)),
    }
}

/// Common type of two operands (tensor-tensor or tensor-scalar promotion).
fn common_of(env: &Env<'_>, a: Operand, b: Operand) -> Result<S> {
    match (a, b) {
        (Operand::Tensor(x), Operand::Tensor(y)) => promote(env.dtype(x)?, env.dtype(y)?),
        (Operand::Tensor(x), Operand::Scalar(s)) | (Operand::Scalar(s), Operand::Tensor(x)) => {
            let t = env.dtype(x)?;
            if !is_real_or_bool(t) {
                return Err(unsupported(t));
            }
            Ok(promote_scalar(t, s))
        }
        (Operand::Scalar(_), Operand::Scalar(_)) => {
            Err(RuntimeError::Invalid("expected at least one tensor operand".into()))
        }
    }
}

/// `out = f(a, b)` over broadcast operands loaded as `C`, the result (of type `O`) cast to the
/// output dtype.
fn binary_op<C, O, F>(env: &mut Env<'_>, a: Operand, b: Operand, out: usize, normalize: bool, f: F) -> Result<()>
where
    C: Prim + Pod,
    O: Prim + Pod,
    F: Fn(C, C) -> O + Sync,
{
    let so = out_shape(env, &[a, b])?;
    env.resize(out, &so)?;
    let tensors: Vec<usize> =
        [a, b].iter().filter_map(|o| if let Operand::Tensor(t) = o { Some(*t) } else { None }).collect();
    env.run(&tensors, &[out], |ins, outs| {
        let mut it = ins.iter();
        let mut get = |op: Operand| -> Result<(Cow<'_, [C]>, Vec<usize>)> {
            match op {
                Operand::Tensor(_) => {
                    let t = it.next().ok_or_else(|| RuntimeError::Invalid("missing operand".into()))?;
                    Ok((load::<C>(t)?, t.sizes.to_vec()))
                }
                Operand::Scalar(s) => Ok((Cow::Owned(vec![sc::<C>(s)]), Vec::new())),
            }
        };
        let (x, sx) = get(a)?;
        let (y, sy) = get(b)?;
        write_out::<O>(&mut outs[0], normalize, |o| Ok(k::binary(&x, &sx, &y, &sy, o, &so, &f)?))
    })
}

// ---------------------------------------------------------------------------------------------
// Arithmetic

/// Checks an `alpha` Scalar against the common type (no float alpha for integer results, no
/// bool alpha unless the result is bool).
fn check_alpha(alpha: Scalar, common: S) -> Result<()> {
    let ok = match alpha {
        Scalar::Double(_) => is_float(common),
        Scalar::Int(_) | Scalar::Bool(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!("alpha {alpha:?} cannot be used with {common} operands")))
    }
}

fn add_sub(env: &mut Env<'_>, args: &[usize], sub: bool) -> Result<()> {
    let (a, b, out) = (Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 3)?);
    let alpha = env.scalar(arg(args, 2)?)?;
    arith_alpha(env, a, b, alpha, out, sub, false)
}

fn add_sub_scalar(env: &mut Env<'_>, args: &[usize], sub: bool, reverse: bool) -> Result<()> {
    let (a, out) = (Operand::Tensor(arg(args, 0)?), arg(args, 3)?);
    let b = Operand::Scalar(env.scalar(arg(args, 1)?)?);
    let alpha = env.scalar(arg(args, 2)?)?;
    arith_alpha(env, a, b, alpha, out, sub, reverse)
}

/// `a + alpha * b`, `a - alpha * b`, or (reverse) `b - alpha * a`.
fn arith_alpha(
    env: &mut Env<'_>,
    a: Operand,
    b: Operand,
    alpha: Scalar,
    out: usize,
    sub: bool,
    reverse: bool,
) -> Result<()> {
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    check_alpha(alpha, common)?;
    if sub && common == S::Bool {
        return Err(RuntimeError::Invalid("subtraction of bool tensors is not supported; use logical_xor".into()));
    }
    let ct = compute_type(common);
    let is_bool = ct == S::Bool;
    dispatch_compute!(ct, C => {
        let al: C = sc(alpha);
        let one: C = C::of_i64(1);
        match (sub, reverse) {
            (false, _) if al == one => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| x.add(y)),
            (false, _) => binary_op::<C, C, _>(env, a, b, out, is_bool, move |x: C, y: C| x.add(al.mul(y))),
            (true, false) if al == one => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| x.sub(y)),
            (true, false) => binary_op::<C, C, _>(env, a, b, out, is_bool, move |x: C, y: C| x.sub(al.mul(y))),
            (true, true) => binary_op::<C, C, _>(env, a, b, out, is_bool, move |x: C, y: C| y.sub(al.mul(x))),
        }
    })
}

fn mul(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    mul_impl(env, Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 2)?)
}

fn mul_scalar(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let b = Operand::Scalar(env.scalar(arg(args, 1)?)?);
    mul_impl(env, Operand::Tensor(arg(args, 0)?), b, arg(args, 2)?)
}

fn mul_impl(env: &mut Env<'_>, a: Operand, b: Operand, out: usize) -> Result<()> {
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    let ct = compute_type(common);
    let is_bool = ct == S::Bool;
    dispatch_compute!(ct, C => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| x.mul(y)))
}

fn square(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let common = promote_scalar(env.dtype(a)?, Scalar::Int(2));
    check_cast(common, env.dtype(out)?)?;
    dispatch_compute!(compute_type(common), C => binary_op::<C, C, _>(env, Operand::Tensor(a), Operand::Scalar(Scalar::Int(0)), out, false, |x: C, _y: C| x.mul(x)))
}

/// `div` with an optional rounding mode.
fn div(env: &mut Env<'_>, a: usize, b: Operand, mode: Option<&str>, out: usize) -> Result<()> {
    let a_op = Operand::Tensor(a);
    let out_dt = env.dtype(out)?;
    match mode {
        None => {
            // True division: integer operands give Float.
            let (ta, tb) = (env.dtype(a)?, dtype_of(env, b)?);
            if !is_real_or_bool(ta) {
                return Err(unsupported(ta));
            }
            let common = match b {
                Operand::Tensor(_) => match (is_float(ta), is_float(tb)) {
                    (true, true) => promote(ta, tb)?,
                    (true, false) => ta,
                    (false, true) => tb,
                    (false, false) => S::Float,
                },
                Operand::Scalar(_) => {
                    if is_float(ta) {
                        ta
                    } else {
                        S::Float
                    }
                }
            };
            if !is_float(out_dt) {
                return Err(RuntimeError::Invalid(format!("div: the output must be floating point, got {out_dt}")));
            }
            dispatch_real(compute_type(common), |ct| match ct {
                RealT::F32 => binary_op::<f32, f32, _>(env, a_op, b, out, false, |x, y| x / y),
                RealT::F64 => binary_op::<f64, f64, _>(env, a_op, b, out, false, |x, y| x / y),
            })
        }
        Some(m) => {
            let trunc = match m {
                "trunc" => true,
                "floor" => false,
                other => {
                    return Err(RuntimeError::Invalid(format!(
                        "div: rounding_mode must be 'trunc' or 'floor', got {other:?}"
                    )))
                }
            };
            let common = common_of(env, a_op, b)?;
            check_cast(common, out_dt)?;
            if common == S::Bool {
                return Err(RuntimeError::Invalid("div with a rounding mode does not support bool operands".into()));
            }
            let ct = compute_type(common);
            if is_integral(ct, true) {
                check_no_zero_divisor(env, b, "div")?;
            }
            dispatch_compute!(ct, C => {
                if trunc {
                    binary_op::<C, C, _>(env, a_op, b, out, false, |x: C, y: C| x.trunc_div(y))
                } else {
                    binary_op::<C, C, _>(env, a_op, b, out, false, |x: C, y: C| x.floor_div(y))
                }
            })
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RealT {
    F32,
    F64,
}

fn dispatch_real(ct: S, f: impl FnOnce(RealT) -> Result<()>) -> Result<()> {
    match ct {
        S::Double => f(RealT::F64),
        S::Float | S::Half | S::BFloat16 => f(RealT::F32),
        other => Err(RuntimeError::Unsupported(format!("{other} compute in a floating-point operator"))),
    }
}

/// Integer division by zero is an error (PyTorch raises `ZeroDivisionError`).
fn check_no_zero_divisor(env: &mut Env<'_>, b: Operand, op: &str) -> Result<()> {
    let zero = match b {
        Operand::Scalar(s) => s.to_f64() == 0.0,
        Operand::Tensor(t) => env.run(&[t], &[], |ins, _| Ok(ins[0].to_f64_vec()?.contains(&0.0)))?,
    };
    if zero {
        Err(RuntimeError::Invalid(format!("{op}: integer division by zero")))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DivKind {
    Floor,
    Remainder,
    Fmod,
}

/// `floor_divide`, `remainder` and `fmod` (tensor or Scalar divisor).
fn int_div_like(env: &mut Env<'_>, args: &[usize], kind: DivKind, scalar: bool) -> Result<()> {
    let a = Operand::Tensor(arg(args, 0)?);
    let b = if scalar { Operand::Scalar(env.scalar(arg(args, 1)?)?) } else { Operand::Tensor(arg(args, 1)?) };
    let out = arg(args, 2)?;
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    if common == S::Bool {
        return Err(RuntimeError::Invalid(format!("{kind:?} does not support bool operands")));
    }
    let mut ct = compute_type(common);
    if kind == DivKind::Fmod && is_float(ct) && ct != S::Float {
        ct = S::Double;
    }
    if is_integral(ct, true) {
        check_no_zero_divisor(env, b, "division")?;
    }
    dispatch_compute!(ct, C => match kind {
        DivKind::Floor => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.floor_div(y)),
        DivKind::Remainder => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.py_rem(y)),
        DivKind::Fmod => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.c_fmod(y)),
    })
}

/// `pow`: computed in f32 when the common type is f32/f16/bf16, otherwise in f64 (integers
/// included, then cast back), as ExecuTorch does.
fn pow(env: &mut Env<'_>, a: Operand, b: Operand, out: usize) -> Result<()> {
    let common = match (a, b) {
        (Operand::Scalar(s), Operand::Tensor(t)) => {
            // pow(Scalar, Tensor): the scalar's category wins when higher.
            let tt = env.dtype(t)?;
            promote_scalar(tt, s)
        }
        _ => common_of(env, a, b)?,
    };
    let out_dt = env.dtype(out)?;
    check_cast(common, out_dt)?;
    if common == S::Bool {
        return Err(RuntimeError::Invalid("pow does not support bool operands".into()));
    }
    if compute_type(common) == S::Float {
        binary_op::<f32, f32, _>(env, a, b, out, false, |x, y| x.powf(y))
    } else if is_integral(common, false) {
        // Integer pow: exact integer power (PyTorch), negative exponents give 0 except for ±1.
        dispatch_compute!(common, C => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| int_pow(x, y)))
    } else {
        binary_op::<f64, f64, _>(env, a, b, out, false, |x, y| x.powf(y))
    }
}

/// Integer power with wrapping multiplication, as PyTorch's `powi`.
fn int_pow<C: Num>(base: C, exp: C) -> C {
    let e = exp.as_i64();
    let one = C::of_i64(1);
    if e < 0 {
        let b = base.as_i64();
        return if b == 1 {
            one
        } else if b == -1 {
            if e % 2 == 0 {
                one
            } else {
                base
            }
        } else {
            C::zero()
        };
    }
    let (mut result, mut b, mut e) = (one, base, e as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.mul(b);
        }
        b = b.mul(b);
        e >>= 1;
    }
    result
}

fn min_max(env: &mut Env<'_>, args: &[usize], max: bool) -> Result<()> {
    let (a, b, out) = (Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 2)?);
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    let ct = compute_type(common);
    dispatch_compute!(ct, C => {
        if max {
            binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.max_nan(y))
        } else {
            binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.min_nan(y))
        }
    })
}

fn atan2(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (ai, bi, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let (ta, tb) = (env.dtype(ai)?, env.dtype(bi)?);
    let (a, b) = (Operand::Tensor(ai), Operand::Tensor(bi));
    let common = match (is_float(ta), is_float(tb)) {
        (true, true) => promote(ta, tb)?,
        (true, false) => ta,
        (false, true) => tb,
        (false, false) => S::Float,
    };
    let out_dt = env.dtype(out)?;
    if !is_float(out_dt) {
        return Err(RuntimeError::Invalid(format!("atan2: the output must be floating point, got {out_dt}")));
    }
    dispatch_real(compute_type(common), |ct| match ct {
        RealT::F32 => binary_op::<f32, f32, _>(env, a, b, out, false, |x, y| x.atan2(y)),
        RealT::F64 => binary_op::<f64, f64, _>(env, a, b, out, false, |x, y| x.atan2(y)),
    })
}

#[derive(Debug, Clone, Copy)]
enum BitOp {
    And,
    Or,
    Xor,
}

fn bitwise(env: &mut Env<'_>, args: &[usize], op: BitOp, scalar: bool) -> Result<()> {
    let a = Operand::Tensor(arg(args, 0)?);
    let b = if scalar { Operand::Scalar(env.scalar(arg(args, 1)?)?) } else { Operand::Tensor(arg(args, 1)?) };
    let out = arg(args, 2)?;
    let common = common_of(env, a, b)?;
    if !is_integral(common, true) {
        return Err(RuntimeError::Invalid(format!("bitwise operators need integer or bool operands, got {common}")));
    }
    check_cast(common, env.dtype(out)?)?;
    let is_bool = common == S::Bool;
    dispatch_compute!(common, C => match op {
        BitOp::And => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| bits_of(x).and(bits_of(y)).into_c()),
        BitOp::Or => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| bits_of(x).or(bits_of(y)).into_c()),
        BitOp::Xor => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| bits_of(x).xor(bits_of(y)).into_c()),
    })
}

/// Bit operations on any compute type, through i64/u64 (floats never reach here: the callers
/// reject floating-point operands).
#[derive(Clone, Copy)]
struct Wide(u64);
fn bits_of<C: Prim>(x: C) -> Wide {
    Wide(x.as_u64())
}
impl Wide {
    fn and(self, o: Wide) -> Wide {
        Wide(Bits::and(self.0, o.0))
    }
    fn or(self, o: Wide) -> Wide {
        Wide(Bits::or(self.0, o.0))
    }
    fn xor(self, o: Wide) -> Wide {
        Wide(Bits::xor(self.0, o.0))
    }
    fn into_c<C: Prim>(self) -> C {
        C::of_u64(self.0)
    }
}

fn bitwise_not(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let t = env.dtype(a)?;
    if env.dtype(out)? != t {
        return Err(RuntimeError::Invalid("bitwise_not: the output dtype must match the input's".into()));
    }
    if t == S::Bool {
        return unary_map::<u8, u8, _>(env, a, out, false, |x| u8::from(x == 0));
    }
    if !is_integral(t, false) {
        return Err(RuntimeError::Invalid(format!("bitwise_not needs an integer or bool tensor, got {t}")));
    }
    dispatch_compute!(t, C => unary_map::<C, C, _>(env, a, out, false, |x: C| C::of_u64(Bits::not(x.as_u64()))))
}

// ---------------------------------------------------------------------------------------------
// Comparisons and logical operators

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

fn compare(env: &mut Env<'_>, args: &[usize], cmp: Cmp, scalar: bool) -> Result<()> {
    let a = Operand::Tensor(arg(args, 0)?);
    let b = if scalar { Operand::Scalar(env.scalar(arg(args, 1)?)?) } else { Operand::Tensor(arg(args, 1)?) };
    let out = arg(args, 2)?;
    let mut common = common_of(env, a, b)?;
    if let (Operand::Tensor(x), Operand::Tensor(y)) = (a, b) {
        // As ExecuTorch: mixed-dtype floating comparisons are done in f32.
        if is_float(common) && env.dtype(x)? != env.dtype(y)? {
            common = S::Float;
        }
    }
    let out_dt = env.dtype(out)?;
    if !is_real_or_bool(out_dt) {
        return Err(unsupported(out_dt));
    }
    dispatch_compute!(compute_type(common), C => match cmp {
        Cmp::Eq => binary_op::<C, u8, _>(env, a, b, out, false, |x: C, y: C| u8::from(x == y)),
        Cmp::Ne => binary_op::<C, u8, _>(env, a, b, out, false, |x: C, y: C| u8::from(x != y)),
        Cmp::Lt => binary_op::<C, u8, _>(env, a, b, out, false, |x: C, y: C| u8::from(x < y)),
        Cmp::Le => binary_op::<C, u8, _>(env, a, b, out, false, |x: C, y: C| u8::from(x <= y)),
        Cmp::Gt => binary_op::<C, u8, _>(env, a, b, out, false, |x: C, y: C| u8::from(x > y)),
        Cmp::Ge => binary_op::<C, u8, _>(env, a, b, out, false, |x: C, y: C| u8::from(x >= y)),
    })
}

fn float_predicate(env: &mut Env<'_>, args: &[usize], inf: bool) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let t = env.dtype(a)?;
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    if !is_float(t) {
        return unary_map::<u8, u8, _>(env, a, out, false, |_| 0u8);
    }
    dispatch_real(compute_type(t), |ct| match ct {
        RealT::F32 => unary_map::<f32, u8, _>(env, a, out, false, move |x| {
            u8::from(if inf { x.is_infinite() } else { x.is_nan() })
        }),
        RealT::F64 => unary_map::<f64, u8, _>(env, a, out, false, move |x| {
            u8::from(if inf { x.is_infinite() } else { x.is_nan() })
        }),
    })
}

fn logical(env: &mut Env<'_>, args: &[usize], f: fn(u8, u8) -> u8) -> Result<()> {
    let (a, b, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let so = k::broadcast_shape(env.sizes(a)?, env.sizes(b)?)?;
    let out_dt = env.dtype(out)?;
    if !is_real_or_bool(out_dt) {
        return Err(unsupported(out_dt));
    }
    env.resize(out, &so)?;
    env.run(&[a, b], &[out], |ins, outs| {
        let x = load_bool(&ins[0])?;
        let y = load_bool(&ins[1])?;
        write_out::<u8>(&mut outs[0], false, |o| Ok(k::binary(&x, ins[0].sizes, &y, ins[1].sizes, o, &so, f)?))
    })
}

fn logical_not(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let sizes = env.sizes(a)?.to_vec();
    env.resize(out, &sizes)?;
    env.run(&[a], &[out], |ins, outs| {
        let x = load_bool(&ins[0])?;
        write_out::<u8>(&mut outs[0], false, |o| Ok(k::unary(&x, o, |v| v ^ 1)?))
    })
}

// ---------------------------------------------------------------------------------------------
// Selection

fn where_self(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (cond, a, b, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?, arg(args, 3)?);
    let common = promote(env.dtype(a)?, env.dtype(b)?)?;
    check_cast(common, env.dtype(out)?)?;
    let cd = env.dtype(cond)?;
    if cd != S::Bool && cd != S::Byte {
        return Err(RuntimeError::Invalid(format!("where: the condition must be bool or uint8, got {cd}")));
    }
    let so = k::broadcast_shape(&k::broadcast_shape(env.sizes(cond)?, env.sizes(a)?)?, env.sizes(b)?)?;
    env.resize(out, &so)?;
    dispatch_compute!(compute_type(common), C => env.run(&[cond, a, b], &[out], |ins, outs| {
        let c = ins[0].typed::<u8>()?;
        let x = load::<C>(&ins[1])?;
        let y = load::<C>(&ins[2])?;
        write_out::<C>(&mut outs[0], false, |o| {
            Ok(k::ternary(c, ins[0].sizes, &x, ins[1].sizes, &y, ins[2].sizes, o, &so, |m: u8, p: C, q: C| if m != 0 { p } else { q })?)
        })
    }))
}

fn masked_fill(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, mask, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 3)?);
    let value = env.scalar(arg(args, 2)?)?;
    let t = env.dtype(a)?;
    if env.dtype(out)? != t {
        return Err(RuntimeError::Invalid("masked_fill: the output dtype must match the input's".into()));
    }
    if env.dtype(mask)? != S::Bool {
        return Err(RuntimeError::Invalid("masked_fill: the mask must be a bool tensor".into()));
    }
    if matches!(value, Scalar::Double(_)) && is_integral(t, true) {
        return Err(RuntimeError::Invalid(format!("masked_fill: cannot fill a {t} tensor with a float value")));
    }
    let so = k::broadcast_shape(env.sizes(a)?, env.sizes(mask)?)?;
    env.resize(out, &so)?;
    dispatch_all!(t, T => env.run(&[a, mask], &[out], |ins, outs| {
        let v: T = if t == S::Bool { T::of_i64(i64::from(sc::<f64>(value) != 0.0)) } else { sc::<T>(value) };
        let x = ins[0].typed::<T>()?;
        let m = ins[1].typed::<u8>()?;
        let o = outs[0].typed::<T>()?;
        Ok(k::binary(x, ins[0].sizes, m, ins[1].sizes, o, &so, |p: T, mm: u8| if mm != 0 { v } else { p })?)
    }))
}

// ---------------------------------------------------------------------------------------------
// Unary operators

/// `out = f(a)` with `a` loaded as `C`, results of type `O` cast to the output dtype.
fn unary_map<C, O, F>(env: &mut Env<'_>, a: usize, out: usize, normalize: bool, f: F) -> Result<()>
where
    C: Prim + Pod,
    O: Prim + Pod,
    F: Fn(C) -> O + Sync,
{
    let sizes = env.sizes(a)?.to_vec();
    env.resize(out, &sizes)?;
    env.run(&[a], &[out], |ins, outs| {
        let x = load::<C>(&ins[0])?;
        write_out::<O>(&mut outs[0], normalize, |o| Ok(k::unary(&x, o, &f)?))
    })
}

/// A floating-point function of any real or bool input: computed in f64 for f64 inputs and in
/// f32 otherwise (as ExecuTorch), then cast to the (floating-point) output.
fn unary_float(
    env: &mut Env<'_>,
    args: &[usize],
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let (t, out_dt) = (env.dtype(a)?, env.dtype(out)?);
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    if !is_float(out_dt) {
        return Err(RuntimeError::Invalid(format!("the output must be floating point, got {out_dt}")));
    }
    if t == S::Double {
        unary_map::<f64, f64, _>(env, a, out, false, f64f)
    } else {
        unary_map::<f32, f32, _>(env, a, out, false, f32f)
    }
}

#[derive(Debug, Clone, Copy)]
enum Same {
    Abs,
    Neg,
    Sign,
    Floor,
    Ceil,
    Round,
    Trunc,
    Relu,
}

/// Unary operators whose output has the input's dtype.
fn unary_same(env: &mut Env<'_>, args: &[usize], op: Same) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let t = env.dtype(a)?;
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    if !is_real_or_bool(env.dtype(out)?) {
        return Err(unsupported(env.dtype(out)?));
    }
    if t == S::Bool {
        return match op {
            Same::Neg => Err(RuntimeError::Invalid("neg of a bool tensor is not supported; use logical_not".into())),
            Same::Relu => Err(RuntimeError::Invalid("relu does not support bool tensors".into())),
            _ => unary_map::<u8, u8, _>(env, a, out, false, |x| x),
        };
    }
    let ct = compute_type(t);
    if is_float(ct) {
        return dispatch_real(ct, |rt| match rt {
            RealT::F32 => unary_map::<f32, f32, _>(env, a, out, false, move |x| same_real(op, x)),
            RealT::F64 => unary_map::<f64, f64, _>(env, a, out, false, move |x| same_real(op, x)),
        });
    }
    dispatch_compute!(ct, C => unary_map::<C, C, _>(env, a, out, false, move |x: C| match op {
        Same::Abs => x.abs_val(),
        Same::Neg => x.neg_val(),
        Same::Sign => x.sign_val(),
        Same::Floor | Same::Ceil | Same::Round | Same::Trunc => x,
        Same::Relu => x.max_nan(C::zero()),
    }))
}

#[inline(always)]
fn same_real<T: Real>(op: Same, x: T) -> T {
    match op {
        Same::Abs => x.abs_val(),
        Same::Neg => -x,
        Same::Sign => x.sign_val(),
        Same::Floor => x.floor(),
        Same::Ceil => x.ceil(),
        Same::Round => x.round_even(),
        Same::Trunc => x.trunc(),
        Same::Relu => {
            if x.is_nan() || x >= T::zero() {
                x
            } else {
                T::zero()
            }
        }
    }
}

/// Rejects a clamp bound that does not fit the output dtype (as ExecuTorch's `check_bounds`).
fn check_bound(s: Scalar, out: S, what: &str) -> Result<()> {
    let fits = if is_integral(out, false) {
        let v = match s {
            Scalar::Int(i) => i as f64,
            Scalar::Double(d) => d.trunc(),
            Scalar::Bool(b) => f64::from(u8::from(b)),
        };
        let (lo, hi) = match out {
            S::Byte => (0.0, 255.0),
            S::Char => (-128.0, 127.0),
            S::Short => (-32768.0, 32767.0),
            S::Int => (-2147483648.0, 2147483647.0),
            S::UInt16 => (0.0, 65535.0),
            S::UInt32 => (0.0, 4294967295.0),
            S::UInt64 => (0.0, f64::MAX),
            _ => (f64::MIN, f64::MAX),
        };
        (lo..=hi).contains(&v)
    } else if is_float(out) {
        let v = s.to_f64();
        let lim = match out {
            S::Half => 65504.0,
            S::Float => f64::from(f32::MAX),
            S::BFloat16 => f64::from(half::bf16::MAX.to_f32()),
            _ => f64::MAX,
        };
        !v.is_finite() || v.abs() <= lim
    } else {
        true
    };
    if fits {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!("clamp: {what} value {s:?} is out of range for {out}")))
    }
}

fn clamp_scalar(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let lo = env.opt_scalar(arg(args, 1)?)?;
    let hi = env.opt_scalar(arg(args, 2)?)?;
    if lo.is_none() && hi.is_none() {
        return Err(RuntimeError::Invalid("clamp: at least one of min and max must be given".into()));
    }
    let t = env.dtype(a)?;
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    let mut common = t;
    for s in [lo, hi].into_iter().flatten() {
        common = promote_scalar(common, s);
    }
    let out_dt = env.dtype(out)?;
    check_cast(common, out_dt)?;
    if let Some(s) = lo {
        check_bound(s, out_dt, "minimum")?;
    }
    if let Some(s) = hi {
        check_bound(s, out_dt, "maximum")?;
    }
    let ct = compute_type(common);
    dispatch_compute!(ct, C => {
        let lo: Option<C> = lo.map(sc);
        let hi: Option<C> = hi.map(sc);
        unary_map::<C, C, _>(env, a, out, ct == S::Bool, move |x: C| {
            let mut v = x;
            if let Some(l) = lo {
                v = v.max_nan(l);
            }
            if let Some(h) = hi {
                v = v.min_nan(h);
            }
            v
        })
    })
}

fn clamp_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let lo = if env.is_none(arg(args, 1)?)? { None } else { Some(arg(args, 1)?) };
    let hi = if env.is_none(arg(args, 2)?)? { None } else { Some(arg(args, 2)?) };
    if lo.is_none() && hi.is_none() {
        return Err(RuntimeError::Invalid("clamp: at least one of min and max must be given".into()));
    }
    let mut common = env.dtype(a)?;
    for t in [lo, hi].into_iter().flatten() {
        common = promote(common, env.dtype(t)?)?;
    }
    check_cast(common, env.dtype(out)?)?;
    let (lo_t, hi_t) = (lo.unwrap_or(a), hi.unwrap_or(a));
    let so = k::broadcast_shape(&k::broadcast_shape(env.sizes(a)?, env.sizes(lo_t)?)?, env.sizes(hi_t)?)?;
    env.resize(out, &so)?;
    let (has_lo, has_hi) = (lo.is_some(), hi.is_some());
    let ct = compute_type(common);
    dispatch_compute!(ct, C => env.run(&[a, lo_t, hi_t], &[out], |ins, outs| {
        let x = load::<C>(&ins[0])?;
        let l = load::<C>(&ins[1])?;
        let h = load::<C>(&ins[2])?;
        write_out::<C>(&mut outs[0], ct == S::Bool, |o| {
            Ok(k::ternary(&x, ins[0].sizes, &l, ins[1].sizes, &h, ins[2].sizes, o, &so, |v: C, l: C, h: C| {
                let mut v = v;
                if has_lo {
                    v = v.max_nan(l);
                }
                if has_hi {
                    v = v.min_nan(h);
                }
                v
            })?)
        })
    }))
}

fn hardtanh(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let (lo, hi) = (env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?);
    let t = env.dtype(a)?;
    if env.dtype(out)? != t {
        return Err(RuntimeError::Invalid("hardtanh: the output dtype must match the input's".into()));
    }
    if !is_real_or_bool(t) || t == S::Bool {
        return Err(unsupported(t));
    }
    dispatch_compute!(compute_type(t), C => {
        let (l, h): (C, C) = (sc(lo), sc(hi));
        unary_map::<C, C, _>(env, a, out, false, move |x: C| x.max_nan(l).min_nan(h))
    })
}

/// A floating-point activation with the output's dtype equal to the input's.
fn activation(
    env: &mut Env<'_>,
    a: usize,
    out: usize,
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<()> {
    let t = env.dtype(a)?;
    if !is_float(t) {
        return Err(RuntimeError::Invalid(format!("this activation needs a floating-point tensor, got {t}")));
    }
    let out_dt = env.dtype(out)?;
    if !is_float(out_dt) {
        return Err(RuntimeError::Invalid(format!("the output must be floating point, got {out_dt}")));
    }
    if t == S::Double {
        unary_map::<f64, f64, _>(env, a, out, false, f64f)
    } else {
        unary_map::<f32, f32, _>(env, a, out, false, f32f)
    }
}

fn gelu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 2)?);
    let approx = if env.is_none(arg(args, 1)?)? { "none".to_string() } else { env.string(arg(args, 1)?)?.to_string() };
    match approx.as_str() {
        // 0.5·x·(1 + erf(x/√2)), evaluated in f64 as ExecuTorch's C++ does (M_SQRT1_2 is double).
        "none" => activation(
            env,
            a,
            out,
            |x| {
                if x == f32::NEG_INFINITY {
                    0.0
                } else {
                    let xd = f64::from(x);
                    (0.5 * xd * (1.0 + k::erf_f64(xd * std::f64::consts::FRAC_1_SQRT_2))) as f32
                }
            },
            |x| {
                if x == f64::NEG_INFINITY {
                    0.0
                } else {
                    0.5 * x * (1.0 + k::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2))
                }
            },
        ),
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): inner in the input precision, outer in f64.
        "tanh" => activation(
            env,
            a,
            out,
            |x| {
                if x.is_infinite() {
                    return if x > 0.0 { x } else { 0.0 };
                }
                let beta = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
                let kappa = 0.044715f32;
                let inner = beta * (x + kappa * (x * x * x));
                (0.5 * f64::from(x) * (1.0 + f64::from(inner.tanh()))) as f32
            },
            |x| {
                if x.is_infinite() {
                    return if x > 0.0 { x } else { 0.0 };
                }
                let beta = std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5;
                let kappa = f64::from(0.044715f32);
                let inner = beta * (x + kappa * (x * x * x));
                0.5 * x * (1.0 + inner.tanh())
            },
        ),
        other => Err(RuntimeError::Invalid(format!("gelu: approximate must be 'none' or 'tanh', got {other:?}"))),
    }
}

fn leaky_relu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 2)?);
    let slope = env.scalar(arg(args, 1)?)?;
    if env.dtype(out)? != env.dtype(a)? {
        return Err(RuntimeError::Invalid("leaky_relu: the output dtype must match the input's".into()));
    }
    let (s32, s64): (f32, f64) = (sc(slope), sc(slope));
    activation(env, a, out, move |x| if x > 0.0 { x } else { x * s32 }, move |x| if x > 0.0 { x } else { x * s64 })
}

fn elu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 4)?);
    let (alpha, scale, input_scale) =
        (env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?, env.scalar(arg(args, 3)?)?);
    if env.dtype(out)? != env.dtype(a)? {
        return Err(RuntimeError::Invalid("elu: the output dtype must match the input's".into()));
    }
    let (al32, sc32, is32): (f32, f32, f32) = (sc(alpha), sc(scale), sc(input_scale));
    let (al64, sc64, is64): (f64, f64, f64) = (sc(alpha), sc(scale), sc(input_scale));
    let (neg32, neg64) = (al32 * sc32, al64 * sc64);
    activation(
        env,
        a,
        out,
        move |x| if x <= 0.0 { (x * is32).exp_m1() * neg32 } else { x * sc32 },
        move |x| if x <= 0.0 { (x * is64).exp_m1() * neg64 } else { x * sc64 },
    )
}

fn softplus(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let (beta, threshold) = (env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?);
    let (b32, t32): (f32, f32) = (sc(beta), sc(threshold));
    let (b64, t64): (f64, f64) = (sc(beta), sc(threshold));
    activation(
        env,
        a,
        out,
        move |x| if x * b32 > t32 { x } else { (x * b32).exp().ln_1p() / b32 },
        move |x| if x * b64 > t64 { x } else { (x * b64).exp().ln_1p() / b64 },
    )
}

fn glu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 2)?);
    let sizes = env.sizes(a)?.to_vec();
    let dim = super::norm_dim(env.int(arg(args, 1)?)?, sizes.len())?;
    let t = env.dtype(a)?;
    if !is_float(t) || !is_float(env.dtype(out)?) {
        return Err(RuntimeError::Invalid("glu needs floating-point input and output".into()));
    }
    let n = sizes.get(dim).copied().unwrap_or(1);
    if n % 2 != 0 {
        return Err(RuntimeError::Invalid(format!("glu: dimension {dim} has odd size {n}")));
    }
    let mut out_sizes = sizes.clone();
    if let Some(d) = out_sizes.get_mut(dim) {
        *d = n / 2;
    }
    let outer: usize = sizes.iter().take(dim).product();
    let inner: usize = sizes.iter().skip(dim + 1).product();
    env.resize(out, &out_sizes)?;
    dispatch_real(compute_type(t), |rt| {
        env.run(&[a], &[out], |ins, outs| match rt {
            RealT::F32 => {
                let x = load::<f32>(&ins[0])?;
                write_out::<f32>(&mut outs[0], false, |o| Ok(k::glu(&x, o, outer, n / 2, inner)?))
            }
            RealT::F64 => {
                let x = load::<f64>(&ins[0])?;
                write_out::<f64>(&mut outs[0], false, |o| Ok(k::glu(&x, o, outer, n / 2, inner)?))
            }
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use crate::env::{RValue, Storage, TensorSlot};
    use crate::tensor::{AlignedBuf, TensorData};
    use ferrite_program::{Program, ShapeDynamism};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn program() -> &'static Program<'static> {
        static P: OnceLock<&'static Program<'static>> = OnceLock::new();
        P.get_or_init(|| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/elementwise/portable.pte");
            Box::leak(Box::new(Program::read(path).unwrap()))
        })
    }

    /// A minimal method state to call adapters on.
    #[derive(Default)]
    struct H {
        values: Vec<RValue>,
        owned: Vec<AlignedBuf>,
    }

    impl H {
        fn push(&mut self, v: RValue) -> usize {
            self.values.push(v);
            self.values.len() - 1
        }
        fn t(&mut self, t: &TensorData) -> usize {
            self.owned.push(AlignedBuf::from_bytes(t.bytes()));
            let rank = t.sizes().len();
            self.push(RValue::Tensor(TensorSlot {
                dtype: t.dtype(),
                sizes: t.sizes().to_vec(),
                bound: t.sizes().to_vec(),
                dim_order: (0..rank as u8).collect(),
                dynamism: ShapeDynamism::DynamicUnbound,
                storage: Storage::Owned { index: self.owned.len() - 1 },
            }))
        }
        fn f32(&mut self, sizes: &[usize], v: &[f32]) -> usize {
            self.t(&TensorData::from_slice(sizes.to_vec(), v).unwrap())
        }
        fn out(&mut self, dtype: S, rank: usize) -> usize {
            self.push(RValue::Tensor(TensorSlot {
                dtype,
                sizes: vec![0; rank],
                bound: vec![0; rank],
                dim_order: (0..rank as u8).collect(),
                dynamism: ShapeDynamism::DynamicUnbound,
                storage: Storage::Empty,
            }))
        }
        fn int(&mut self, v: i64) -> usize {
            self.push(RValue::Int(v))
        }
        fn dbl(&mut self, v: f64) -> usize {
            self.push(RValue::Double(v))
        }
        fn none(&mut self) -> usize {
            self.push(RValue::None)
        }
        fn string(&mut self, s: &str) -> usize {
            self.push(RValue::String(s.into()))
        }
        fn call(&mut self, op: Op, args: &[usize]) -> Result<()> {
            let mut r = KernelRegistry::empty();
            register(&mut r);
            let f = r.get(op.name()).unwrap_or_else(|| panic!("{op} not registered"));
            let mut env =
                Env::owned(&mut self.values, &mut self.owned, program(), false, ferrite_kernels::simd::Level::detect());
            f(&mut env, args)
        }
        fn read(&mut self, v: usize) -> (S, Vec<usize>, Vec<f64>) {
            let env =
                Env::owned(&mut self.values, &mut self.owned, program(), false, ferrite_kernels::simd::Level::detect());
            let t = env.read(v).unwrap();
            (t.dtype, t.sizes.to_vec(), t.to_f64_vec().unwrap())
        }
        fn raw<T: Pod>(&mut self, v: usize) -> Vec<T> {
            let env =
                Env::owned(&mut self.values, &mut self.owned, program(), false, ferrite_kernels::simd::Level::detect());
            env.read(v).unwrap().typed::<T>().unwrap().to_vec()
        }
    }

    /// Reference broadcasting in f64.
    fn ref_binary(
        a: &[f64],
        sa: &[usize],
        b: &[f64],
        sb: &[usize],
        f: impl Fn(f64, f64) -> f64,
    ) -> (Vec<f64>, Vec<usize>) {
        let so = k::broadcast_shape(sa, sb).unwrap();
        let n: usize = so.iter().product();
        let idx = |shape: &[usize], multi: &[usize]| {
            let lead = multi.len() - shape.len();
            shape.iter().enumerate().fold(0, |acc, (d, &s)| acc * s + if s == 1 { 0 } else { multi[d + lead] })
        };
        let out = (0..n)
            .map(|flat| {
                let mut multi = vec![0; so.len()];
                let mut r = flat;
                for d in (0..so.len()).rev() {
                    multi[d] = r % so[d];
                    r /= so[d];
                }
                f(a[idx(sa, &multi)], b[idx(sb, &multi)])
            })
            .collect();
        (out, so)
    }

    fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        prop::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 0..4).prop_flat_map(|dims| {
            let a: Vec<usize> = dims.iter().map(|&(s, ba, _)| if ba { 1 } else { s }).collect();
            let b: Vec<usize> = dims.iter().map(|&(s, _, bb)| if bb { 1 } else { s }).collect();
            (0..=a.len(), 0..=b.len()).prop_map(move |(da, db)| (a[da..].to_vec(), b[db..].to_vec()))
        })
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n).map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 37.0 - 13.0).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn f32_binary_ops_match_reference((sa, sb) in shapes(), seed in 0u64..1000, op in 0usize..6) {
            let a = values(sa.iter().product(), seed);
            let b = values(sb.iter().product(), seed + 1);
            let (name, f): (Op, fn(f64, f64) -> f64) = match op {
                0 => (Op::Add, |x, y| x + 2.0 * y),
                1 => (Op::Sub, |x, y| x - 2.0 * y),
                2 => (Op::Mul, |x, y| x * y),
                3 => (Op::Div, |x, y| x / y),
                4 => (Op::Maximum, |x, y| x.max(y)),
                _ => (Op::Minimum, |x, y| x.min(y)),
            };
            let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
            let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
            let (want, so) = ref_binary(&a64, &sa, &b64, &sb, f);
            let mut h = H::default();
            let (ta, tb) = (h.f32(&sa, &a), h.f32(&sb, &b));
            let out = h.out(S::Float, so.len());
            let mut args = vec![ta, tb];
            if op < 2 {
                args.push(h.int(2));
            }
            args.extend([out, out]);
            h.call(name, &args).unwrap();
            let got = h.raw::<f32>(out);
            let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            prop_assert_eq!(h.read(out).1, so);
            prop_assert_eq!(got, want32);
        }

        #[test]
        fn comparisons_and_where_match_reference((sa, sb) in shapes(), seed in 0u64..1000, op in 0usize..6) {
            let a = values(sa.iter().product(), seed).iter().map(|v| v.round()).collect::<Vec<_>>();
            let b = values(sb.iter().product(), seed + 7).iter().map(|v| v.round()).collect::<Vec<_>>();
            let (name, f): (Op, fn(f64, f64) -> bool) = match op {
                0 => (Op::EqTensor, |x, y| x == y),
                1 => (Op::NeTensor, |x, y| x != y),
                2 => (Op::LtTensor, |x, y| x < y),
                3 => (Op::LeTensor, |x, y| x <= y),
                4 => (Op::GtTensor, |x, y| x > y),
                _ => (Op::GeTensor, |x, y| x >= y),
            };
            let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
            let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
            let (want, so) = ref_binary(&a64, &sa, &b64, &sb, |x, y| f64::from(u8::from(f(x, y))));
            let mut h = H::default();
            let (ta, tb) = (h.f32(&sa, &a), h.f32(&sb, &b));
            let out = h.out(S::Bool, so.len());
            h.call(name, &[ta, tb, out, out]).unwrap();
            prop_assert_eq!(h.read(out).2, want.clone());
            // where(cond, a, b) with the comparison as the condition.
            let sel = h.out(S::Float, so.len());
            h.call(Op::WhereSelf, &[out, ta, tb, sel, sel]).unwrap();
            let (wa, _) = ref_binary(&a64, &sa, &b64, &sb, |x, _| x);
            let (wb, _) = ref_binary(&a64, &sa, &b64, &sb, |_, y| y);
            let expect: Vec<f64> = want.iter().zip(wa.iter().zip(&wb)).map(|(&c, (&x, &y))| if c != 0.0 { x } else { y }).collect();
            prop_assert_eq!(h.read(sel).2, expect);
        }

        #[test]
        fn int_ops_match_python(a in prop::collection::vec(-50i64..50, 1..20), b in -7i64..7) {
            prop_assume!(b != 0);
            let mut h = H::default();
            let n = a.len();
            let ta = h.t(&TensorData::from_slice(vec![n], &a).unwrap());
            let tb = h.t(&TensorData::from_slice(vec![1], &[b]).unwrap());
            let out = h.out(S::Long, 1);
            h.call(Op::RemainderTensor, &[ta, tb, out, out]).unwrap();
            prop_assert_eq!(h.raw::<i64>(out), a.iter().map(|&x| x.rem_euclid(b) + if b < 0 && x.rem_euclid(b) != 0 { b } else { 0 }).collect::<Vec<_>>());
            let out2 = h.out(S::Long, 1);
            h.call(Op::FloorDivide, &[ta, tb, out2, out2]).unwrap();
            prop_assert_eq!(h.raw::<i64>(out2), a.iter().map(|&x| (x as f64 / b as f64).floor() as i64).collect::<Vec<_>>());
            let out3 = h.out(S::Long, 1);
            let mode = h.string("trunc");
            h.call(Op::DivMode, &[ta, tb, mode, out3, out3]).unwrap();
            prop_assert_eq!(h.raw::<i64>(out3), a.iter().map(|&x| x / b).collect::<Vec<_>>());
            let out4 = h.out(S::Long, 1);
            h.call(Op::FmodTensor, &[ta, tb, out4, out4]).unwrap();
            prop_assert_eq!(h.raw::<i64>(out4), a.iter().map(|&x| x % b).collect::<Vec<_>>());
        }
    }

    #[test]
    fn promotion_int_plus_float_and_scalars() {
        let mut h = H::default();
        let i = h.t(&TensorData::from_slice(vec![3], &[1i32, 2, 3]).unwrap());
        let f = h.f32(&[3], &[0.5, 0.25, -1.0]);
        let one = h.int(1);
        let out = h.out(S::Float, 1);
        h.call(Op::Add, &[i, f, one, out, out]).unwrap();
        assert_eq!(h.raw::<f32>(out), vec![1.5, 2.25, 2.0]);
        // int tensor + float scalar -> float
        let s = h.dbl(0.5);
        let out2 = h.out(S::Float, 1);
        h.call(Op::AddScalar, &[i, s, one, out2, out2]).unwrap();
        assert_eq!(h.raw::<f32>(out2), vec![1.5, 2.5, 3.5]);
        // float result into an int output is rejected
        let bad = h.out(S::Int, 1);
        assert!(h.call(Op::Add, &[i, f, one, bad, bad]).is_err());
        // int / int -> float
        let out3 = h.out(S::Float, 1);
        h.call(Op::Div, &[i, i, out3, out3]).unwrap();
        assert_eq!(h.raw::<f32>(out3), vec![1.0, 1.0, 1.0]);
        // u8 + i8 -> i16
        assert_eq!(promote(S::Byte, S::Char).unwrap(), S::Short);
        assert_eq!(promote(S::Half, S::BFloat16).unwrap(), S::Float);
        assert_eq!(promote(S::Bool, S::Int).unwrap(), S::Int);
        assert_eq!(promote(S::Long, S::Half).unwrap(), S::Half);
        assert_eq!(promote_scalar(S::Bool, Scalar::Int(1)), S::Long);
        assert_eq!(promote_scalar(S::Int, Scalar::Double(1.0)), S::Float);
        assert_eq!(promote_scalar(S::Half, Scalar::Double(1.0)), S::Half);
    }

    #[test]
    fn bool_arithmetic_and_i64_wrap() {
        let mut h = H::default();
        let b = h.t(&TensorData::from_bools(vec![4], &[true, true, false, false]).unwrap());
        let c = h.t(&TensorData::from_bools(vec![4], &[true, false, true, false]).unwrap());
        let one = h.int(1);
        let out = h.out(S::Bool, 1);
        h.call(Op::Add, &[b, c, one, out, out]).unwrap();
        assert_eq!(h.raw::<u8>(out), vec![1, 1, 1, 0]);
        let out2 = h.out(S::Bool, 1);
        h.call(Op::Mul, &[b, c, out2, out2]).unwrap();
        assert_eq!(h.raw::<u8>(out2), vec![1, 0, 0, 0]);
        assert!(h.call(Op::Sub, &[b, c, one, out2, out2]).is_err());
        let big = h.t(&TensorData::from_slice(vec![2], &[i64::MAX, i64::MIN]).unwrap());
        let out3 = h.out(S::Long, 1);
        h.call(Op::AddScalar, &[big, one, one, out3, out3]).unwrap();
        assert_eq!(h.raw::<i64>(out3), vec![i64::MIN, i64::MIN + 1]);
        let out4 = h.out(S::Long, 1);
        h.call(Op::Mul, &[big, big, out4, out4]).unwrap();
        assert_eq!(h.raw::<i64>(out4), vec![i64::MAX.wrapping_mul(i64::MAX), 0]);
        // bool + int scalar -> long
        let out5 = h.out(S::Long, 1);
        let two = h.int(2);
        h.call(Op::AddScalar, &[b, two, one, out5, out5]).unwrap();
        assert_eq!(h.raw::<i64>(out5), vec![3, 3, 2, 2]);
    }

    #[test]
    fn half_inputs_compute_in_f32() {
        let mut h = H::default();
        let x: Vec<half::f16> = [1.0f32, 2.0, 1000.0].iter().map(|&v| half::f16::from_f32(v)).collect();
        let a = h.t(&TensorData::from_slice(vec![3], &x).unwrap());
        let out = h.out(S::Half, 1);
        let s = h.dbl(0.1);
        h.call(Op::MulScalar, &[a, s, out, out]).unwrap();
        let got: Vec<f32> = h.raw::<half::f16>(out).iter().map(|v| v.to_f32()).collect();
        let want: Vec<f32> = x.iter().map(|v| half::f16::from_f32(v.to_f32() * 0.1f32).to_f32()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unary_edge_values() {
        let edge =
            [0.0f32, -0.0, 1.0, -1.0, 0.5, -2.5, 2.5, 3.7, -3.7, 100.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        type Case = (Op, fn(f64) -> f64);
        let cases: Vec<Case> = vec![
            (Op::Abs, f64::abs),
            (Op::Neg, |x| -x),
            (Op::Sqrt, f64::sqrt),
            (Op::Rsqrt, |x| 1.0 / x.sqrt()),
            (Op::Exp, f64::exp),
            (Op::Expm1, f64::exp_m1),
            (Op::Log, f64::ln),
            (Op::Log1p, f64::ln_1p),
            (Op::Log2, f64::log2),
            (Op::Log10, f64::log10),
            (Op::Sin, f64::sin),
            (Op::Cos, f64::cos),
            (Op::Tan, f64::tan),
            (Op::Tanh, f64::tanh),
            (Op::Asin, f64::asin),
            (Op::Acos, f64::acos),
            (Op::Atan, f64::atan),
            (Op::Sinh, f64::sinh),
            (Op::Cosh, f64::cosh),
            (Op::Erf, k::erf_f64),
            (Op::Floor, f64::floor),
            (Op::Ceil, f64::ceil),
            (Op::Round, f64::round_ties_even),
            (Op::Trunc, f64::trunc),
            (Op::Sign, |x| {
                if x.is_nan() {
                    x
                } else if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }),
            (Op::Reciprocal, |x| 1.0 / x),
            (Op::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
            (Op::Relu, |x| if x.is_nan() || x >= 0.0 { x } else { 0.0 }),
            (Op::Silu, |x| x / (1.0 + (-x).exp())),
            (Op::Hardswish, |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0),
            (Op::Hardsigmoid, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0),
        ];
        for (name, f) in cases {
            let mut h = H::default();
            let a = h.f32(&[edge.len()], &edge);
            let out = h.out(S::Float, 1);
            h.call(name, &[a, out, out]).unwrap();
            let got = h.raw::<f32>(out);
            for (&x, &g) in edge.iter().zip(&got) {
                let w = f(f64::from(x)) as f32;
                let ok =
                    (w.is_nan() && g.is_nan()) || w == g || (w - g).abs() <= 2.0 * f32::EPSILON * w.abs().max(1e-30);
                assert!(ok, "{name}({x}) = {g}, want {w}");
            }
        }
    }

    #[test]
    fn int_input_to_float_function_and_int_unary() {
        let mut h = H::default();
        let a = h.t(&TensorData::from_slice(vec![3], &[-4i64, 0, 9]).unwrap());
        let out = h.out(S::Float, 1);
        h.call(Op::Sqrt, &[a, out, out]).unwrap();
        let got = h.raw::<f32>(out);
        assert!(got[0].is_nan());
        assert_eq!(&got[1..], &[0.0, 3.0]);
        let out2 = h.out(S::Long, 1);
        h.call(Op::Abs, &[a, out2, out2]).unwrap();
        assert_eq!(h.raw::<i64>(out2), vec![4, 0, 9]);
        let out3 = h.out(S::Long, 1);
        h.call(Op::Sign, &[a, out3, out3]).unwrap();
        assert_eq!(h.raw::<i64>(out3), vec![-1, 0, 1]);
        let out4 = h.out(S::Bool, 1);
        h.call(Op::Isnan, &[out, out4, out4]).unwrap();
        assert_eq!(h.raw::<u8>(out4), vec![1, 0, 0]);
        assert!(h.call(Op::Sqrt, &[a, out2, out2]).is_err());
    }

    #[test]
    fn gelu_forms() {
        let xs = [-3.0f32, -1.0, -0.5, 0.0, 0.3, 1.0, 2.5, f32::INFINITY, f32::NEG_INFINITY];
        let mut h = H::default();
        let a = h.f32(&[xs.len()], &xs);
        let none = h.string("none");
        let out = h.out(S::Float, 1);
        h.call(Op::Gelu, &[a, none, out, out]).unwrap();
        let got = h.raw::<f32>(out);
        // Values from torch.nn.functional.gelu (float32).
        let want = [
            -0.004_049_694_f32,
            -0.158_655_25,
            -0.154_268_77,
            0.0,
            0.185_373_44,
            0.841_344_7,
            2.484_475_8,
            f32::INFINITY,
            0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!(*g == w || (g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
        let tanh = h.string("tanh");
        let out2 = h.out(S::Float, 1);
        h.call(Op::Gelu, &[a, tanh, out2, out2]).unwrap();
        let got = h.raw::<f32>(out2);
        for (&x, g) in xs.iter().zip(got) {
            let xd = f64::from(x);
            let w = if x.is_infinite() {
                if x > 0.0 {
                    xd
                } else {
                    0.0
                }
            } else {
                0.5 * xd * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh())
            };
            assert!(f64::from(g) == w || (f64::from(g) - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn clamp_hardtanh_activations() {
        let xs = [-3.0f32, -0.5, 0.0, 0.5, 3.0, f32::NAN];
        let mut h = H::default();
        let a = h.f32(&[2, 3], &xs);
        let (lo, hi, none) = (h.dbl(-1.0), h.dbl(1.0), h.none());
        let out = h.out(S::Float, 2);
        h.call(Op::Clamp, &[a, lo, none, out, out]).unwrap();
        let got = h.raw::<f32>(out);
        assert_eq!(&got[..5], &[-1.0, -0.5, 0.0, 0.5, 3.0]);
        assert!(got[5].is_nan());
        let out2 = h.out(S::Float, 2);
        h.call(Op::Hardtanh, &[a, lo, hi, out2, out2]).unwrap();
        assert_eq!(&h.raw::<f32>(out2)[..5], &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        let t_lo = h.f32(&[3], &[-2.0, 0.0, 1.0]);
        let out3 = h.out(S::Float, 2);
        h.call(Op::ClampTensor, &[a, t_lo, none, out3, out3]).unwrap();
        assert_eq!(&h.raw::<f32>(out3)[..5], &[-2.0, 0.0, 1.0, 0.5, 3.0]);
        let slope = h.dbl(0.1);
        let out4 = h.out(S::Float, 2);
        h.call(Op::LeakyRelu, &[a, slope, out4, out4]).unwrap();
        assert_eq!(&h.raw::<f32>(out4)[..5], &[-3.0 * 0.1, -0.5 * 0.1, 0.0, 0.5, 3.0]);
        let (one, two) = (h.int(1), h.dbl(2.0));
        let out5 = h.out(S::Float, 2);
        h.call(Op::Elu, &[a, two, one, one, out5, out5]).unwrap();
        let got = h.raw::<f32>(out5);
        assert_eq!(got[0], (-3.0f32).exp_m1() * 2.0);
        assert_eq!(got[4], 3.0);
        let dim = h.int(-1);
        let g = h.f32(&[2, 2], &[1.0, 2.0, 0.0, -1.0]);
        let out6 = h.out(S::Float, 2);
        h.call(Op::Glu, &[g, dim, out6, out6]).unwrap();
        assert_eq!(h.read(out6).1, vec![2, 1]);
        let got = h.raw::<f32>(out6);
        assert_eq!(got, vec![1.0 / (1.0 + (-2.0f32).exp()), 0.0]);
    }

    #[test]
    fn logical_bitwise_masked_fill() {
        let mut h = H::default();
        let a = h.t(&TensorData::from_slice(vec![4], &[0i32, 1, 2, -1]).unwrap());
        let b = h.f32(&[4], &[0.0, 0.0, 3.0, f32::NAN]);
        let out = h.out(S::Bool, 1);
        h.call(Op::LogicalAnd, &[a, b, out, out]).unwrap();
        assert_eq!(h.raw::<u8>(out), vec![0, 0, 1, 1]);
        let out2 = h.out(S::Bool, 1);
        h.call(Op::LogicalXor, &[a, b, out2, out2]).unwrap();
        assert_eq!(h.raw::<u8>(out2), vec![0, 1, 0, 0]);
        let out3 = h.out(S::Bool, 1);
        h.call(Op::LogicalNot, &[a, out3, out3]).unwrap();
        assert_eq!(h.raw::<u8>(out3), vec![1, 0, 0, 0]);
        let six = h.int(6);
        let out4 = h.out(S::Int, 1);
        h.call(Op::BitwiseAndScalar, &[a, six, out4, out4]).unwrap();
        assert_eq!(h.raw::<i32>(out4), vec![0, 0, 2, 6]);
        let out5 = h.out(S::Int, 1);
        h.call(Op::BitwiseNot, &[a, out5, out5]).unwrap();
        assert_eq!(h.raw::<i32>(out5), vec![-1, -2, -3, 0]);
        let val = h.dbl(-9.0);
        let out6 = h.out(S::Float, 1);
        h.call(Op::MaskedFillScalar, &[b, out3, val, out6, out6]).unwrap();
        assert_eq!(h.raw::<f32>(out6)[..3], [-9.0, 0.0, 3.0]);
        assert!(h.call(Op::BitwiseOrTensor, &[a, b, out4, out4]).is_err());
    }

    #[test]
    fn pow_and_division_errors() {
        let mut h = H::default();
        let a = h.t(&TensorData::from_slice(vec![4], &[2i64, -3, 0, 5]).unwrap());
        let e = h.int(3);
        let out = h.out(S::Long, 1);
        h.call(Op::PowTensorScalar, &[a, e, out, out]).unwrap();
        assert_eq!(h.raw::<i64>(out), vec![8, -27, 0, 125]);
        let f = h.f32(&[2], &[4.0, 9.0]);
        let half = h.dbl(0.5);
        let out2 = h.out(S::Float, 1);
        h.call(Op::PowTensorScalar, &[f, half, out2, out2]).unwrap();
        assert_eq!(h.raw::<f32>(out2), vec![2.0, 3.0]);
        let two = h.int(2);
        let out3 = h.out(S::Float, 1);
        h.call(Op::PowScalar, &[two, f, out3, out3]).unwrap();
        assert_eq!(h.raw::<f32>(out3), vec![16.0, 512.0]);
        let zero = h.int(0);
        let out4 = h.out(S::Long, 1);
        assert!(h.call(Op::RemainderScalar, &[a, zero, out4, out4]).is_err());
        assert!(h.call(Op::FloorDivide, &[a, a, out4, out4]).is_err());
        let out5 = h.out(S::Float, 1);
        h.call(Op::DivScalar, &[a, zero, out5, out5]).unwrap();
        let got = h.raw::<f32>(out5);
        assert_eq!(got[0], f32::INFINITY);
        assert!(got[2].is_nan());
    }

    #[test]
    fn empty_and_zero_size_broadcast() {
        let mut h = H::default();
        let a = h.f32(&[0, 3], &[]);
        let b = h.f32(&[3], &[1.0, 2.0, 3.0]);
        let one = h.int(1);
        let out = h.out(S::Float, 2);
        h.call(Op::Add, &[a, b, one, out, out]).unwrap();
        assert_eq!(h.read(out).1, vec![0, 3]);
        let c = h.f32(&[2, 1], &[1.0, 2.0]);
        let d = h.f32(&[1, 0], &[]);
        let out2 = h.out(S::Float, 2);
        h.call(Op::Mul, &[c, d, out2, out2]).unwrap();
        assert_eq!(h.read(out2).1, vec![2, 0]);
        let e = h.f32(&[2, 3], &[0.0; 6]);
        let f = h.f32(&[4], &[0.0; 4]);
        let out3 = h.out(S::Float, 2);
        assert!(h.call(Op::Add, &[e, f, one, out3, out3]).is_err());
    }
}
