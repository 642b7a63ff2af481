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
mod arith;
mod compare;
#[cfg(test)]
mod tests;
mod unary;

use std::borrow::Cow;

use super::{arg, el};
use crate::env::{Env, Scalar};
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::elementwise as k;
use ferrite_kernels::KResult;
use ferrite_kernels::{Element, Integer, Number, Real};
use ferrite_program::ScalarType as S;

use arith::*;
use compare::*;
use unary::*;

// ---------------------------------------------------------------------------------------------
// Registration

pub(super) fn register(r: &mut KernelRegistry) {
    // Arithmetic.
    reg!(r, Op::Add, |e, a| add_sub(e, a, false));
    reg!(r, Op::AddScalar, |e, a| add_sub_scalar(e, a, false, false));
    reg!(r, Op::Sub, |e, a| add_sub(e, a, true));
    reg!(r, Op::SubScalar, |e, a| add_sub_scalar(e, a, true, false));
    reg!(r, Op::RsubScalar, |e, a| add_sub_scalar(e, a, true, true));
    reg!(r, Op::Mul, mul);
    reg!(r, Op::MulScalar, mul_scalar);
    reg!(r, Op::Div, |e, a| div(e, arg(a, 0)?, Operand::Tensor(arg(a, 1)?), None, arg(a, 2)?));
    reg!(r, Op::DivScalar, |e, a| div(e, arg(a, 0)?, Operand::Scalar(e.scalar(arg(a, 1)?)?), None, arg(a, 2)?));
    reg!(r, Op::DivMode, |e, a| {
        let mode = e.opt_string(arg(a, 2)?)?.map(str::to_owned);
        div(e, arg(a, 0)?, Operand::Tensor(arg(a, 1)?), mode.as_deref(), arg(a, 3)?)
    });
    reg!(r, Op::DivScalarMode, |e, a| {
        let mode = e.opt_string(arg(a, 2)?)?.map(str::to_owned);
        div(e, arg(a, 0)?, Operand::Scalar(e.scalar(arg(a, 1)?)?), mode.as_deref(), arg(a, 3)?)
    });
    reg!(r, Op::FloorDivide, |e, a| int_div_like(e, a, DivKind::Floor, false));
    reg!(r, Op::FloorDivideScalar, |e, a| int_div_like(e, a, DivKind::Floor, true));
    reg!(r, Op::RemainderTensor, |e, a| int_div_like(e, a, DivKind::Remainder, false));
    reg!(r, Op::RemainderScalar, |e, a| int_div_like(e, a, DivKind::Remainder, true));
    reg!(r, Op::FmodTensor, |e, a| int_div_like(e, a, DivKind::Fmod, false));
    reg!(r, Op::FmodScalar, |e, a| int_div_like(e, a, DivKind::Fmod, true));
    reg!(r, Op::PowTensorTensor, |e, a| {
        pow(e, Operand::Tensor(arg(a, 0)?), Operand::Tensor(arg(a, 1)?), arg(a, 2)?)
    });
    reg!(r, Op::PowTensorScalar, |e, a| {
        pow(e, Operand::Tensor(arg(a, 0)?), Operand::Scalar(e.scalar(arg(a, 1)?)?), arg(a, 2)?)
    });
    reg!(r, Op::PowScalar, |e, a| {
        pow(e, Operand::Scalar(e.scalar(arg(a, 0)?)?), Operand::Tensor(arg(a, 1)?), arg(a, 2)?)
    });
    reg!(r, Op::Maximum, |e, a| min_max(e, a, true));
    reg!(r, Op::Minimum, |e, a| min_max(e, a, false));
    reg!(r, Op::Atan2, atan2);
    reg!(r, Op::Square, square);
    reg!(r, Op::BitwiseAndTensor, |e, a| bitwise(e, a, BitOp::And, false));
    reg!(r, Op::BitwiseAndScalar, |e, a| bitwise(e, a, BitOp::And, true));
    reg!(r, Op::BitwiseOrTensor, |e, a| bitwise(e, a, BitOp::Or, false));
    reg!(r, Op::BitwiseOrScalar, |e, a| bitwise(e, a, BitOp::Or, true));
    reg!(r, Op::BitwiseXorTensor, |e, a| bitwise(e, a, BitOp::Xor, false));
    reg!(r, Op::BitwiseXorScalar, |e, a| bitwise(e, a, BitOp::Xor, true));
    reg!(r, Op::BitwiseNot, bitwise_not);

    // Comparisons.
    reg!(r, Op::EqTensor, |e, a| compare(e, a, Cmp::Eq, false));
    reg!(r, Op::EqScalar, |e, a| compare(e, a, Cmp::Eq, true));
    reg!(r, Op::NeTensor, |e, a| compare(e, a, Cmp::Ne, false));
    reg!(r, Op::NeScalar, |e, a| compare(e, a, Cmp::Ne, true));
    reg!(r, Op::LtTensor, |e, a| compare(e, a, Cmp::Lt, false));
    reg!(r, Op::LtScalar, |e, a| compare(e, a, Cmp::Lt, true));
    reg!(r, Op::LeTensor, |e, a| compare(e, a, Cmp::Le, false));
    reg!(r, Op::LeScalar, |e, a| compare(e, a, Cmp::Le, true));
    reg!(r, Op::GtTensor, |e, a| compare(e, a, Cmp::Gt, false));
    reg!(r, Op::GtScalar, |e, a| compare(e, a, Cmp::Gt, true));
    reg!(r, Op::GeTensor, |e, a| compare(e, a, Cmp::Ge, false));
    reg!(r, Op::GeScalar, |e, a| compare(e, a, Cmp::Ge, true));
    reg!(r, Op::Isnan, |e, a| float_predicate(e, a, false));
    reg!(r, Op::Isinf, |e, a| float_predicate(e, a, true));

    // Logical.
    reg!(r, Op::LogicalAnd, |e, a| logical(e, a, |x, y| x & y));
    reg!(r, Op::LogicalOr, |e, a| logical(e, a, |x, y| x | y));
    reg!(r, Op::LogicalXor, |e, a| logical(e, a, |x, y| x ^ y));
    reg!(r, Op::LogicalNot, logical_not);

    // Selection.
    reg!(r, Op::WhereSelf, where_self);
    reg!(r, Op::MaskedFillScalar, masked_fill);

    // Unary math to floating point (integer and bool inputs give float outputs).
    reg!(r, Op::Sqrt, |e, a| unary_float(e, a, |x| x.sqrt(), |x| x.sqrt()));
    reg!(r, Op::Rsqrt, |e, a| unary_float(e, a, |x| 1.0 / x.sqrt(), |x| 1.0 / x.sqrt()));
    reg!(r, Op::Exp, |e, a| unary_float(e, a, |x| x.exp(), |x| x.exp()));
    reg!(r, Op::Expm1, |e, a| unary_float(e, a, |x| x.exp_m1(), |x| x.exp_m1()));
    reg!(r, Op::Log, |e, a| unary_float(e, a, |x| x.ln(), |x| x.ln()));
    reg!(r, Op::Log1p, |e, a| unary_float(e, a, |x| x.ln_1p(), |x| x.ln_1p()));
    reg!(r, Op::Log2, |e, a| unary_float(e, a, |x| x.log2(), |x| x.log2()));
    reg!(r, Op::Log10, |e, a| unary_float(e, a, |x| x.log10(), |x| x.log10()));
    reg!(r, Op::Sin, |e, a| unary_float(e, a, |x| x.sin(), |x| x.sin()));
    reg!(r, Op::Cos, |e, a| unary_float(e, a, |x| x.cos(), |x| x.cos()));
    reg!(r, Op::Tan, |e, a| unary_float(e, a, |x| x.tan(), |x| x.tan()));
    reg!(r, Op::Tanh, |e, a| unary_float(e, a, |x| x.tanh(), |x| x.tanh()));
    reg!(r, Op::Asin, |e, a| unary_float(e, a, |x| x.asin(), |x| x.asin()));
    reg!(r, Op::Acos, |e, a| unary_float(e, a, |x| x.acos(), |x| x.acos()));
    reg!(r, Op::Atan, |e, a| unary_float(e, a, |x| x.atan(), |x| x.atan()));
    reg!(r, Op::Sinh, |e, a| unary_float(e, a, |x| x.sinh(), |x| x.sinh()));
    reg!(r, Op::Cosh, |e, a| unary_float(e, a, |x| x.cosh(), |x| x.cosh()));
    reg!(r, Op::Asinh, |e, a| unary_float(e, a, |x| x.asinh(), |x| x.asinh()));
    reg!(r, Op::Acosh, |e, a| unary_float(e, a, |x| x.acosh(), |x| x.acosh()));
    reg!(r, Op::Atanh, |e, a| unary_float(e, a, |x| x.atanh(), |x| x.atanh()));
    reg!(r, Op::Erf, |e, a| unary_float(e, a, k::erf_f32, k::erf_f64));
    reg!(r, Op::Reciprocal, |e, a| unary_float(e, a, |x| 1.0 / x, |x| 1.0 / x));
    reg!(r, Op::Sigmoid, |e, a| unary_float(e, a, |x| 1.0 / (1.0 + (-x).exp()), |x| 1.0 / (1.0 + (-x).exp())));

    // Unary operators that keep the dtype.
    reg!(r, Op::Abs, |e, a| unary_same(e, a, Same::Abs));
    reg!(r, Op::Neg, |e, a| unary_same(e, a, Same::Neg));
    reg!(r, Op::Sign, |e, a| unary_same(e, a, Same::Sign));
    reg!(r, Op::Floor, |e, a| unary_same(e, a, Same::Floor));
    reg!(r, Op::Ceil, |e, a| unary_same(e, a, Same::Ceil));
    reg!(r, Op::Round, |e, a| unary_same(e, a, Same::Round));
    reg!(r, Op::Trunc, |e, a| unary_same(e, a, Same::Trunc));
    reg!(r, Op::Relu, |e, a| unary_same(e, a, Same::Relu));
    reg!(r, Op::Clamp, clamp_scalar);
    reg!(r, Op::ClampTensor, clamp_tensor);
    reg!(r, Op::Hardtanh, hardtanh);

    // Activations (floating point).
    reg!(r, Op::Gelu, gelu);
    reg!(r, Op::Hardswish, |e, a| {
        activation(
            e,
            arg(a, 0)?,
            arg(a, 1)?,
            |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        )
    });
    reg!(r, Op::Hardsigmoid, |e, a| {
        activation(e, arg(a, 0)?, arg(a, 1)?, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0)
    });
    reg!(r, Op::Silu, |e, a| {
        activation(e, arg(a, 0)?, arg(a, 1)?, |x| x / (1.0 + (-x).exp()), |x| x / (1.0 + (-x).exp()))
    });
    reg!(r, Op::LeakyRelu, leaky_relu);
    reg!(r, Op::Elu, elu);
    reg!(r, Op::Softplus, softplus);
    reg!(r, Op::Glu, glu);
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

fn unsupported(t: impl std::fmt::Display) -> RuntimeError {
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

/// A Scalar converted to compute type `C` (C++ `static_cast` semantics).
fn sc<C: Element>(s: Scalar) -> C {
    match s {
        Scalar::Int(i) => C::from_i64(i),
        Scalar::Double(d) => C::from_f64(d),
        Scalar::Bool(b) => C::from_i64(i64::from(b)),
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
fn load<'a, C: Element>(t: &TensorRef<'a>) -> Result<Cow<'a, [C]>> {
    if crate::tensor::viewable_as::<C>(t.dtype) {
        return Ok(Cow::Borrowed(t.typed::<C>()?));
    }
    ferrite_kernels::dispatch!(all el(t.dtype)?, T => {
        let src = t.typed::<T>()?;
        let mut v = vec![C::default(); src.len()];
        k::cast_slice(src, &mut v)?;
        Ok(Cow::Owned(v))
    }, else other => Err(super::unsupported(other)))
}

/// The elements of `t` as 0/1 bytes (`!= 0`).
fn load_bool<'a>(t: &TensorRef<'a>) -> Result<Cow<'a, [u8]>> {
    if t.dtype == S::Bool {
        return Ok(Cow::Borrowed(t.typed::<u8>()?));
    }
    ferrite_kernels::dispatch!(all el(t.dtype)?, T => {
        let src = t.typed::<T>()?;
        let mut v = vec![0u8; src.len()];
        k::unary(src, &mut v, |x| u8::from(x.nonzero()))?;
        Ok(Cow::Owned(v))
    }, else other => Err(super::unsupported(other)))
}

