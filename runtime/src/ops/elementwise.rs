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

use std::borrow::Cow;

use super::arg;
use crate::env::{Env, Scalar};
use crate::error::{Result, RuntimeError};
use crate::kernels::elementwise::{self as k, Bits, Num, Prim, Real};
use crate::registry::KernelRegistry;
use crate::tensor::{Pod, TensorMut, TensorRef};
use ferrite_program::ScalarType as S;

// ---------------------------------------------------------------------------------------------
// Registration

pub(super) fn register(r: &mut KernelRegistry) {
    // Arithmetic.
    r.register("aten::add.out", |e, a| add_sub(e, a, false));
    r.register("aten::add.Scalar_out", |e, a| add_sub_scalar(e, a, false, false));
    r.register("aten::sub.out", |e, a| add_sub(e, a, true));
    r.register("aten::sub.Scalar_out", |e, a| add_sub_scalar(e, a, true, false));
    r.register("aten::rsub.Scalar_out", |e, a| add_sub_scalar(e, a, true, true));
    r.register("aten::mul.out", mul);
    r.register("aten::mul.Scalar_out", mul_scalar);
    r.register("aten::div.out", |e, a| div(e, arg(a, 0)?, Operand::Tensor(arg(a, 1)?), None, arg(a, 2)?));
    r.register("aten::div.Scalar_out", |e, a| {
        div(e, arg(a, 0)?, Operand::Scalar(e.scalar(arg(a, 1)?)?), None, arg(a, 2)?)
    });
    r.register("aten::div.out_mode", |e, a| {
        let mode = e.opt_string(arg(a, 2)?)?.map(str::to_owned);
        div(e, arg(a, 0)?, Operand::Tensor(arg(a, 1)?), mode.as_deref(), arg(a, 3)?)
    });
    r.register("aten::div.Scalar_mode_out", |e, a| {
        let mode = e.opt_string(arg(a, 2)?)?.map(str::to_owned);
        div(e, arg(a, 0)?, Operand::Scalar(e.scalar(arg(a, 1)?)?), mode.as_deref(), arg(a, 3)?)
    });
    r.register("aten::floor_divide.out", |e, a| int_div_like(e, a, DivKind::Floor, false));
    r.register("aten::floor_divide.Scalar_out", |e, a| int_div_like(e, a, DivKind::Floor, true));
    r.register("aten::remainder.Tensor_out", |e, a| int_div_like(e, a, DivKind::Remainder, false));
    r.register("aten::remainder.Scalar_out", |e, a| int_div_like(e, a, DivKind::Remainder, true));
    r.register("aten::fmod.Tensor_out", |e, a| int_div_like(e, a, DivKind::Fmod, false));
    r.register("aten::fmod.Scalar_out", |e, a| int_div_like(e, a, DivKind::Fmod, true));
    r.register("aten::pow.Tensor_Tensor_out", |e, a| {
        pow(e, Operand::Tensor(arg(a, 0)?), Operand::Tensor(arg(a, 1)?), arg(a, 2)?)
    });
    r.register("aten::pow.Tensor_Scalar_out", |e, a| {
        pow(e, Operand::Tensor(arg(a, 0)?), Operand::Scalar(e.scalar(arg(a, 1)?)?), arg(a, 2)?)
    });
    r.register("aten::pow.Scalar_out", |e, a| {
        pow(e, Operand::Scalar(e.scalar(arg(a, 0)?)?), Operand::Tensor(arg(a, 1)?), arg(a, 2)?)
    });
    r.register("aten::maximum.out", |e, a| min_max(e, a, true));
    r.register("aten::minimum.out", |e, a| min_max(e, a, false));
    r.register("aten::atan2.out", atan2);
    r.register("aten::square.out", square);
    r.register("aten::bitwise_and.Tensor_out", |e, a| bitwise(e, a, BitOp::And, false));
    r.register("aten::bitwise_and.Scalar_out", |e, a| bitwise(e, a, BitOp::And, true));
    r.register("aten::bitwise_or.Tensor_out", |e, a| bitwise(e, a, BitOp::Or, false));
    r.register("aten::bitwise_or.Scalar_out", |e, a| bitwise(e, a, BitOp::Or, true));
    r.register("aten::bitwise_xor.Tensor_out", |e, a| bitwise(e, a, BitOp::Xor, false));
    r.register("aten::bitwise_xor.Scalar_out", |e, a| bitwise(e, a, BitOp::Xor, true));
    r.register("aten::bitwise_not.out", bitwise_not);

    // Comparisons.
    r.register("aten::eq.Tensor_out", |e, a| compare(e, a, Cmp::Eq, false));
    r.register("aten::eq.Scalar_out", |e, a| compare(e, a, Cmp::Eq, true));
    r.register("aten::ne.Tensor_out", |e, a| compare(e, a, Cmp::Ne, false));
    r.register("aten::ne.Scalar_out", |e, a| compare(e, a, Cmp::Ne, true));
    r.register("aten::lt.Tensor_out", |e, a| compare(e, a, Cmp::Lt, false));
    r.register("aten::lt.Scalar_out", |e, a| compare(e, a, Cmp::Lt, true));
    r.register("aten::le.Tensor_out", |e, a| compare(e, a, Cmp::Le, false));
    r.register("aten::le.Scalar_out", |e, a| compare(e, a, Cmp::Le, true));
    r.register("aten::gt.Tensor_out", |e, a| compare(e, a, Cmp::Gt, false));
    r.register("aten::gt.Scalar_out", |e, a| compare(e, a, Cmp::Gt, true));
    r.register("aten::ge.Tensor_out", |e, a| compare(e, a, Cmp::Ge, false));
    r.register("aten::ge.Scalar_out", |e, a| compare(e, a, Cmp::Ge, true));
    r.register("aten::isnan.out", |e, a| float_predicate(e, a, false));
    r.register("aten::isinf.out", |e, a| float_predicate(e, a, true));

    // Logical.
    r.register("aten::logical_and.out", |e, a| logical(e, a, |x, y| x & y));
    r.register("aten::logical_or.out", |e, a| logical(e, a, |x, y| x | y));
    r.register("aten::logical_xor.out", |e, a| logical(e, a, |x, y| x ^ y));
    r.register("aten::logical_not.out", logical_not);

    // Selection.
    r.register("aten::where.self_out", where_self);
    r.register("aten::masked_fill.Scalar_out", masked_fill);

    // Unary math to floating point (integer and bool inputs give float outputs).
    r.register("aten::sqrt.out", |e, a| unary_float(e, a, |x| x.sqrt(), |x| x.sqrt()));
    r.register("aten::rsqrt.out", |e, a| unary_float(e, a, |x| 1.0 / x.sqrt(), |x| 1.0 / x.sqrt()));
    r.register("aten::exp.out", |e, a| unary_float(e, a, |x| x.exp(), |x| x.exp()));
    r.register("aten::expm1.out", |e, a| unary_float(e, a, |x| x.exp_m1(), |x| x.exp_m1()));
    r.register("aten::log.out", |e, a| unary_float(e, a, |x| x.ln(), |x| x.ln()));
    r.register("aten::log1p.out", |e, a| unary_float(e, a, |x| x.ln_1p(), |x| x.ln_1p()));
    r.register("aten::log2.out", |e, a| unary_float(e, a, |x| x.log2(), |x| x.log2()));
    r.register("aten::log10.out", |e, a| unary_float(e, a, |x| x.log10(), |x| x.log10()));
    r.register("aten::sin.out", |e, a| unary_float(e, a, |x| x.sin(), |x| x.sin()));
    r.register("aten::cos.out", |e, a| unary_float(e, a, |x| x.cos(), |x| x.cos()));
    r.register("aten::tan.out", |e, a| unary_float(e, a, |x| x.tan(), |x| x.tan()));
    r.register("aten::tanh.out", |e, a| unary_float(e, a, |x| x.tanh(), |x| x.tanh()));
    r.register("aten::asin.out", |e, a| unary_float(e, a, |x| x.asin(), |x| x.asin()));
    r.register("aten::acos.out", |e, a| unary_float(e, a, |x| x.acos(), |x| x.acos()));
    r.register("aten::atan.out", |e, a| unary_float(e, a, |x| x.atan(), |x| x.atan()));
    r.register("aten::sinh.out", |e, a| unary_float(e, a, |x| x.sinh(), |x| x.sinh()));
    r.register("aten::cosh.out", |e, a| unary_float(e, a, |x| x.cosh(), |x| x.cosh()));
    r.register("aten::asinh.out", |e, a| unary_float(e, a, |x| x.asinh(), |x| x.asinh()));
    r.register("aten::acosh.out", |e, a| unary_float(e, a, |x| x.acosh(), |x| x.acosh()));
    r.register("aten::atanh.out", |e, a| unary_float(e, a, |x| x.atanh(), |x| x.atanh()));
    r.register("aten::erf.out", |e, a| unary_float(e, a, k::erf_f32, k::erf_f64));
    r.register("aten::reciprocal.out", |e, a| unary_float(e, a, |x| 1.0 / x, |x| 1.0 / x));
    r.register("aten::sigmoid.out", |e, a| {
        unary_float(e, a, |x| 1.0 / (1.0 + (-x).exp()), |x| 1.0 / (1.0 + (-x).exp()))
    });

    // Unary operators that keep the dtype.
    r.register("aten::abs.out", |e, a| unary_same(e, a, Same::Abs));
    r.register("aten::neg.out", |e, a| unary_same(e, a, Same::Neg));
    r.register("aten::sign.out", |e, a| unary_same(e, a, Same::Sign));
    r.register("aten::floor.out", |e, a| unary_same(e, a, Same::Floor));
    r.register("aten::ceil.out", |e, a| unary_same(e, a, Same::Ceil));
    r.register("aten::round.out", |e, a| unary_same(e, a, Same::Round));
    r.register("aten::trunc.out", |e, a| unary_same(e, a, Same::Trunc));
    r.register("aten::relu.out", |e, a| unary_same(e, a, Same::Relu));
    r.register("aten::clamp.out", clamp_scalar);
    r.register("aten::clamp.Tensor_out", clamp_tensor);
    r.register("aten::hardtanh.out", hardtanh);

    // Activations (floating point).
    r.register("aten::gelu.out", gelu);
    r.register("aten::hardswish.out", |e, a| {
        activation(
            e,
            arg(a, 0)?,
            arg(a, 1)?,
            |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        )
    });
    r.register("aten::hardsigmoid.out", |e, a| {
        activation(e, arg(a, 0)?, arg(a, 1)?, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0)
    });
    r.register("aten::silu.out", |e, a| {
        activation(e, arg(a, 0)?, arg(a, 1)?, |x| x / (1.0 + (-x).exp()), |x| x / (1.0 + (-x).exp()))
    });
    r.register("aten::leaky_relu.out", leaky_relu);
    r.register("aten::elu.out", elu);
    r.register("aten::softplus.out", softplus);
    r.register("aten::glu.out", glu);
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
    !(is_float(from) && is_integral(to, false)) && !(from != S::Bool && to == S::Bool)
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

/// Calls `$body` with `$t` bound to the Rust storage type of `$dtype` (bool as `u8`).
macro_rules! dispatch_storage {
    ($dtype:expr, $t:ident => $body:expr) => {{
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
    dispatch_storage!(t.dtype, T => {
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
    dispatch_storage!(t.dtype, T => {
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
    dispatch_storage!(out.dtype, D => { k::cast_slice(src, out.typed::<D>()?)?; });
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
        Operand::Tensor(t) => env.run(&[t], &[], |ins, _| Ok(ins[0].to_f64_vec()?.iter().any(|&v| v == 0.0)))?,
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
    let (a, b, out) = (Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 2)?);
    let (ta, tb) = (env.dtype(a_idx(a))?, env.dtype(a_idx(b))?);
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

fn a_idx(op: Operand) -> usize {
    match op {
        Operand::Tensor(t) => t,
        Operand::Scalar(_) => usize::MAX,
    }
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
    dispatch_storage!(t, T => env.run(&[a, mask], &[out], |ins, outs| {
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