/// Casts `src` into `out`'s dtype.
fn store<C: Element>(src: &[C], out: &mut TensorMut<'_>) -> Result<()> {
    if out.dtype == S::Bool {
        k::unary(src, out.typed::<u8>()?, |v| u8::from(v.nonzero()))?;
        return Ok(());
    }
    ferrite_kernels::dispatch!(all el(out.dtype)?, D => { k::cast_slice(src, out.typed::<D>()?)?; }, else other => return Err(super::unsupported(other)));
    Ok(())
}

/// Runs `f` on an output buffer of type `C`: `out`'s own data when its dtype is `C`, otherwise
/// a temporary cast into `out` afterwards. `normalize` maps results to 0/1 (bool compute).
///
/// (`f` is `dyn`: this runs once per call, and a generic `f` made a copy of it per operator.)
#[inline(never)]
fn write_out<C: Element>(
    out: &mut TensorMut<'_>,
    normalize: bool,
    f: &mut dyn FnMut(&mut [C]) -> Result<()>,
) -> Result<()> {
    let to_bool = out.dtype == S::Bool;
    if crate::tensor::viewable_as::<C>(out.dtype) {
        let o = out.typed::<C>()?;
        f(o)?;
        if normalize || to_bool {
            for v in o.iter_mut() {
                *v = C::from_i64(i64::from(v.nonzero()));
            }
        }
        return Ok(());
    }
    let mut tmp = vec![C::default(); out.numel()];
    f(&mut tmp)?;
    if normalize {
        for v in tmp.iter_mut() {
            *v = C::from_i64(i64::from(v.nonzero()));
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
    C: Element,
    O: Element,
    F: Fn(C, C) -> O + Sync,
{
    binary_op_typed::<C, O>(env, a, b, out, normalize, &|x, sx, y, sy, o, so| k::binary(x, sx, y, sy, o, so, &f))
}

/// A broadcast binary kernel over operands of compute type `C` writing `O`: [`k::binary`] with
/// the operator's function.
type BinaryKernel<'f, C, O> = &'f (dyn Fn(&[C], &[usize], &[C], &[usize], &mut [O], &[usize]) -> KResult + Sync);

/// [`binary_op`]'s work, generic over the types alone (the operator's function reaches it in
/// `kernel`): one copy per compute and output type rather than one per operator.
#[inline(never)]
fn binary_op_typed<C: Element, O: Element>(
    env: &mut Env<'_>,
    a: Operand,
    b: Operand,
    out: usize,
    normalize: bool,
    kernel: BinaryKernel<'_, C, O>,
) -> Result<()> {
    let (so, tensors) = binary_setup(env, a, b, out)?;
    env.run(&tensors, &[out], |ins, outs| {
        let [(x, sx), (y, sy)] = operands::<C>(ins, [a, b])?;
        write_out::<O>(&mut outs[0], normalize, &mut |o| Ok(kernel(&x, &sx, &y, &sy, o, &so)?))
    })
}

/// [`binary_op`]'s part that does not depend on its types (one copy rather than one per
/// operator and dtype): sizes `out` to the operands' broadcast shape; that shape, and the
/// operands that are tensors.
#[inline(never)]
fn binary_setup(env: &mut Env<'_>, a: Operand, b: Operand, out: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let so = out_shape(env, &[a, b])?;
    env.resize(out, &so)?;
    let tensors = [a, b].iter().filter_map(|o| if let Operand::Tensor(t) = o { Some(*t) } else { None }).collect();
    Ok((so, tensors))
}

/// The two operands of a binary operator as `C` with their shapes (a Scalar is a 0-d tensor);
/// `ins` are the tensor operands' views, in order.
#[allow(clippy::type_complexity)]
#[inline(never)]
fn operands<'a, C: Element>(ins: &[TensorRef<'a>], ops: [Operand; 2]) -> Result<[(Cow<'a, [C]>, Vec<usize>); 2]> {
    let mut it = ins.iter();
    let mut get = |op: Operand| -> Result<(Cow<'a, [C]>, Vec<usize>)> {
        match op {
            Operand::Tensor(_) => {
                let t = it.next().ok_or_else(|| RuntimeError::Invalid("missing operand".into()))?;
                Ok((load::<C>(t)?, t.sizes.to_vec()))
            }
            Operand::Scalar(s) => Ok((Cow::Owned(vec![sc::<C>(s)]), Vec::new())),
        }
    };
    Ok([get(ops[0])?, get(ops[1])?])
}

/// `out = f(a)` with `a` loaded as `C`, results of type `O` cast to the output dtype.
fn unary_map<C, O, F>(env: &mut Env<'_>, a: usize, out: usize, normalize: bool, f: F) -> Result<()>
where
    C: Element,
    O: Element,
    F: Fn(C) -> O + Sync,
{
    unary_map_typed::<C, O>(env, a, out, normalize, &|x, o| k::unary(x, o, &f))
}

/// [`unary_map`]'s work, generic over the types alone (as [`binary_op_typed`]).
#[inline(never)]
fn unary_map_typed<C: Element, O: Element>(
    env: &mut Env<'_>,
    a: usize,
    out: usize,
    normalize: bool,
    kernel: &(dyn Fn(&[C], &mut [O]) -> KResult + Sync),
) -> Result<()> {
    let sizes = env.sizes(a)?.to_vec();
    env.resize(out, &sizes)?;
    env.run(&[a], &[out], |ins, outs| {
        let x = load::<C>(&ins[0])?;
        write_out::<O>(&mut outs[0], normalize, &mut |o| Ok(kernel(&x, o)?))
    })
}

#[derive(Debug, Clone, Copy)]
pub(super) enum RealT {
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
